/*
 * The zygote (pool/zygote.c): workers forked by it are the master's
 * children, it holds none of the master's fds, it is replaced when it dies
 * or the modules are reloaded, and it dies with the master. Runs once per
 * loop backend (FORKPOOL_LOOP in the environment).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "forkpool.h"
#include "fp_test.h"
#include "fp_test_pool.h"

/* --- helpers ------------------------------------------------------------- */

static fp_pool *new_pool(unsigned workers, unsigned max_tasks)
{
	fp_options o;

	fp_test_options(&o, workers);
	o.max_tasks_per_child = max_tasks;
	return fp_test_pool_with(&o);
}

/* Gone from the process table: reaped by the pool, not a zombie. */
static void assert_reaped(pid_t pid)
{
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

/*
 * 1 when some worker is alive and every live one is this process's child;
 * a worker of another parent fails the test.
 */
static int workers_are_mine(void *data)
{
	struct fp_worker_stats ws[8];
	size_t n = fp_pool_workers(data, ws, 8);
	int mine = 0;

	for (size_t i = 0; i < n && i < 8; i++) {
		pid_t pp = ws[i].pid > 0 ? fp_test_parent_of(ws[i].pid) : -1;

		if (pp < 0)
			continue;    /* not told yet, or just left (one task each) */
		assert_int_equal(pp, getpid());
		mine++;
	}
	return mine > 0;
}

static void assert_workers_are_mine(fp_pool *p)
{
	assert_true(fp_test_run_until(p, workers_are_mine, p, 10000));
}

static unsigned able(fp_pool *p)
{
	struct fp_pool_stats st;

	fp_pool_stats(p, &st);
	return st.able;
}

/* Every slot has a process that takes work. */
static int all_able(void *p)
{
	struct fp_pool_stats st;

	fp_pool_stats(p, &st);
	return st.able == st.workers;
}

/* --- the zygote as a process --------------------------------------------- */

/*
 * Workers are clone(CLONE_PARENT)ed: the master's children, not the
 * zygote's. The zygote is named, is never listed as a worker, and holds no
 * fd the master made for itself (a close-on-exec listening socket here).
 */
static void workers_are_the_masters_children(void **state)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct stat lst;
	struct fp_worker_stats ws[4];
	char path[64], buf[256], link[128];
	fp_pool *p;
	pid_t z, w;
	size_t n;
	DIR *d;
	struct dirent *e;
	int sockets = 0;

	assert_true(lfd >= 0);
	assert_int_equal(fstat(lfd, &lst), 0);
	p = new_pool(2, 0);
	w = fp_test_apply_pid(p, "pid", NULL);
	z = fp_test_zygote(p);
	assert_int_equal(fp_test_parent_of(w), getpid());

	n = fp_pool_workers(p, ws, 4);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(ws[i].pid, z);

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)z);
	assert_int_equal(fp_test_read_text(path, buf, sizeof(buf)), 0);
	/* As much of the title as the room argv had: here at least "forkpool:". */
	assert_true(strlen(buf) >= 9);
	assert_int_equal(strncmp(buf, "forkpool: zygote", strlen(buf)), 0);

	/* Its fds: the standard three, and one socket (to the master). */
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)z);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d))) {
		char fdpath[384], want[64];
		ssize_t k;

		if (e->d_name[0] == '.' || atoi(e->d_name) < 3)
			continue;
		snprintf(fdpath, sizeof(fdpath), "%s/%s", path, e->d_name);
		k = readlink(fdpath, link, sizeof(link) - 1);
		assert_true(k > 0);
		link[k] = '\0';
		snprintf(want, sizeof(want), "socket:[%lu]", (unsigned long)lst.st_ino);
		assert_string_not_equal(link, want);
		if (strncmp(link, "socket:", 7) == 0)
			sockets++;
	}
	closedir(d);
	assert_int_equal(sockets, 1);
	fp_pool_free(p);
	close(lfd);
	assert_reaped(z);
}

