/*
 * The pool, end to end: real workers, real crashes. Runs once per loop
 * backend (FORKPOOL_LOOP in the environment).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "forkpool.h"
#include "fp_test.h"
#include "fp_test_pool.h"
#include "forkpool/loop.h"
#include "worker_main.h"

/* --- helpers ------------------------------------------------------------- */

static pid_t result_pid(const struct fp_result *r)
{
	assert_int_equal(r->status, FP_ITEM_OK);
	return (pid_t)atol(r->value);
}

static struct fp_buf *numbers(size_t n, char ***storage)
{
	struct fp_buf *b = calloc(n, sizeof(*b));
	char **s = calloc(n, sizeof(*s));

	for (size_t i = 0; i < n; i++) {
		if (asprintf(&s[i], "%zu", i) < 0)
			abort();
		b[i].base = s[i];
		b[i].len = strlen(s[i]);
	}
	*storage = s;
	return b;
}

static void numbers_free(struct fp_buf *b, char **s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i]);
	free(s);
	free(b);
}

/* --- tests --------------------------------------------------------------- */

static void apply_returns_the_value(void **state)
{
	fp_pool *p = fp_test_pool(2);
	struct fp_result r;

	assert_int_equal(fp_pool_apply(p, "square", "7", 1, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_string_equal(r.value, "49");
	assert_int_equal(r.attempts, 1);
	assert_true(r.pid > 0 && r.pid != getpid());
	fp_result_clear(&r);

	assert_int_equal(fp_pool_apply(p, "echo", "{\"a\":[1,2]}", 11, NULL, &r), 0);
	assert_string_equal(r.value, "{\"a\":[1,2]}");
	fp_result_clear(&r);
	fp_pool_free(p);
}

/* The state letter in /proc/PID/stat (R, S, ...); 0 if unreadable. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Until pid sleeps (state S), for at most 10 s. */
static void await_sleeping(pid_t pid)
{
	struct timespec ms = { 0, 1000000 };

	for (int i = 0; i < 10000 && proc_state(pid) != 'S'; i++)
		nanosleep(&ms, NULL);
	assert_int_equal(proc_state(pid), 'S');
}

/*
 * A worker waiting for its next item sleeps once, however its master reads
 * its answers: taking the bytes the worker sent (which frees its send
 * space) must not wake it. It did when the worker slept in read(): that
 * wait is woken by any event on the socket, and the worker slept twice a
 * round trip (worker_main.h).
 */
static void idle_worker_is_not_woken_by_its_answer_being_read(void **state)
{
	int sv[2], st;
	long sleeps = -1;
	char c;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rusage a, b;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		/* The answer, then the wait for the next item, as a worker does. */
		if (write(sv[1], "a", 1) != 1)
			_exit(2);
		getrusage(RUSAGE_SELF, &a);
		while (fp__worker_wait_readable(sv[1]) < 0)
			;
		getrusage(RUSAGE_SELF, &b);
		sleeps = b.ru_nvcsw - a.ru_nvcsw;
		if (read(sv[1], &c, 1) != 1 || write(sv[1], &sleeps, sizeof(sleeps)) != sizeof(sleeps))
			_exit(2);
		_exit(0);
	}
	close(sv[1]);
	await_sleeping(pid);
	/* The master takes the answer; a woken worker is runnable at once. */
	assert_int_equal(read(sv[0], &c, 1), 1);
	await_sleeping(pid);
	assert_int_equal(write(sv[0], "b", 1), 1);
	assert_int_equal(read(sv[0], &sleeps, sizeof(sleeps)), sizeof(sleeps));
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(sv[0]);
	assert_int_equal(sleeps, 1);
}

static void durations_are_measured(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_pool_stats st;
	struct fp_result r;
	uint64_t n = 0;

	assert_int_equal(fp_pool_apply(p, "sleep", "50", 2, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_true(r.duration_us >= 50000);
	fp_result_clear(&r);
	fp_pool_stats(p, &st);
	for (int i = 0; i < FP_DURATION_BUCKETS; i++) {
		n += st.duration_counts[i];
		/* 50 ms lands in the (0.01, 0.05] bucket or, if slow, above it. */
		if (fp_duration_bounds[i] < 0.05)
			assert_int_equal(st.duration_counts[i], 0);
	}
	assert_int_equal(n, 1);
	assert_true(st.duration_sum_s >= 0.05);
	fp_pool_free(p);
}

static void unknown_task_is_refused_up_front(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_result r;

	assert_int_equal(fp_pool_apply(p, "no-such-task", "1", 1, NULL, &r), FP_EUNKNOWN_TASK);
	assert_string_equal(fp_strerror(FP_EUNKNOWN_TASK), "unknown task");
	fp_pool_free(p);
}

static void map_returns_every_item_in_order(void **state)
{
	const size_t n = 1000;
	fp_pool *p = fp_test_pool(2);
	struct fp_result *r;
	char **s;
	struct fp_buf *items = numbers(n, &s);

	assert_int_equal(fp_pool_map(p, "square", items, n, NULL, &r), 0);
	for (size_t i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "%zu", i * i);
		assert_int_equal(r[i].status, FP_ITEM_OK);
		assert_int_equal(r[i].index, i);
		assert_string_equal(r[i].value, want);
	}
	fp_results_free(r, n);
	numbers_free(items, s, n);
	fp_pool_free(p);
}

/*
 * The worker checks every answer is JSON before the master passes it on;
 * integers take a quick way there. Answers on the edges of that way (a digit
 * run broken by the bytes next to '0' and '9', by a space, a sign, a leading
 * zero, a digit run longer than a machine word) are judged as the general
 * check judges them: `echo` answers its item unchanged.
 */
static void answers_that_look_like_integers_are_judged_as_json_is(void **state)
{
	static const struct {
		const char *text;
		bool ok;
	} cases[] = {
		{ "7", true }, { "1234567", true }, { "12345678", true },
		{ "123456789012345678901234567890", true }, { "0", true }, { "-12", true },
		{ "10.5", true }, { "1e9", true }, { " 42 ", true },
		{ "12345678:", false }, { "1234567/8", false }, { "123456789012345a", false },
		{ "1234 5678", false }, { "0123", false }, { "12345678\x80", false },
		{ "1-2", false }, { "99999999.", false },
	};
	const size_t n = sizeof(cases) / sizeof(cases[0]);
	struct fp_buf items[sizeof(cases) / sizeof(cases[0])];
	fp_pool *p = fp_test_pool(2);
	struct fp_result *r;

	for (size_t i = 0; i < n; i++)
		items[i] = (struct fp_buf){ cases[i].text, strlen(cases[i].text) };
	assert_int_equal(fp_pool_map(p, "echo", items, n, NULL, &r), 0);
	for (size_t i = 0; i < n; i++) {
		if (cases[i].ok && r[i].status != FP_ITEM_OK)
			fail_msg("'%s' refused: %s", cases[i].text, r[i].message);
		if (!cases[i].ok && r[i].status != FP_ITEM_BAD_OUTPUT)
			fail_msg("'%s' passed as JSON", cases[i].text);
	}
	fp_results_free(r, n);
	fp_pool_free(p);
}

static void empty_map_completes(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_result *r = NULL;
	struct fp_test_collect c;

	assert_int_equal(fp_pool_map(p, "square", NULL, 0, NULL, &r), 0);
	fp_results_free(r, 0);

	fp_test_collect_init(&c, p, 0);
	assert_int_equal(fp_pool_map_async(p, "square", NULL, 0, NULL, fp_test_collect_item,
					   fp_test_collect_done, &c, NULL), 0);
	fp_test_collect_wait(&c);
	assert_int_equal(c.summary.total, 0);
	fp_test_collect_free(&c);
	fp_pool_free(p);
}

static void item_errors_stay_inside_their_item(void **state)
{
	fp_pool *p = fp_test_pool(1);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_buf items[] = { { "1", 1 }, { "\"x\"", 3 }, { "3", 1 } };
	struct fp_result *r;

	/* One chunk of three: the middle one fails, its neighbours do not. */
	o.chunksize = 3;
	assert_int_equal(fp_pool_map(p, "square", items, 3, &o, &r), 0);
	assert_int_equal(r[0].status, FP_ITEM_OK);
	assert_string_equal(r[0].value, "1");
	assert_int_equal(r[1].status, FP_ITEM_TASK_ERROR);
	assert_non_null(strstr(r[1].message, "square"));
	assert_int_equal(r[2].status, FP_ITEM_OK);
	assert_string_equal(r[2].value, "9");
	fp_results_free(r, 3);

	/* The worker survived: a task error is not a crash. */
	struct fp_pool_stats st;
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 0);
	assert_int_equal(st.failed, 1);
	fp_pool_free(p);
}

/*
 * A chunk of quick items travels as one TASKS frame and comes back as
 * RESULTS frames (frame.h). The worker dies at item 13, in the middle of its
 * 16-item chunk, with the answers before it gathered and perhaps unsent:
 * exactly item 13 fails, every other item is answered once, with its value.
 */
static void crash_inside_a_packed_chunk_fails_only_that_item(void **state)
{
	enum { N = 48 };
	static struct fp_buf items[N];
	static char args[N][8];
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_test_collect c;
	struct fp_pool_stats st;
	fp_options po;
	fp_pool *p;
	char *path;

	(void)state;
	fp_test_options(&po, 1);
	path = fp_test_module_path("libfp-pipe.so");
	po.modules[0] = path;
	p = fp_test_pool_with(&po);
	for (size_t i = 0; i < N; i++) {
		int l = snprintf(args[i], sizeof(args[i]), "%zu", i);
		items[i] = (struct fp_buf){ args[i], (size_t)l };
	}
	o.chunksize = 16;
	fp_test_collect_init(&c, p, N);
	assert_int_equal(fp_pool_map_async(p, "pipe.crash13", items, N, &o, fp_test_collect_item,
					   fp_test_collect_done, &c, NULL), 0);
	fp_test_collect_wait(&c);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(c.seen[i], 1);
		if (i == 13) {
			assert_int_equal(c.r[i].status, FP_ITEM_CRASH);
			assert_non_null(strstr(c.r[i].message, "SIGKILL"));
			continue;
		}
		assert_int_equal(c.r[i].status, FP_ITEM_OK);
		assert_string_equal(c.r[i].value, args[i]);
	}
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 1);
	assert_int_equal(st.failed, 1);
	fp_test_collect_free(&c);
	fp_pool_free(p);
	free(path);
}

