/*
 * Cluster-wide concurrency limits (cluster_limit.h): the timer that asks
 * Redis for this node's places of every limit, the script that grants
 * them, and the lending of what was granted to the pool. It knows nothing
 * of jobs or chunks: the pool counts the items, Redis the places.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_limit.h"
#include "redis.h"

/* How soon a node that wants more places, or holds more than it wants, asks again. */
#define SYNC_MS 100
/* How often it says what it holds and wants otherwise. */
#define IDLE_SYNC_MS 1000
/* A limit's hash outlives its last asker by this much (any ask renews it). */
#define KEY_TTL_MS "60000"
/* Limits a node starts with, at most (the configuration's; jobs' come later). */
#define LIMITS_MAX 256

/*
 * KEYS: the limits' hashes. ARGV: this node, P node:, then for each limit
 * its max, how many this node wants, and its floor (what it may be running
 * now, which its hold must cover). The places granted, one per limit.
 *
 * Fields: h:NODE its hold, w:NODE what it wants, t:NODE since when (Redis's
 * clock, ms) it has wanted more than it was granted. Places are reserved
 * for the live nodes that have waited longer (up to a fair share each, max
 * over the nodes that want some): the longest waiter is never kept from a
 * free place, so no node starves and no two wait for each other.
 */
static const char grant_script[] =
	"local self, np = ARGV[1], ARGV[2]\n"
	"local alive = redis.call('EXISTS', np .. self) == 1\n"
	"local tm = redis.call('TIME')\n"
	"local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
	"local out = {}\n"
	"for i, k in ipairs(KEYS) do\n"
	"  local b = 3 + (i - 1) * 3\n"
	"  local max, want, floor = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])\n"
	"  local h = redis.call('HGETALL', k)\n"
	"  local f = {h = {}, w = {}, t = {}}\n"
	"  for j = 1, #h, 2 do\n"
	"    local t = string.sub(h[j], 1, 1)\n"
	"    if f[t] then f[t][string.sub(h[j], 3)] = tonumber(h[j + 1]) end\n"
	"  end\n"
	"  local mine = f.t[self] or now\n"
	"  local used, nwant, ahead = 0, 0, {}\n"
	"  if want > 0 then nwant = 1 end\n"
	"  for n, c in pairs(f.h) do\n"
	"    if n ~= self then\n"
	"      if redis.call('EXISTS', np .. n) == 1 then\n"
	"        used = used + c\n"
	"        if (f.w[n] or 0) > 0 then nwant = nwant + 1 end\n"
	"        local t = f.t[n]\n"
	"        if t and (t < mine or (t == mine and n < self)) then ahead[#ahead + 1] = n end\n"
	"      else\n"
	"        redis.call('HDEL', k, 'h:' .. n, 'w:' .. n, 't:' .. n)\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  local g = 0\n"
	"  if alive then\n"
	"    local fair = math.ceil(max / math.max(nwant, 1))\n"
	"    local keep = 0\n"
	"    for _, n in ipairs(ahead) do\n"
	"      local short = math.min(f.w[n] or 0, fair) - f.h[n]\n"
	"      if short > 0 then keep = keep + short end\n"
	"    end\n"
	"    g = math.max(0, math.min(want, max - used - keep))\n"
	"    local rec = math.max(g, floor)\n"
	"    if rec > 0 or want > 0 then\n"
	"      redis.call('HSET', k, 'h:' .. self, rec, 'w:' .. self, want)\n"
	"      if g < want then redis.call('HSET', k, 't:' .. self, mine)\n"
	"      else redis.call('HDEL', k, 't:' .. self) end\n"
	"      redis.call('PEXPIRE', k, " KEY_TTL_MS ")\n"
	"    else\n"
	"      redis.call('HDEL', k, 'h:' .. self, 'w:' .. self, 't:' .. self)\n"
	"    end\n"
	"  end\n"
	"  out[i] = g\n"
	"end\n"
	"return out\n";

struct held_limit {
	char *name;
	unsigned lent;              /* what the pool was lent */
	/* Dropped from the pool (a job's limit, its chunks done here): its hold is given back. */
	bool gone;
};

struct fp_cluster_limits {
	fp_loop *loop;
	fp_pool *pool;
	fp_cluster *c;
	char *key_prefix;           /* P limit: */
	char *node_prefix;          /* P node: */
	struct held_limit *v;
	size_t n, ngone;
	/* The limits asked for by the script out, in KEYS order (their indexes in v). */
	size_t *asked;
	size_t nasked;
	bool asking, stopped;
	uint64_t last_sync;         /* monotonic ms of the last ask sent */
	fp_timer tick;
};