/* A worker forked by the zygote dies of the signal it raised. */
static void abort_in_a_worker_is_sigabrt(void **state)
{
	fp_pool *p = new_pool(1, 0);
	struct fp_result r;

	assert_int_equal(fp_pool_apply(p, "crash", "\"SIGABRT\"", 9, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_CRASH);
	assert_non_null(strstr(r.message, "SIGABRT"));
	fp_result_clear(&r);
	fp_pool_free(p);
}

/* --- the zygote dying ---------------------------------------------------- */

struct kill_probe {
	pid_t zygote;
	size_t done;
	int killed;
};

/* Mid-map, with workers being forked all the time (one task each). */
static void kill_zygote_mid_map(struct fp_test_collect *c, const struct fp_result *r)
{
	struct kill_probe *k = c->data;

	if (++k->done == 5 && !k->killed) {
		assert_int_equal(kill(k->zygote, SIGKILL), 0);
		k->killed = 1;
	}
}

static struct fp_buf *nulls(size_t n)
{
	struct fp_buf *b = calloc(n, sizeof(*b));

	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (struct fp_buf){ "null", 4 };
	return b;
}

/*
 * SIGKILLed mid-map with max_tasks_per_child 1: nothing is lost, the death
 * is logged, another zygote takes over, and the pool keeps its workers.
 */
static void killed_zygote_is_replaced(void **state)
{
	const size_t n = 40;
	struct fp_buf *items = nulls(n);
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	struct kill_probe k = { 0 };
	struct fp_test_collect c;
	struct fp_pool_stats st;
	fp_pool *p = new_pool(2, 1);
	pid_t z2;

	fp_test_apply_pid(p, "pid", NULL);
	k.zygote = fp_test_zygote(p);
	co.chunksize = 1;
	fp_test_collect_init(&c, p, n);
	c.each = kill_zygote_mid_map;
	c.data = &k;
	assert_int_equal(fp_pool_map_async(p, "pid", items, n, &co, fp_test_collect_item,
					   fp_test_collect_done, &c, NULL), 0);
	fp_test_collect_wait(&c);
	assert_true(k.killed);
	assert_int_equal(c.summary.ok, n);
	assert_true(fp_test_log_has("starting another"));

	z2 = fp_test_zygote(p);
	assert_int_not_equal(z2, k.zygote);
	/* The new one forks: more one-task workers come and go. */
	for (int i = 0; i < 4; i++)
		fp_test_apply_pid(p, "pid", NULL);
	/* The last one's successor counts once the new zygote has made it. */
	assert_true(fp_test_run_until(p, all_able, p, 10000));
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 0);
	assert_true(st.healthy);
	fp_pool_free(p);
	assert_reaped(k.zygote);
	assert_reaped(z2);
	fp_test_collect_free(&c);
	free(items);
}

static int zygote_gone(void *data)
{
	pid_t z = *(pid_t *)data;

	return fp_test_parent_of(z) < 0;
}

/* Killed again and again: the master forks its workers itself, and says so. */
static void zygote_that_keeps_dying_is_given_up(void **state)
{
	fp_pool *p = new_pool(1, 1);
	pid_t z;

	for (int i = 0; i < 3; i++) {
		fp_test_apply_pid(p, "pid", NULL);
		z = fp_test_zygote(p);
		assert_int_equal(kill(z, SIGKILL), 0);
		assert_true(fp_test_run_until(p, zygote_gone, &z, 10000));
		fp_test_apply_pid(p, "pid", NULL);
	}
	assert_true(fp_test_run_until(p, fp_test_log_says, "forking workers in the master from now on",
				      10000));
	assert_int_equal(fp_test_zygotes_of(getpid(), &z, 1), 0);
	for (int i = 0; i < 3; i++)
		fp_test_apply_pid(p, "pid", NULL);
	assert_workers_are_mine(p);
	fp_pool_free(p);
}

/* --- a worker not answered for yet --------------------------------------- */

/* Workers whose pid the zygote has not told yet; each is still starting. */
static size_t workers_without_pid(fp_pool *p)
{
	struct fp_worker_stats ws[8];
	size_t n = fp_pool_workers(p, ws, 8), k = 0;

	for (size_t i = 0; i < n && i < 8; i++) {
		if (ws[i].pid != 0)
			continue;
		assert_int_equal(ws[i].state, FP_WORKER_STARTING);
		k++;
	}
	return k;
}

static int a_pid_unknown(void *p)
{
	return workers_without_pid(p) > 0;
}

/*
 * While the zygote has not answered, a worker's pid is 0 (forkpoold says
 * null), never a stale or made-up one; its answer fills it in. The zygote is
 * stopped for that moment: shorter than its 5 s stall limit.
 */
static void worker_being_cloned_has_no_pid_yet(void **state)
{
	fp_pool *p = new_pool(1, 1);
	pid_t z;
	int seen;

	fp_test_apply_pid(p, "pid", NULL);
	z = fp_test_zygote(p);
	assert_true(fp_test_run_until(p, fp_test_pids_known, p, 10000));
	assert_int_equal(kill(z, SIGSTOP), 0);
	/* One task each: that worker's successor is asked of the stopped zygote. */
	fp_test_apply_pid(p, "pid", NULL);
	seen = fp_test_run_until(p, a_pid_unknown, p, 3000);
	assert_int_equal(kill(z, SIGCONT), 0);
	assert_true(seen);
	assert_true(fp_test_run_until(p, fp_test_pids_known, p, 10000));
	fp_test_apply_pid(p, "pid", NULL);
	assert_false(fp_test_log_has("did not answer"));
	fp_pool_free(p);
}

