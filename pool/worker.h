/*
 * A worker as the master sees it: its process, its socket and log pipe, the
 * chunks it holds, and its life from start to exit (worker.c: start, ready,
 * standby and recycling, kill, reap; worker_exit.c: what its exit blames and
 * where its items go). The worker process's own side is worker_main.h.
 */
#ifndef FP_WORKER_H
#define FP_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "chunk.h"
#include "forkpool.h"
#include "frame.h"
#include "forkpool/loop.h"
#include "worker_main.h"

struct fp_zygote;

/*
 * Consecutive start failures after which the pool reports itself unhealthy,
 * and, while none of its workers is ready, unavailable: its queued items
 * fail with FP_ITEM_START_FAILURE and new calls get FP_EUNAVAILABLE, until a
 * worker starts (worker.c). One failure may be bad luck; three in a row, a
 * slot's backoff spacing them 100 and 200 ms apart, are the program or the
 * module itself.
 */
#define FP_UNHEALTHY_AFTER 3
/* The last bytes (whole lines) of what a worker wrote before READY. */
#define FP_START_OUTPUT_MAX 2048

enum fp_kill_reason {
	FP_KILL_NONE = 0,
	FP_KILL_TIMEOUT,
	FP_KILL_CANCEL,
	FP_KILL_SHUTDOWN,
	FP_KILL_PROTOCOL,
};

struct fp_worker {
	fp_pool *pool;
	struct fp_worker *prev, *next;        /* pool->workers */
	unsigned slot;
	uint64_t generation;
	pid_t pid;                 /* 0 until the zygote's answer (or the page) tells it */
	struct fp_zygote *zygote;  /* asked to fork it and not answered yet */
	struct fp_worker *znext;   /* that zygote's unanswered requests, in order */
	int kill_pending;          /* a signal meant for it before its pid was known */
	fp_worker_state state;
	int fd;                    /* master's end of the socketpair */
	int log_fd;                /* read end of the worker's stdout/stderr pipe */
	fp_io rio, wio, lio;
	struct fp_frame_reader reader;
	struct fp_worker_shm *shm;

	/*
	 * The chunks it holds (the one it runs, and maybe the next), in the
	 * order sent: segs[seg..nsegs), `count` items of which `acked` are
	 * answered. The next answer is due for item segs[seg].first +
	 * seg_acked, with frame id segs[seg].id0 + seg_acked; `call` is
	 * segs[seg].call while answers are due and NULL once all are in.
	 */
	struct fp_seg segs[FP_BATCH_MAX * FP_WORKER_CHUNKS];
	uint32_t nsegs, seg, seg_acked;
	struct fp_call *call;
	uint32_t count, acked;
	uint32_t nchunks;          /* chunks not fully answered */
	uint64_t mark_ns;          /* chunk sent, or its last answer came */
	char *wbuf;                /* chunk being written; kept for the next */
	size_t wcap;

	uint64_t tasks_dispatched, tasks_done, tasks_limit;
	size_t rss_kib;
	uint64_t started_ms;
	uint64_t spawn_ns, ready_ns;   /* asked for; READY came */
	fp_timer deadline;         /* task timeout, then SIGKILL escalation */
	fp_timer drain;            /* after reaping: give up waiting for EOF */
	enum fp_kill_reason kill_reason;
	bool leaving;              /* last chunk sent, retiring, or told to quit */
	bool has_successor;
	/*
	 * A successor started ahead of time is a standby: it takes no work
	 * while its predecessor is able (fp__worker_standby()). Each points at
	 * the other until one is freed.
	 */
	struct fp_worker *successor, *predecessor;
	bool quit_sent;
	bool sigkilled;
	bool ready;
	bool reaped, read_done, accounted;
	bool lost;                 /* its zygote died before forking it: ask again */
	/*
	 * Back-pressure (pipelines): its frames are not read while the stage
	 * after its item is full; rpause says its read was cancelled for that.
	 */
	bool paused, rpause;
	int status;                /* from waitpid */
	char initfail[256];

	char line[1024];           /* partial line of the worker's output */
	size_t line_len;
	/*
	 * Its last lines before READY, each ending in '\n': why it failed to
	 * start, when it does (a Python traceback ends with the exception).
	 */
	char start_output[FP_START_OUTPUT_MAX];
	size_t start_output_len;

	/*
	 * The answer to its task's shared-value call (kv_serve.c), waiting for
	 * the socket when a chunk is being written: a worker waits for each
	 * answer, so there is never more than one.
	 */
	char *kv_reply;
	size_t kv_reply_len, kv_reply_cap;
	bool kv_reply_due;
};

