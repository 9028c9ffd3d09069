/*
 * The pool's insides, shared by pool.c (the API), dispatch.c (queue, chunks,
 * results, failures) and spawn.c (fork, reap, replace).
 *
 * Items are numbered within their call. A queue entry is a run of
 * consecutive items of one call; a chunk sent to a worker is taken from the
 * head entry; what comes back unfinished from a dead worker is a run again
 * (a suffix of its chunk), pushed back at the head. So every queue entry and
 * every chunk segment is a contiguous range, and nothing is lost or counted
 * twice.
 *
 * A chunk is one or more segments, each a run of one call's items, with
 * frame ids consecutive across the whole chunk. Segments after the first are
 * joined only from the entries right behind it in the queue, and only items
 * of tasks that have lately run quickly (pool->task_us): many small applies
 * then reach a worker in one write and come back in one, instead of a wake-up
 * of the worker and of the master for each. The shared page still names the
 * one item running, so crashes and timeouts are accounted per item.
 *
 * Calls of other kinds feed the same queue: a pipeline's batches (pipeline.h)
 * are calls whose items are one stage's inputs, queued in the pool that runs
 * the stage (an exec pool's for a NAME.task). Dispatch reaches every call
 * through its ops (call.h) and takes the first entry that may run, not
 * always the head: an entry whose call has no room now (a stage at its
 * worker cap, or whose next stage's buffer is full) is skipped and the
 * entries behind it go first. A call that is not joinable has a chunk of
 * its own.
 */
#ifndef FP_POOL_IMPL_H
#define FP_POOL_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "call.h"
#include "forkpool.h"
#include "frame.h"
#include "log.h"
#include "loop.h"
#include "module.h"
#include "queue.h"
#include "worker_main.h"
#include "zygote.h"

/*
 * Consecutive start failures after which the pool reports itself unhealthy,
 * and, while none of its workers is ready, unavailable: its queued items
 * fail with FP_ITEM_START_FAILURE and new calls get FP_EUNAVAILABLE, until a
 * worker starts (spawn.c). One failure may be bad luck; three in a row, a
 * slot's backoff spacing them 100 and 200 ms apart, are the program or the
 * module itself.
 */
#define FP_UNHEALTHY_AFTER 3
/* The last bytes (whole lines) of what a worker wrote before READY. */
#define FP_START_OUTPUT_MAX 2048

/*
 * A chunk spans calls only up to this many items, and only items of tasks
 * whose recent runs took at most FP_BATCH_QUICK_US each (as the worker
 * measured them): an item that turns out slow holds back at most
 * FP_BATCH_MAX - 1 quick ones behind it on its worker.
 */
#define FP_BATCH_MAX 16
#define FP_BATCH_QUICK_US 200u
/* What pool->task_us holds for a task that has not run yet. */
#define FP_TASK_US_UNKNOWN UINT32_MAX


/*
 * A worker holds at most this many chunks at once: the one it runs and, for
 * quick work while no worker is idle, the next one (dispatch.c says when).
 */
#define FP_WORKER_CHUNKS 2
/* A chunk sent ahead like that holds at most this many items... */
#define FP_PREFETCH_ITEMS_MAX 1024
/* ...and is sent only while at least this many items are queued. */
#define FP_PREFETCH_BACKLOG 4096

/* A run of one call's items inside a worker's chunk. */
struct fp_seg {
	struct fp_call *call;
	uint32_t first, count;
	uint64_t id0;              /* frame id of its first item (send_chunk) */
	bool chunk_end;            /* the last segment of its chunk */
	uint8_t hops;              /* its items' chain: tasks after the call's own (call.h) */
};

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
};

struct fp_slot {
	uint64_t generation;
	unsigned start_failures;   /* consecutive deaths before READY */
	fp_timer respawn;          /* backoff after start failures */
	fp_pool *pool;
	unsigned index;
};

/* A task an exec pool's program announced in its ready line. */
struct fp_exec_task {
	char *name;                /* without the NAME. prefix */
	char *doc;                 /* NULL: none given */
	bool generator;            /* declared: zero or more outputs (emit) per item */
};

/*
 * An exec pool's program and what it said it can do. Made in the master
 * before any fork, so its workers inherit it.
 */
struct fp_exec {
	char *name;
	size_t name_len;
	char **argv;               /* NULL-terminated, for execvp() */
	char *argv_block;          /* the strings argv points into */
	uint64_t startup_timeout_ms;
	/* Announced by the most recent worker to say ready; NULL before. */
	struct fp_exec_task *tasks;
	size_t ntasks;
	char prefix[80];           /* "exec pool NAME: ", for the log */
};

enum fp_pool_state {
	FP_POOL_RUNNING,
	FP_POOL_STOPPING,          /* shutdown: no dispatch, waiting for exits */
	FP_POOL_STOPPED,
};

