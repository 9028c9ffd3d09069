/*
 * The pool's insides: struct fp_pool and its worker groups (struct
 * fp_group), shared by pool.c (the API), dispatch.c (queue, chunks,
 * answers) and worker.c (fork, reap, replace), and the calls between them. How items travel (queue entries, chunks, segments)
 * is queue.h's first comment.
 */
#ifndef FP_POOL_IMPL_H
#define FP_POOL_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "call.h"
#include "chunk.h"
#include "exec.h"
#include "forkpool.h"
#include "frame.h"
#include "limit.h"
#include "log.h"
#include "forkpool/loop.h"
#include "module.h"
#include "queue.h"
#include "worker.h"
#include "zygote.h"

enum fp_pool_state {
	FP_POOL_RUNNING,
	FP_POOL_STOPPING,          /* shutdown: no dispatch, waiting for exits */
	FP_POOL_STOPPED,
};

/*
 * A worker group: workers of one kind that share a queue and limits. The
 * pool's groups[0] runs the C modules' tasks; groups[k] (k >= 1) one exec
 * program's (NAME.task), made with the pool and living as long. A group has
 * its own workers, slots, queue, calls, limits and counters; the loop,
 * SIGCHLD watcher, zygote, registry, call ids and pipelines are the pool's.
 * Which group serves a task is fp__group_of().
 */
struct fp_group {
	fp_pool *pool;
	unsigned index;            /* in pool->groups; the zygote is told it */
	struct fp_exec *exec;      /* an exec group's program; NULL for group 0 */
	fp_loop *loop;             /* the pool's, once attached */
	/* The pool's options, with the group's own workers and limits. */
	fp_options opts;
	struct fp_logger log;      /* the pool's; an exec group's lines name it */
	enum fp_pool_state state;
	uint64_t rng;

	struct fp_worker *workers;
	unsigned nworkers;
	uint64_t start_ns_avg;     /* spawn to READY, recent workers */
	struct fp_slot *slots;     /* opts.workers of them */

	struct fp_queue queue;
	struct fp_call *calls;
	/*
	 * Per registry task (by index), how long its items ran lately in µs,
	 * as the workers measured: up at once on a slow run, down by half the
	 * gap on a quick one (a fresh worker's first runs are slow: cold caches,
	 * lazy binding). Reset when the registry is reloaded
	 * (pool->reg_gen moves on); calls of an older registry are never joined.
	 */
	uint32_t *task_us;
	size_t ntask_us;
	uint64_t task_us_gen;
	uint64_t next_frame_id;

	/*
	 * Items that end without running (cancelled while queued, too large,
	 * the pool shutting down), and calls with no items: delivered from the
	 * loop, never from inside the API call that decided their fate.
	 */
	struct fp_queue failing;
	fp_timer defer;

	unsigned npaused;          /* workers whose reading is paused */
	fp_timer resume;           /* look at paused workers again */

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
	/*
	 * dispatch.c: a run of answers as results, handed to a call whole
	 * (FP_ANSWERS_MAX of them; made at the first run, kept).
	 */
	struct fp_result *answers;
};

struct fp_pool {
	/* groups[0] the C modules' workers, then one per exec program. */
	struct fp_group *groups[FP_EXEC_MAX + 1];
	unsigned ngroups;
	struct fp_task_info *task_list;   /* fp_pool_tasks() with exec tasks */
	char *task_names;
	struct fp_kv *kv;          /* shared values (pool_kv.c), made on first use */
	fp_kv_persist_fn kv_persist;   /* where changes are kept (NULL: memory only) */
	void *kv_persist_data;
	struct fp_limits limits;   /* concurrency limits across the groups (limit.c) */
	const struct fp_kv_backend *kv_backend;   /* NULL: its own store */
	void *kv_backend_data;
	struct fp_locks *locks;    /* named locks for tasks (locks.c), made on first use */

	fp_loop *loop;
	bool own_loop;
	fp_options opts;
	char **module_paths;       /* copies of opts.modules */
	struct fp_logger log;
	struct fp_registry reg;
	uint64_t reg_gen;          /* moves on at each reload */
	pid_t master_pid;

	/* pool/zygote.c: the one asked, and retired ones still answering. */
	struct fp_zygote *zygotes;
	struct fp_zygote *zygote;  /* NULL: the master forks workers itself */
	unsigned zygote_deaths;    /* in a row, each soon after the one before */
	uint64_t zygote_death_ms;  /* the last one */
	bool zygote_off;           /* FORKPOOL_ZYGOTE=0, or too many deaths */

	uint64_t next_call_id;

	/* Calls and pipelines started and not told yet, oldest first. */
	struct fp_start_note *starting, *starting_tail;
	fp_timer start_timer;

	struct fp_pipe *pipes;     /* running pipelines (pipeline.c) */
	struct fp_pipe *dirty;     /* pipelines with outputs gathered this turn */
	/*
	 * Work gathered during this loop turn for the queues (a pipeline's
	 * outputs, for the next stage): fp__dispatch() has it queued first.
	 * NULL while nothing is gathered.
	 */
	void (*feed_flush)(fp_pool *p);

	fp_signal sigchld;
	fp_timer shutdown_timer;
	enum fp_pool_state state;
	uint64_t rng;
};

struct fp_pipe;

/* item.c: items that end without running, delivered from the loop */
/* Move g's queued items (of one call, or all when call is NULL) to g->failing. */
void fp__queue_fail(struct fp_group *g, struct fp_call *call, fp_item_status status,
		    const char *why);
/* Schedule items to fail from the loop. -ENOMEM. */
int fp__fail_later(struct fp_group *g, struct fp_call *call, uint32_t first,
		   uint32_t count, fp_item_status status, const char *why);
/* Deliver everything in g->failing now (the defer timer's work). */
void fp__deliver_failing(struct fp_group *g);

/* dispatch.c */
/* Chunks to g's idle workers (and, when work for them was gathered, the other groups'). */
void fp__dispatch(struct fp_group *g);

/* call.c: apply and map's calls */
int fp__call_new(struct fp_call **out, struct fp_group *g, const struct fp_registry_task *t,
		 const char *task, const struct fp_buf *items, size_t n,
		 const fp_call_options *o, const struct fp_call_spec *spec);
/* Its end, once every item ended: on_done, then it is freed. */
void fp__call_maybe_finish(struct fp_call *call);
/* Free it, without a word to anyone. */
void fp__call_free(struct fp_call *call);

/* pool.c */
/* An item of the call (or pipeline) of `sn` was handed to a worker: tell it from the loop. */
void fp__start_note(fp_pool *p, struct fp_start_note *sn);
/* Tell it now, if it is still to be told; with `forget`, only drop it. */
void fp__start_tell(fp_pool *p, struct fp_start_note *sn, bool forget);
/* True while any group of p's has a worker struct. */
bool fp__groups_have_workers(fp_pool *p);

/* Each group `g` of pool `p`, group 0 (the C modules) first; `i` its index. */
#define FP_FOR_GROUPS(g, p, i) \
	for ((i) = 0; (i) < (p)->ngroups && ((g) = (p)->groups[(i)]); (i)++)

/*
 * pool.c: the group that serves `task`: the exec group whose name it
 * begins with as NAME.task, else group 0 (whose registry may not know it).
 */
struct fp_group *fp__group_of(fp_pool *p, const char *task);
/* Defaults and limits shared with pipeline.c. */
size_t fp__default_chunksize(const struct fp_group *g, size_t n);

#endif
