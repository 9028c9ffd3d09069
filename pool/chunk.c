/*
 * What one chunk holds: the head entry's run as always, and, for tasks that
 * have lately run quickly, the runs of the entries behind it, so that many
 * small calls reach a worker in one write (queue.h says why). Also the
 * record of how long each task ran, and lookups into a worker's chunk.
 */
#include <stdlib.h>

#include "pool_impl.h"

/* The joined items' arguments stay under this, so the chunk stays one small write. */
#define JOIN_ARGS_MAX (64u * 1024)

/* The shortest timeout among the segments not answered yet; 0 when none has one. */
uint64_t fp__chunk_timeout_ms(const struct fp_worker *w)
{
	uint64_t ms = 0;

	for (uint32_t s = w->seg; s < w->nsegs; s++) {
		uint64_t t = w->segs[s].call->timeout_ms;
		if (t && (!ms || t < ms))
			ms = t;
	}
	return ms;
}

/*
 * Whether k items of e go in one TASKS frame with the names of their chain:
 * a chain is never sent item by item (frame.h).
 */
static bool chain_fits(const struct fp_group *g, const struct fp_qent *e, size_t k, unsigned hops)
{
	size_t args = 0;

	for (size_t i = 0; i < k; i++)
		args += e->call->items[e->first + i].len;
	return k && fp_frame_tasks_len((uint32_t)k, e->call->ops->chain_name_len(e->call, hops),
				       args) <= g->opts.max_payload;
}

/*
 * How many items of entry e go to w now; *hops: the tasks after the call's
 * own that they run through in the same worker (a chain: call.h).
 */
static size_t chunk_for(struct fp_group *g, const struct fp_worker *w, const struct fp_qent *e,
			unsigned *hops)
{
	size_t k = e->count, left;
	const struct fp_call *c = e->call;

	*hops = c->ops->hops ? c->ops->hops(c) : 0;
	if (k > c->chunksize)
		k = c->chunksize;
	if (w->tasks_limit) {
		/* A chained item is as many tasks as its chain has. */
		left = w->tasks_limit - w->tasks_dispatched;
		if (*hops && *hops + 1 > left)
			*hops = left ? (unsigned)left - 1 : 0;
		left /= *hops + 1;
		if (k > left)
			k = left;
	}
	if (fp__limits_may_apply(&g->pool->limits, c->concurrency))
		k = fp__limit_room(g, w, c, hops, NULL, 0, k);
	if (!k || !c->ops->room)
		return k;
	left = c->ops->room(c, e->first, k, *hops);
	if (!*hops || !left || chain_fits(g, e, left, *hops))
		return left;
	*hops = 0;
	return c->ops->room(c, e->first, k, 0);
}

bool fp__task_us_sync(struct fp_group *g)
{
	uint32_t *t;

	if (g->task_us && g->task_us_gen == g->pool->reg_gen)
		return true;
	t = realloc(g->task_us, (g->pool->reg.ntasks ? g->pool->reg.ntasks : 1) * sizeof(*t));
	if (!t) {
		/* Without the table no call is joined to another: slower, not wrong. */
		free(g->task_us);
		g->task_us = NULL;
		g->ntask_us = 0;
		return false;
	}
	for (size_t i = 0; i < g->pool->reg.ntasks; i++)
		t[i] = FP_TASK_US_UNKNOWN;
	g->task_us = t;
	g->ntask_us = g->pool->reg.ntasks;
	g->task_us_gen = g->pool->reg_gen;
	return true;
}

static uint32_t *task_us_at(struct fp_group *g, uint64_t reg_gen, uint32_t task_ix)
{
	if (!g->task_us || reg_gen != g->pool->reg_gen || g->task_us_gen != g->pool->reg_gen ||
	    task_ix >= g->ntask_us)
		return NULL;
	return &g->task_us[task_ix];
}

static uint32_t *task_us_of(struct fp_group *g, const struct fp_call *c)
{
	return task_us_at(g, c->reg_gen, c->task_ix);
}

uint32_t fp__task_us(struct fp_group *g, uint64_t reg_gen, uint32_t task_ix)
{
	const uint32_t *e = task_us_at(g, reg_gen, task_ix);

	return e ? *e : FP_TASK_US_UNKNOWN;
}

uint32_t *fp__task_us_slot(struct fp_group *g, const struct fp_call *c)
{
	return task_us_of(g, c);
}

void fp__task_us_record(struct fp_group *g, const struct fp_call *c, uint64_t us)
{
	fp__task_ix_us_record(g, c->reg_gen, c->task_ix, us);
}

void fp__task_ix_us_record(struct fp_group *g, uint64_t reg_gen, uint32_t task_ix, uint64_t us)
{
	uint32_t *e = task_us_at(g, reg_gen, task_ix);

	if (e)
		fp__task_us_update(e, us);
}

bool fp__task_quick(struct fp_group *g, const struct fp_call *c)
{
	const uint32_t *e = task_us_of(g, c);

	return e && *e <= FP_BATCH_QUICK_US;
}