/* fp_pool_map_borrow_async()'s results, kept item by item, and its runs counted. */
struct runs {
	struct fp_test_collect c;
	size_t runs, longest;
};

static void runs_item(fp_pool *p, uint64_t id, const struct fp_result *r, size_t n, void *data)
{
	struct runs *ru = data;

	assert_true(n >= 1);
	ru->runs++;
	if (n > ru->longest)
		ru->longest = n;
	for (size_t i = 0; i < n; i++)
		fp_test_collect_item(p, id, &r[i], &ru->c);
}

static void runs_done(fp_pool *p, const struct fp_call_summary *s, void *data)
{
	fp_test_collect_done(p, s, &((struct runs *)data)->c);
}

/*
 * A borrowed map: every item once, right, from the caller's own items; the
 * answers a worker sent together come in one callback, never more than a
 * chunk (the run is one segment's).
 */
static void borrowed_map_hands_results_over_in_runs(void **state)
{
	const size_t n = 1000;
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	fp_pool *p = fp_test_pool(2);
	struct runs ru = { 0 };
	char **s;
	struct fp_buf *items = numbers(n, &s);

	o.chunksize = 100;
	fp_test_collect_init(&ru.c, p, n);
	assert_int_equal(fp_pool_map_borrow_async(p, "square", items, n, &o, runs_item, runs_done,
						  &ru, NULL), 0);
	fp_test_collect_wait(&ru.c);
	for (size_t i = 0; i < n; i++) {
		char want[32];

		snprintf(want, sizeof(want), "%zu", i * i);
		assert_int_equal(ru.c.seen[i], 1);
		assert_int_equal(ru.c.r[i].status, FP_ITEM_OK);
		assert_int_equal(ru.c.r[i].attempts, 1);
		assert_string_equal(ru.c.r[i].value, want);
	}
	assert_int_equal(ru.c.summary.ok, n);
	/* Quick items come back packed: runs, each within its chunk. */
	assert_true(ru.runs < n);
	assert_true(ru.longest > 1 && ru.longest <= 100);
	fp_test_collect_free(&ru.c);
	numbers_free(items, s, n);
	fp_pool_free(p);
}

/*
 * A crash in a borrowed map: the crashing item is retried from the
 * caller's items and counts its attempts (kept only for it), the others
 * answer once.
 */
static void borrowed_map_retries_count_their_attempts(void **state)
{
	enum { N = 48 };
	static struct fp_buf items[N];
	static char args[N][8];
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct runs ru = { 0 };
	fp_options po;
	fp_pool *p;
	char *path;

	fp_test_options(&po, 1);
	path = fp_test_module_path("libfp-pipe.so");
	po.modules[0] = path;
	p = fp_test_pool_with(&po);
	for (size_t i = 0; i < N; i++) {
		int l = snprintf(args[i], sizeof(args[i]), "%zu", i);
		items[i] = (struct fp_buf){ args[i], (size_t)l };
	}
	o.chunksize = 16;
	o.retries = 2;
	fp_test_collect_init(&ru.c, p, N);
	assert_int_equal(fp_pool_map_borrow_async(p, "pipe.crash13", items, N, &o, runs_item,
						  runs_done, &ru, NULL), 0);
	fp_test_collect_wait(&ru.c);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(ru.c.seen[i], 1);
		if (i == 13) {
			assert_int_equal(ru.c.r[i].status, FP_ITEM_CRASH);
			assert_int_equal(ru.c.r[i].attempts, 3);
			assert_non_null(strstr(ru.c.r[i].message, "attempt 3 of 3"));
			continue;
		}
		assert_int_equal(ru.c.r[i].status, FP_ITEM_OK);
		assert_int_equal(ru.c.r[i].attempts, 1);
		assert_string_equal(ru.c.r[i].value, args[i]);
	}
	fp_test_collect_free(&ru.c);
	fp_pool_free(p);
	free(path);
}

