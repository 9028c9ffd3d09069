/*
 * A worker group (struct fp_group): workers of one kind that share a queue
 * and limits, and what pool.c, dispatch and the pipelines ask of the groups
 * (group.c): made, freed, walked, and which one serves a task.
 */
#ifndef FP_GROUP_H
#define FP_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"
#include "forkpool/loop.h"
#include "log.h"
#include "queue.h"
#include "worker_life.h"

struct fp_call;
struct fp_exec;
struct fp_slot;
struct fp_worker;

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
	 * answers.c: a run of answers as results, handed to a call whole
	 * (FP_ANSWERS_MAX of them; made at the first run, kept).
	 */
	struct fp_result *answers;
};

/* Each group `g` of pool `p`, group 0 (the C modules) first; `i` its index. */
#define FP_FOR_GROUPS(g, p, i) \
	for ((i) = 0; (i) < (p)->ngroups && ((g) = (p)->groups[(i)]); (i)++)

/*
 * Group p->groups[p->ngroups], with `workers` slots (0: the pool's count);
 * NULL without memory. Group 0 is made by fp_pool_new(), exec groups by
 * fp__exec_groups_new().
 */
struct fp_group *fp__group_new(fp_pool *p, unsigned workers);
/* Its timers stopped, its calls dropped untold, its memory freed. NULL is fine. */
void fp__group_free(struct fp_group *g);
/* Drop g's calls without a word to anyone. */
void fp__group_calls_free(struct fp_group *g);
/* Start a worker in each of g's slots. */
int fp__group_spawn_all(struct fp_group *g);
/* One group per fp_options.exec entry, checked first; on failure the caller frees them. */
int fp__exec_groups_new(fp_pool *p, const fp_options *opts, char *errbuf, size_t errlen);
void fp__exec_groups_free(fp_pool *p);
/* True while any group of p's has a worker struct. */
bool fp__groups_have_workers(fp_pool *p);
/*
 * The group that serves `task`: the exec group whose name it begins with
 * as NAME.task, else group 0 (whose registry may not know it).
 */
struct fp_group *fp__group_of(fp_pool *p, const char *task);
/* A map's chunk size when its call sets none: about four chunks per worker of g. */
size_t fp__default_chunksize(const struct fp_group *g, size_t n);

#endif
