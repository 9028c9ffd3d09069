/*
 * The queue: a ring-buffer deque of entries, each a run of consecutive items
 * of one call (pool_impl.h says why runs). It knows nothing of what a call
 * is.
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