static void lend(fp_cluster_limits *l, size_t i, unsigned places)
{
	if (l->v[i].lent == places)
		return;
	l->v[i].lent = places;
	fp_pool_limit_lend(l->pool, l->v[i].name, places);
}

static void lend_none(fp_cluster_limits *l)
{
	for (size_t i = 0; i < l->n; i++)
		lend(l, i, 0);
}

/* The pool's limit `name` in v (added, lent none), or -1 on ENOMEM. */
static long slot_of(fp_cluster_limits *l, const char *name)
{
	struct held_limit *v;

	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return (long)i;
	if (!(v = realloc(l->v, (l->n + 1) * sizeof(*v))))
		return -1;
	l->v = v;
	if (!(v[l->n].name = strdup(name)))
		return -1;
	v[l->n].lent = UINT32_MAX;
	v[l->n].gone = false;
	l->n++;
	lend(l, l->n - 1, 0);
	return (long)l->n - 1;
}

static void schedule(fp_cluster_limits *l, uint64_t ms);

/* Forget the limits given back (after an ask that released them was answered). */
static void forget_gone(fp_cluster_limits *l)
{
	size_t i, k = 0;

	for (i = 0; i < l->n; i++) {
		if (l->v[i].gone)
			free(l->v[i].name);
		else
			l->v[k++] = l->v[i];
	}
	l->n = k;
	l->ngone = 0;
}

/* Which of v are still the pool's limits (s[0..n)): the others are gone. -ENOMEM. */
static int mark(fp_cluster_limits *l, const struct fp_limit_stats *s, size_t n)
{
	size_t i;
	long k;

	for (i = 0; i < l->n; i++)
		l->v[i].gone = true;
	for (i = 0; i < n; i++) {
		if ((k = slot_of(l, s[i].name)) < 0)
			return -ENOMEM;
		l->v[k].gone = false;
	}
	l->ngone = 0;
	for (i = 0; i < l->n; i++)
		if (l->v[i].gone) {
			l->v[i].lent = 0;   /* a limit made again of that name starts with none */
			l->ngone++;
		}
	return 0;
}

static void grant_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_limits *l = data;

	(void)r;
	l->asking = false;
	if (l->stopped)
		return;
	if (status < 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements != l->nasked) {
		/* Not granted, or no longer known to be held: start nothing limited. */
		lend_none(l);
	} else {
		for (size_t k = 0; k < reply->elements; k++) {
			const redisReply *g = reply->element[k];

			if (!l->v[l->asked[k]].gone)
				lend(l, l->asked[k], g->type == REDIS_REPLY_INTEGER && g->integer > 0
				     ? (unsigned)g->integer : 0);
		}
		forget_gone(l);
	}
	schedule(l, SYNC_MS);
}

/* What one limit's entry says: its max, what this node wants, and its floor. */
static void limit_args(const struct fp_limit_stats *s, unsigned lent, char *max, char *want,
		       char *floor, size_t len)
{
	uint64_t w = s->running + s->waiting;
	unsigned fl = lent > s->running ? lent : s->running;

	snprintf(max, len, "%u", s->max);
	snprintf(want, len, "%" PRIu64, w < s->max ? w : s->max);
	snprintf(floor, len, "%u", fl);
}

/*
 * Whether an ask is due: a limit wants more than it was lent, or was lent
 * more than it wants (places others may need), or the idle period passed.
 */
static bool due(fp_cluster_limits *l, const struct fp_limit_stats *s, size_t n)
{
	if (l->ngone || fp_now_ms() - l->last_sync >= IDLE_SYNC_MS)
		return true;
	for (size_t i = 0; i < n; i++) {
		long k = slot_of(l, s[i].name);
		uint64_t w = s[i].running + s[i].waiting;

		if (w > s[i].max)
			w = s[i].max;
		if (k >= 0 && w != l->v[k].lent)
			return true;
	}
	return false;
}

/* Entry k of an ask: the pool's limit s[k] (k < n), else the k-n'th gone one. */
static size_t entry_of(fp_cluster_limits *l, const struct fp_limit_stats *s, size_t n, size_t k,
		       size_t *gone_at)
{
	if (k < n)
		return (size_t)slot_of(l, s[k].name);   /* found: mark() made it */
	while (!l->v[*gone_at].gone)
		(*gone_at)++;
	return (*gone_at)++;
}