static void task_error_carries_its_message(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_result r;

	assert_int_equal(fp_pool_apply(p, "fail", "\"disk on fire\"", 14, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_TASK_ERROR);
	assert_string_equal(r.message, "disk on fire");
	assert_string_equal(fp_item_status_name(r.status), "task_error");
	fp_result_clear(&r);
	fp_pool_free(p);
}

static void recycles_after_exactly_k_items(void **state)
{
	fp_options o;
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	struct fp_buf items[9];
	struct fp_result *r;
	fp_pool *p;

	fp_test_options(&o, 1);
	o.max_tasks_per_child = 3;
	p = fp_test_pool_with(&o);
	for (int i = 0; i < 9; i++)
		items[i] = (struct fp_buf){ "null", 4 };
	co.chunksize = 9;   /* the budget, not the chunk, must cut it */
	assert_int_equal(fp_pool_map(p, "pid", items, 9, &co, &r), 0);
	for (int i = 0; i < 9; i++) {
		pid_t first = result_pid(&r[i - i % 3]);
		assert_int_equal(result_pid(&r[i]), first);
		if (i % 3 == 0 && i > 0)
			assert_int_not_equal(first, result_pid(&r[i - 1]));
	}
	fp_results_free(r, 9);

	struct fp_pool_stats st;
	fp_pool_stats(p, &st);
	assert_int_equal(st.recycles, 3);
	assert_int_equal(st.crashes, 0);
	fp_pool_free(p);
}

/*
 * Capacity as recycling keeps it: workers able, and successors asked of the
 * zygote that it has not made yet (pid 0). `able` counts only processes
 * that exist, and on two busy cores the zygote may make a successor later
 * than its predecessor runs out; what recycling promises is that the
 * successor is asked for by then. The list is taken first: a worker made in
 * between counts twice, never not at all.
 */
static void sample_able(struct fp_test_collect *c, const struct fp_result *r)
{
	struct fp_worker_stats ws[8];
	struct fp_pool_stats st;
	unsigned *min_able = c->data, capacity = 0;
	size_t n;

	n = fp_pool_workers(c->pool, ws, 8);
	for (size_t i = 0; i < n && i < 8; i++)
		if (ws[i].pid == 0)
			capacity++;
	fp_pool_stats(c->pool, &st);
	capacity += st.able;
	if (capacity < *min_able)
		*min_able = capacity;
}

static void recycling_never_drops_capacity(void **state)
{
	const size_t n = 10000;
	fp_options o;
	struct fp_test_collect c;
	unsigned min_able = UINT32_MAX;
	char **s;
	struct fp_buf *items = numbers(n, &s);
	fp_pool *p;

	fp_test_options(&o, 2);
	o.log_level = FP_LOG_WARN;
	o.max_tasks_per_child = 10;
	p = fp_test_pool_with(&o);
	fp_test_collect_init(&c, p, n);
	c.each = sample_able;
	c.data = &min_able;
	assert_int_equal(fp_pool_map_async(p, "square", items, n, NULL, fp_test_collect_item,
					   fp_test_collect_done, &c, NULL), 0);
	fp_test_collect_wait(&c);
	assert_int_equal(c.summary.ok, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(c.seen[i], 1);
	assert_true(min_able >= 2);

	struct fp_pool_stats st;
	fp_pool_stats(p, &st);
	assert_true(st.recycles >= n / 10 - 2);
	assert_int_equal(st.crashes, 0);
	fp_test_collect_free(&c);
	numbers_free(items, s, n);
	fp_pool_free(p);
}

/* Submit `task` and then `square 5` on a one-worker pool. */
static void fails_one_then_next_succeeds(const char *task, const char *args,
					 fp_item_status want, const char *want_msg,
					 int64_t timeout_ms)
{
	fp_pool *p = fp_test_pool(1);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_test_collect bad, good;

	o.timeout_ms = timeout_ms;
	fp_test_collect_init(&bad, p, 1);
	fp_test_collect_init(&good, p, 1);
	assert_int_equal(fp_pool_apply_async(p, task, args, strlen(args), &o,
					     fp_test_collect_item, fp_test_collect_done, &bad, NULL), 0);
	assert_int_equal(fp_pool_apply_async(p, "square", "5", 1, NULL,
					     fp_test_collect_item, fp_test_collect_done, &good, NULL), 0);
	fp_test_collect_wait(&bad);
	fp_test_collect_wait(&good);
	assert_int_equal(bad.r[0].status, want);
	if (!strstr(bad.r[0].message, want_msg))
		fail_msg("message '%s' does not name '%s'", bad.r[0].message, want_msg);
	assert_int_equal(good.r[0].status, FP_ITEM_OK);
	assert_string_equal(good.r[0].value, "25");
	fp_test_collect_free(&bad);
	fp_test_collect_free(&good);
	fp_pool_free(p);
}

static void segfault_fails_exactly_one_item(void **state)
{
	fails_one_then_next_succeeds("crash", "null", FP_ITEM_CRASH, "SIGSEGV", -1);
}

static void named_signal_is_reported(void **state)
{
	fails_one_then_next_succeeds("crash", "\"SIGABRT\"", FP_ITEM_CRASH, "SIGABRT", -1);
}

static void exit_status_is_reported(void **state)
{
	fails_one_then_next_succeeds("exit", "3", FP_ITEM_CRASH, "exited with status 3", -1);
}

static void timeout_fails_exactly_one_item(void **state)
{
	/* hang ignores SIGTERM: this also pins the SIGKILL escalation. */
	fails_one_then_next_succeeds("hang", "null", FP_ITEM_TIMEOUT, "300 ms timeout", 300);
}

struct killer {
	int killed;
	pid_t victim;
};

static void kill_one_mid_map(struct fp_test_collect *c, const struct fp_result *r)
{
	struct killer *k = c->data;
	struct fp_worker_stats ws[8];
	size_t n, i;

	if (k->killed)
		return;
	n = fp_pool_workers(c->pool, ws, 8);
	for (i = 0; i < n && i < 8; i++) {
		if (ws[i].state == FP_WORKER_BUSY && ws[i].pid != r->pid) {
			k->victim = ws[i].pid;
			assert_int_equal(kill(ws[i].pid, SIGKILL), 0);
			k->killed = 1;
			return;
		}
	}
}

static void sigkill_from_outside_loses_no_item(void **state)
{
	const size_t n = 200;
	fp_pool *p = fp_test_pool(2);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct killer k = { 0 };
	struct fp_test_collect c;
	struct fp_buf *items = calloc(n, sizeof(*items));

	for (size_t i = 0; i < n; i++)
		items[i] = (struct fp_buf){ "2", 1 };   /* sleep 2 ms */
	o.chunksize = 10;
	o.retries = 1;
	fp_test_collect_init(&c, p, n);
	c.each = kill_one_mid_map;
	c.data = &k;
	assert_int_equal(fp_pool_map_async(p, "sleep", items, n, &o, fp_test_collect_item,
					   fp_test_collect_done, &c, NULL), 0);
	fp_test_collect_wait(&c);
	assert_true(k.killed);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(c.seen[i], 1);
		assert_int_equal(c.r[i].status, FP_ITEM_OK);
		assert_int_not_equal(c.r[i].pid, 0);
	}
	assert_int_equal(c.summary.ok, n);
	fp_test_collect_free(&c);
	free(items);
	fp_pool_free(p);
}

static void poison_item_stops_after_its_retries(void **state)
{
	fp_pool *p = fp_test_pool(1);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_pool_stats st;
	struct fp_result r;

	o.retries = 2;
	assert_int_equal(fp_pool_apply(p, "crash", "null", 4, &o, &r), 0);
	assert_int_equal(r.status, FP_ITEM_CRASH);
	assert_int_equal(r.attempts, 3);
	assert_non_null(strstr(r.message, "attempt 3 of 3"));
	fp_result_clear(&r);
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 3);
	/* And the pool still works. */
	assert_true(fp_test_apply_pid(p, "pid", NULL) > 0);
	fp_pool_free(p);
}

/* --- attempts: counted when an item starts --------------------------------- */

/* For fp_test_run_until(): the one worker, not `dead`, has run its item for 50 ms. */
struct slow_probe {
	fp_pool *pool;
	pid_t dead;
	pid_t pid;
};

static int running_slow_not(void *data)
{
	struct slow_probe *s = data;
	struct fp_worker_stats ws[2];

	if (fp_pool_workers(s->pool, ws, 2) != 1 || !ws[0].task || ws[0].pid <= 0 ||
	    ws[0].pid == s->dead || fp_now_ms() < ws[0].task_started_ms + 50)
		return 0;
	s->pid = ws[0].pid;
	return 1;
}

static void sigkill_uses_an_attempt_only_for_the_running_item(void **state)
{
	/*
	 * One chunk of six; item 1 sleeps until its worker is SIGKILLed, four
	 * times. Items 2..5 were sent with it each time and never started:
	 * they may not use an attempt (they once failed "attempt 5 of 4").
	 */
	static const char *const args[] = { "0", "30000", "300", "300", "300", "0" };
	fp_pool *p = fp_test_pool(1);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct slow_probe probe = { .pool = p };
	struct fp_test_collect c;
	struct fp_buf items[6];
	struct fp_pool_stats st;

	for (int i = 0; i < 6; i++)
		items[i] = (struct fp_buf){ args[i], strlen(args[i]) };
	o.chunksize = 6;
	o.retries = 3;
	o.timeout_ms = 0;
	fp_test_collect_init(&c, p, 6);
	assert_int_equal(fp_pool_map_async(p, "sleep", items, 6, &o, fp_test_collect_item,
					   fp_test_collect_done, &c, NULL), 0);
	for (int k = 0; k < 4; k++) {
		assert_true(fp_test_run_until(p, running_slow_not, &probe, 10000));
		assert_int_equal(kill(probe.pid, SIGKILL), 0);
		probe.dead = probe.pid;
	}
	fp_test_collect_wait(&c);
	/* Started four times, each run killed: retries 3 means 4 starts at most. */
	assert_int_equal(c.r[1].status, FP_ITEM_CRASH);
	assert_int_equal(c.r[1].attempts, 4);
	assert_non_null(strstr(c.r[1].message, "attempt 4 of 4"));
	for (int i = 0; i < 6; i++) {
		assert_int_equal(c.seen[i], 1);
		if (i == 1)
			continue;
		assert_int_equal(c.r[i].status, FP_ITEM_OK);
		assert_int_equal(c.r[i].attempts, 1);
	}
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 4);
	fp_test_collect_free(&c);
	fp_pool_free(p);
}

/* A pool of `workers` with tests/modules/attempts.c loaded (*path to free). */
static fp_pool *attempts_pool(unsigned workers, char **path)
{
	fp_options o;

	fp_test_options(&o, workers);
	*path = fp_test_module_path("libfp-attempts.so");
	o.modules[0] = *path;
	return fp_test_pool_with(&o);
}

/* A scratch directory for attempts.starts' files; the caller rm -r's it. */
static void scratch_dir(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/fp-attempts.XXXXXX");
	assert_non_null(mkdtemp(dir));
}

