/*
 * Concurrency limits (the semaphore): named limits, the tasks each one
 * covers, and dispatch's question "how many items of this call may start
 * now". A limit's running count is never kept: it is read from what the
 * workers of every group hold unanswered, so no path by which an item ends (an
 * answer, a crash, a kill, a requeue) can leave it wrong.
 */
#ifndef FP_LIMIT_H
#define FP_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

struct fp_call;
struct fp_group;
struct fp_seg;
struct fp_worker;

/* The pool's limits, shared by all its groups. */
struct fp_limits {
	struct fp_limit {
		char *name;
		unsigned max;
		bool own;          /* fp_pool_task_concurrency()'s: named after its task */
		/* Items its tasks' workers hold, as counted during plan `held_plan`. */
		uint64_t held, held_plan;
	} *v;
	size_t n;
	struct fp_limit_task {
		char *task;
		size_t limit;      /* index into v */
	} *t;
	size_t nt;
	/*
	 * Counts chunk plans (fp__limit_plan_begin()): nothing is sent or
	 * answered while one is cut, so a limit's count is read once per plan,
	 * not once per queue entry (a queue of many small calls of a full
	 * limit is walked entry by entry on every dispatch).
	 */
	uint64_t plan;
	/* Counts changes of which task is under which limit (a queue's held_back). */
	uint64_t gen;
};

/*
 * How many of `want` items of c, sent to worker w with a chain of *hops,
 * may start now besides the `n` segments already planned for the same
 * chunk: `want` when nothing limits them. A chain is cut before the first
 * limited task after the call's own (*hops lowered), so that a limited
 * task's items are always counted as its own segments. A worker that
 * already holds a chunk is sent none of a limited task: an item waiting
 * behind another would hold a place of the limit without running.
 */
size_t fp__limit_room(struct fp_group *g, const struct fp_worker *w, const struct fp_call *c,
		      unsigned *hops, const struct fp_seg *planned, uint32_t n, size_t want);
/*
 * Whether fp__limit_room() may say less than `want` for a call with this
 * `concurrency`: inline, so that a pool without limits pays one test per
 * planned run and no call.
 */
static inline bool fp__limits_may_apply(const struct fp_limits *l, unsigned concurrency)
{
	return l->nt || concurrency;
}
/*
 * Where pool p's chunk plan may start its walk of the queue: after the
 * leading entries it found held back by full limits (queue.h's held_back),
 * while all of those limits are still full; else 0, forgetting them.
 */
size_t fp__limit_held_back(struct fp_group *g);
/*
 * Entry `at` of p's queue, of call c, had no room: counted among the
 * leading entries held back when it is the next of them and its task's
 * limit is full.
 */
void fp__limit_held_back_note(struct fp_group *g, size_t at, const struct fp_call *c);
/* A chunk plan begins: counts read before it are stale. */
static inline void fp__limit_plan_begin(struct fp_limits *l)
{
	l->plan++;
}
/* Whether an item ending in one group may let an item of another group start. */
static inline bool fp__limits_shared(const struct fp_limits *l, unsigned ngroups)
{
	return l->nt && ngroups > 1;
}
void fp__limits_deinit(struct fp_limits *l);

#endif
