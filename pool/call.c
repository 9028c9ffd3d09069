/*
 * Apply and map as calls: how dispatch names their items, tells their start
 * and hands each item's end to the caller's on_item. The call's life (made,
 * cancelled, finished) is pool.c's; what dispatch asks of any call is in
 * call.h.
 */
#include <stdio.h>

#include "pool_impl.h"

static void call_name(const struct fp_call *c, uint32_t index, unsigned hop, char *buf,
		      size_t len)
{
	if (c->label)
		snprintf(buf, len, "item %u of %s", index, c->label);
	else
		snprintf(buf, len, "item %u of call %llu", index, (unsigned long long)c->id);
}

/* Handed to a worker: the call has started (attempts count at the item's start). */
static void call_sent(struct fp_call *c, fp_pool *p, unsigned hops, uint32_t count)
{
	if (!c->start.started)
		fp__start_note(p, &c->start);
}

static void call_item_end(struct fp_call *c, unsigned hop, const struct fp_result *r)
{
	fp_pool *root = c->pool->root;

	c->finished++;
	if (r->status == FP_ITEM_OK)
		c->ok++;
	else
		c->failed++;
	/* Its start first, if the loop has not told it yet. */
	if (c->start.queued)
		fp__start_tell(root, &c->start, false);
	if (c->on_item)
		c->on_item(root, c->id, r, c->data);
	fp__call_maybe_finish(c);
}

const struct fp_call_ops fp__call_ops = {
	.joinable = true,
	.name = call_name,
	.sent = call_sent,
	.item_end = call_item_end,
};