static void scratch_dir_remove(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* attempts.starts' args: count in DIR/NAME, fail by HOW for the first n starts. */
static void starts_args(char *buf, size_t len, const char *dir, const char *name,
			const char *how, int n)
{
	snprintf(buf, len, "\"%s/%s %s %d\"", dir, name, how, n);
}

/* How many times attempts.starts ran with DIR/NAME: its file's size. */
static long starts_of(const char *dir, const char *name)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

static const struct retry_case {
	const char *how;
	int n;                  /* starts that fail */
	unsigned retries, retry_on;
	int64_t timeout_ms;
	fp_item_status status;
	unsigned attempts;      /* what the result says, and the starts counted */
	const char *msg;        /* part of the message, or the value when ok */
} retry_cases[] = {
	/* By default a task's own error is not retried... */
	{ "fail", 1, 3, 0, -1, FP_ITEM_TASK_ERROR, 1, "failed at start 1" },
	/* ...and it is with task_error: the item runs again from its arguments. */
	{ "fail", 2, 3, FP_RETRY_TASK_ERROR, -1, FP_ITEM_OK, 3, "3" },
	{ "fail", 5, 1, FP_RETRY_TASK_ERROR, -1, FP_ITEM_TASK_ERROR, 2,
	  "failed at start 2 (attempt 2 of 2)" },
	/* Timeouts and crashes are retried by default... */
	{ "hang", 1, 1, 0, 200, FP_ITEM_OK, 2, "2" },
	{ "crash", 9, 2, 0, -1, FP_ITEM_CRASH, 3, "attempt 3 of 3" },
	/* ...each only when named, once retry_on is given. */
	{ "hang", 1, 1, FP_RETRY_CRASH, 200, FP_ITEM_TIMEOUT, 1, "200 ms timeout" },
	{ "crash", 1, 1, FP_RETRY_TIMEOUT | FP_RETRY_TASK_ERROR, -1, FP_ITEM_CRASH, 1, "SIGKILL" },
};

static void retry_on_says_which_failures_are_retried(void **state)
{
	char *path, dir[64], args[160], name[16];
	fp_pool *p = attempts_pool(1, &path);

	scratch_dir(dir, sizeof(dir));
	for (size_t i = 0; i < sizeof(retry_cases) / sizeof(retry_cases[0]); i++) {
		const struct retry_case *rc = &retry_cases[i];
		fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
		struct fp_result r;

		snprintf(name, sizeof(name), "c%zu", i);
		starts_args(args, sizeof(args), dir, name, rc->how, rc->n);
		o.retries = rc->retries;
		o.retry_on = rc->retry_on;
		o.timeout_ms = rc->timeout_ms;
		assert_int_equal(fp_pool_apply(p, "attempts.starts", args, strlen(args), &o, &r), 0);
		if (r.status != rc->status || r.attempts != rc->attempts)
			fail_msg("case %zu: %s, %u attempts (%s)", i, fp_item_status_name(r.status),
				 r.attempts, r.message ? r.message : r.value);
		/* The item ran exactly as often as it says. */
		assert_int_equal(starts_of(dir, name), rc->attempts);
		if (rc->status == FP_ITEM_OK)
			assert_string_equal(r.value, rc->msg);
		else if (!strstr(r.message, rc->msg))
			fail_msg("case %zu: \"%s\" does not say \"%s\"", i, r.message, rc->msg);
		fp_result_clear(&r);
	}
	scratch_dir_remove(dir);
	fp_pool_free(p);
	free(path);
}

static void task_error_retry_runs_only_its_item_again(void **state)
{
	char *path, dir[64], args[5][160], name[16];
	fp_pool *p = attempts_pool(1, &path);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_buf items[5];
	struct fp_result *r;

	/* One chunk of five; item 2 fails its first start and is run again alone. */
	scratch_dir(dir, sizeof(dir));
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		starts_args(args[i], sizeof(args[i]), dir, name, "fail", i == 2);
		items[i] = (struct fp_buf){ args[i], strlen(args[i]) };
	}
	o.chunksize = 5;
	o.retries = 1;
	o.retry_on = FP_RETRY_TASK_ERROR;
	assert_int_equal(fp_pool_map(p, "attempts.starts", items, 5, &o, &r), 0);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		assert_int_equal(r[i].status, FP_ITEM_OK);
		assert_string_equal(r[i].value, i == 2 ? "2" : "1");
		assert_int_equal(r[i].attempts, i == 2 ? 2 : 1);
		assert_int_equal(starts_of(dir, name), i == 2 ? 2 : 1);
	}
	fp_results_free(r, 5);
	scratch_dir_remove(dir);
	fp_pool_free(p);
	free(path);
}

/* --- a call's start ------------------------------------------------------ */

struct start_probe {
	int starts;
	int early;              /* items that came before the start */
	uint64_t id;
};

static void probe_start(fp_pool *p, uint64_t id, void *data)
{
	struct fp_test_collect *c = data;
	struct start_probe *sp = c->data;

	sp->starts++;
	sp->id = id;
}

static void probe_item(struct fp_test_collect *c, const struct fp_result *r)
{
	struct start_probe *sp = c->data;

	if (sp->starts != 1)
		sp->early++;
}

static int started_once(void *data)
{
	return ((struct start_probe *)data)->starts == 1;
}

static void started_callback_comes_once_before_the_first_result(void **state)
{
	fp_pool *p = fp_test_pool(1);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct start_probe sa = { 0 }, sb = { 0 }, sm = { 0 };
	struct fp_test_collect a, b, m;
	struct fp_buf items[20];
	struct fp_pool_stats st;
	uint64_t ida, idb;

	o.on_start = probe_start;
	fp_test_collect_init(&a, p, 1);
	fp_test_collect_init(&b, p, 1);
	a.data = &sa;
	b.data = &sb;
	a.each = b.each = probe_item;
	assert_int_equal(fp_pool_apply_async(p, "sleep", "300", 3, &o, fp_test_collect_item,
					     fp_test_collect_done, &a, &ida), 0);
	/* Told from the loop, never from inside the submit. */
	assert_int_equal(sa.starts, 0);
	assert_int_equal(fp_pool_apply_async(p, "square", "3", 1, &o, fp_test_collect_item,
					     fp_test_collect_done, &b, &idb), 0);
	/* Started while it runs, long before its answer. */
	assert_true(fp_test_run_until(p, started_once, &sa, 10000));
	assert_int_equal(sa.id, ida);
	assert_false(a.done);
	fp_pool_stats(p, &st);
	assert_int_equal(st.running, 1);
	/* Cancelled while queued behind it: never started, never told. */
	assert_int_equal(fp_pool_cancel(p, idb), 0);
	fp_test_collect_wait(&a);
	fp_test_collect_wait(&b);
	assert_int_equal(sa.starts, 1);
	assert_int_equal(sa.early, 0);
	assert_int_equal(sb.starts, 0);
	assert_int_equal(b.r[0].status, FP_ITEM_CANCELLED);

	/* A map of several chunks: once. */
	for (int i = 0; i < 20; i++)
		items[i] = (struct fp_buf){ "4", 1 };
	o.chunksize = 5;
	fp_test_collect_init(&m, p, 20);
	m.data = &sm;
	m.each = probe_item;
	assert_int_equal(fp_pool_map_async(p, "square", items, 20, &o, fp_test_collect_item,
					   fp_test_collect_done, &m, NULL), 0);
	fp_test_collect_wait(&m);
	assert_int_equal(sm.starts, 1);
	assert_int_equal(sm.early, 0);
	assert_int_equal(m.summary.ok, 20);
	fp_test_collect_free(&a);
	fp_test_collect_free(&b);
	fp_test_collect_free(&m);
	fp_pool_free(p);
}

static void log_lines_name_the_label_and_the_item(void **state)
{
	fp_pool *p = fp_test_pool(1);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_buf items[2] = { { "0", 1 }, { "5000", 4 } };
	struct fp_result r, *rs;

	o.label = "job 5f3a";
	assert_int_equal(fp_pool_apply(p, "crash", "null", 4, &o, &r), 0);
	assert_int_equal(r.status, FP_ITEM_CRASH);
	fp_result_clear(&r);
	assert_true(fp_test_log_has("SIGSEGV while running task crash (item 0 of job 5f3a, "
				    "attempt 1 of 1)"));
	/* A timeout names its item too, when it stops the worker. */
	o.label = "job 77b0";
	o.timeout_ms = 200;
	assert_int_equal(fp_pool_map(p, "sleep", items, 2, &o, &rs), 0);
	assert_int_equal(rs[1].status, FP_ITEM_TIMEOUT);
	fp_results_free(rs, 2);
	assert_true(fp_test_log_has("task sleep ran past its 200 ms timeout; stopping it "
				    "(item 1 of job 77b0)"));
	/* Without a label: the call's number. */
	assert_int_equal(fp_pool_apply(p, "crash", "null", 4, NULL, &r), 0);
	fp_result_clear(&r);
	assert_true(fp_test_log_has("(item 0 of call "));
	fp_pool_free(p);
}

