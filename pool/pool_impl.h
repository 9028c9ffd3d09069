/*
 * The pool's insides: struct fp_pool, shared by pool.c (the API), dispatch.c
 * (queue, chunks, answers) and worker.c (fork, reap, replace), and the
 * calls between them. How items travel (queue entries, chunks, segments)
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

struct fp_pool {
	/*
	 * The worker groups: groups[0] is the root itself, the C modules'
	 * workers; groups[k] (k >= 1) one per exec program, made with the root
	 * and living as long. Each group has its own workers, slots, queue,
	 * calls, limits and counters; they share the root's loop, SIGCHLD
	 * watcher, zygote and call ids. `root` is the pool the embedding
	 * program holds (itself, for the root); `group` this one's index in
	 * root->groups, which is how the zygote is told whose worker to make.
	 * Walk them with FP_FOR_GROUPS; which one serves a task is
	 * fp__group_of().
	 */
	fp_pool *root;
	fp_pool *groups[FP_EXEC_MAX + 1];   /* the root's; unused in the others */
	unsigned ngroups;
	unsigned group;
	struct fp_exec *exec;      /* an exec group's program; NULL for group 0 */
	struct fp_task_info *task_list;   /* fp_pool_tasks() with exec tasks */
	char *task_names;
	struct fp_kv *kv;          /* the root's shared values (pool_kv.c), made on first use */
	fp_kv_persist_fn kv_persist;   /* the root's: where changes are kept (NULL: memory only) */
	void *kv_persist_data;
	struct fp_limits limits;   /* the root's concurrency limits (limit.c) */
	const struct fp_kv_backend *kv_backend;   /* the root's: NULL, its own store */
	void *kv_backend_data;
	struct fp_locks *locks;    /* the root's named locks for tasks (locks.c), made on first use */

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
	uint64_t start_ns_avg;     /* spawn to READY, recent workers */
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
	/*
	 * dispatch.c: a run of answers as results, handed to a call whole
	 * (FP_ANSWERS_MAX of them; made at the first run, kept).
	 */
	struct fp_result *answers;
};

struct fp_pipe;

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

/* call.c: apply and map's calls */
int fp__call_new(struct fp_call **out, fp_pool *p, const struct fp_registry_task *t,
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
/* True while any group of root's has a worker struct. */
bool fp__groups_have_workers(fp_pool *root);
/* True while any group of root's has a zygote (serving or retiring). */
bool fp__groups_have_zygotes(fp_pool *root);

/* Each group `g` of `root`, group 0 (the C modules) first; `i` its index. */
#define FP_FOR_GROUPS(g, root, i) \
	for ((i) = 0; (i) < (root)->ngroups && ((g) = (root)->groups[(i)]); (i)++)

/*
 * pool.c: the group that serves `task`: the exec group whose name it
 * begins with as NAME.task, else group 0 (whose registry may not know it).
 */
fp_pool *fp__group_of(fp_pool *root, const char *task);
/* Defaults and limits shared with pipeline.c. */
size_t fp__default_chunksize(const fp_pool *p, size_t n);

#endif
