/*
 * Concurrency limits: the table of named limits and the tasks under them
 * (fp_pool_limit_set() and friends), and the test dispatch asks before it
 * cuts a chunk (fp__limit_room()). Nothing here knows what kind of call an
 * item belongs to; a limit counts items by their task's name.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "limit.h"
#include "pool_impl.h"

#define LIMIT_NAME_MAX 64


static bool name_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char ch = s[n];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == ':' || ch == '-'))
			return false;
	}
	return n >= 1 && n <= LIMIT_NAME_MAX;
}

static long find_limit(const struct fp_limits *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return (long)i;
	return -1;
}

static long find_task(const struct fp_limits *l, const char *task)
{
	for (size_t i = 0; i < l->nt; i++)
		if (!strcmp(l->t[i].task, task))
			return (long)i;
	return -1;
}

/* The limit (index) over task, or -1. */
static long limit_of(const struct fp_limits *l, const char *task)
{
	long t = l->nt ? find_task(l, task) : -1;

	return t < 0 ? -1 : (long)l->t[t].limit;
}

static int limit_add(struct fp_limits *l, const char *name, unsigned max, bool own)
{
	struct fp_limit *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	char *copy;

	if (!v)
		return -ENOMEM;
	l->v = v;
	if (!(copy = strdup(name)))
		return -ENOMEM;
	/* held_plan 0 is never a plan's number: read at its first use. */
	v[l->n++] = (struct fp_limit){ copy, max, own, 0, 0 };
	return 0;
}

int fp_pool_limit_set(fp_pool *pool, const char *name, unsigned max)
{
	struct fp_limits *l = &pool->limits;
	long i;

	if (!name || !name_ok(name) || !max)
		return -EINVAL;
	i = find_limit(l, name);
	if (i >= 0 && l->v[i].own)
		return -EEXIST;
	if (i >= 0) {
		l->v[i].max = max;
		/* A higher max may let waiting items start. */
		fp__dispatch(pool->groups[0]);
		return 0;
	}
	return limit_add(l, name, max, false);
}

static void task_drop(struct fp_limits *l, size_t t)
{
	free(l->t[t].task);
	l->t[t] = l->t[--l->nt];
	l->gen++;
}

static int task_add(struct fp_limits *l, const char *task, size_t limit)
{
	struct fp_limit_task *t = realloc(l->t, (l->nt + 1) * sizeof(*t));
	char *copy;

	if (!t)
		return -ENOMEM;
	l->t = t;
	if (!(copy = strdup(task)))
		return -ENOMEM;
	t[l->nt++] = (struct fp_limit_task){ copy, limit };
	l->gen++;
	return 0;
}

int fp_pool_task_limit(fp_pool *pool, const char *task, const char *limit)
{
	struct fp_limits *l = &pool->limits;
	long i, t;

	if (!task || !*task)
		return -EINVAL;
	t = find_task(l, task);
	if (!limit) {
		if (t >= 0) {
			task_drop(l, (size_t)t);
			fp__dispatch(pool->groups[0]);
		}
		return 0;
	}
	if ((i = find_limit(l, limit)) < 0)
		return -ENOENT;
	if (t >= 0)
		return l->t[t].limit == (size_t)i ? 0 : -EEXIST;
	return task_add(l, task, (size_t)i);
}

int fp_pool_task_concurrency(fp_pool *pool, const char *task, unsigned max)
{
	struct fp_limits *l = &pool->limits;
	long i, t;
	int err;

	if (!task || !name_ok(task))
		return -EINVAL;
	i = find_limit(l, task);
	t = find_task(l, task);
	if (!max) {
		if (t >= 0 && i >= 0 && l->t[t].limit == (size_t)i)
			task_drop(l, (size_t)t);
		if (i >= 0 && l->v[i].own)
			l->v[i].max = UINT32_MAX;   /* kept: its index may be in use */
		fp__dispatch(pool->groups[0]);
		return 0;
	}
	if (i >= 0 && !l->v[i].own)
		return -EEXIST;   /* a shared limit of that name */
	if (t >= 0 && (i < 0 || l->t[t].limit != (size_t)i))
		return -EEXIST;   /* under a shared limit already */
	if (i < 0) {
		if ((err = limit_add(l, task, max, true)) < 0)
			return err;
		i = (long)l->n - 1;
	}
	l->v[i].max = max;
	if (t < 0 && (err = task_add(l, task, (size_t)i)) < 0)
		return err;
	fp__dispatch(pool->groups[0]);
	return 0;
}

void fp__limits_deinit(struct fp_limits *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	for (size_t i = 0; i < l->nt; i++)
		free(l->t[i].task);
	free(l->v);
	free(l->t);
	memset(l, 0, sizeof(*l));
}

/* --- counting ------------------------------------------------------------ */

/* Items a worker holds unanswered, of segment s. */
static uint64_t seg_left(const struct fp_worker *w, uint32_t s)
{
	return w->segs[s].count - (s == w->seg ? w->seg_acked : 0);
}

/* Items of limit `lim` (or, lim < 0, of call c) that the workers of every group hold. */
static uint64_t held(fp_pool *root, long lim, const struct fp_call *c)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < root->ngroups; i++)
		for (struct fp_worker *w = root->groups[i]->workers; w; w = w->next) {
			if (!w->call)
				continue;
			for (uint32_t s = w->seg; s < w->nsegs; s++) {
				const struct fp_call *g = w->segs[s].call;

				if (lim < 0 ? g == c : limit_of(&root->limits, g->task) == lim)
					n += seg_left(w, s);
			}
		}
	return n;
}