/* For fp_test_run_until(): some worker is running `task` right now. */
struct busy_probe {
	fp_pool *pool;
	const char *task;
};

static int worker_busy_with(void *data)
{
	struct busy_probe *b = data;
	struct fp_worker_stats ws[4];
	size_t n = fp_pool_workers(b->pool, ws, 4);

	for (size_t i = 0; i < n && i < 4; i++)
		if (ws[i].task && strcmp(ws[i].task, b->task) == 0)
			return 1;
	return 0;
}

static void cancel_kills_only_its_own_workers(void **state)
{
	fp_pool *p = fp_test_pool(2);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_test_collect hang, slow;
	struct fp_buf items[6];
	uint64_t hang_id;

	o.timeout_ms = 0;
	o.chunksize = 6;
	for (int i = 0; i < 6; i++)
		items[i] = (struct fp_buf){ "30", 2 };
	fp_test_collect_init(&hang, p, 1);
	fp_test_collect_init(&slow, p, 6);
	assert_int_equal(fp_pool_apply_async(p, "hang", "null", 4, &o, fp_test_collect_item,
					     fp_test_collect_done, &hang, &hang_id), 0);
	assert_int_equal(fp_pool_map_async(p, "sleep", items, 6, &o, fp_test_collect_item,
					   fp_test_collect_done, &slow, NULL), 0);
	assert_true(fp_test_run_until(p, worker_busy_with, &(struct busy_probe){ p, "hang" }, 10000));

	assert_int_equal(fp_pool_cancel(p, hang_id), 0);
	assert_int_equal(fp_pool_cancel(p, hang_id), -ENOENT);
	fp_test_collect_wait(&hang);
	fp_test_collect_wait(&slow);
	assert_int_equal(hang.r[0].status, FP_ITEM_CANCELLED);
	assert_true(hang.summary.cancelled);
	/* The other call's chunk ran in one worker, untouched, to the end. */
	for (int i = 0; i < 6; i++) {
		assert_int_equal(slow.r[i].status, FP_ITEM_OK);
		assert_int_equal(slow.r[i].pid, slow.r[0].pid);
		assert_int_equal(slow.r[i].attempts, 1);
	}
	struct fp_pool_stats st;
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 0);
	assert_int_equal(st.cancelled, 1);
	fp_test_collect_free(&hang);
	fp_test_collect_free(&slow);
	fp_pool_free(p);
}

/* --- chunks that span calls ---------------------------------------------- */

/*
 * Several applies of a quick task queued behind a busy worker reach it as
 * one chunk. "spin 0" is made known as quick first (not "sleep 0": nanosleep
 * takes up to milliseconds in a VM); the chunk's first item then spins,
 * holding the chunk in the worker where the stats can see it.
 */
#define SHARED_N 5

struct shared {
	fp_pool *pool;
	struct fp_test_collect c[SHARED_N + 1];
	uint64_t id[SHARED_N + 1];
	int order[SHARED_N + 1];
	int next;
};

static void shared_each(struct fp_test_collect *c, const struct fp_result *r)
{
	struct shared *sh = c->data;

	sh->order[c - sh->c] = sh->next++;
}

/*
 * Consecutive quick runs of "spin 0" that prove the pool now counts spin as
 * quick. Its estimate, at most FP_FRAME_US_MAX after a slow run, falls by
 * half its gap to each quicker run, so 16 runs of at most QUICK_PROOF_US
 * (seen from the master, which sees more than the worker measures) bring it
 * from there to within FP_BATCH_QUICK_US.
 */
#define QUICK_PROOF_RUNS 16
#define QUICK_PROOF_US 150

/*
 * "spin 0" until the pool knows spin as quick (a fresh worker's first runs
 * take a millisecond, and on a busy machine any run may be preempted: so
 * the runs are counted, not assumed); then one apply of spin per args[i]
 * (ms of CPU), timeouts[i] each: call 0 takes the idle worker, calls 1..5
 * queue behind it and go to the worker together (as its next chunk).
 */
static void shared_submit(struct shared *sh, fp_pool *p, const char *const args[],
			  const int64_t timeouts[])
{
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_result r;
	int quick = 0;

	memset(sh, 0, sizeof(*sh));
	sh->pool = p;
	for (int i = 0; quick < QUICK_PROOF_RUNS; i++) {
		assert_true(i < 5000);
		assert_int_equal(fp_pool_apply(p, "spin", "0", 1, NULL, &r), 0);
		assert_int_equal(r.status, FP_ITEM_OK);
		quick = r.duration_us <= QUICK_PROOF_US ? quick + 1 : 0;
		fp_result_clear(&r);
	}
	for (int i = 0; i <= SHARED_N; i++) {
		fp_test_collect_init(&sh->c[i], p, 1);
		sh->c[i].each = shared_each;
		sh->c[i].data = sh;
		o.timeout_ms = timeouts ? timeouts[i] : -1;
		assert_int_equal(fp_pool_apply_async(p, "spin", args[i], strlen(args[i]), &o,
						     fp_test_collect_item, fp_test_collect_done, &sh->c[i],
						     &sh->id[i]), 0);
	}
}

/*
 * Calls 1..5 are on the worker, none queued. They may have gone as its next
 * chunk while it still ran call 0 (sent ahead, dispatch.c), and call 0's
 * quick answer may wait in the worker behind a slow item: so at least five
 * running. Without them sharing a chunk, four would be queued.
 */
static int shared_chunk_running(void *data)
{
	struct shared *sh = data;
	struct fp_pool_stats st;

	fp_pool_stats(sh->pool, &st);
	return st.running >= SHARED_N && st.queued == 0;
}

static void shared_wait_free(struct shared *sh)
{
	for (int i = 0; i <= SHARED_N; i++)
		fp_test_collect_wait(&sh->c[i]);
}

static void shared_free(struct shared *sh)
{
	for (int i = 0; i <= SHARED_N; i++)
		fp_test_collect_free(&sh->c[i]);
}

static void quick_applies_share_a_chunk_in_queue_order(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct shared sh;

	static const char *const args[] = { "0", "200", "0", "0", "0", "0" };

	shared_submit(&sh, p, args, NULL);
	/* One worker: without a shared chunk it would hold one item, and 4 would queue. */
	assert_true(fp_test_run_until(p, shared_chunk_running, &sh, 10000));
	shared_wait_free(&sh);
	for (int i = 0; i <= SHARED_N; i++) {
		assert_int_equal(sh.c[i].r[0].status, FP_ITEM_OK);
		assert_int_equal(sh.c[i].r[0].attempts, 1);
		assert_int_equal(sh.c[i].seen[0], 1);
		/* Answered in the order they were submitted. */
		assert_int_equal(sh.order[i], i);
	}
	shared_free(&sh);
	fp_pool_free(p);
}

static int one_spinning_rest_queued(void *data)
{
	struct shared *sh = data;
	struct fp_pool_stats st;

	fp_pool_stats(sh->pool, &st);
	return st.running == 1 && st.queued == 2 &&
	       worker_busy_with(&(struct busy_probe){ sh->pool, "spin" });
}

static void slow_tasks_are_not_joined(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct shared sh = { .pool = p };
	struct fp_test_collect c[3];
	struct fp_result r;
	int round;

	/* Never run yet, then known as slow (50 ms a run): one item per chunk. */
	for (round = 0; round < 2; round++) {
		for (int i = 0; i < 3; i++) {
			fp_test_collect_init(&c[i], p, 1);
			assert_int_equal(fp_pool_apply_async(p, "spin", "50", 2, NULL, fp_test_collect_item,
							     fp_test_collect_done, &c[i], NULL), 0);
		}
		assert_true(fp_test_run_until(p, one_spinning_rest_queued, &sh, 10000));
		for (int i = 0; i < 3; i++) {
			fp_test_collect_wait(&c[i]);
			assert_int_equal(c[i].r[0].status, FP_ITEM_OK);
			fp_test_collect_free(&c[i]);
		}
	}
	/* One quick run does not make a slow task quick again. */
	assert_int_equal(fp_pool_apply(p, "spin", "0", 1, NULL, &r), 0);
	fp_result_clear(&r);
	for (int i = 0; i < 3; i++) {
		fp_test_collect_init(&c[i], p, 1);
		assert_int_equal(fp_pool_apply_async(p, "spin", "50", 2, NULL, fp_test_collect_item,
						     fp_test_collect_done, &c[i], NULL), 0);
	}
	assert_true(fp_test_run_until(p, one_spinning_rest_queued, &sh, 10000));
	for (int i = 0; i < 3; i++) {
		fp_test_collect_wait(&c[i]);
		fp_test_collect_free(&c[i]);
	}
	fp_pool_free(p);
}