/* One EVAL for every limit the pool has, and for those it dropped (asking for 0). */
static int ask(fp_cluster_limits *l, const struct fp_limit_stats *s, size_t n)
{
	size_t m = n + l->ngone, argc = 5 + 4 * m, a = 0, k, gone_at = 0;
	const char **argv = calloc(argc, sizeof(*argv));
	size_t *argl = calloc(argc, sizeof(*argl));
	char (*num)[24] = calloc(3 * m + 1, sizeof(*num));
	char **keys = calloc(m + 1, sizeof(*keys));
	size_t *asked = realloc(l->asked, (m + 1) * sizeof(*asked));
	char nkeys[24];
	int r = -ENOMEM;

	if (asked)
		l->asked = asked;
	if (!argv || !argl || !num || !keys || !asked)
		goto out;
	snprintf(nkeys, sizeof(nkeys), "%zu", m);
	argv[a++] = "EVAL";
	argv[a++] = grant_script;
	argv[a++] = nkeys;
	for (k = 0; k < m; k++) {
		asked[k] = entry_of(l, s, n, k, &gone_at);
		if (!(keys[k] = fp__cluster_cat(l->key_prefix, l->v[asked[k]].name)))
			goto out;
		argv[a++] = keys[k];
	}
	argv[a++] = fp_cluster_node_name(l->c);
	argv[a++] = l->node_prefix;
	for (k = 0; k < m; k++) {
		static const struct fp_limit_stats none;   /* a gone limit asks for nothing */

		limit_args(k < n ? &s[k] : &none, k < n ? l->v[asked[k]].lent : 0, num[3 * k],
			   num[3 * k + 1], num[3 * k + 2], sizeof(num[0]));
		argv[a++] = num[3 * k];
		argv[a++] = num[3 * k + 1];
		argv[a++] = num[3 * k + 2];
	}
	for (k = 0; k < a; k++)
		argl[k] = strlen(argv[k]);
	l->nasked = m;
	r = fp_redis_command(fp_cluster_redis(l->c), grant_cb, l, (int)a, argv, argl);
	if (r == 0) {
		l->asking = true;
		l->last_sync = fp_now_ms();
	}
out:
	for (k = 0; keys && k < m; k++)
		free(keys[k]);
	free(keys);
	free(num);
	free(argl);
	free(argv);
	return r;
}

static void tick_cb(fp_timer *t)
{
	fp_cluster_limits *l = t->data;
	struct fp_limit_stats *s;
	size_t n;

	if (l->stopped || l->asking)
		return;
	if (!fp_cluster_connected(l->c)) {
		lend_none(l);
		schedule(l, SYNC_MS);
		return;
	}
	/* Jobs' limits come and go (cluster_run.c): as many as the pool has now. */
	n = fp_pool_limits(l->pool, NULL, 0);
	if (!(s = calloc(n + 1, sizeof(*s)))) {
		schedule(l, SYNC_MS);
		return;
	}
	n = fp_pool_limits(l->pool, s, n);
	if (mark(l, s, n) < 0 || !(n + l->ngone) || !due(l, s, n) || ask(l, s, n) < 0)
		schedule(l, n ? SYNC_MS : IDLE_SYNC_MS);
	free(s);
}

static void schedule(fp_cluster_limits *l, uint64_t ms)
{
	if (!l->stopped)
		fp_timer_start(l->loop, &l->tick, ms, tick_cb);
}

int fp_cluster_limits_new(fp_cluster_limits **out, fp_loop *loop, fp_pool *pool,
			  fp_cluster *c)
{
	fp_cluster_limits *l = calloc(1, sizeof(*l));
	struct fp_limit_stats s[LIMITS_MAX];
	size_t n;

	if (!l)
		return -ENOMEM;
	l->loop = loop;
	l->pool = pool;
	l->c = c;
	l->key_prefix = fp__cluster_cat(fp_cluster_prefix(c), "limit:");
	l->node_prefix = fp__cluster_cat(fp_cluster_prefix(c), "node:");
	if (!l->key_prefix || !l->node_prefix)
		goto fail;
	/* Nothing limited starts before Redis granted it a place. */
	n = fp_pool_limits(pool, s, LIMITS_MAX);
	for (size_t i = 0; i < n && i < LIMITS_MAX; i++)
		if (slot_of(l, s[i].name) < 0)
			goto fail;
	l->tick.data = l;
	schedule(l, 0);
	*out = l;
	return 0;
fail:
	fp_cluster_limits_free(l);
	return -ENOMEM;
}

void fp_cluster_limits_stop(fp_cluster_limits *l)
{
	if (!l)
		return;
	l->stopped = true;
	fp_timer_stop(&l->tick);
}

void fp_cluster_limits_free(fp_cluster_limits *l)
{
	if (!l)
		return;
	fp_timer_stop(&l->tick);
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	free(l->asked);
	free(l->key_prefix);
	free(l->node_prefix);
	free(l);
}
