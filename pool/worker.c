/*
 * Worker processes from the master's side: fork, ready, standby and
 * recycling, kill, reap, replace (worker.h), and the one state a worker is
 * in (enum fp_worker_life), which only fp__worker_set_life() moves out of
 * the able states. Recycling is decided here only: fp__worker_gave() (the
 * master's count), fp__worker_retiring() (the worker's own word),
 * fp__spawn_standby() (when its successor starts). Where a dead worker's
 * items go is worker_exit.c's.
 *
 * A worker struct lives from fork until every one of these is true: the
 * process is reaped, its socket and log pipe reached their last callback,
 * and its unfinished items were accounted for. Kills go only to processes
 * not yet reaped, so a pid can never have been reused under us.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "forkpool/loop.h"
#include "pool_impl.h"

/* After a worker is reaped, how long to wait for the rest of its output. */
#define DRAIN_MS 1000
/* Crash-storm backoff: 100 ms, doubling, capped. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 30000

static void worker_log_cb(fp_io *io, ssize_t res, const char *buf);

/* --- in the child, forked by the master itself ---------------------------- */

struct fp_worker_args fp__worker_args(struct fp_group *g, unsigned slot, uint64_t generation,
				     uint64_t task_limit, int fd)
{
	return (struct fp_worker_args){
		.registry = &g->pool->reg,
		.fd = fd,
		.slot = slot,
		.generation = generation,
		.task_limit = task_limit,
		.max_rss_bytes = g->opts.max_rss_bytes,
		.max_payload = g->opts.max_payload,
		.exec = g->exec,
	};
}

static _Noreturn void child_main(struct fp_group *g, struct fp_worker *w, int fd, int log_wr)
{
	struct fp_child c = {
		.master_pid = g->pool->master_pid,
		.log_fd = log_wr,
		.args = fp__worker_args(g, w->slot, w->generation, w->tasks_limit, fd),
	};

	c.args.shm = w->shm;
	fp__child_worker(&c);
}

/* --- in the master ------------------------------------------------------- */

static uint64_t next_rand(struct fp_group *g)
{
	/* xorshift64*: spreading retirements needs no better randomness. */
	g->rng ^= g->rng >> 12;
	g->rng ^= g->rng << 25;
	g->rng ^= g->rng >> 27;
	return g->rng * 2685821657736338717ull;
}

static void worker_unlink(struct fp_group *g, struct fp_worker *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		g->workers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	g->nworkers--;
}

void fp__worker_maybe_free(struct fp_worker *w)
{
	struct fp_group *g = w->group;

	/* w->zygote: its zygote's list of requests still holds it. */
	if (!fp__worker_exited(w) || !w->accounted || w->zygote || fp_io_active(&w->rio) ||
	    fp_io_active(&w->wio) || fp_io_active(&w->lio))
		return;
	fp_timer_stop(&w->deadline);
	fp_timer_stop(&w->drain);
	if (w->fd >= 0)
		close(w->fd);
	if (w->log_fd >= 0)
		close(w->log_fd);
	fp_frame_reader_deinit(&w->reader);
	if (w->shm)
		munmap(w->shm, sizeof(*w->shm));
	fp_mem_free(w->wbuf);
	free(w->kv_reply);
	if (w->successor)
		w->successor->predecessor = NULL;
	if (w->predecessor)
		w->predecessor->successor = NULL;
	worker_unlink(g, w);
	free(w);
	fp__pool_check_stopped(g->pool);
}

void fp__pool_check_stopped(fp_pool *p)
{
	if (p->state == FP_POOL_STOPPING && !fp__groups_have_workers(p) && !p->zygotes)
		fp_loop_stop(p->loop);
}

/*
 * The page shared with the worker: a memfd, so that the zygote, forked long
 * before this page was made, can map it for the worker too.
 */
