/*
 * forkpoold's exec pools in its configuration: NAME=COMMAND, and each
 * pool's own settings, `N` for every exec pool or `NAME=N` for one (see
 * config.h), turned into the fp_exec_options the pool takes.
 *
 * Sources are applied weakest first, so a later value for the same N or
 * NAME simply replaces the one before; NAME=N and N are kept apart, and
 * NAME=N wins for pool NAME when the pools are made.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config_impl.h"

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
#define NAME_MAX_LEN 64

int fp__config_check_exec(struct fp__config_ctx *x, const char *where, const char *v)
{
	const char *eq = strchr(v, '=');
	size_t n = eq ? (size_t)(eq - v) : 0;
	char q[80];

	if (!eq || !n || n > NAME_MAX_LEN || strspn(v, NAME_CHARS) != n)
		return fp__config_fail(x, where, "expected NAME=COMMAND with NAME of A-Z a-z 0-9 _ -"
				       " (at most 64), got \"%s\"", fp__config_quote(v, q, sizeof(q)));
	if (!eq[1 + strspn(eq + 1, " \t")])
		return fp__config_fail(x, where, "the command after \"%.*s=\" is empty", (int)n, v);
	return 0;
}

int fp__config_set_exec_uint(struct fp__config_ctx *x, const struct fp__config_setting *s,
			     const char *where, const char *v)
{
	struct fp_config_exec_value *field = (struct fp_config_exec_value *)((char *)x->c + s->off);
	const char *eq = strchr(v, '='), *num = eq ? eq + 1 : v;
	size_t n = eq ? (size_t)(eq - v) : 0, i;
	char q[80], at[160];
	uint64_t value;
	int r;

	if (eq && (!n || n > NAME_MAX_LEN || strspn(v, NAME_CHARS) != n))
		return fp__config_fail(x, where, "expected %s or NAME=%s with NAME an exec pool's"
				       " name (A-Z a-z 0-9 _ -), got \"%s\"", s->metavar,
				       s->metavar, fp__config_quote(v, q, sizeof(q)));
	/* The message names the pool when the value was for one. */
	if (eq)
		snprintf(at, sizeof(at), "%s (exec pool %.*s)", where, (int)n, v);
	else
		snprintf(at, sizeof(at), "%s", where);
	r = fp__config_number(x, s, at, num, v, &value);
	if (r < 0)
		return r;
	if (!eq) {
		field->all = value;
		field->all_set = true;
		return 0;
	}
	for (i = 0; i < field->n; i++)
		if (strlen(field->by_name[i].name) == n && !memcmp(field->by_name[i].name, v, n))
			break;
	if (i == FP_EXEC_MAX)
		return fp__config_fail(x, where, "names at most %d exec pools", FP_EXEC_MAX);
	if (i == field->n)
		field->n++;
	snprintf(field->by_name[i].name, sizeof(field->by_name[i].name), "%.*s", (int)n, v);
	snprintf(field->by_name[i].where, sizeof(field->by_name[i].where), "%s", where);
	field->by_name[i].value = value;
	return 0;
}

/* Pool `name`'s value: its own, else the one for all; false when neither. */
static bool exec_value(const struct fp_config_exec_value *v, const char *name, uint64_t *out)
{
	for (size_t i = 0; i < v->n; i++) {
		if (!strcmp(v->by_name[i].name, name)) {
			*out = v->by_name[i].value;
			return true;
		}
	}
	*out = v->all_set ? v->all : 0;
	return v->all_set;
}

/* The name of exec pool i, in the order --exec then --exec-shell. */
static void pool_name(const struct fp_config *c, size_t i, char *buf, size_t len)
{
	const char *v = i < c->nexec ? c->exec[i] : c->exec_shell[i - c->nexec];
	const char *eq = strchr(v, '=');

	snprintf(buf, len, "%.*s", (int)(eq - v), v);
}

static bool pool_exists(const struct fp_config *c, const char *name)
{
	char have[72];

	for (size_t i = 0; i < c->nexec + c->nexec_shell; i++) {
		pool_name(c, i, have, sizeof(have));
		if (!strcmp(have, name))
			return true;
	}
	return false;
}

int fp__config_check_exec_pools(struct fp__config_ctx *x)
{
	const struct fp_config *c = x->c;
	const struct fp_config_exec_value *values[] = {
		&c->exec_workers, &c->exec_startup_timeout_ms, &c->exec_max_tasks_per_child,
		&c->exec_max_tasks_jitter, &c->exec_max_rss_mb, &c->exec_task_timeout_ms,
	};
	char name[72];
	uint64_t max, jitter;
	size_t i, j;

	if (c->nexec + c->nexec_shell > FP_EXEC_MAX)
		return fp__config_fail(x, "--exec", "at most %d exec pools are allowed", FP_EXEC_MAX);
	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		for (j = 0; j < values[i]->n; j++) {
			const struct fp_config_exec_entry *e = &values[i]->by_name[j];

			if (!pool_exists(c, e->name))
				return fp__config_fail(x, e->where, "no exec pool is named \"%s\" (--exec"
						       " or --exec-shell %s=COMMAND makes one)",
						       e->name, e->name);
		}
	}
	/* As --max-tasks-jitter: a jitter spreads a limit, so one must be there. */
	for (i = 0; i < c->nexec + c->nexec_shell; i++) {
		pool_name(c, i, name, sizeof(name));
		if (!exec_value(&c->exec_max_tasks_jitter, name, &jitter) || !jitter)
			continue;
		if (exec_value(&c->exec_max_tasks_per_child, name, &max) ? max
		    : c->max_tasks_per_child)
			continue;
		return fp__config_fail(x, "--exec-max-tasks-jitter", "exec pool %s has no max tasks"
				       " per child to spread (--exec-max-tasks-per-child %s=N or"
				       " --max-tasks-per-child)", name, name);
	}
	return 0;
}

/* Set: its own value, and 0 meaning none; unset: 0, the pool's. */
static uint64_t limit(const struct fp_config_exec_value *v, const char *name, uint64_t scale)
{
	uint64_t n;

	if (!exec_value(v, name, &n))
		return 0;
	return n ? n * scale : FP_EXEC_NO_LIMIT;
}

size_t fp_config_exec_pools(const struct fp_config *c, fp_exec_options out[FP_EXEC_MAX],
			    char names[FP_EXEC_MAX][72])
{
	size_t i, n = c->nexec + c->nexec_shell;
	uint64_t v;

	memset(out, 0, FP_EXEC_MAX * sizeof(*out));
	if (n > FP_EXEC_MAX)
		n = FP_EXEC_MAX;
	for (i = 0; i < n; i++) {
		const char *spec = i < c->nexec ? c->exec[i] : c->exec_shell[i - c->nexec];
		fp_exec_options *o = &out[i];

		pool_name(c, i, names[i], sizeof(names[i]));
		o->name = names[i];
		o->command = strchr(spec, '=') + 1;
		o->shell = i >= c->nexec;
		exec_value(&c->exec_workers, names[i], &v);
		o->workers = (unsigned)v;
		exec_value(&c->exec_startup_timeout_ms, names[i], &v);
		o->startup_timeout_ms = v;
		o->max_tasks_per_child = limit(&c->exec_max_tasks_per_child, names[i], 1);
		o->max_tasks_jitter = limit(&c->exec_max_tasks_jitter, names[i], 1);
		o->max_rss_bytes = limit(&c->exec_max_rss_mb, names[i], 1u << 20);
		o->timeout_ms = limit(&c->exec_task_timeout_ms, names[i], 1);
	}
	return n;
}