static uint64_t queued(fp_pool *root, long lim)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < root->ngroups; i++) {
		struct fp_queue *q = &root->groups[i]->queue;

		for (size_t e = 0; e < q->len; e++)
			if (limit_of(&root->limits, fp__queue_at(q, e)->call->task) == lim)
				n += fp__queue_at(q, e)->count;
	}
	return n;
}

/* Whether limit `lim` has no place free, counted once per plan. */
static bool limit_full(fp_pool *root, size_t lim)
{
	struct fp_limits *l = &root->limits;
	struct fp_limit *v = &l->v[lim];

	if (v->held_plan != l->plan) {
		v->held = held(root, (long)lim, NULL);
		v->held_plan = l->plan;
	}
	return v->held >= v->max;
}

size_t fp__limit_held_back(struct fp_group *g)
{
	struct fp_queue *q = &g->queue;
	struct fp_limits *l = &g->pool->limits;
	uint64_t bits = q->held_back_limits;

	if (!q->held_back)
		return 0;
	if (q->held_back_gen != l->gen) {
		/* Which limit an entry is under may have changed: forget them. */
		q->held_back = 0;
		return 0;
	}
	/*
	 * A place free in any of them: the walk starts at the head, and the
	 * entries stay counted (what they are under has not changed), so that
	 * once the place is taken the next plan skips them again.
	 */
	for (size_t i = 0; bits; i++, bits >>= 1)
		if ((bits & 1) && !limit_full(g->pool, i))
			return 0;
	return q->held_back;
}

void fp__limit_held_back_note(struct fp_group *g, size_t at, const struct fp_call *c)
{
	struct fp_queue *q = &g->queue;
	struct fp_limits *l = &g->pool->limits;
	long lim;

	if (at != q->held_back)
		return;
	lim = limit_of(l, c->task);
	/* Only a full limit holds an entry back whatever worker asks (fp__limit_room()). */
	if (lim < 0 || lim >= 64 || !limit_full(g->pool, (size_t)lim))
		return;
	if (!q->held_back) {
		q->held_back_limits = 0;
		q->held_back_gen = l->gen;
	}
	q->held_back++;
	q->held_back_limits |= UINT64_C(1) << lim;
}

/*
 * Of `max` places, those free now, and at most a worker's share of them
 * in one chunk (rounded down, at least 1): a limit of 3 over 4 workers runs
 * its items on 3 of them, not 3 in a row on one, and a limit of 5 on all 4.
 */
static size_t places(const struct fp_group *g, unsigned max, uint64_t used, size_t want)
{
	unsigned nw = g->opts.workers ? g->opts.workers : 1;
	uint64_t share = max / nw ? max / nw : 1;
	uint64_t room = used >= max ? 0 : max - used;

	if (room > share)
		room = share;
	return room < want ? (size_t)room : want;
}

size_t fp__limit_room(struct fp_group *g, const struct fp_worker *w, const struct fp_call *c,
		      unsigned *hops, const struct fp_seg *planned, uint32_t n, size_t want)
{
	fp_pool *root = g->pool;
	struct fp_limits *l = &root->limits;
	long lim;

	/* The common case, and the unlimited pool's only one: nothing to look up. */
	if (!l->nt && !c->concurrency)
		return want;
	for (unsigned h = 1; l->nt && h <= *hops; h++)
		if (limit_of(l, c->ops->chain_task(c, h)) >= 0) {
			*hops = h - 1;
			break;
		}
	lim = limit_of(l, c->task);
	if (lim < 0 && !c->concurrency)
		return want;
	if (w->call)
		return 0;
	if (lim >= 0) {
		struct fp_limit *v = &l->v[lim];
		uint64_t used;

		limit_full(root, (size_t)lim);
		used = v->held;

		for (uint32_t s = 0; s < n; s++)
			if (limit_of(l, planned[s].call->task) == lim)
				used += planned[s].count;
		want = places(g, l->v[lim].max, used, want);
	}
	if (c->concurrency && want) {
		uint64_t used = held(root, -1, c);

		for (uint32_t s = 0; s < n; s++)
			if (planned[s].call == c)
				used += planned[s].count;
		want = places(g, c->concurrency, used, want);
	}
	return want;
}

/* --- what the API shows -------------------------------------------------- */

size_t fp_pool_limits(fp_pool *pool, struct fp_limit_stats *out, size_t max)
{
	const struct fp_limits *l = &pool->limits;
	size_t k = 0;

	for (size_t i = 0; i < l->n; i++) {
		/* An own limit switched off (max 0) is kept for its index, not shown. */
		if (l->v[i].own && find_task(l, l->v[i].name) < 0)
			continue;
		if (k < max)
			out[k] = (struct fp_limit_stats){
				.name = l->v[i].name,
				.max = l->v[i].max,
				.running = (unsigned)held(pool, (long)i, NULL),
				.waiting = queued(pool, (long)i),
			};
		k++;
	}
	return k;
}

const char *fp_pool_task_limit_name(fp_pool *pool, const char *task)
{
	const struct fp_limits *l = &pool->limits;
	long lim = limit_of(l, task);

	return lim < 0 ? NULL : l->v[lim].name;
}