static int shm_make(struct fp_worker *w, int *fd_out)
{
	void *m;
	int fd, err;

	fd = memfd_create("forkpool-worker", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, sizeof(*w->shm)) < 0)
		goto fail;
	m = mmap(NULL, sizeof(*w->shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		goto fail;
	w->shm = m;
	*fd_out = fd;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* The old way, when there is no zygote: fork here. The pid, or -errno. */
static pid_t fork_here(struct fp_group *g, struct fp_worker *w, int sock, int log_wr)
{
	pid_t pid = fp__child_fork();

	if (pid == 0)
		child_main(g, w, sock, log_wr);
	return pid;
}

/* A new worker struct for `slot`, nothing acquired but itself; NULL: no memory. */
static struct fp_worker *worker_alloc(struct fp_group *g, unsigned slot)
{
	struct fp_worker *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->group = g;
	w->fd = w->log_fd = -1;
	w->slot = slot;
	w->generation = ++g->slots[slot].generation;
	w->life = FP_LIFE_STARTING;
	w->rio.data = w->wio.data = w->lio.data = w;
	w->deadline.data = w->drain.data = w;
	fp_frame_reader_init(&w->reader, g->opts.max_payload + 256);
	if (g->opts.max_tasks_per_child)
		w->tasks_limit = g->opts.max_tasks_per_child +
			(g->opts.max_tasks_jitter ?
			 next_rand(g) % ((uint64_t)g->opts.max_tasks_jitter + 1) : 0);
	return w;
}

/*
 * Its process: the shared page, the socketpair and the log pipe, handed to
 * the zygote (or to a fork here when there is none, or it refuses). On
 * success w holds the master's ends; on failure nothing is left open but
 * w->shm, which the caller unmaps.
 */
static int worker_fork(struct fp_group *g, struct fp_worker *w)
{
	int sv[2] = { -1, -1 }, lp[2] = { -1, -1 }, shm_fd = -1;
	pid_t pid = 0;
	int err;

	err = shm_make(w, &shm_fd);
	if (err)
		return err;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(lp, O_CLOEXEC) < 0) {
		err = -errno;
		goto err_fds;
	}
	if (!g->pool->zygote || fp__zygote_spawn(g, w, sv[1], lp[1], shm_fd) < 0) {
		pid = fork_here(g, w, sv[1], lp[1]);
		if (pid < 0) {
			err = pid;
			goto err_fds;
		}
	}
	close(sv[1]);
	close(lp[1]);
	close(shm_fd);
	w->pid = pid;
	w->fd = sv[0];
	w->log_fd = lp[0];
	fcntl(w->fd, F_SETFL, O_NONBLOCK);
	fcntl(w->log_fd, F_SETFL, O_NONBLOCK);
	return 0;

err_fds:
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	if (lp[0] >= 0) {
		close(lp[0]);
		close(lp[1]);
	}
	close(shm_fd);
	return err;
}

static int spawn_worker(struct fp_group *g, unsigned slot, struct fp_worker **out)
{
	struct fp_worker *w;
	pid_t pid;
	int err;

	w = worker_alloc(g, slot);
	if (!w)
		return -ENOMEM;
	err = worker_fork(g, w);
	if (err)
		goto err_free;
	pid = w->pid;             /* 0: the zygote's answer tells it */
	w->started_ms = fp_now_ms();
	w->spawn_ns = fp_now_ns();

	w->next = g->workers;
	if (g->workers)
		g->workers->prev = w;
	g->workers = w;
	g->nworkers++;

	err = fp_io_read_start(g->loop, &w->rio, w->fd, fp__worker_read_cb);
	if (!err)
		err = fp_io_read_start(g->loop, &w->lio, w->log_fd, worker_log_cb);
	if (err) {
		/* Without a way to hear from it the worker is useless. */
		fp_log_error(&g->log, "worker %u: cannot watch its socket: %s", slot, fp_strerror(err));
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
		if (!fp_io_active(&w->rio))
			w->read_done = true;
	}
	if (pid)
		fp_log_debug(&g->log, "worker %u gen %llu started, pid %d", slot,
			     (unsigned long long)w->generation, (int)pid);
	if (out)
		*out = w;
	return 0;

err_free:
	if (w->shm)
		munmap(w->shm, sizeof(*w->shm));
	fp_frame_reader_deinit(&w->reader);
	free(w);
	fp_log_error(&g->log, "cannot start worker %u: %s", slot, fp_strerror(err));
	return err;
}

int fp__spawn(struct fp_group *g, unsigned slot)
{
	return spawn_worker(g, slot, NULL);
}

void fp__worker_set_pid(struct fp_worker *w, pid_t pid)
{
	if (w->pid)
		return;
	w->pid = pid;
	if (w->kill_pending && !fp__worker_exited(w))
		kill(pid, w->kill_pending);
	w->kill_pending = 0;
}

bool fp__worker_learn_pid(struct fp_worker *w)
{
	pid_t pid;

	if (w->pid)
		return true;
	pid = atomic_load_explicit(&w->shm->pid, memory_order_acquire);
	if (pid <= 0)
		return false;
	fp__worker_set_pid(w, pid);
	return true;
}

void fp__worker_set_life(struct fp_worker *w, enum fp_worker_life life)
{
	struct fp_worker *s = w->successor;
	bool was_able = fp__worker_able(w);

	w->life = life;
	/* Its standby's wait is over: it takes work as soon as it is ready. */
	if (was_able && !fp__worker_able(w) && s && s->life == FP_LIFE_STANDBY)
		s->life = s->ready ? FP_LIFE_IDLE : FP_LIFE_STARTING;
}

void fp__worker_leave(struct fp_worker *w)
{
	if (fp__worker_able(w))
		fp__worker_set_life(w, FP_LIFE_LEAVING);
}

/*
 * What fp_worker_state said before the life above: a leaving worker reads
 * busy while it holds a chunk and retiring after, except one asked to quit
 * (reload, shutdown), which reads as what it was doing.
 */
fp_worker_state fp__worker_shown_state(const struct fp_worker *w)
{
	switch (w->life) {
	case FP_LIFE_STARTING:
		return FP_WORKER_STARTING;
	case FP_LIFE_STANDBY:
		return w->ready ? FP_WORKER_IDLE : FP_WORKER_STARTING;
	case FP_LIFE_IDLE:
		return FP_WORKER_IDLE;
	case FP_LIFE_BUSY:
		return FP_WORKER_BUSY;
	case FP_LIFE_LEAVING:
		if (w->call)
			return FP_WORKER_BUSY;
		if (!w->ready)
			return FP_WORKER_STARTING;
		return w->quit_sent ? FP_WORKER_IDLE : FP_WORKER_RETIRING;
	case FP_LIFE_STOPPING:
	case FP_LIFE_EXITED:
		break;
	}
	return FP_WORKER_STOPPING;
}

/* Fork the one that takes w's place before w leaves. */
void fp__spawn_successor(struct fp_worker *w)
{
	struct fp_group *g = w->group;

	if (w->has_successor || g->state != FP_POOL_RUNNING)
		return;
	w->has_successor = true;
	fp__spawn(g, w->slot);
}

/*
 * Whether w's successor should start now: once half of w's budget is given
 * out, or earlier when w runs through its tasks faster than a worker starts:
 * when what is left of the budget, at w's pace so far, takes less than
 * twice the pool's recent start-up time (spawn to READY).
 */
static bool standby_due(const struct fp_worker *w)
{
	const struct fp_group *g = w->group;
	uint64_t left = w->tasks_limit - w->tasks_dispatched, now, per_task;

	if (left <= (w->tasks_limit + 1) / 2)
		return true;
	if (!w->tasks_done || !g->start_ns_avg)
		return false;
	now = fp_now_ns();
	per_task = (now - w->ready_ns) / w->tasks_done;
	return left * per_task <= 2 * g->start_ns_avg;
}

/*
 * Forking at the last chunk leaves the slot with one task's head start,
 * and a worker takes milliseconds to start: with a small task budget the
 * slot would stand empty for most of each recycle. So the successor starts
 * ahead of time (standby_due()) and waits, ready, until its predecessor
 * leaves. A slot failing to start gets no standby: its backoff paces it.
 */
void fp__spawn_standby(struct fp_worker *w)
{
	struct fp_group *g = w->group;
	struct fp_worker *s;

	/* A standby gets its own once it takes over: one spare per slot. */
	if (!w->tasks_limit || w->has_successor || !fp__worker_serving(w) ||
	    g->state != FP_POOL_RUNNING || g->slots[w->slot].start_failures ||
	    !standby_due(w))
		return;
	if (spawn_worker(g, w->slot, &s) < 0)
		return;
	w->has_successor = true;
	w->successor = s;
	s->predecessor = w;
	if (s->life == FP_LIFE_STARTING)
		s->life = FP_LIFE_STANDBY;
}

/*
 * Recycling, all of it decided here. The master counts what it gives a
 * worker against max_tasks_per_child: the chunk that spends the budget is
 * its last, and its successor starts then (or took over as a standby).
 * The worker counts too, and says so with FP_FRAME_RETIRE on its last
 * answer (or when its RSS is over the limit, which only it can see).
 */
void fp__worker_gave(struct fp_worker *w, uint64_t tasks)
{
	w->tasks_dispatched += tasks;
	if (w->tasks_limit && w->tasks_dispatched >= w->tasks_limit) {
		/* Its last chunk: the successor takes over now, so capacity holds. */
		fp__worker_leave(w);
		fp__spawn_successor(w);
		/* The standby takes over: its own is due now if its budget is small. */
		if (w->successor && w->successor->ready)
			fp__spawn_standby(w->successor);
	} else {
		fp__spawn_standby(w);
	}
}

void fp__worker_retiring(struct fp_worker *w)
{
	struct fp_group *g = w->group;

	g->recycles++;
	fp__worker_leave(w);
	/* One line per worker event: operators grep these for "recycled". */
	if (w->tasks_limit && w->tasks_done >= w->tasks_limit)
		fp_log_info(&g->log, "worker %u (pid %d) recycled: %llu tasks done (max %llu)",
			    w->slot, (int)w->pid, (unsigned long long)w->tasks_done,
			    (unsigned long long)w->tasks_limit);
	else
		fp_log_info(&g->log, "worker %u (pid %d) recycled: rss %zu MiB over the %zu MiB limit",
			    w->slot, (int)w->pid, w->rss_kib / 1024,
			    g->opts.max_rss_bytes >> 20);
	fp__spawn_successor(w);
}

void fp__worker_ready(struct fp_worker *w)
{
	struct fp_group *g = w->group;
	uint64_t now = fp_now_ns(), took = now - w->spawn_ns;

	w->ready_ns = now;
	/* A moving average: the machine's load changes what a start costs. */
	g->start_ns_avg = g->start_ns_avg ? (3 * g->start_ns_avg + took) / 4 : took;
	w->start_output_len = 0;
	if (g->unavailable) {
		g->unavailable = false;
		fp_log_info(&g->log, "worker %u (pid %d) started after %u failed starts: "
			    "calls are taken again", w->slot, (int)w->pid, g->start_failures);
	}
}

void fp__worker_kill(struct fp_worker *w, int signum, enum fp_kill_reason why)
{
	if (fp__worker_exited(w))
		return;
	if (w->kill_reason == FP_KILL_NONE)
		w->kill_reason = why;
	fp__worker_set_life(w, FP_LIFE_STOPPING);
	if (signum == SIGKILL)
		w->sigkilled = true;
	if (fp__worker_learn_pid(w)) {
		kill(w->pid, signum);
	} else if (w->kill_pending != SIGKILL) {
		/* Never kill(0, ...): that is our whole process group. */
		w->kill_pending = signum;
	}
	/* A paused worker's socket must be read again to see it end. */
	if (w->paused)
		fp__resume_later(w->group);
}

/* Ask a worker to exit before its next task; an idle one wakes on EOF. */
void fp__worker_quit(struct fp_worker *w)
{
	if (fp__worker_exited(w) || w->quit_sent)
		return;
	w->quit_sent = true;
	fp__worker_leave(w);
	atomic_store_explicit(&w->shm->quit, 1, memory_order_release);
	shutdown(w->fd, SHUT_WR);
}

void fp__describe_status(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status)) {
		const char *abbr = sigabbrev_np(WTERMSIG(status));
		if (abbr)
			snprintf(buf, len, "was killed by SIG%s", abbr);
		else
			snprintf(buf, len, "was killed by signal %d", WTERMSIG(status));
	} else if (WIFEXITED(status)) {
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	} else {
		snprintf(buf, len, "ended with wait status 0x%x", status);
	}
}

