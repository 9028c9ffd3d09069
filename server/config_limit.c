/*
 * forkpoold's concurrency limits in its configuration: `--limit NAME=N`,
 * `--task-concurrency TASK=N` and `--task-limit TASK=LIMIT` (each
 * repeatable, and each value a comma-separated list too, so that
 * `--task-limit fetch=api,upload=api` reads as it looks), checked against
 * each other once every source is read, and handed to the pool.
 *
 * A stronger source replaces what a weaker one said for the same setting,
 * as for the other lists; a task named twice, in one setting or in both of
 * a task's, is an error naming both places.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config_impl.h"

/* The pool's rule for a limit's name (fp_pool_limit_set()). */
#define LIMIT_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"
#define LIMIT_NAME_MAX 64
/* A task's name as calls give it: a module's, or an exec pool's NAME.task. */
#define TASK_NAME_MAX 128
#define LIMIT_MAX 1000000u

static int set_one(struct fp__config_ctx *x, const struct fp__config_setting *s,
		   struct fp_config_limits *l, const char *where, const char *v, size_t len)
{
	const char *eq = memchr(v, '=', len);
	bool numeric = s->off != FP__CONFIG_OFF(task_limits);
	size_t n = eq ? (size_t)(eq - v) : 0, vlen = eq ? len - n - 1 : 0;
	/* A task's own limit is named after it: its name is a limit's name too. */
	size_t namemax = s->off == FP__CONFIG_OFF(task_limits) ? TASK_NAME_MAX : LIMIT_NAME_MAX;
	struct fp_config_limit *e;
	char q[80], shown[256];
	uint64_t value = 0;
	const char *end;

	snprintf(shown, sizeof(shown), "%.*s", (int)(len < 255 ? len : 255), v);
	if (!eq || !n || n > namemax || strspn(v, LIMIT_CHARS) < n)
		return fp__config_fail(x, where, "expected %s with %s of A-Z a-z 0-9 _ . : -"
				       " (at most %zu), got \"%s\"", s->metavar,
				       s->off == FP__CONFIG_OFF(limits) ? "NAME" : "TASK", namemax,
				       fp__config_quote(shown, q, sizeof(q)));
	if (numeric) {
		char num[32];

		snprintf(num, sizeof(num), "%.*s", (int)(vlen < 31 ? vlen : 31), eq + 1);
		if (!vlen || vlen > 31 || fp__config_parse_u64(num, &value, &end) < 0 || *end ||
		    value < 1 || value > LIMIT_MAX)
			return fp__config_fail(x, where, "in \"%s\", N must be a whole number from 1"
					       " to %u", fp__config_quote(shown, q, sizeof(q)),
					       LIMIT_MAX);
	} else if (!vlen || vlen > LIMIT_NAME_MAX || strspn(eq + 1, LIMIT_CHARS) < vlen) {
		return fp__config_fail(x, where, "in \"%s\", LIMIT must be a --limit's name (A-Z a-z"
				       " 0-9 _ . : -)", fp__config_quote(shown, q, sizeof(q)));
	}
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->v[i].name) == n && !memcmp(l->v[i].name, v, n))
			return fp__config_fail(x, where, "%.*s is named twice (first by %s)",
					       (int)n, v, l->v[i].where);
	if (l->n == FP_CONFIG_LIMITS_MAX)
		return fp__config_fail(x, where, "at most %d are allowed", FP_CONFIG_LIMITS_MAX);
	e = &l->v[l->n++];
	snprintf(e->name, sizeof(e->name), "%.*s", (int)n, v);
	snprintf(e->limit, sizeof(e->limit), "%.*s", numeric ? 0 : (int)vlen, eq + 1);
	e->max = (unsigned)value;
	snprintf(e->where, sizeof(e->where), "%s", where);
	return 0;
}

int fp__config_set_limit(struct fp__config_ctx *x, const struct fp__config_setting *s,
			 enum fp__config_source src, enum fp__config_source *filled,
			 const char *where, const char *v)
{
	struct fp_config_limits *l = (struct fp_config_limits *)((char *)x->c + s->off);
	const char *p = v, *comma;
	int r;

	if (!*v)
		return fp__config_fail(x, where, "expected %s, got an empty value", s->metavar);
	/* A stronger source replaces the list, it does not add to it. */
	if (*filled != src) {
		l->n = 0;
		*filled = src;
	}
	for (;;) {
		comma = strchr(p, ',');
		r = set_one(x, s, l, where, p, comma ? (size_t)(comma - p) : strlen(p));
		if (r < 0 || !comma)
			return r;
		p = comma + 1;
	}
}

static const struct fp_config_limit *find(const struct fp_config_limits *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return &l->v[i];
	return NULL;
}

int fp__config_check_limits(struct fp__config_ctx *x)
{
	const struct fp_config *c = x->c;
	const struct fp_config_limit *e, *o;

	for (size_t i = 0; i < c->task_limits.n; i++) {
		e = &c->task_limits.v[i];
		if (!find(&c->limits, e->limit))
			return fp__config_fail(x, e->where, "task %s names limit %s, which no --limit"
					       " defines", e->name, e->limit);
		if ((o = find(&c->task_concurrency, e->name)))
			return fp__config_fail(x, e->where, "task %s is limited twice (also by %s)",
					       e->name, o->where);
	}
	for (size_t i = 0; i < c->task_concurrency.n; i++) {
		e = &c->task_concurrency.v[i];
		/* A task's own limit is named after it: one name, one limit. */
		if ((o = find(&c->limits, e->name)))
			return fp__config_fail(x, e->where, "task %s's own limit would be named %s,"
					       " a name %s gives a shared limit already", e->name,
					       e->name, o->where);
	}
	return 0;
}

int fp_config_apply_limits(const struct fp_config *c, fp_pool *pool, char *errbuf, size_t errlen)
{
	const struct fp_config_limit *e = NULL;
	size_t i;
	int r = 0;

	for (i = 0; r == 0 && i < c->limits.n; i++) {
		e = &c->limits.v[i];
		r = fp_pool_limit_set(pool, e->name, e->max);
	}
	for (i = 0; r == 0 && i < c->task_concurrency.n; i++) {
		e = &c->task_concurrency.v[i];
		r = fp_pool_task_concurrency(pool, e->name, e->max);
	}
	for (i = 0; r == 0 && i < c->task_limits.n; i++) {
		e = &c->task_limits.v[i];
		r = fp_pool_task_limit(pool, e->name, e->limit);
	}
	/* The configuration was checked: only memory can fail here. */
	if (r < 0 && e)
		snprintf(errbuf, errlen, "%s %s: %s", e->where, e->name, fp_strerror(r));
	return r;
}
