/*
 * Worker groups (group.h): a group made and freed, its slots, its workers
 * started, its calls dropped; the exec groups checked and made from
 * fp_options.exec; which group serves a task (fp__group_of()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_impl.h"

static int slots_new(struct fp_group *g)
{
	g->slots = calloc(g->opts.workers, sizeof(*g->slots));
	if (!g->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < g->opts.workers; i++) {
		g->slots[i].group = g;
		g->slots[i].index = i;
		g->slots[i].respawn.data = &g->slots[i];
	}
	return 0;
}

int fp__group_spawn_all(struct fp_group *g)
{
	int err = 0;

	for (unsigned i = 0; !err && i < g->opts.workers; i++)
		err = fp__spawn(g, i);
	return err;
}

/*
 * Exec pool names are task prefixes: no two alike, and none may hide a C
 * task whose name starts with it and a dot.
 */
static int exec_check(fp_pool *p, char *msg, size_t len)
{
	const fp_exec_options *x = p->opts.exec;
	size_t i, j, n;

	for (i = 0; i < FP_EXEC_MAX && x[i].name; i++) {
		n = strlen(x[i].name);
		for (j = 0; j < i; j++) {
			if (!strcmp(x[i].name, x[j].name)) {
				snprintf(msg, len, "two exec pools are named '%s'", x[i].name);
				return -EINVAL;
			}
		}
		for (j = 0; j < p->reg.ntasks; j++) {
			const char *t = p->reg.tasks[j].name;

			if (!strncmp(t, x[i].name, n) && t[n] == '.') {
				snprintf(msg, len, "exec pool '%s' would hide task '%s' of module %s",
					 x[i].name, t, p->reg.modules[p->reg.tasks[j].module].name);
				return -EINVAL;
			}
		}
	}
	return 0;
}

void fp__group_free(struct fp_group *g)
{
	if (!g)
		return;
	for (unsigned i = 0; g->slots && i < g->opts.workers; i++)
		fp_timer_stop(&g->slots[i].respawn);
	fp_timer_stop(&g->defer);
	fp_timer_stop(&g->resume);
	fp__group_calls_free(g);
	fp__queue_deinit(&g->queue);
	fp__queue_deinit(&g->failing);
	fp__exec_free(g->exec);
	free(g->task_us);
	free(g->answers);
	free(g->slots);
	free(g);
}

/*
 * Group p->groups[p->ngroups], with p's options (modules and exec programs
 * aside: those are the pool's) and `workers` slots; an exec group's program
 * and limits are its caller's to set before its workers start. At most
 * FP_EXEC_MAX + 1 of them: fp_options has room for no more exec programs.
 */
struct fp_group *fp__group_new(fp_pool *p, unsigned workers)
{
	struct fp_group *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->pool = p;
	g->index = p->ngroups;
	g->loop = p->loop;
	g->opts = p->opts;
	memset(g->opts.exec, 0, sizeof(g->opts.exec));
	memset(g->opts.modules, 0, sizeof(g->opts.modules));
	if (workers)
		g->opts.workers = workers;
	g->log = p->log;
	g->rng = g->index ? p->rng ^ (uintptr_t)g : p->rng;
	if (!g->rng)
		g->rng = 1;
	g->next_frame_id = 1;
	g->defer.data = g;
	g->resume.data = g;
	if (slots_new(g) < 0) {
		free(g);
		return NULL;
	}
	p->groups[p->ngroups++] = g;
	return g;
}

/*
 * An exec group: its own slots, queue, calls and workers on the pool's
 * loop, with the pool's options but for its workers and the limits it sets
 * itself. Made before the zygote, which clones its workers too and so must
 * hold it; its loop is the pool's once that is attached (loop_attach()),
 * its workers are started later, with group 0's.
 */
static int exec_group_new(fp_pool *p, const fp_exec_options *xo, char *msg, size_t len)
{
	struct fp_group *g = fp__group_new(p, xo->workers);
	int err;

	if (!g)
		return -ENOMEM;
	err = fp__exec_new(&g->exec, xo, msg, len);
	if (!err)
		err = fp__exec_limits(xo, &g->opts, msg, len);
	if (err) {
		p->groups[--p->ngroups] = NULL;
		fp__group_free(g);
		return err;
	}
	g->log.prefix = g->exec->prefix;
	return 0;
}

/* Log msg, else err's name, as the pool's failure, and give it to errbuf. */
static int fail_with(fp_pool *p, int err, const char *msg, char *errbuf, size_t errlen)
{
	if (msg[0])
		fp_log_error(&p->log, "%s", msg);
	return fp_errbuf_printf(errbuf, errlen, err, "%s", msg[0] ? msg : fp_strerror(err));
}

/*
 * The exec groups (checked first: exec_check()), before the zygote that
 * clones their workers. On failure the caller frees them
 * (fp__exec_groups_free()).
 */
int fp__exec_groups_new(fp_pool *p, const fp_options *opts, char *errbuf, size_t errlen)
{
	char msg[512] = "";
	int err;

	err = exec_check(p, msg, sizeof(msg));
	for (unsigned i = 0; !err && i < FP_EXEC_MAX && opts->exec[i].name; i++)
		err = exec_group_new(p, &opts->exec[i], msg, sizeof(msg));
	if (err)
		return fail_with(p, err, msg, errbuf, errlen);
	return 0;
}

void fp__exec_groups_free(fp_pool *p)
{
	while (p->ngroups > 1)
		fp__group_free(p->groups[--p->ngroups]);
}

void fp__group_calls_free(struct fp_group *g)
{
	while (g->calls) {
		struct fp_call *c = g->calls;
		g->calls = c->next;
		fp__start_tell(g->pool, &c->start, true);
		fp__call_free(c);
	}
}

bool fp__groups_have_workers(fp_pool *p)
{
	struct fp_group *g;
	unsigned i;

	FP_FOR_GROUPS(g, p, i)
		if (g->workers)
			return true;
	return false;
}

size_t fp__default_chunksize(const struct fp_group *g, size_t n)
{
	/* As Python's Pool.map: about four chunks per worker. */
	size_t per = (size_t)g->opts.workers * 4;
	size_t k = n / per + (n % per ? 1 : 0);

	return k ? k : 1;
}

/*
 * Task names are what users type: an exec group's are NAME.task, and
 * exec_check() made sure no C task begins with an exec group's NAME and a
 * dot, so the name alone says which group serves it, before any of that
 * group's workers announced its tasks.
 */
struct fp_group *fp__group_of(fp_pool *p, const char *task)
{
	const char *dot = strchr(task, '.');

	for (unsigned i = 1; dot && i < p->ngroups; i++) {
		struct fp_exec *x = p->groups[i]->exec;

		if (x->name_len == (size_t)(dot - task) && !memcmp(task, x->name, x->name_len))
			return p->groups[i];
	}
	return p->groups[0];
}