struct fp_slot {
	uint64_t generation;
	unsigned start_failures;   /* consecutive deaths before READY */
	fp_timer respawn;          /* backoff after start failures */
	fp_pool *pool;
	unsigned index;
};

/*
 * Whether w may be given work, now or once it has started: not leaving, not
 * reaped (a standby counts: it takes over when its predecessor goes).
 */
static inline bool fp__worker_able(const struct fp_worker *w)
{
	return !w->reaped && !w->leaving &&
	       (w->state == FP_WORKER_STARTING || w->state == FP_WORKER_IDLE ||
		w->state == FP_WORKER_BUSY);
}

/* A standby takes no work while its predecessor is able (worker.c). */
static inline bool fp__worker_standby(const struct fp_worker *w)
{
	return w->predecessor && fp__worker_able(w->predecessor);
}

/* Whether w may be sent a chunk now: started, idle, holding nothing, not a standby. */
static inline bool fp__worker_can_take(const struct fp_worker *w)
{
	return w->state == FP_WORKER_IDLE && !w->leaving && !w->reaped && !w->call &&
	       !fp_io_active(&w->wio) && !fp__worker_standby(w);
}

/*
 * Whether busy w, as a process, may be sent its next chunk ahead: it runs
 * one, is read and written freely, and nothing is ending it. (Whether the
 * work suits is dispatch.c's may_prefetch().)
 */
static inline bool fp__worker_can_prefetch(const struct fp_worker *w)
{
	return w->state == FP_WORKER_BUSY && w->call && w->nchunks == 1 && !w->leaving &&
	       !w->reaped && !w->read_done && !w->paused && !w->rpause && !w->quit_sent &&
	       w->kill_reason == FP_KILL_NONE && !fp_io_active(&w->wio);
}

/* Who answered: an exec worker's program, else the worker itself. */
static inline pid_t fp__worker_answer_pid(const struct fp_worker *w)
{
	int32_t prog = atomic_load_explicit(&w->shm->program_pid, memory_order_relaxed);

	return prog > 0 ? (pid_t)prog : w->pid;
}

/* worker.c */
int fp__spawn(fp_pool *p, unsigned slot);
void fp__spawn_successor(struct fp_worker *w);
/* Start w's successor as a standby once half of w's task budget is given out. */
void fp__spawn_standby(struct fp_worker *w);
/* w was sent a chunk of `tasks` tasks: recycle it when that spends its budget. */
void fp__worker_gave(struct fp_worker *w, uint64_t tasks);
/* Its answer said it leaves after it (FP_FRAME_RETIRE): its successor starts. */
void fp__worker_retiring(struct fp_worker *w);
/* READY came: note how long the start took; the pool is available again. */
void fp__worker_ready(struct fp_worker *w);
void fp__reap(fp_signal *sig, int signum);
void fp__worker_kill(struct fp_worker *w, int signum, enum fp_kill_reason why);
void fp__worker_quit(struct fp_worker *w);
void fp__worker_maybe_free(struct fp_worker *w);
void fp__worker_read_done(struct fp_worker *w);
void fp__describe_status(int status, char *buf, size_t len);
/* The worker's pid, learned from its zygote; delivers a kill asked for meanwhile. */
void fp__worker_set_pid(struct fp_worker *w, pid_t pid);
/* Learn the pid from the shared page if it is not known yet; false if not there. */
bool fp__worker_learn_pid(struct fp_worker *w);
/* No process was made for w (lost: its zygote died first, so ask again). */
void fp__worker_unforked(struct fp_worker *w, bool lost);
/* Stop the loop once a stopping pool has no worker and no zygote left. */
void fp__pool_check_stopped(fp_pool *p);

/* worker_exit.c */
/*
 * A worker is gone (reaped and its stream read): count its end, and settle
 * the items it held.
 */
void fp__worker_account_exit(struct fp_worker *w);

/* kv_serve.c: its tasks' shared-value calls (kv_wire.h) */
/* A KV frame from w: answer it (0), or -EPROTO when it is malformed. */
int fp__kv_serve(struct fp_worker *w, const struct fp_frame_header *h, const char *payload);
/* Write w's answer if one waits and the socket is free; true when it did. */
bool fp__kv_reply_flush(struct fp_worker *w);

/* dispatch.c: its socket */
void fp__worker_read_cb(fp_io *io, ssize_t res, const char *buf);
void fp__worker_write_cb(fp_io *io, ssize_t res, const char *buf);
/* Let a paused worker's frames be read again (they are handled from the loop). */
void fp__worker_resume(struct fp_worker *w);
/* From the loop: resume p's paused workers that may go on, then dispatch p. */
void fp__resume_later(fp_pool *p);

#endif