/*
 * A worker failed to start: say what happened, for the log and for the items
 * that fail with it should the pool become unavailable: the worker's own
 * account (INITFAIL: an exec program's exit status, a module's worker_init
 * error) or else how it ended, then the last lines it wrote.
 */
static void start_failure_note(struct fp_worker *w, const char *how)
{
	struct fp_group *g = w->group;
	size_t len = w->start_output_len;
	int n;

	n = snprintf(g->start_error, sizeof(g->start_error),
		     "%s%u start%s in a row failed, the last: %s", g->exec ? g->exec->prefix : "",
		     g->start_failures, g->start_failures == 1 ? "" : "s",
		     w->initfail[0] ? w->initfail : how);
	/* Without its last '\n'. */
	if (len && n > 0 && (size_t)n < sizeof(g->start_error))
		snprintf(g->start_error + n, sizeof(g->start_error) - (size_t)n,
			 "; its last output:\n%.*s", (int)len - 1, w->start_output);
}

/*
 * Start-up keeps failing and no worker of the pool is ready to run what is
 * queued: fail it (dispatch.c, with start_error) and refuse new calls
 * (FP_EUNAVAILABLE), rather than keep them waiting, maybe forever, for a
 * program that never says ready. A worker's READY ends it.
 */
static void unavailable_check(struct fp_group *g)
{
	struct fp_worker *w;

	if (g->unavailable || g->state != FP_POOL_RUNNING ||
	    g->start_failures < FP_UNHEALTHY_AFTER)
		return;
	for (w = g->workers; w; w = w->next)
		if (w->ready && !fp__worker_exited(w))
			return;
	g->unavailable = true;
	fp_log_error(&g->log, "%u starts in a row failed and no worker is running: calls are "
		     "refused until one starts; %llu queued item%s fail%s with start_failure",
		     g->start_failures, (unsigned long long)g->queue.items,
		     g->queue.items == 1 ? "" : "s", g->queue.items == 1 ? "s" : "");
}

