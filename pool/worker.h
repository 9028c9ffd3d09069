/*
 * A worker as the master sees it: its process, its socket and log pipe, the
 * chunks it holds, what has happened to it, and the predicates dispatch asks
 * of it. Its life (states, slot, the calls that start, recycle, kill and reap
 * it) is worker_life.h; the worker process's own side is worker_main.h.
 */
#ifndef FP_WORKER_H
#define FP_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "chunk.h"
#include "forkpool.h"
#include "frame_reader.h"
#include "forkpool/loop.h"
#include "worker_life.h"
#include "worker_main.h"

struct fp_group;
struct fp_zygote;

struct fp_worker {
	struct fp_group *group;
	struct fp_worker *prev, *next;        /* pool->workers */
	unsigned slot;
	uint64_t generation;
	pid_t pid;                 /* 0 until the zygote's answer (or the page) tells it */
	struct fp_zygote *zygote;  /* asked to fork it and not answered yet */
	struct fp_worker *znext;   /* that zygote's unanswered requests, in order */
	int kill_pending;          /* a signal meant for it before its pid was known */
	enum fp_worker_life life;
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
	/*
	 * A successor started ahead of time is a standby (FP_LIFE_STANDBY):
	 * each points at the other until one is freed.
	 */
	struct fp_worker *successor, *predecessor;
	/* What has happened to it, whatever its state now. */
	bool ready;                /* it said READY: its death is a crash, not a failed start */
	bool has_successor;        /* its replacement was started (it may be gone since) */
	bool quit_sent;            /* asked to quit: it ends on its own, not a crash */
	bool sigkilled;            /* SIGKILL sent: nothing to escalate */
	bool lost;                 /* EXITED because its zygote died before forking it */
	bool accounted;            /* its exit was accounted (worker_exit.c) */
	/*
	 * Its socket: the stream ended (read_done); back-pressure (pipelines)
	 * stopped reading its frames while the stage after its item is full
	 * (paused), and rpause says its read was cancelled for that.
	 */
	bool read_done, paused, rpause;
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

/*
 * Whether w may be given work, now or once it has started (a standby
 * counts: it takes over when its predecessor goes).
 */
static inline bool fp__worker_able(const struct fp_worker *w)
{
	return w->life <= FP_LIFE_BUSY;
}

/* Able, and not a standby: it takes work now or as soon as it is ready. */
static inline bool fp__worker_serving(const struct fp_worker *w)
{
	return fp__worker_able(w) && w->life != FP_LIFE_STANDBY;
}

static inline bool fp__worker_exited(const struct fp_worker *w)
{
	return w->life == FP_LIFE_EXITED;
}

/* Whether w may be sent a chunk now: idle, its socket's writer free. */
static inline bool fp__worker_can_take(const struct fp_worker *w)
{
	return w->life == FP_LIFE_IDLE && !w->call && !fp_io_active(&w->wio);
}

/*
 * Whether busy w, as a process, may be sent its next chunk ahead: it runs
 * one, is read and written freely. (Whether the work suits is dispatch.c's
 * may_prefetch().) BUSY excludes leaving, killed, told to quit and reaped.
 */
static inline bool fp__worker_can_prefetch(const struct fp_worker *w)
{
	return w->life == FP_LIFE_BUSY && w->call && w->nchunks == 1 && !w->read_done &&
	       !w->paused && !w->rpause && !fp_io_active(&w->wio);
}

/* Who answered: an exec worker's program, else the worker itself. */
static inline pid_t fp__worker_answer_pid(const struct fp_worker *w)
{
	int32_t prog = atomic_load_explicit(&w->shm->program_pid, memory_order_relaxed);

	return prog > 0 ? (pid_t)prog : w->pid;
}

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
void fp__resume_later(struct fp_group *g);

#endif
