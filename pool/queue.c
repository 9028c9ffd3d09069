/*
 * The queue's ring: entries (runs of one call's items) pushed at either end,
 * popped from the head, taken from the middle when dispatch skips entries
 * that are held back. What the entries mean is pool_impl.h's to say.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

/* Double the ring, its entries moved to its start. */
static int queue_grow(struct fp_queue *q)
{
	size_t cap = q->cap ? q->cap * 2 : 64, i;
	struct fp_qent *buf = malloc(cap * sizeof(*buf));

	if (!buf)
		return -ENOMEM;
	for (i = 0; i < q->len; i++)
		buf[i] = q->buf[(q->head + i) % q->cap];
	free(q->buf);
	q->buf = buf;
	q->cap = cap;
	q->head = 0;
	return 0;
}

int fp__queue_push_ent(struct fp_queue *q, const struct fp_qent *e, bool front)
{
	if (q->len == q->cap && queue_grow(q) < 0)
		return -ENOMEM;
	if (front) {
		q->head = (q->head + q->cap - 1) % q->cap;
		q->buf[q->head] = *e;
		q->held_back = 0;
	} else {
		q->buf[(q->head + q->len) % q->cap] = *e;
	}
	q->len++;
	q->items += e->count;
	return 0;
}

int fp__queue_push(struct fp_queue *q, struct fp_call *call, uint32_t first,
		   uint32_t count, bool front)
{
	struct fp_qent e = { .call = call, .first = first, .count = count };

	if (!count)
		return 0;
	return fp__queue_push_ent(q, &e, front);
}

void fp__queue_pop(struct fp_queue *q)
{
	q->items -= q->buf[q->head].count;
	q->head = (q->head + 1) % q->cap;
	q->len--;
	if (q->held_back)
		q->held_back--;
}

void fp__queue_remove(struct fp_queue *q, size_t i)
{
	/* Whichever side moves, the entries behind it end one place lower. */
	if (i < q->held_back)
		q->held_back--;
	if (i >= q->len / 2) {
		/*
		 * Nearer the tail: move those behind it one place back. An
		 * entry taken from behind many held back ones costs what lies
		 * behind it, not all of them.
		 */
		for (; i + 1 < q->len; i++)
			*fp__queue_at(q, i) = *fp__queue_at(q, i + 1);
		q->len--;
		return;
	}
	/* Move the i entries before it one place on: O(i), as finding it was. */
	for (; i > 0; i--)
		*fp__queue_at(q, i) = *fp__queue_at(q, i - 1);
	q->head = (q->head + 1) % q->cap;
	q->len--;
}

void fp__queue_deinit(struct fp_queue *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}