static void respawn_cb(fp_timer *t)
{
	struct fp_slot *s = t->data;

	if (s->group->state == FP_POOL_RUNNING)
		fp__spawn(s->group, s->index);
}

/* The process is gone and its output read: account, then replace. */
static void worker_gone(struct fp_worker *w)
{
	struct fp_group *g = w->group;
	struct fp_slot *s = &g->slots[w->slot];
	char how[64];

	if (w->pid)
		fp__describe_status(w->status, how, sizeof(how));
	else
		snprintf(how, sizeof(how), "was never forked");
	fp__worker_account_exit(w);
	w->accounted = true;

	/*
	 * A standby that died while its predecessor works on: the slot is
	 * still held; the predecessor starts another successor when due.
	 */
	bool spare = w->predecessor && fp__worker_able(w->predecessor);
	if (w->predecessor) {
		if (spare)
			w->predecessor->has_successor = false;
		w->predecessor->successor = NULL;
		w->predecessor = NULL;
	}

	if (!w->ready && g->state == FP_POOL_RUNNING && w->kill_reason == FP_KILL_NONE &&
	    !w->lost) {
		/* It died before it could take a task: a start-up failure. */
		g->init_failures++;
		g->start_failures++;
		s->start_failures++;
		start_failure_note(w, how);
	}

	if (g->state == FP_POOL_RUNNING && !w->has_successor && !spare) {
		if (w->lost) {
			/* Not its fault, nor the modules': the zygote died first. */
			fp_log_info(&g->log, "worker %u gen %llu: its zygote died before forking it; "
				    "starting it again", w->slot, (unsigned long long)w->generation);
			fp__spawn(g, w->slot);
		} else if (!w->ready) {
			uint64_t delay = BACKOFF_MIN_MS;
			unsigned k;
			for (k = 1; k < s->start_failures && delay < BACKOFF_MAX_MS; k++)
				delay *= 2;
			if (delay > BACKOFF_MAX_MS)
				delay = BACKOFF_MAX_MS;
			/*
			 * A warning: the pool tries again by itself. Its output
			 * goes with it (each line was logged at info as it came),
			 * so a traceback shows at the default level.
			 */
			fp_log_warn(&g->log, "worker %u (pid %d) failed to start: %s%s%s; "
				    "retrying in %llu ms%s%s%.*s", w->slot, (int)w->pid,
				    w->initfail[0] ? w->initfail : how,
				    w->initfail[0] ? ", " : "", w->initfail[0] ? how : "",
				    (unsigned long long)delay,
				    g->start_failures >= FP_UNHEALTHY_AFTER ? " (pool unhealthy)" : "",
				    w->start_output_len ? "; its last output:\n" : "",
				    w->start_output_len ? (int)w->start_output_len - 1 : 0,
				    w->start_output);
			fp_timer_start(g->loop, &s->respawn, delay, respawn_cb);
		} else {
			fp__spawn(g, w->slot);
		}
	}
	unavailable_check(g);
	fp__worker_maybe_free(w);
	fp__dispatch(g);
}

