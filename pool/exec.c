/*
 * Exec pools from the master's side: an fp_exec_options entry checked and
 * turned into what the workers inherit (the name, argv for execvp) and the
 * child pool's own limits, and the task list the program announces when it
 * says ready.
 *
 * The command is split here, once, the way a shell splits words and nothing
 * more: blanks separate, '…' quotes literally, "…" quotes with \" and \\,
 * and a backslash outside quotes takes the next byte as it is. No variables,
 * globs or redirections: for those, ask for a shell.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool_impl.h"

#define DEFAULT_STARTUP_MS 10000
#define NAME_MAX_LEN 64

static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > NAME_MAX_LEN)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/*
 * Split `cmd` into words in `block` (at least strlen(cmd) + 1 bytes), one
 * NUL after each; returns the number of words, or -EINVAL for an open quote.
 */
static int split_words(const char *cmd, char *block)
{
	const char *s = cmd;
	char *d = block;
	int n = 0;

	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		if (!*s)
			return n;
		while (*s && *s != ' ' && *s != '\t' && *s != '\n') {
			if (*s == '\'') {
				const char *e = strchr(s + 1, '\'');
				if (!e)
					return -EINVAL;
				memcpy(d, s + 1, (size_t)(e - s - 1));
				d += e - s - 1;
				s = e + 1;
			} else if (*s == '"') {
				for (s++; *s && *s != '"'; s++) {
					if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
						s++;
					*d++ = *s;
				}
				if (!*s)
					return -EINVAL;
				s++;
			} else if (*s == '\\' && s[1]) {
				*d++ = s[1];
				s += 2;
			} else {
				*d++ = *s++;
			}
		}
		*d++ = '\0';
		n++;
	}
}

int fp__exec_new(struct fp_exec **out, const fp_exec_options *o, char *errbuf, size_t errlen)
{
	struct fp_exec *x;
	size_t clen;
	int n, i;
	char *p;

	*out = NULL;
	if (!valid_name(o->name))
		return fp_errbuf_printf(errbuf, errlen, -EINVAL,
					 "exec pool name '%.*s' must be 1 to %d of "
					 "A-Z a-z 0-9 _ -", NAME_MAX_LEN, o->name, NAME_MAX_LEN);
	if (!o->command || !o->command[strspn(o->command, " \t\n")])
		return fp_errbuf_printf(errbuf, errlen, -EINVAL,
					 "exec pool %s: the command is empty", o->name);
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	clen = strlen(o->command);
	x->name = strdup(o->name);
	x->argv_block = malloc(clen + 1 + sizeof("/bin/sh") + sizeof("-c"));
	if (!x->name || !x->argv_block)
		goto err_nomem;
	x->name_len = strlen(x->name);
	x->startup_timeout_ms = o->startup_timeout_ms ? o->startup_timeout_ms : DEFAULT_STARTUP_MS;
	snprintf(x->prefix, sizeof(x->prefix), "exec pool %s: ", x->name);

	if (o->shell) {
		p = x->argv_block;
		memcpy(p, "/bin/sh", sizeof("/bin/sh"));
		memcpy(p + sizeof("/bin/sh"), "-c", sizeof("-c"));
		memcpy(p + sizeof("/bin/sh") + sizeof("-c"), o->command, clen + 1);
		n = 3;
	} else {
		n = split_words(o->command, x->argv_block);
		if (n < 0) {
			fp__exec_free(x);
			return fp_errbuf_printf(errbuf, errlen, -EINVAL,
						 "exec pool %s: unterminated quote in the "
						 "command \"%s\"", o->name, o->command);
		}
	}
	x->argv = calloc((size_t)n + 1, sizeof(char *));
	if (!x->argv)
		goto err_nomem;
	for (i = 0, p = x->argv_block; i < n; i++, p += strlen(p) + 1)
		x->argv[i] = p;
	*out = x;
	return 0;

err_nomem:
	fp__exec_free(x);
	return -ENOMEM;
}

/* 0: the pool's value; FP_EXEC_NO_LIMIT: none (0 in fp_options). */
static uint64_t own_or_pool(uint64_t own, uint64_t pool)
{
	if (own == FP_EXEC_NO_LIMIT)
		return 0;
	return own ? own : pool;
}

