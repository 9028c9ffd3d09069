/*
 * Apply and map as calls: made (their items copied, or borrowed), named
 * in the log, their start told, each item's end handed to the caller's
 * on_item (or a run of them to on_items), and their end. Submitting and cancelling are pool.c's; what dispatch asks of
 * any call is in call.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forkpool/loop.h"
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
static void call_sent(struct fp_call *c, struct fp_group *g, unsigned hops, uint32_t count)
{
	if (!c->start.started)
		fp__start_note(g->pool, &c->start);
}

static void call_item_end(struct fp_call *c, unsigned hop, const struct fp_result *r)
{
	fp_pool *root = c->group->pool;

	c->finished++;
	if (r->status == FP_ITEM_OK)
		c->ok++;
	else
		c->failed++;
	/* Its start first, if the loop has not told it yet. */
	if (c->start.queued)
		fp__start_tell(root, &c->start, false);
	if (c->on_items)
		c->on_items(root, c->id, r, 1, c->data);
	else if (c->on_item)
		c->on_item(root, c->id, r, c->data);
	fp__call_maybe_finish(c);
}

/* A run answered OK together: one callback for it all when the caller takes runs. */
static void call_items_end(struct fp_call *c, const struct fp_result *r, size_t n)
{
	fp_pool *root = c->group->pool;

	c->finished += n;
	c->ok += n;
	if (c->start.queued)
		fp__start_tell(root, &c->start, false);
	if (c->on_items)
		c->on_items(root, c->id, r, n, c->data);
	else if (c->on_item)
		for (size_t i = 0; i < n; i++)
			c->on_item(root, c->id, &r[i], c->data);
	fp__call_maybe_finish(c);
}

/*
 * A new call of task t (NULL: an exec pool's, by its full name `task`) on
 * group g, its items copied into its arena or, with spec->borrow, pointing
 * at the caller's text (those over max_payload left empty: the caller
 * fails them), linked into g->calls. -ENOMEM.
 */
int fp__call_new(struct fp_call **out, struct fp_group *g, const struct fp_registry_task *t,
		 const char *task, const struct fp_buf *items, size_t n,
		 const fp_call_options *o, const struct fp_call_spec *spec)
{
	struct fp_call *c;
	size_t i, bytes = 0, off = 0, name_len, label_len;

	for (i = 0; i < n && !spec->borrow; i++)
		if (items[i].len <= g->opts.max_payload)
			bytes += items[i].len;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	/* An exec task keeps its full NAME.task; its worker drops NAME. The label follows it. */
	name_len = strlen(t ? t->name : task);
	label_len = o->label ? strlen(o->label) : 0;
	c->task = malloc(name_len + 1 + (o->label ? label_len + 1 : 0));
	if (c->task) {
		memcpy(c->task, t ? t->name : task, name_len + 1);
		if (o->label)
			c->label = memcpy(c->task + name_len + 1, o->label, label_len + 1);
	}
	if (spec->borrow) {
		/* Read only, for as long as the call lives: the caller's word (forkpool.h). */
		c->items = (struct fp_buf *)items;
		c->borrowed = true;
	} else {
		c->items = fp_mem_alloc((n ? n : 1) * sizeof(*c->items));
		c->arena = fp_mem_alloc(bytes ? bytes : 1);
	}
	if (!c->task || (!spec->borrow && (!c->items || !c->arena))) {
		c->n = n;
		fp__call_free(c);
		return -ENOMEM;
	}
	c->id = g->pool->next_call_id++;
	c->group = g;
	c->ops = &fp__call_ops;
	/* An exec task has no duration record: its calls are never joined. */
	c->task_ix = t ? (uint32_t)(t - g->pool->reg.tasks) : UINT32_MAX;
	c->reg_gen = g->pool->reg_gen;
	fp__task_us_sync(g);
	c->name_len = (uint32_t)name_len;
	c->on_item = spec->on_item;
	c->on_items = spec->on_items;
	c->on_done = spec->on_done;
	c->data = spec->data;
	c->start = (struct fp_start_note){ .cb = o->on_start, .data = spec->data, .id = c->id };
	c->timeout_ms = o->timeout_ms < 0 ? g->opts.timeout_ms : (uint64_t)o->timeout_ms;
	c->retries = o->retries;
	c->retry_on = o->retry_on ? o->retry_on : FP_RETRY_DEFAULT;
	c->chunksize = o->chunksize ? o->chunksize : fp__default_chunksize(g, n);
	c->concurrency = o->concurrency;
	c->n = n;
	for (i = 0; i < n && !spec->borrow; i++) {
		if (items[i].len > g->opts.max_payload)
			continue;
		memcpy(c->arena + off, items[i].base, items[i].len);
		c->items[i] = (struct fp_buf){ c->arena + off, items[i].len };
		off += items[i].len;
	}

	c->next = g->calls;
	if (g->calls)
		g->calls->prev = c;
	g->calls = c;
	*out = c;
	return 0;
}

void fp__call_maybe_finish(struct fp_call *c)
{
	struct fp_group *g = c->group;
	struct fp_call_summary s;

	if (c->finished < c->n)
		return;
	/* Its items' callbacks told it already; this is only ever a no-op. */
	fp__start_tell(g->pool, &c->start, false);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s = (struct fp_call_summary){ c->id, c->n, c->ok, c->failed, c->cancelled };
	if (c->on_done)
		c->on_done(g->pool, &s, c->data);
	fp__call_free(c);
}

void fp__call_free(struct fp_call *c)
{
	if (!c->borrowed)
		fp_mem_free(c->items);
	fp_mem_free(c->arena);
	fp_mem_free(c->marks);
	free(c->task);
	free(c);
}

const struct fp_call_ops fp__call_ops = {
	.joinable = true,
	.name = call_name,
	.sent = call_sent,
	.item_end = call_item_end,
	.items_end = call_items_end,
};