static void drain_cb(fp_timer *t)
{
	struct fp_worker *w = t->data;

	/*
	 * A process the worker started may still hold its socket open; EOF
	 * would never come. What it had sent has been read by now.
	 */
	if (fp_io_active(&w->rio))
		fp_io_cancel(&w->rio);
	if (fp_io_active(&w->lio))
		fp_io_cancel(&w->lio);
}

/*
 * Whether all w had to say is in: its frames, and for a worker that never
 * said READY its output too, whose last lines are why it failed to start
 * (they are written before it exits, but may be read after its socket's EOF).
 */
static bool worker_heard(const struct fp_worker *w)
{
	return w->read_done && (w->ready || !fp_io_active(&w->lio));
}

/* Called when the read streams end and when the process is reaped. */
static void worker_check_gone(struct fp_worker *w)
{
	if (fp__worker_exited(w) && worker_heard(w) && !w->accounted)
		worker_gone(w);
	else
		fp__worker_maybe_free(w);
}

void fp__worker_read_done(struct fp_worker *w)
{
	w->read_done = true;
	/*
	 * Its socket has no other end left. If its zygote is gone without
	 * answering and the page holds no pid, no process was ever made.
	 */
	if (!fp__worker_exited(w) && !w->zygote && !fp__worker_learn_pid(w)) {
		fp__worker_unforked(w, true);
		return;
	}
	worker_check_gone(w);
}