static bool call_quick(struct fp_group *g, const struct fp_call *c)
{
	const uint32_t *e = task_us_of(g, c);

	return e && *e <= FP_BATCH_QUICK_US && !c->cancelled && c->ops->joinable;
}

/*
 * How many items one worker may take at once beyond its first segment: no
 * more than FP_BATCH_MAX, and about its share of the queue among the workers
 * able to take work, so that the others find some when they come free.
 */
static size_t batch_limit(struct fp_group *g)
{
	struct fp_worker *w;
	size_t able = 0, share;

	/* A standby takes no work while its predecessor can: not one to share with. */
	for (w = g->workers; w; w = w->next)
		if (fp__worker_serving(w))
			able++;
	share = able ? (size_t)((g->queue.items + able - 1) / able) : 1;
	return share < FP_BATCH_MAX ? share : FP_BATCH_MAX;
}

/*
 * Cut w's chunk from the first entry that may run now (*at; the head unless
 * a call ahead of it is held back: its room is 0): that entry's chunk as always,
 * then, while the items so far and those of the next entries are of quick
 * tasks with small arguments, runs of the next entries in queue order.
 * Nothing is taken off the queue here; returns the number of segments, 0
 * when nothing may run.
 */
uint32_t fp__chunk_plan(struct fp_group *g, struct fp_worker *w, struct fp_seg *segs, size_t *at)
{
	struct fp_qent *e = NULL;
	size_t k = 0, total, limit, bytes = 0, i, q0;
	unsigned hops = 0;
	uint32_t n = 1;

	q0 = 0;
	if (g->pool->limits.nt) {
		fp__limit_plan_begin(&g->pool->limits);
		q0 = fp__limit_held_back(g);
	}
	for (; q0 < g->queue.len; q0++) {
		e = fp__queue_at(&g->queue, q0);
		if ((k = chunk_for(g, w, e, &hops)) > 0)
			break;
		if (g->pool->limits.nt)
			fp__limit_held_back_note(g, q0, e->call);
	}
	*at = q0;
	if (!k)
		return 0;
	total = k;
	segs[0] = (struct fp_seg){ e->call, e->first, (uint32_t)k, .hops = (uint8_t)hops };
	if (k != e->count || g->queue.len < q0 + 2 || !call_quick(g, e->call))
		return n;
	limit = batch_limit(g);
	if (w->tasks_limit && limit > w->tasks_limit - w->tasks_dispatched)
		limit = w->tasks_limit - w->tasks_dispatched;
	for (i = 0; i < k; i++)
		bytes += e->call->items[e->first + i].len;
	for (size_t q = q0 + 1; q < g->queue.len && n < FP_BATCH_MAX && total < limit; q++) {
		struct fp_call *c;
		size_t take, b = 0;

		e = fp__queue_at(&g->queue, q);
		c = e->call;
		if (!call_quick(g, c))
			break;
		take = e->count;
		if (take > c->chunksize)
			take = c->chunksize;
		if (take > limit - total)
			take = limit - total;
		if (fp__limits_may_apply(&g->pool->limits, c->concurrency) &&
		    !(take = fp__limit_room(g, w, c, &(unsigned){ 0 }, segs, n, take)))
			break;
		for (i = 0; i < take; i++)
			b += c->items[e->first + i].len;
		if (bytes + b > JOIN_ARGS_MAX)
			break;
		bytes += b;
		segs[n++] = (struct fp_seg){ c, e->first, (uint32_t)take };
		total += take;
		if (take != e->count)
			break;
	}
	return n;
}

struct fp_call *fp__worker_item(const struct fp_worker *w, uint64_t id, uint32_t *index,
				unsigned *hop)
{
	if (hop)
		*hop = 0;
	if (!w->call)
		return NULL;
	/* Segments' ids ascend, but not contiguously across two chunks. */
	for (uint32_t s = w->seg; s < w->nsegs; s++) {
		const struct fp_seg *sg = &w->segs[s];
		uint64_t from = sg->id0 + (s == w->seg ? w->seg_acked : 0);

		if (id >= from && id < sg->id0 + sg->count) {
			if (index)
				*index = sg->first + (uint32_t)(id - sg->id0);
			if (hop && sg->hops) {
				/* The worker's word: never past the chain it was sent. */
				uint32_t h = atomic_load_explicit(&w->shm->hop, memory_order_acquire);
				*hop = h < sg->hops ? h : sg->hops;
			}
			return sg->call;
		}
	}
	return NULL;
}

bool fp__worker_holds(const struct fp_worker *w, const struct fp_call *c)
{
	if (!w->call)
		return false;
	for (uint32_t s = w->seg; s < w->nsegs; s++)
		if (w->segs[s].call == c)
			return true;
	return false;
}

bool fp__chunk_quick(struct fp_group *g, const struct fp_seg *segs, uint32_t n)
{
	for (uint32_t s = 0; s < n; s++) {
		const uint32_t *e = task_us_of(g, segs[s].call);

		if (!e || *e > FP_BATCH_QUICK_US || segs[s].call->cancelled)
			return false;
	}
	return true;
}