static int two_pids_unknown(void *p)
{
	return workers_without_pid(p) == 2;
}

/*
 * A worker asked of a stopped zygote does not exist, so it is not able:
 * with none able, forkpoold's /v1/health answers 503 (it said "ok, able: 2"
 * until the zygote's 5 s stall limit). Once the zygote goes on, they are
 * made and count again.
 */
static void workers_a_stopped_zygote_has_not_made_are_not_able(void **state)
{
	fp_pool *p = new_pool(2, 0);
	struct fp_worker_stats ws[4];
	pid_t z;
	int one, both;

	fp_test_apply_pid(p, "pid", NULL);
	z = fp_test_zygote(p);
	assert_true(fp_test_run_until(p, fp_test_pids_known, p, 10000));
	assert_int_equal(able(p), 2);
	assert_int_equal(fp_pool_workers(p, ws, 4), 2);
	assert_int_equal(kill(z, SIGSTOP), 0);
	/* Each one killed is replaced by a worker asked of the stopped zygote. */
	assert_int_equal(kill(ws[0].pid, SIGKILL), 0);
	one = fp_test_run_until(p, a_pid_unknown, p, 3000) && able(p) == 1;
	assert_int_equal(kill(ws[1].pid, SIGKILL), 0);
	both = fp_test_run_until(p, two_pids_unknown, p, 3000) && able(p) == 0;
	assert_int_equal(kill(z, SIGCONT), 0);
	assert_true(one);
	assert_true(both);
	assert_true(fp_test_run_until(p, all_able, p, 10000));
	fp_pool_free(p);
}

/* --- signals ------------------------------------------------------------- */

/*
 * A terminal's Ctrl-C signals the master's whole process group, and the
 * master answers it by draining, letting running tasks finish: so the
 * zygote and the workers are in groups of their own, whether the zygote or
 * the master forked them.
 */
static void zygote_and_workers_leave_the_masters_process_group(void **state)
{
	struct fp_worker_stats ws[4];
	fp_pool *p;
	pid_t z;
	size_t n;

	p = new_pool(2, 0);
	fp_test_apply_pid(p, "pid", NULL);
	z = fp_test_zygote(p);
	assert_int_not_equal(getpgid(z), getpgrp());
	assert_true(fp_test_run_until(p, fp_test_pids_known, p, 10000));
	n = fp_pool_workers(p, ws, 4);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(getpgid(ws[i].pid), getpgrp());
	fp_pool_free(p);

	setenv("FORKPOOL_ZYGOTE", "0", 1);
	p = new_pool(1, 0);
	unsetenv("FORKPOOL_ZYGOTE");
	assert_int_not_equal(getpgid(fp_test_apply_pid(p, "pid", NULL)), getpgrp());
	fp_pool_free(p);
}

/* --- what a clean shutdown says ------------------------------------------- */

static void count_warnings(void *data, fp_log_level level, const char *msg)
{
	if (level > FP_LOG_WARN)
		return;
	fprintf(stderr, "logged at %s: %s\n", level == FP_LOG_WARN ? "warn" : "error", msg);
	(*(int *)data)++;
}

/*
 * Only what went wrong is a warning. fp_pool_free() shuts down with no grace:
 * it SIGKILLs a zygote that has not read its EOF yet, which is no news (it
 * was "warn zygote (pid N) was killed by SIGKILL", about every other time).
 */
static void clean_shutdown_warns_of_nothing(void **state)
{
	int warnings = 0;

	for (int i = 0; i < 10; i++) {
		fp_options o;
		fp_pool *p;

		fp_test_options(&o, 2);
		o.log = count_warnings;
		o.log_data = &warnings;
		p = fp_test_pool_with(&o);
		fp_test_apply_pid(p, "pid", NULL);
		fp_pool_free(p);
	}
	assert_int_equal(warnings, 0);
}

/* --- reload, several pools, no zygote at all ------------------------------ */

static void reload_replaces_the_zygote(void **state)
{
	fp_pool *p = new_pool(1, 0);
	pid_t before, after;

	fp_test_apply_pid(p, "pid", NULL);
	before = fp_test_zygote(p);
	assert_int_equal(fp_pool_reload(p), 0);
	assert_true(fp_test_run_until(p, zygote_gone, &before, 10000));
	after = fp_test_zygote(p);
	assert_int_not_equal(before, after);
	fp_test_apply_pid(p, "pid", NULL);
	/* The old one left because it was asked to: no death is reported. */
	assert_false(fp_test_log_has("starting another"));
	fp_pool_free(p);
	assert_reaped(before);
	assert_reaped(after);
}