int fp__exec_limits(const fp_exec_options *o, fp_options *opts, char *errbuf, size_t errlen)
{
	uint64_t max_tasks, jitter;

	if (o->max_tasks_per_child > UINT_MAX && o->max_tasks_per_child != FP_EXEC_NO_LIMIT)
		return fp_errbuf_printf(errbuf, errlen, -EINVAL, "exec pool %s: max_tasks_per_child "
					 "%llu is over %u", o->name,
					 (unsigned long long)o->max_tasks_per_child, UINT_MAX);
	if (o->max_tasks_jitter > UINT_MAX && o->max_tasks_jitter != FP_EXEC_NO_LIMIT)
		return fp_errbuf_printf(errbuf, errlen, -EINVAL, "exec pool %s: max_tasks_jitter "
					 "%llu is over %u", o->name,
					 (unsigned long long)o->max_tasks_jitter, UINT_MAX);
	if (o->max_rss_bytes > SIZE_MAX && o->max_rss_bytes != FP_EXEC_NO_LIMIT)
		return fp_errbuf_printf(errbuf, errlen, -EINVAL, "exec pool %s: max_rss_bytes is "
					 "too large", o->name);
	max_tasks = own_or_pool(o->max_tasks_per_child, opts->max_tasks_per_child);
	/* A jitter spreads one limit: the pool's goes with the pool's limit only. */
	if (o->max_tasks_jitter)
		jitter = own_or_pool(o->max_tasks_jitter, 0);
	else
		jitter = o->max_tasks_per_child ? 0 : opts->max_tasks_jitter;
	opts->max_tasks_per_child = (unsigned)max_tasks;
	opts->max_tasks_jitter = max_tasks ? (unsigned)jitter : 0;
	opts->max_rss_bytes = (size_t)own_or_pool(o->max_rss_bytes, opts->max_rss_bytes);
	opts->timeout_ms = own_or_pool(o->timeout_ms, opts->timeout_ms);
	return 0;
}

static void free_tasks(struct fp_exec_task *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].name);
		free(t[i].doc);
	}
	free(t);
}

void fp__exec_free(struct fp_exec *x)
{
	if (!x)
		return;
	free_tasks(x->tasks, x->ntasks);
	free(x->argv);
	free(x->argv_block);
	free(x->name);
	free(x);
}

/* One entry of the ready line's list: a name, or an object saying more. */
static int task_from_json(struct fp_exec_task *t, json_t *v)
{
	json_t *name = json_is_string(v) ? v : json_object_get(v, "name");
	json_t *gen = json_object_get(v, "generator"), *doc = json_object_get(v, "doc");

	if (!json_is_string(name) || (gen && !json_is_boolean(gen)) ||
	    (doc && !json_is_null(doc) && !json_is_string(doc)))
		return -EPROTO;
	t->name = strdup(json_string_value(name));
	t->doc = json_is_string(doc) ? strdup(json_string_value(doc)) : NULL;
	t->generator = json_is_true(gen);
	if (!t->name || (json_is_string(doc) && !t->doc))
		return -ENOMEM;
	return 0;
}

int fp__exec_set_tasks(struct fp_exec *x, const char *json, size_t len)
{
	json_t *a = json_loadb(json, len, 0, NULL), *v;
	struct fp_exec_task *tasks = NULL;
	size_t i, n = 0;
	int err = -EPROTO;

	if (!a || !json_is_array(a))
		goto err;
	tasks = calloc(json_array_size(a) ? json_array_size(a) : 1, sizeof(*tasks));
	if (!tasks) {
		err = -ENOMEM;
		goto err;
	}
	json_array_foreach(a, i, v) {
		n = i + 1;
		if ((err = task_from_json(&tasks[i], v)) < 0)
			goto err;
	}
	json_decref(a);
	free_tasks(x->tasks, x->ntasks);
	x->tasks = tasks;
	x->ntasks = n;
	return 0;
err:
	free_tasks(tasks, n);
	json_decref(a);
	return err;
}

const struct fp_exec_task *fp__exec_task(const struct fp_exec *x, const char *task)
{
	for (size_t i = 0; i < x->ntasks; i++)
		if (!strcmp(x->tasks[i].name, task))
			return &x->tasks[i];
	return NULL;
}

int fp__exec_has_task(const struct fp_exec *x, const char *task)
{
	if (!x->tasks)
		return -1;
	return fp__exec_task(x, task) ? 1 : 0;
}