void fp__worker_unforked(struct fp_worker *w, bool lost)
{
	if (fp__worker_exited(w))
		return;
	fp__worker_set_life(w, FP_LIFE_EXITED);
	w->lost = lost;
	w->status = 0;
	fp_timer_stop(&w->deadline);
	worker_check_gone(w);
}

/*
 * An exec worker (the shim) leads a process group of its own, which its
 * program and everything that program started are in (exec_worker.c). If w
 * has exited, kill that group before w is reaped: until then w's zombie
 * holds its pid, so the group -pid can only be w's own (no other process
 * can have been given that pid, nor made a group of it), never the
 * master's, the zygote's or anyone else's. If w never made its group,
 * there is none by that id and the kill does nothing.
 */
static void kill_exec_group(struct fp_worker *w)
{
	siginfo_t si;

	if (w->pid <= 1 || w->pid == getpgrp())
		return;
	si.si_pid = 0;
	if (waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
	    si.si_pid != w->pid)
		return;
	kill(-w->pid, SIGKILL);
}

/* One group's share of a SIGCHLD. */
static void reap_group(struct fp_group *g)
{
	struct fp_worker *w, *next;
	int status;

	/*
	 * Collect every exit first, then act: acting may fork, and a new
	 * worker must not be mistaken for one that has just died. Only our own
	 * pids are waited for, so an embedding program keeps its children.
	 */
	for (w = g->workers; w; w = w->next) {
		pid_t r;

		/* Without a pid there is nothing to wait for: waitpid(0) is any child. */
		if (fp__worker_exited(w) || !fp__worker_learn_pid(w))
			continue;
		if (g->exec)
			kill_exec_group(w);
		do
			r = waitpid(w->pid, &status, WNOHANG);
		while (r < 0 && errno == EINTR);
		if (r == w->pid || (r < 0 && errno == ECHILD)) {
			fp__worker_set_life(w, FP_LIFE_EXITED);
			w->status = r == w->pid ? status : 0;
			fp_timer_stop(&w->deadline);
		}
	}
	/* The pool's zygote (its clones' parent, by CLONE_PARENT, is the master) with group 0's. */
	if (g->index == 0)
		fp__zygote_reap(g->pool);
	for (w = g->workers; w; w = next) {
		next = w->next;
		if (!fp__worker_exited(w) || w->accounted || fp_timer_active(&w->drain))
			continue;
		if (w->paused)
			fp__resume_later(g);
		if (!worker_heard(w)) {
			fp_timer_start(g->loop, &w->drain, DRAIN_MS, drain_cb);
			continue;
		}
		worker_gone(w);
	}
}