struct fp_pool {
	/*
	 * A pool with exec pools owns one child pool per exec entry; they share
	 * its loop, its SIGCHLD watcher and its call ids. `root` is the pool
	 * the embedding program holds (itself, for the root).
	 */
	fp_pool *root;
	fp_pool **children;
	unsigned nchildren;
	struct fp_exec *exec;      /* a child: its program; NULL for the root */
	struct fp_task_info *task_list;   /* fp_pool_tasks() with exec tasks */
	char *task_names;

	fp_loop *loop;
	bool own_loop;
	fp_options opts;
	char **module_paths;       /* copies of opts.modules */
	struct fp_logger log;
	struct fp_registry reg;
	pid_t master_pid;

	struct fp_worker *workers;
	unsigned nworkers;

	/* pool/zygote.c: the one asked, and retired ones still answering. */
	struct fp_zygote *zygotes;
	struct fp_zygote *zygote;  /* NULL: the master forks workers itself */
	unsigned zygote_deaths;    /* in a row, each soon after the one before */
	uint64_t zygote_death_ms;  /* the last one */
	bool zygote_off;           /* FORKPOOL_ZYGOTE=0, or too many deaths */
	uint64_t start_ns_avg;     /* spawn to READY, recent workers */         /* live structs, including leaving ones */
	struct fp_slot *slots;     /* opts.workers of them */

	struct fp_queue queue;
	struct fp_call *calls;
	/*
	 * Per registry task (by index), how long its items ran lately in µs,
	 * as the workers measured: up at once on a slow run, down by half the
	 * gap on a quick one (a fresh worker's first runs are slow: cold caches,
	 * lazy binding). Reset when the registry is reloaded
	 * (reg_gen moves on); calls of an older registry are never joined.
	 */
	uint32_t *task_us;
	size_t ntask_us;
	uint64_t reg_gen, task_us_gen;
	uint64_t next_call_id;
	uint64_t next_frame_id;

	/*
	 * Items that end without running (cancelled while queued, too large,
	 * the pool shutting down), and calls with no items: delivered from the
	 * loop, never from inside the API call that decided their fate.
	 */
	struct fp_queue failing;
	fp_timer defer;

	/* The root's: calls and pipelines started and not told yet, oldest first. */
	struct fp_start_note *starting, *starting_tail;
	fp_timer start_timer;

	struct fp_pipe *pipes;     /* running pipelines (pipeline.c) */
	struct fp_pipe *dirty;     /* pipelines with outputs gathered this turn */
	/*
	 * Work gathered during this loop turn for the queues (a pipeline's
	 * outputs, for the next stage): fp__dispatch() has it queued first.
	 * NULL while nothing is gathered.
	 */
	void (*feed_flush)(fp_pool *root);
	unsigned npaused;          /* workers whose reading is paused */
	fp_timer resume;           /* look at paused workers again */

	fp_signal sigchld;
	fp_timer shutdown_timer;
	enum fp_pool_state state;
	uint64_t rng;

	/* Totals for fp_pool_stats(). */
	uint64_t done, failed, crashes, timeouts, recycles, ncancelled;
	uint64_t init_failures;
	unsigned start_failures;   /* consecutive, across slots */
	/*
	 * Start-up keeps failing and no worker is ready (FP_UNHEALTHY_AFTER):
	 * calls are refused and queued items fail with start_error, the last
	 * failure and the worker's last output, until a worker says READY.
	 */
	bool unavailable;
	char start_error[FP_START_OUTPUT_MAX + 512];
	uint64_t duration_counts[FP_DURATION_BUCKETS];
	uint64_t duration_sum_us;
};

struct fp_pipe;

/* chunk.c */
/*
 * Plan w's next chunk from the first queue entry that may run, at *at
 * (taking nothing off); segments, 0 when every entry is held back.
 */
uint32_t fp__chunk_plan(fp_pool *p, struct fp_worker *w, struct fp_seg *segs, size_t *at);
/* The shortest timeout of w's unanswered segments; 0 when none has one. */
uint64_t fp__chunk_timeout_ms(const struct fp_worker *w);
/* Size pool->task_us for the registry as it is now; false without memory. */
bool fp__task_us_sync(fp_pool *p);
/* Whether c's task has lately run quickly (at most FP_BATCH_QUICK_US). */
bool fp__task_quick(fp_pool *p, const struct fp_call *c);
/* A run time (µs) of one of c's items. */
void fp__task_us_record(fp_pool *p, const struct fp_call *c, uint64_t us);
/* The same for task task_ix of registry generation reg_gen, and what is known of it. */
void fp__task_ix_us_record(fp_pool *p, uint64_t reg_gen, uint32_t task_ix, uint64_t us);
uint32_t fp__task_us(fp_pool *p, uint64_t reg_gen, uint32_t task_ix);
/*
 * The call (and item index) of frame `id` if w has it unanswered, else NULL;
 * *hop: for an item sent with a chain, the stage of it the shared page says
 * runs (0 otherwise). index and hop may be NULL.
 */
