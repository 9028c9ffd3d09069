/*
 * The queue: a ring-buffer deque of entries, each a run of consecutive items
 * of one call. It knows nothing of what a call is.
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
 * are calls whose items are one stage's inputs, queued in the group that
 * runs the stage (an exec group's for a NAME.task). Dispatch reaches every call
 * through its ops (call.h) and takes the first entry that may run, not
 * always the head: an entry whose call has no room now (a stage at its
 * worker cap, or whose next stage's buffer is full) is skipped and the
 * entries behind it go first. A call that is not joinable has a chunk of
 * its own.
 */
#ifndef FP_QUEUE_H
#define FP_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

struct fp_call;

struct fp_qent {
	struct fp_call *call;
	uint32_t first, count;
	/* Only in pool->failing: how these items end, and why. */
	fp_item_status status;
	const char *why;
};

/* A ring-buffer deque of queue entries. */
struct fp_queue {
	struct fp_qent *buf;
	size_t head, len, cap;
	uint64_t items;            /* sum of counts */
	/*
	 * Leading entries that dispatch found held back by full concurrency
	 * limits: each is under one of the limits whose bits (their indexes)
	 * are in held_back_limits, as the limits were at generation
	 * held_back_gen (limit.c). While those limits are all full, the next
	 * chunk plan starts its walk after them instead of asking each again
	 * (a queue of many single-item applies of a full limit made every
	 * dispatch walk them all). The queue keeps the count true: an entry
	 * pushed at the front clears it, one taken from among them lowers it.
	 */
	size_t held_back;
	uint64_t held_back_limits, held_back_gen;
};

static inline struct fp_qent *fp__queue_at(struct fp_queue *q, size_t i)
{
	return &q->buf[(q->head + i) % q->cap];
}

/* Push a run at the tail, or at the head (`front`); 0 items push nothing. -ENOMEM. */
int fp__queue_push(struct fp_queue *q, struct fp_call *call, uint32_t first,
		   uint32_t count, bool front);
int fp__queue_push_ent(struct fp_queue *q, const struct fp_qent *e, bool front);
/* Take the head entry off. */
void fp__queue_pop(struct fp_queue *q);
/* Remove the (empty) entry at i, keeping the order of the rest. */
void fp__queue_remove(struct fp_queue *q, size_t i);
void fp__queue_deinit(struct fp_queue *q);

#endif