static void timeout_in_a_shared_chunk_fails_only_its_item(void **state)
{
	/*
	 * Call 1 holds the chunk for 400 ms with the pool's timeout; call 2 has
	 * 300 ms but runs after that and takes none of it; call 3 overruns its 300.
	 */
	static const char *const args[] = { "0", "400", "0", "2000", "0", "0" };
	static const int64_t timeouts[] = { -1, -1, 300, 300, -1, -1 };
	fp_pool *p = fp_test_pool(1);
	struct fp_pool_stats st;
	struct shared sh;

	shared_submit(&sh, p, args, timeouts);
	assert_true(fp_test_run_until(p, shared_chunk_running, &sh, 10000));
	shared_wait_free(&sh);
	for (int i = 0; i <= SHARED_N; i++) {
		assert_int_equal(sh.c[i].seen[0], 1);
		if (i != 3)
			assert_int_equal(sh.c[i].r[0].status, FP_ITEM_OK);
	}
	assert_int_equal(sh.c[3].r[0].status, FP_ITEM_TIMEOUT);
	assert_non_null(strstr(sh.c[3].r[0].message, "300 ms timeout"));
	fp_pool_stats(p, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.crashes, 0);
	shared_free(&sh);
	fp_pool_free(p);
}

static void sigkill_in_a_shared_chunk_fails_only_the_running_item(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_worker_stats ws[2];
	struct fp_pool_stats st;
	struct shared sh;

	static const char *const args[] = { "0", "3000", "0", "0", "0", "0" };

	shared_submit(&sh, p, args, NULL);
	assert_true(fp_test_run_until(p, shared_chunk_running, &sh, 10000));
	assert_true(fp_test_run_until(p, worker_busy_with, &(struct busy_probe){ p, "spin" }, 10000));
	assert_int_equal(fp_pool_workers(p, ws, 2), 1);
	assert_int_equal(kill(ws[0].pid, SIGKILL), 0);
	shared_wait_free(&sh);
	/*
	 * Call 1 was running: it fails naming the signal; the rest of the
	 * chunk had not started, so it runs again without using an attempt.
	 */
	assert_int_equal(sh.c[1].r[0].status, FP_ITEM_CRASH);
	assert_non_null(strstr(sh.c[1].r[0].message, "SIGKILL"));
	assert_int_equal(sh.c[1].r[0].attempts, 1);
	for (int i = 2; i <= SHARED_N; i++) {
		assert_int_equal(sh.c[i].r[0].status, FP_ITEM_OK);
		assert_int_equal(sh.c[i].r[0].attempts, 1);
		assert_int_equal(sh.c[i].seen[0], 1);
		assert_int_not_equal(sh.c[i].r[0].pid, ws[0].pid);
	}
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 1);
	shared_free(&sh);
	fp_pool_free(p);
}

static void cancel_in_a_shared_chunk_ends_only_its_call(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_pool_stats st;
	struct shared sh;

	static const char *const args[] = { "0", "300", "0", "0", "0", "0" };

	shared_submit(&sh, p, args, NULL);
	assert_true(fp_test_run_until(p, shared_chunk_running, &sh, 10000));
	assert_true(fp_test_run_until(p, worker_busy_with, &(struct busy_probe){ p, "spin" }, 10000));
	/* Call 3 waits in the chunk behind the running call 1: the worker goes, the rest stay. */
	assert_int_equal(fp_pool_cancel(p, sh.id[3]), 0);
	shared_wait_free(&sh);
	assert_int_equal(sh.c[3].r[0].status, FP_ITEM_CANCELLED);
	assert_true(sh.c[3].summary.cancelled);
	for (int i = 0; i <= SHARED_N; i++) {
		if (i == 3)
			continue;
		assert_int_equal(sh.c[i].r[0].status, FP_ITEM_OK);
		assert_int_equal(sh.c[i].seen[0], 1);
		assert_false(sh.c[i].summary.cancelled);
	}
	/* Killed for another call's sake: run again, not blamed. */
	assert_int_equal(sh.c[1].r[0].attempts, 2);
	fp_pool_stats(p, &st);
	assert_int_equal(st.crashes, 0);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.cancelled, 1);
	shared_free(&sh);
	fp_pool_free(p);
}

static void cancel_drops_queued_items(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_test_collect c;
	struct fp_buf items[50];
	uint64_t id;

	for (int i = 0; i < 50; i++)
		items[i] = (struct fp_buf){ "1", 1 };
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	o.chunksize = 1;
	fp_test_collect_init(&c, p, 50);
	assert_int_equal(fp_pool_map_async(p, "sleep", items, 50, &o, fp_test_collect_item,
					   fp_test_collect_done, &c, &id), 0);
	assert_int_equal(fp_pool_cancel(p, id), 0);
	/* Callbacks come from the loop, never from inside cancel. */
	assert_int_equal(c.seen[49], 0);
	fp_test_collect_wait(&c);
	for (int i = 0; i < 50; i++)
		assert_int_equal(c.seen[i], 1);
	assert_true(c.summary.failed >= 49);
	assert_int_equal(c.r[49].status, FP_ITEM_CANCELLED);
	fp_test_collect_free(&c);
	fp_pool_free(p);
}