struct fp_call *fp__worker_item(const struct fp_worker *w, uint64_t id, uint32_t *index,
				unsigned *hop);
/* Whether w has an unanswered item of c. */
bool fp__worker_holds(const struct fp_worker *w, const struct fp_call *c);
/* Whether every segment is of a task that has lately run quickly, none cancelled. */
bool fp__chunk_quick(fp_pool *p, const struct fp_seg *segs, uint32_t n);

/* item.c: items that end without running, delivered from the loop */
/* Move queued items (of one call, or all when call is NULL) to pool->failing. */
void fp__queue_fail(fp_pool *p, struct fp_call *call, fp_item_status status,
		    const char *why);
/* Schedule items to fail from the loop. -ENOMEM. */
int fp__fail_later(fp_pool *p, struct fp_call *call, uint32_t first,
		   uint32_t count, fp_item_status status, const char *why);
/* Deliver everything in pool->failing now (the defer timer's work). */
void fp__deliver_failing(fp_pool *p);

/* dispatch.c */
void fp__dispatch(fp_pool *p);
void fp__worker_read_cb(fp_io *io, ssize_t res, const char *buf);
void fp__worker_write_cb(fp_io *io, ssize_t res, const char *buf);
void fp__worker_account_exit(struct fp_worker *w);
/* Let a paused worker's frames be read again (they are handled from the loop). */
void fp__worker_resume(struct fp_worker *w);
/* From the loop: resume p's paused workers that may go on, then dispatch p. */
void fp__resume_later(fp_pool *p);

/* spawn.c */
int fp__spawn(fp_pool *p, unsigned slot);
void fp__spawn_successor(struct fp_worker *w);
/* Start w's successor as a standby once half of w's task budget is given out. */
void fp__spawn_standby(struct fp_worker *w);
bool fp__worker_standby(const struct fp_worker *w);
/* READY came: note how long the start took; the pool is available again. */
void fp__worker_ready(struct fp_worker *w);
void fp__reap(fp_signal *sig, int signum);
void fp__worker_kill(struct fp_worker *w, int signum, enum fp_kill_reason why);
void fp__worker_quit(struct fp_worker *w);
void fp__worker_maybe_free(struct fp_worker *w);
bool fp__worker_able(const struct fp_worker *w);
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

/* pool.c */
void fp__call_maybe_finish(struct fp_call *call);
/* An item of the call (or pipeline) of `sn` was handed to a worker: tell it from the loop. */
void fp__start_note(fp_pool *p, struct fp_start_note *sn);
/* Tell it now, if it is still to be told; with `forget`, only drop it. */
void fp__start_tell(fp_pool *p, struct fp_start_note *sn, bool forget);
/* True while any pool of root's family has a worker struct. */
bool fp__family_has_workers(fp_pool *root);
/* True while any pool of root's family has a zygote (serving or retiring). */
bool fp__family_has_zygotes(fp_pool *root);

/* exec.c: exec pools from the master's side */
/* pool.c: the exec pool whose NAME prefixes `task` as NAME.task, else p itself. */
fp_pool *fp__route(fp_pool *p, const char *task);
int fp__exec_new(struct fp_exec **out, const fp_exec_options *o, char *errbuf, size_t errlen);
void fp__exec_free(struct fp_exec *x);
/*
 * Turn `opts` (a copy of the root's) into exec pool o's: its own max tasks
 * per child, jitter, RSS limit and timeout where it has them. -EINVAL, with
 * a message naming the pool, for a value fp_options cannot hold.
 */
int fp__exec_limits(const fp_exec_options *o, fp_options *opts, char *errbuf, size_t errlen);
/*
 * A READY frame's task list: a JSON array whose entries are names or
 * {"name":..,"generator":..,"doc":..} objects (the shim checked them);
 * -EPROTO if it is not one.
 */
int fp__exec_set_tasks(struct fp_exec *x, const char *json, size_t len);
/* -1: tasks not known yet; 0: not announced; 1: announced. `task` without prefix. */
int fp__exec_has_task(const struct fp_exec *x, const char *task);
/* The announced task `task` (without prefix), or NULL (not announced, or not known yet). */
const struct fp_exec_task *fp__exec_task(const struct fp_exec *x, const char *task);
/* Defaults and limits shared with pipeline.c. */
size_t fp__default_chunksize(const fp_pool *p, size_t n);

#endif
