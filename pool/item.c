/*
 * An item's end: how many times it started, whether it runs again, how log
 * lines name it, and its delivery to its call (call.h's item_end), now or,
 * for items that end without running, from the loop (pool->failing).
 */
#include <stdio.h>
#include <stdlib.h>

#include "forkpool/loop.h"
#include "item.h"
#include "pool_impl.h"

static void defer_cb(fp_timer *t)
{
	fp__deliver_failing(t->data);
	/* A call may have work to queue after its items failed (a pipeline's next stage). */
	fp__dispatch(t->data);
}

int fp__fail_later(struct fp_group *g, struct fp_call *call, uint32_t first,
		   uint32_t count, fp_item_status status, const char *why)
{
	struct fp_qent e = { call, first, count, status, why };
	int err = fp__queue_push_ent(&g->failing, &e, false);

	if (!err && !fp_timer_active(&g->defer))
		err = fp_timer_start(g->loop, &g->defer, 0, defer_cb);
	return err;
}

void fp__queue_fail(struct fp_group *g, struct fp_call *call, fp_item_status status,
		    const char *why)
{
	struct fp_queue *q = &g->queue;
	size_t i, kept = 0, len = q->len;

	/* Compact in place, keeping the order of what stays. */
	for (i = 0; i < len; i++) {
		struct fp_qent e = *fp__queue_at(q, i);
		if (!call || e.call == call) {
			/* Moving to another queue can only fail for memory; the
			 * item would then be lost, so keep it queued instead. */
			if (fp__fail_later(g, e.call, e.first, e.count, status, why) == 0) {
				q->items -= e.count;
				continue;
			}
		}
		*fp__queue_at(q, kept++) = e;
	}
	q->len = kept;
	/* The entries held back may be among those gone. */
	q->held_back = 0;
}

/*
 * How log lines name an item: "item 3 of job 5f3a…" with the caller's label,
 * "item 3 of call 14" without (each kind of call words it: call.h).
 */
void fp__item_name(char *buf, size_t len, const struct fp_call *c, uint32_t index,
		      unsigned hop)
{
	c->ops->name(c, index, hop, buf, len);
}

/*
 * The retries an item of c has at stage `hop` of its chain: none past the
 * first task (a chain's later tasks have none: call.h), whose args were a
 * value only the worker had.
 */
unsigned fp__item_retries(const struct fp_call *c, unsigned hop)
{
	return hop ? 0 : c->retries;
}

/*
 * c's marks, made at the first item with something to keep: most calls
 * never need them. Without memory, no item of c is retried any more (one
 * that handed outputs on could not be told from one that did not), and
 * starts stop being counted past the one that ends an item.
 */
static struct fp_item_mark *item_mark(struct fp_call *c, uint32_t i)
{
	if (!c->marks && !c->no_retry) {
		c->marks = fp_mem_alloc((c->n ? c->n : 1) * sizeof(*c->marks));
		if (!c->marks)
			c->no_retry = true;
	}
	return c->marks ? &c->marks[i] : NULL;
}

unsigned fp__item_started(struct fp_call *c, uint32_t i)
{
	struct fp_item_mark *m = item_mark(c, i);

	if (!m)
		return 1;
	if (m->starts < UINT16_MAX)
		m->starts++;
	return m->starts;
}

void fp__item_emitted(struct fp_call *c, uint32_t i)
{
	struct fp_item_mark *m = item_mark(c, i);

	if (m)
		m->emitted = true;
}

/*
 * Whether item i of c that failed by `kind` (FP_RETRY_*) at stage `hop`,
 * started `attempts` times, runs again: while it has been started at most
 * `retries` times, and not once it handed outputs on (they would be given
 * twice).
 */
bool fp__item_retry_wanted(const struct fp_call *c, uint32_t i, unsigned attempts,
			   unsigned kind, unsigned hop)
{
	return (c->retry_on & kind) && !c->no_retry && !(c->marks && c->marks[i].emitted) &&
	       attempts <= fp__item_retries(c, hop) && attempts < UINT16_MAX;
}

static const char *retry_kind_name(unsigned kind)
{
	return kind == FP_RETRY_TIMEOUT ? "timeout" : kind == FP_RETRY_CRASH ? "crash" : "task_error";
}

/*
 * "attempt 2 of 4", and why it is not run again when it had retries to
 * spare: what a failure's log line and message say of its attempts.
 */
void fp__item_attempt_note(char *buf, size_t len, const struct fp_call *c, uint32_t i,
			   unsigned attempts, unsigned kind, unsigned hop, bool retry)
{
	unsigned retries = fp__item_retries(c, hop);

	if (retry || attempts > retries || !retries)
		snprintf(buf, len, "attempt %u of %u%s", attempts, retries + 1,
			 retry ? ", retrying" : "");
	else if (c->marks && c->marks[i].emitted)
		snprintf(buf, len, "attempt %u, not retried: its outputs were handed on already",
			 attempts);
	else if (c->no_retry && (c->retry_on & kind))
		snprintf(buf, len, "attempt %u, not retried: no memory to keep its attempts",
			 attempts);
	else
		snprintf(buf, len, "attempt %u, not retried: retry_on has no %s", attempts,
			 retry_kind_name(kind));
}

void fp__deliver_failing(struct fp_group *g)
{
	struct fp_queue *q = &g->failing;
	struct fp_call *c, *next;

	fp_timer_stop(&g->defer);
	for (;;) {
		struct fp_qent e;

		/* Work gathered for the queues fails here too once the pool stops. */
		if (g->pool->feed_flush)
			g->pool->feed_flush(g->pool);
		if (!q->len)
			break;
		e = q->buf[q->head];
		fp__queue_pop(q);
		for (uint32_t i = 0; i < e.count; i++)
			fp__item_end(g, e.call, e.first + i, e.status, NULL, 0, e.why, 0, 0, 0,
				     fp__item_starts(e.call, e.first + i));
	}
	/* Calls with no items finish here too. */
	for (c = g->calls; c; c = next) {
		next = c->next;
		if (c->n == 0)
			fp__call_maybe_finish(c);
	}
}

void fp__item_requeue(struct fp_group *g, struct fp_call *call, uint32_t first, uint32_t count)
{
	if (fp__queue_push(&g->queue, call, first, count, true) < 0) {
		/* Out of memory for the queue: failing beats losing them. */
		for (uint32_t i = 0; i < count; i++)
			fp__item_end(g, call, first + i, FP_ITEM_CRASH, NULL, 0,
				     "could not requeue the item: out of memory", 0, 0, 0,
				     fp__item_starts(call, first + i));
	}
}