static void rss_limit_recycles_the_worker(void **state)
{
	fp_options o;
	struct fp_result r;
	struct fp_pool_stats st;
	pid_t before;
	fp_pool *p;

	fp_test_options(&o, 1);
	o.max_rss_bytes = 64u << 20;
	p = fp_test_pool_with(&o);
	before = fp_test_apply_pid(p, "pid", NULL);
	assert_int_equal(fp_test_apply_pid(p, "pid", NULL), before);   /* small tasks do not recycle */
	assert_int_equal(fp_pool_apply(p, "alloc", "100", 3, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_int_equal(r.pid, before);
	fp_result_clear(&r);
	assert_int_not_equal(fp_test_apply_pid(p, "pid", NULL), before);
	fp_pool_stats(p, &st);
	assert_int_equal(st.recycles, 1);
	assert_int_equal(st.crashes, 0);
	fp_pool_free(p);
}

static void large_result_up_to_the_limit(void **state)
{
	const size_t limit = 64u << 20;
	fp_pool *p = fp_test_pool(1);
	struct fp_result r;
	char arg[32];

	/* bytes n answers a JSON string of n bytes: n + 2 with its quotes. */
	snprintf(arg, sizeof(arg), "%zu", limit - 2);
	assert_int_equal(fp_pool_apply(p, "bytes", arg, strlen(arg), NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_int_equal(r.value_len, limit);
	assert_int_equal(r.value[0], '"');
	assert_int_equal(r.value[limit - 1], '"');
	assert_int_equal(r.value[limit / 2], 'x');
	fp_result_clear(&r);

	snprintf(arg, sizeof(arg), "%zu", limit);
	assert_int_equal(fp_pool_apply(p, "bytes", arg, strlen(arg), NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_TOO_LARGE);
	assert_non_null(strstr(r.message, "limit"));
	fp_result_clear(&r);
	fp_pool_free(p);
}

static void oversized_argument_fails_its_item(void **state)
{
	fp_options o;
	struct fp_buf items[2] = { { "\"ok\"", 4 }, { NULL, 0 } };
	struct fp_result *r;
	fp_pool *p;
	char *big;

	fp_test_options(&o, 1);
	o.max_payload = 1024;
	p = fp_test_pool_with(&o);
	big = malloc(2048);
	memset(big, '1', 2048);
	items[1] = (struct fp_buf){ big, 2048 };
	assert_int_equal(fp_pool_map(p, "echo", items, 2, NULL, &r), 0);
	assert_int_equal(r[0].status, FP_ITEM_OK);
	assert_int_equal(r[1].status, FP_ITEM_TOO_LARGE);
	fp_results_free(r, 2);
	free(big);
	fp_pool_free(p);
}

static void large_argument_round_trips(void **state)
{
	const size_t n = 8u << 20;
	fp_pool *p = fp_test_pool(1);
	struct fp_result r;
	char *s = malloc(n);

	memset(s, 'y', n);
	s[0] = '"';
	s[n - 1] = '"';
	assert_int_equal(fp_pool_apply(p, "echo", s, n, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_int_equal(r.value_len, n);
	assert_memory_equal(r.value, s, n);
	fp_result_clear(&r);
	free(s);
	fp_pool_free(p);
}

static int pool_unhealthy(void *data)
{
	struct fp_pool_stats st;

	fp_pool_stats(data, &st);
	return !st.healthy;
}

static void failing_worker_init_backs_off_and_reports_unhealthy(void **state)
{
	fp_options o;
	struct fp_pool_stats st;
	char *path = fp_test_module_path(FP_TEST_INITFAIL_MODULE);
	fp_pool *p;

	fp_test_options(&o, 1);
	o.modules[0] = path;
	p = fp_test_pool_with(&o);
	assert_true(fp_test_run_until(p, pool_unhealthy, p, 10000));
	fp_pool_stats(p, &st);
	assert_true(st.init_failures >= 3);
	/* Backoff: 100 + 200 ms before the third try, so no fork loop. */
	assert_true(st.init_failures <= 4);
	assert_int_equal(st.crashes, 0);
	assert_true(fp_test_log_has("failed to start"));
	assert_true(fp_test_log_has("retrying in"));
	fp_pool_free(p);
	free(path);
}

/*
 * Workers whose worker_init always fails: the item queued meanwhile fails
 * with start_failure, naming the module's error, once 3 starts in a row
 * failed; then calls are refused (FP_EUNAVAILABLE) instead of waiting for a
 * worker that never comes.
 */
static void failing_worker_init_fails_queued_items_and_refuses_calls(void **state)
{
	fp_options o;
	struct fp_test_collect c;
	struct fp_result r;
	char *path = fp_test_module_path(FP_TEST_INITFAIL_MODULE);
	fp_pool *p;

	fp_test_options(&o, 1);
	o.modules[0] = path;
	p = fp_test_pool_with(&o);
	fp_test_collect_init(&c, p, 1);
	assert_int_equal(fp_pool_apply_async(p, "initfail.nop", "null", 4, NULL,
					     fp_test_collect_item, fp_test_collect_done, &c, NULL), 0);
	assert_true(fp_test_run_until(p, fp_test_collected, &c, 10000));
	assert_int_equal(c.r[0].status, FP_ITEM_START_FAILURE);
	assert_non_null(strstr(c.r[0].message, "3 starts in a row failed, the last: "));
	assert_non_null(strstr(c.r[0].message, "initfail"));
	assert_int_equal(c.r[0].attempts, 0);
	assert_int_equal(fp_pool_apply(p, "echo", "1", 1, NULL, &r), FP_EUNAVAILABLE);
	assert_non_null(fp_pool_unavailable(p, "echo"));
	assert_true(fp_test_log_has("3 starts in a row failed and no worker is running: calls are "
				    "refused until one starts; 1 queued item fails with start_failure"));
	fp_test_collect_free(&c);
	fp_pool_free(p);
	free(path);
}

static int log_has_said(void *data)
{
	return fp_test_log_has("said \"hello\"") && fp_test_log_has("complained \"hello\"");
}

static void module_tasks_run_and_output_is_logged(void **state)
{
	fp_options o;
	struct fp_result r;
	char *path = fp_test_module_path("libfp-good.so"), want[64];
	fp_pool *p;

	fp_test_options(&o, 1);
	o.modules[0] = path;
	p = fp_test_pool_with(&o);
	assert_int_equal(fp_pool_apply(p, "good.add", "[2, 40]", 7, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_string_equal(r.value, "42");
	fp_result_clear(&r);

	/* worker_init ran in the worker, once; load ran before the fork. */
	assert_int_equal(fp_pool_apply(p, "good.state", "null", 4, NULL, &r), 0);
	assert_non_null(strstr(r.value, "\"load\":1"));
	assert_non_null(strstr(r.value, "\"worker_init\":1"));
	fp_result_clear(&r);

	/* A negative errno without an answer becomes a task error naming it. */
	assert_int_equal(fp_pool_apply(p, "good.enoent", "null", 4, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_TASK_ERROR);
	assert_non_null(strstr(r.message, "good.enoent"));
	assert_non_null(strstr(r.message, "No such file"));
	fp_result_clear(&r);

	/* Text that is not JSON is caught, with where it went wrong. */
	assert_int_equal(fp_pool_apply(p, "good.badjson", "null", 4, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_BAD_OUTPUT);
	assert_non_null(strstr(r.message, "good.badjson"));
	assert_non_null(strstr(r.message, "invalid JSON"));
	fp_result_clear(&r);

	/* What a worker prints reaches the master's log with its pid. */
	assert_int_equal(fp_pool_apply(p, "good.say", "\"hello\"", 7, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_true(fp_test_run_until(p, log_has_said, NULL, 10000));
	snprintf(want, sizeof(want), "(pid %d): said \"hello\"", (int)r.pid);
	assert_true(fp_test_log_has(want));
	fp_result_clear(&r);
	fp_pool_free(p);
	free(path);
}

static void missing_module_stops_the_pool_starting(void **state)
{
	fp_options o;
	fp_pool *p = NULL;
	char err[512];

	fp_test_options(&o, 1);
	o.modules[0] = "/nonexistent/libnothing.so";
	assert_int_equal(fp_pool_new(&p, NULL, &o, err, sizeof(err)), FP_EMODULE);
	assert_null(p);
	assert_non_null(strstr(err, "/nonexistent/libnothing.so"));
}

static void stats_describe_the_workers(void **state)
{
	fp_pool *p = fp_test_pool(2);
	struct fp_worker_stats ws[4];
	struct fp_pool_stats st;
	size_t n;

	/* Both workers answer once they are up. */
	fp_test_apply_pid(p, "pid", NULL);
	n = fp_pool_workers(p, ws, 4);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_true(ws[i].pid > 0);
		assert_true(ws[i].slot < 2);
		assert_int_equal(ws[i].generation, 1);
		assert_true(ws[i].state == FP_WORKER_IDLE || ws[i].state == FP_WORKER_STARTING);
	}
	assert_int_not_equal(ws[0].slot, ws[1].slot);
	fp_pool_stats(p, &st);
	assert_int_equal(st.workers, 2);
	assert_int_equal(st.alive, 2);
	assert_int_equal(st.done, 1);
	assert_true(st.healthy);

	size_t nt;
	const struct fp_task_info *t = fp_pool_tasks(p, &nt);
	int found = 0;
	for (size_t i = 0; i < nt; i++)
		found += strcmp(t[i].name, "square") == 0 && strcmp(t[i].module, "demo") == 0;
	assert_int_equal(found, 1);
	fp_pool_free(p);
}

static void workers_name_themselves(void **state)
{
	fp_pool *p = fp_test_pool(1);
	pid_t pid = fp_test_apply_pid(p, "pid", NULL);
	char path[64], buf[256] = "";
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	/* As much of the title as the room argv had: here at least "forkpool:". */
	assert_true(strlen(buf) >= 9);
	assert_int_equal(strncmp(buf, "forkpool: worker 0 gen 1", strlen(buf)), 0);
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "fp-worker-0\n");
	fp_pool_free(p);
}

static void reload_replaces_every_worker(void **state)
{
	fp_pool *p = fp_test_pool(1);
	pid_t before = fp_test_apply_pid(p, "pid", NULL);

	assert_int_equal(fp_pool_reload(p), 0);
	assert_int_not_equal(fp_test_apply_pid(p, "pid", NULL), before);
	fp_pool_free(p);
}

/*
 * Replace a file the way a deployment must replace a module: a new file
 * renamed over the old. Writing into the old one would change the pages
 * the master has mapped.
 */
static void replace_file(const char *to, const char *from, const char *text)
{
	char tmp[256], buf[65536];
	int in = from ? open(from, O_RDONLY) : -1, out;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s.new", to);
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(out >= 0 && (in >= 0 || text));
	if (text)
		assert_int_equal(write(out, text, strlen(text)), (ssize_t)strlen(text));
	while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	if (in >= 0)
		close(in);
	close(out);
	assert_int_equal(rename(tmp, to), 0);
}

/* The file is read again on reload; a broken one refuses it and changes nothing. */
static void reload_loads_modules_again_from_their_files(void **state)
{
	char path[] = "/tmp/fp-test-reload-XXXXXX.so";
	char *good = fp_test_module_path("libfp-good.so"), *second = fp_test_module_path("libfp-second.so");
	struct fp_result r;
	fp_options o;
	fp_pool *p;
	int fd = mkstemps(path, 3);

	assert_true(fd >= 0);
	close(fd);
	replace_file(path, good, NULL);
	fp_test_options(&o, 1);
	o.modules[0] = path;
	p = fp_test_pool_with(&o);
	assert_int_equal(fp_pool_apply(p, "good.add", "[1, 2]", 6, NULL, &r), 0);
	assert_string_equal(r.value, "3");
	fp_result_clear(&r);

	replace_file(path, second, NULL);
	assert_int_equal(fp_pool_reload(p), 0);
	assert_int_equal(fp_pool_apply(p, "good.add", "[1, 2]", 6, NULL, &r), FP_EUNKNOWN_TASK);
	assert_int_equal(fp_pool_apply(p, "second.hello", "null", 4, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	fp_result_clear(&r);

	replace_file(path, NULL, "not an ELF file");
	assert_int_equal(fp_pool_reload(p), FP_EMODULE);
	assert_true(fp_test_log_has("reload refused"));
	assert_true(fp_test_log_has(path));
	assert_int_equal(fp_pool_apply(p, "second.hello", "null", 4, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	fp_result_clear(&r);
	fp_pool_free(p);
	unlink(path);
	free(good);
	free(second);
}

static void shutdown_cancels_what_is_left(void **state)
{
	fp_pool *p = fp_test_pool(1);
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_test_collect c;
	struct fp_buf items[4];

	o.timeout_ms = 0;
	o.chunksize = 1;
	for (int i = 0; i < 4; i++)
		items[i] = (struct fp_buf){ "null", 4 };
	fp_test_collect_init(&c, p, 4);
	assert_int_equal(fp_pool_map_async(p, "hang", items, 4, &o, fp_test_collect_item,
					   fp_test_collect_done, &c, NULL), 0);
	assert_true(fp_test_run_until(p, worker_busy_with, &(struct busy_probe){ p, "hang" }, 10000));
	assert_int_equal(fp_pool_shutdown(p, 100), 0);
	assert_true(c.done);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(c.seen[i], 1);
		assert_int_equal(c.r[i].status, FP_ITEM_CANCELLED);
	}
	struct fp_pool_stats st;
	fp_pool_stats(p, &st);
	assert_int_equal(st.alive, 0);
	assert_int_equal(fp_pool_apply_async(p, "square", "1", 1, NULL, NULL, NULL, NULL, NULL),
			 FP_ESTOPPED);
	fp_test_collect_free(&c);
	fp_pool_free(p);
}

static void shutdown_lets_running_items_finish(void **state)
{
	fp_pool *p = fp_test_pool(1);
	struct fp_test_collect c;

	fp_test_collect_init(&c, p, 1);
	assert_int_equal(fp_pool_apply_async(p, "sleep", "200", 3, NULL, fp_test_collect_item,
					     fp_test_collect_done, &c, NULL), 0);
	assert_true(fp_test_run_until(p, worker_busy_with, &(struct busy_probe){ p, "sleep" }, 10000));
	assert_int_equal(fp_pool_shutdown(p, 10000), 0);
	assert_true(c.done);
	assert_int_equal(c.r[0].status, FP_ITEM_OK);
	assert_string_equal(c.r[0].value, "200");
	fp_test_collect_free(&c);
	fp_pool_free(p);
}

static void jitter_spreads_task_limits(void **state)
{
	fp_options o;
	struct fp_worker_stats ws[8];
	fp_pool *p;
	size_t n;

	fp_test_options(&o, 4);
	o.max_tasks_per_child = 10;
	o.max_tasks_jitter = 5;
	p = fp_test_pool_with(&o);
	n = fp_pool_workers(p, ws, 8);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		assert_true(ws[i].tasks_limit >= 10);
		assert_true(ws[i].tasks_limit <= 15);
	}
	fp_pool_free(p);
}

/*
 * The master dies without a word: PDEATHSIG takes the workers down. This
 * process is made a subreaper so the orphans come back to it to be counted.
 */
static void workers_die_with_the_master(void **state)
{
	int pfd[2];
	pid_t master, pids[2];
	int status;

	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	assert_int_equal(pipe(pfd), 0);
	master = fork();
	assert_true(master >= 0);
	if (master == 0) {
		fp_options o;
		fp_pool *p;
		struct fp_worker_stats ws[2];

		close(pfd[0]);
		fp_options_init(&o);
		o.workers = 2;
		if (fp_pool_new(&p, NULL, &o, NULL, 0))
			_exit(1);
		fp_test_apply_pid(p, "pid", NULL);
		fp_test_apply_pid(p, "pid", NULL);
		/* A worker the zygote has not answered for yet has pid 0. */
		if (!fp_test_run_until(p, fp_test_pids_known, p, 10000))
			_exit(1);
		fp_pool_workers(p, ws, 2);
		pids[0] = ws[0].pid;
		pids[1] = ws[1].pid;
		if (write(pfd[1], pids, sizeof(pids)) != sizeof(pids))
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], pids, sizeof(pids)), (ssize_t)sizeof(pids));
	close(pfd[0]);
	assert_int_equal(kill(master, SIGKILL), 0);
	assert_int_equal(waitpid(master, &status, 0), master);

	/*
	 * Either PDEATHSIG killed them, or they saw their sockets close first
	 * and left on their own: both are workers that did not outlive their
	 * master.
	 */
	for (int i = 0; i < 2; i++)
		fp_test_assert_died_with_master(pids[i]);
	prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(apply_returns_the_value),
		cmocka_unit_test(durations_are_measured),
		cmocka_unit_test(idle_worker_is_not_woken_by_its_answer_being_read),
		cmocka_unit_test(unknown_task_is_refused_up_front),
		cmocka_unit_test(map_returns_every_item_in_order),
		cmocka_unit_test(answers_that_look_like_integers_are_judged_as_json_is),
		cmocka_unit_test(empty_map_completes),
		cmocka_unit_test(item_errors_stay_inside_their_item),
		cmocka_unit_test(task_error_carries_its_message),
		cmocka_unit_test(recycles_after_exactly_k_items),
		cmocka_unit_test(recycling_never_drops_capacity),
		cmocka_unit_test(segfault_fails_exactly_one_item),
		cmocka_unit_test(named_signal_is_reported),
		cmocka_unit_test(exit_status_is_reported),
		cmocka_unit_test(timeout_fails_exactly_one_item),
		cmocka_unit_test(sigkill_from_outside_loses_no_item),
		cmocka_unit_test(quick_applies_share_a_chunk_in_queue_order),
		cmocka_unit_test(slow_tasks_are_not_joined),
		cmocka_unit_test(timeout_in_a_shared_chunk_fails_only_its_item),
		cmocka_unit_test(sigkill_in_a_shared_chunk_fails_only_the_running_item),
		cmocka_unit_test(cancel_in_a_shared_chunk_ends_only_its_call),
		cmocka_unit_test(poison_item_stops_after_its_retries),
		cmocka_unit_test(sigkill_uses_an_attempt_only_for_the_running_item),
		cmocka_unit_test(retry_on_says_which_failures_are_retried),
		cmocka_unit_test(task_error_retry_runs_only_its_item_again),
		cmocka_unit_test(started_callback_comes_once_before_the_first_result),
		cmocka_unit_test(log_lines_name_the_label_and_the_item),
		cmocka_unit_test(cancel_kills_only_its_own_workers),
		cmocka_unit_test(cancel_drops_queued_items),
		cmocka_unit_test(rss_limit_recycles_the_worker),
		cmocka_unit_test(large_result_up_to_the_limit),
		cmocka_unit_test(oversized_argument_fails_its_item),
		cmocka_unit_test(large_argument_round_trips),
		cmocka_unit_test(failing_worker_init_backs_off_and_reports_unhealthy),
		cmocka_unit_test(failing_worker_init_fails_queued_items_and_refuses_calls),
		cmocka_unit_test(module_tasks_run_and_output_is_logged),
		cmocka_unit_test(missing_module_stops_the_pool_starting),
		cmocka_unit_test(stats_describe_the_workers),
		cmocka_unit_test(workers_name_themselves),
		cmocka_unit_test(reload_replaces_every_worker),
		cmocka_unit_test(reload_loads_modules_again_from_their_files),
		cmocka_unit_test(shutdown_cancels_what_is_left),
		cmocka_unit_test(shutdown_lets_running_items_finish),
		cmocka_unit_test(jitter_spreads_task_limits),
		cmocka_unit_test(workers_die_with_the_master),
		cmocka_unit_test(crash_inside_a_packed_chunk_fails_only_that_item),
		cmocka_unit_test(borrowed_map_hands_results_over_in_runs),
		cmocka_unit_test(borrowed_map_retries_count_their_attempts),
	};

	if (fp_test_backend_missing())
		return 77;
	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