/* Every group shares the pool's SIGCHLD watcher. */
void fp__reap(fp_signal *sig, int signum)
{
	fp_pool *pool = sig->data;
	struct fp_group *q;
	unsigned i;

	FP_FOR_GROUPS(q, pool, i)
		reap_group(q);
}

/* --- worker output ------------------------------------------------------- */

/* Keep line (without its '\n') as the newest of w's start_output, dropping the oldest. */
static void start_output_add(struct fp_worker *w, const char *line, size_t len)
{
	size_t cap = sizeof(w->start_output), drop;
	char *nl;

	if (len > cap - 1) {
		line += len - (cap - 1);
		len = cap - 1;
	}
	while (w->start_output_len + len + 1 > cap) {
		nl = memchr(w->start_output, '\n', w->start_output_len);
		drop = nl ? (size_t)(nl - w->start_output) + 1 : w->start_output_len;
		memmove(w->start_output, w->start_output + drop, w->start_output_len - drop);
		w->start_output_len -= drop;
	}
	memcpy(w->start_output + w->start_output_len, line, len);
	w->start_output_len += len;
	w->start_output[w->start_output_len++] = '\n';
}

static void log_line(struct fp_worker *w)
{
	int32_t prog = w->shm ? atomic_load(&w->shm->program_pid) : 0;

	if (!w->line_len)
		return;
	if (!w->ready)
		start_output_add(w, w->line, w->line_len);
	/* An exec worker's output is its program's stderr: name that pid. */
	fp_log_info(&w->group->log, "worker %u (%spid %d): %.*s", w->slot,
		    prog ? "program " : "", prog ? (int)prog : (int)w->pid,
		    (int)w->line_len, w->line);
	w->line_len = 0;
}

static void worker_log_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct fp_worker *w = io->data;
	ssize_t i;

	for (i = 0; i < res; i++) {
		if (buf[i] == '\n') {
			log_line(w);
			continue;
		}
		if (w->line_len == sizeof(w->line))
			log_line(w);
		w->line[w->line_len++] = buf[i];
	}
	if (!fp_io_active(io)) {
		log_line(w);
		worker_check_gone(w);
	}
}