static int two_zygotes(void *data)
{
	return fp_test_zygotes_of(getpid(), (pid_t *)data, 2) == 2;
}

/*
 * Each pool has its own zygote, and one going away leaves the other working.
 * Freed newest first: two loops in one thread share SIGCHLD's blocking, and
 * the first loop's watcher gives it back (pool/loop.c, fp_signal_stop).
 */
static void two_pools_have_a_zygote_each(void **state)
{
	fp_pool *a = new_pool(1, 1), *b;
	pid_t za, zb, z[2];

	za = fp_test_zygote(a);
	b = new_pool(1, 1);
	assert_true(fp_test_run_until(b, two_zygotes, z, 10000));
	zb = z[0] == za ? z[1] : z[0];
	assert_int_not_equal(za, zb);
	fp_test_apply_pid(a, "pid", NULL);
	fp_test_apply_pid(b, "pid", NULL);
	fp_pool_free(b);
	assert_reaped(zb);
	assert_int_equal(fp_test_parent_of(za), getpid());
	for (int i = 0; i < 3; i++)
		fp_test_apply_pid(a, "pid", NULL);
	assert_workers_are_mine(a);
	fp_pool_free(a);
	assert_reaped(za);
}

static void forkpool_zygote_0_forks_in_the_master(void **state)
{
	fp_pool *p;
	pid_t z;

	setenv("FORKPOOL_ZYGOTE", "0", 1);
	p = new_pool(1, 1);
	unsetenv("FORKPOOL_ZYGOTE");
	for (int i = 0; i < 3; i++)
		fp_test_apply_pid(p, "pid", NULL);
	assert_workers_are_mine(p);
	assert_int_equal(fp_test_zygotes_of(getpid(), &z, 1), 0);
	fp_pool_free(p);
}

/*
 * The master dies without a word: PDEATHSIG takes the zygote down too. This
 * process is made a subreaper so the orphan comes back to it to be counted.
 */
static void zygote_dies_with_the_master(void **state)
{
	int pfd[2], status;
	pid_t master, z;

	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	assert_int_equal(pipe(pfd), 0);
	master = fork();
	assert_true(master >= 0);
	if (master == 0) {
		fp_options o;
		fp_pool *p;
		pid_t found[2];

		close(pfd[0]);
		fp_options_init(&o);
		o.workers = 1;
		if (fp_pool_new(&p, NULL, &o, NULL, 0))
			_exit(1);
		/* Its name comes a moment after its fork. */
		for (int i = 0; i < 1000 && fp_test_zygotes_of(getpid(), found, 2) != 1; i++)
			fp_test_apply_pid(p, "pid", NULL);
		if (fp_test_zygotes_of(getpid(), found, 2) != 1)
			_exit(1);
		if (write(pfd[1], found, sizeof(found[0])) != sizeof(found[0]))
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &z, sizeof(z)), (ssize_t)sizeof(z));
	close(pfd[0]);
	assert_int_equal(kill(master, SIGKILL), 0);
	assert_int_equal(waitpid(master, &status, 0), master);
	/* PDEATHSIG, or EOF on its socket first: either way it did not outlive the master. */
	fp_test_assert_died_with_master(z);
	/* The worker comes back here too; take it so nothing is left. */
	while (waitpid(-1, &status, WNOHANG) > 0)
		;
	prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(workers_are_the_masters_children),
		cmocka_unit_test(abort_in_a_worker_is_sigabrt),
		cmocka_unit_test(killed_zygote_is_replaced),
		cmocka_unit_test(zygote_that_keeps_dying_is_given_up),
		cmocka_unit_test(worker_being_cloned_has_no_pid_yet),
		cmocka_unit_test(reload_replaces_the_zygote),
		cmocka_unit_test(two_pools_have_a_zygote_each),
		cmocka_unit_test(forkpool_zygote_0_forks_in_the_master),
		cmocka_unit_test(zygote_dies_with_the_master),
		cmocka_unit_test(workers_a_stopped_zygote_has_not_made_are_not_able),
		cmocka_unit_test(zygote_and_workers_leave_the_masters_process_group),
		cmocka_unit_test(clean_shutdown_warns_of_nothing),
	};

	if (fp_test_backend_missing())
		return 77;
	return cmocka_run_group_tests_name("zygote", tests, NULL, NULL);
}
