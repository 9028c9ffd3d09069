/*
 * The embedding API: options, the pool's life, calls, blocking forms,
 * statistics. The machinery is in dispatch.c and worker.c.
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cancel.h"
#include "forkpool/loop.h"
#include "pipeline.h"
#include "kv.h"
#include "locks.h"
#include "pool_impl.h"

#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_GRACE_MS 2000
#define DEFAULT_MAX_PAYLOAD (64u << 20)
/* The frame length field is 32 bits, and a task name rides along. */
#define MAX_PAYLOAD_CEILING (UINT32_MAX - 4096u)

void fp_options_init(fp_options *o)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ms = DEFAULT_TIMEOUT_MS;
	o->kill_grace_ms = DEFAULT_GRACE_MS;
	o->max_payload = DEFAULT_MAX_PAYLOAD;
	o->backend = FP_LOOP_AUTO;
	o->log_level = FP_LOG_WARN;
}

static void calls_free_all(struct fp_group *g);

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

static int spawn_all(struct fp_group *g)
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

static void group_free(struct fp_group *g)
{
	if (!g)
		return;
	for (unsigned i = 0; g->slots && i < g->opts.workers; i++)
		fp_timer_stop(&g->slots[i].respawn);
	fp_timer_stop(&g->defer);
	fp_timer_stop(&g->resume);
	calls_free_all(g);
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
static struct fp_group *group_new(fp_pool *p, unsigned workers)
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
	struct fp_group *g = group_new(p, xo->workers);
	int err;

	if (!g)
		return -ENOMEM;
	err = fp__exec_new(&g->exec, xo, msg, len);
	if (!err)
		err = fp__exec_limits(xo, &g->opts, msg, len);
	if (err) {
		p->groups[--p->ngroups] = NULL;
		group_free(g);
		return err;
	}
	g->log.prefix = g->exec->prefix;
	return 0;
}

/* A pool with its options' defaults, nothing acquired yet but itself. */
static fp_pool *pool_alloc(const fp_options *opts)
{
	fp_pool *p = calloc(1, sizeof(*p));
	long ncpu;

	if (!p)
		return NULL;
	p->opts = *opts;
	p->log = (struct fp_logger){ opts->log, opts->log_data, opts->log_level, NULL };
	p->master_pid = getpid();
	p->rng = ((uint64_t)p->master_pid << 32) ^ fp_now_ns() ^ (uintptr_t)p;
	if (!p->rng)
		p->rng = 1;
	p->next_call_id = 1;
	fp_registry_init(&p->reg);
	p->sigchld.data = p;
	p->shutdown_timer.data = p;
	p->start_timer.data = p;
	if (!p->opts.workers) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		p->opts.workers = ncpu > 0 ? (unsigned)ncpu : 1;
	}
	if (!p->opts.max_payload)
		p->opts.max_payload = DEFAULT_MAX_PAYLOAD;
	/* Group 0: the C modules' workers. */
	if (!group_new(p, 0)) {
		free(p);
		return NULL;
	}
	return p;
}

/*
 * Our own copies of the module paths, then the registry: the demo module
 * and each of them, loaded. What it made is modules_free()'s to undo.
 */
static int modules_load(fp_pool *p, const fp_options *opts, char *errbuf, size_t errlen)
{
	char msg[512] = "";
	unsigned i, nmod = 0;
	int err;

	while (nmod < FP_MODULES_MAX && opts->modules[nmod])
		nmod++;
	p->module_paths = calloc(nmod + 1, sizeof(char *));
	if (!p->module_paths)
		return -ENOMEM;
	for (i = 0; i < nmod; i++) {
		p->module_paths[i] = strdup(opts->modules[i]);
		if (!p->module_paths[i])
			return -ENOMEM;
		p->opts.modules[i] = p->module_paths[i];
	}
	err = fp_registry_add(&p->reg, NULL, &fp__demo_module, msg, sizeof(msg));
	for (i = 0; !err && i < nmod; i++)
		err = fp_registry_add(&p->reg, p->module_paths[i], NULL, msg, sizeof(msg));
	if (!err)
		err = fp_registry_load(&p->reg, msg, sizeof(msg));
	if (err) {
		fp_log_error(&p->log, "%s", msg[0] ? msg : fp_strerror(err));
		fp_errbuf_printf(errbuf, errlen, err, "%s", msg[0] ? msg : fp_strerror(err));
	}
	return err;
}

static void modules_free(fp_pool *p)
{
	fp_registry_deinit(&p->reg);
	for (unsigned i = 0; p->module_paths && p->module_paths[i]; i++)
		free(p->module_paths[i]);
	free(p->module_paths);
}

/* The caller's loop, or one of the pool's own (p->own_loop). */
static int loop_attach(fp_pool *p, fp_loop *loop, char *errbuf, size_t errlen)
{
	int err;

	if (loop) {
		p->loop = loop;
	} else {
		err = fp_loop_new(&p->loop, p->opts.backend);
		if (err) {
			fp_log_error(&p->log, "cannot start the event loop: %s", fp_strerror(err));
			return fp_errbuf_printf(errbuf, errlen, err,
						"cannot start the event loop: %s", fp_strerror(err));
		}
		p->own_loop = true;
		/* A loop the caller made is the caller's to name: each fact once. */
		fp_log_info(&p->log, "event loop backend: %s", fp_loop_backend_name(p->loop));
	}
	for (unsigned i = 0; i < p->ngroups; i++)
		p->groups[i]->loop = p->loop;
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
 * clones their workers. On failure the caller frees them (exec_groups_free()).
 */
static int exec_groups_new(fp_pool *p, const fp_options *opts, char *errbuf, size_t errlen)
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

static void exec_groups_free(fp_pool *p)
{
	while (p->ngroups > 1)
		group_free(p->groups[--p->ngroups]);
}

/* Every group's workers. On failure the caller frees p. */
static int workers_start(fp_pool *p, const fp_options *opts, char *errbuf, size_t errlen)
{
	struct fp_group *c;
	unsigned i;
	int err = 0;

	for (i = 1; i < p->ngroups; i++) {
		const fp_exec_options *xo = &opts->exec[i - 1];

		c = p->groups[i];

		fp_log_info(&c->log, "%u workers running %s%s (max tasks per child %u + %u, "
			    "max RSS %zu KiB, timeout %llu ms; 0: none)", c->opts.workers,
			    xo->shell ? "/bin/sh -c " : "", xo->command,
			    c->opts.max_tasks_per_child, c->opts.max_tasks_jitter,
			    c->opts.max_rss_bytes >> 10, (unsigned long long)c->opts.timeout_ms);
	}
	FP_FOR_GROUPS(c, p, i)
		if ((err = spawn_all(c)))
			break;
	if (err)
		return fp_errbuf_printf(errbuf, errlen, err, "cannot fork a worker: %s",
					fp_strerror(err));
	return 0;
}

int fp_pool_new(fp_pool **out, fp_loop *loop, const fp_options *opts,
		char *errbuf, size_t errlen)
{
	fp_pool *p;
	int err;

	*out = NULL;
	if (errbuf && errlen)
		errbuf[0] = '\0';
	p = pool_alloc(opts);
	if (!p)
		return -ENOMEM;
	if (p->opts.max_payload > MAX_PAYLOAD_CEILING) {
		err = fp_errbuf_printf(errbuf, errlen, -EINVAL, "max_payload is over the 4 GiB limit");
		goto err_free;
	}
	err = modules_load(p, opts, errbuf, errlen);
	if (err)
		goto err_modules;
	err = exec_groups_new(p, opts, errbuf, errlen);
	if (err)
		goto err_groups;

	/*
	 * The zygote now, while the master is small: the modules are loaded
	 * and the exec groups made, and nothing else is here yet (no loop of
	 * our own, no workers, no calls). Without one, workers are forked by
	 * the master.
	 */
	p->zygote_off = !fp__zygote_wanted();
	if (!p->zygote_off && (err = fp__zygote_start(p)) < 0)
		fp_log_warn(&p->log, "cannot start a zygote, forking workers in the master: %s",
			    fp_strerror(err));

	err = loop_attach(p, loop, errbuf, errlen);
	if (err)
		goto err_groups;
	err = fp_signal_start(p->loop, &p->sigchld, SIGCHLD, fp__reap);
	if (err) {
		fp_errbuf_printf(errbuf, errlen, err, "cannot watch SIGCHLD: %s", fp_strerror(err));
		goto err_loop;
	}
	err = workers_start(p, opts, errbuf, errlen);
	if (err) {
		/* Take down the ones that started. */
		fp__zygote_watch(p);
		fp_pool_free(p);
		return err;
	}
	/* A new pool lists its workers with their pids, as when it forked them. */
	fp__zygote_collect(p, 5000);
	if ((err = fp__zygote_watch(p)) < 0)
		fp_log_warn(&p->log, "cannot watch the zygote, forking workers in the master: %s",
			    fp_strerror(err));
	*out = p;
	return 0;

err_loop:
	if (p->own_loop)
		fp_loop_free(p->loop);
err_groups:
	fp__zygote_free_all(p);
	exec_groups_free(p);
err_modules:
	modules_free(p);
err_free:
	group_free(p->groups[0]);
	free(p);
	return err;
}

fp_loop *fp_pool_loop(fp_pool *p)
{
	return p->loop;
}

static void calls_free_all(struct fp_group *g)
{
	while (g->calls) {
		struct fp_call *c = g->calls;
		g->calls = c->next;
		fp__start_tell(g->pool, &c->start, true);
		fp__call_free(c);
	}
}

void fp_pool_free(fp_pool *p)
{
	unsigned i;

	if (!p)
		return;
	if (p->state != FP_POOL_STOPPED)
		fp_pool_shutdown(p, 0);
	exec_groups_free(p);
	free(p->task_list);
	free(p->task_names);
	fp__kv_free(p->kv);
	fp__limits_deinit(&p->limits);
	fp__locks_free(p->locks);
	fp_timer_stop(&p->shutdown_timer);
	fp_timer_stop(&p->start_timer);
	p->starting = p->starting_tail = NULL;
	fp_signal_stop(&p->sigchld);
	/* Nothing is left after a shutdown; this only settles a failed fp_pool_new. */
	fp__zygote_free_all(p);
	calls_free_all(p->groups[0]);
	fp__pipes_free_all(p);
	group_free(p->groups[0]);
	fp_registry_deinit(&p->reg);
	if (p->own_loop)
		fp_loop_free(p->loop);
	for (i = 0; p->module_paths && p->module_paths[i]; i++)
		free(p->module_paths[i]);
	free(p->module_paths);
	free(p);
}

int fp_pool_run(fp_pool *p)
{
	return fp_loop_run(p->loop);
}

void fp_pool_stop(fp_pool *p)
{
	fp_loop_stop(p->loop);
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

static void shutdown_deadline_cb(fp_timer *t)
{
	fp_pool *p = t->data;
	struct fp_group *g;
	struct fp_worker *w;
	unsigned i;

	FP_FOR_GROUPS(g, p, i)
		for (w = g->workers; w; w = w->next)
			if (!fp__worker_exited(w) && !w->sigkilled)
				fp__worker_kill(w, SIGKILL, FP_KILL_SHUTDOWN);
	fp__zygote_kill_all(p);
}

int fp_pool_shutdown(fp_pool *p, uint64_t deadline_ms)
{
	struct fp_worker *w;
	struct fp_group *g;
	unsigned i, k;

	if (p->state == FP_POOL_STOPPED)
		return 0;
	p->state = FP_POOL_STOPPING;
	FP_FOR_GROUPS(g, p, k) {
		g->state = FP_POOL_STOPPING;
		for (i = 0; i < g->opts.workers; i++)
			fp_timer_stop(&g->slots[i].respawn);
		fp__queue_fail(g, NULL, FP_ITEM_CANCELLED,
			       "cancelled: the pool shut down before the item started");
		for (w = g->workers; w; w = w->next)
			fp__worker_quit(w);
	}
	/* It answers what it was asked, then leaves; the answers are waited for. */
	fp__zygote_retire(p);
	if (deadline_ms)
		fp_timer_start(p->loop, &p->shutdown_timer, deadline_ms, shutdown_deadline_cb);
	else
		shutdown_deadline_cb(&p->shutdown_timer);
	while (fp__groups_have_workers(p) || p->zygotes)
		fp_loop_run(p->loop);
	fp_timer_stop(&p->shutdown_timer);
	FP_FOR_GROUPS(g, p, k) {
		fp__deliver_failing(g);
		g->state = FP_POOL_STOPPED;
	}
	p->state = FP_POOL_STOPPED;
	return 0;
}

int fp_pool_reload(fp_pool *root)
{
	struct fp_registry fresh, old;
	struct fp_worker *w;
	struct fp_group *g;
	char msg[512] = "";
	fp_pool *p = root;
	unsigned i;
	int err;

	if (p->state != FP_POOL_RUNNING)
		return FP_ESTOPPED;
	/*
	 * Modules first, from their files again. If one fails, nothing
	 * changes: the old modules and workers go on, and the error is told.
	 */
	err = fp_registry_reload(&fresh, &p->reg, msg, sizeof(msg));
	if (err) {
		fp_log_error(&p->log, "reload refused, the running modules stay: %s",
			     msg[0] ? msg : fp_strerror(err));
		return err;
	}
	old = root->reg;
	root->reg = fresh;
	fp_registry_deinit(&old);
	/* Task indices of the old registry mean nothing now. */
	p->reg_gen++;
	/*
	 * The zygote holds the old modules: a new one forked now holds the
	 * new ones, and the old one leaves once it has answered.
	 */
	if (!p->zygote_off && (err = fp__zygote_start(p)) < 0)
		fp_log_error(&p->log, "cannot start a zygote, forking workers in the master: %s",
			     fp_strerror(err));
	/*
	 * Successors first, then ask the old ones to leave after their
	 * current item: never fewer than N able workers meanwhile. An exec
	 * group's successors start its program again from its file.
	 */
	FP_FOR_GROUPS(g, root, i) {
		for (w = g->workers; w; w = w->next) {
			if (!fp__worker_able(w))
				continue;
			fp__worker_leave(w);
			/* A standby successor is replaced in its own turn. */
			if (!w->has_successor)
				fp__spawn_successor(w);
			fp__worker_quit(w);
		}
	}
	return 0;
}

/* --- calls --------------------------------------------------------------- */

/* --- a call's start ------------------------------------------------------ */

static void starts_cb(fp_timer *t)
{
	fp_pool *root = t->data;

	while (root->starting)
		fp__start_tell(root, root->starting, false);
}

void fp__start_note(fp_pool *root, struct fp_start_note *sn)
{
	sn->started = true;
	if (!sn->cb)
		return;
	/* Oldest first: calls are told in the order they started. */
	sn->next = NULL;
	sn->prev = root->starting_tail;
	if (root->starting_tail)
		root->starting_tail->next = sn;
	else
		root->starting = sn;
	root->starting_tail = sn;
	sn->queued = true;
	/* Should the timer not start, the call's first result tells it. */
	if (!fp_timer_active(&root->start_timer))
		fp_timer_start(root->loop, &root->start_timer, 0, starts_cb);
}

void fp__start_tell(fp_pool *root, struct fp_start_note *sn, bool forget)
{
	if (!sn->queued)
		return;
	if (sn->prev)
		sn->prev->next = sn->next;
	else
		root->starting = sn->next;
	if (sn->next)
		sn->next->prev = sn->prev;
	else
		root->starting_tail = sn->prev;
	sn->prev = sn->next = NULL;
	sn->queued = false;
	if (!forget)
		sn->cb(root, sn->id, sn->data);
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

static int call_submit(fp_pool *p, const char *task, const struct fp_buf *items,
		       size_t n, const fp_call_options *o, const struct fp_call_spec *spec,
		       uint64_t *call_id)
{
	static const fp_call_options defaults = FP_CALL_OPTIONS_DEFAULT;
	const struct fp_registry_task *t;
	struct fp_group *g;
	struct fp_call *c;
	size_t i, run_start = 0, max = p->opts.max_payload;
	int err = 0;

	if (!task)
		return FP_EUNKNOWN_TASK;
	g = fp__group_of(p, task);
	if (g->state != FP_POOL_RUNNING)
		return FP_ESTOPPED;
	if (g->unavailable)
		return FP_EUNAVAILABLE;
	if (g->exec) {
		/* Known once a worker said ready; until then its worker decides. */
		if (fp__exec_has_task(g->exec, task + g->exec->name_len + 1) == 0)
			return FP_EUNKNOWN_TASK;
		t = NULL;
	} else if (!(t = fp_registry_find(&p->reg, task))) {
		return FP_EUNKNOWN_TASK;
	}
	if (n > UINT32_MAX)
		return -E2BIG;
	if (!o)
		o = &defaults;
	err = fp__call_new(&c, g, t, task, items, n, o, spec);
	if (err)
		return err;

	/* Queue runs of items, leaving out those too large to send. */
	for (i = 0; i <= n && !err; i++) {
		/* The common case in a tight loop: a million items pass it. */
		while (i < n && items[i].len <= max)
			i++;
		err = fp__queue_push(&g->queue, c, (uint32_t)run_start,
				     (uint32_t)(i - run_start), false);
		if (!err && i < n)
			err = fp__fail_later(g, c, (uint32_t)i, 1, FP_ITEM_TOO_LARGE,
					     "argument is over the pool's max_payload");
		run_start = i + 1;
	}
	if (!err && n == 0 && !fp_timer_active(&g->defer))
		err = fp__fail_later(g, c, 0, 0, FP_ITEM_OK, NULL);
	if (err) {
		/* Undo: nothing of this call may stay queued. */
		fp__queue_fail(g, c, FP_ITEM_CANCELLED, "cancelled");
		c->on_item = NULL;
		c->on_items = NULL;
		c->on_done = NULL;
		c->start.cb = NULL;
		c->cancelled = true;
		return err;
	}
	if (call_id)
		*call_id = c->id;
	fp__dispatch(g);
	return 0;
}

int fp_pool_apply_async(fp_pool *p, const char *task, const char *args, size_t args_len,
			const fp_call_options *opts, fp_item_cb on_item,
			fp_done_cb on_done, void *data, uint64_t *call_id)
{
	struct fp_buf b = { args, args_len };
	struct fp_call_spec spec = { .on_item = on_item, .on_done = on_done, .data = data };

	return call_submit(p, task, &b, 1, opts, &spec, call_id);
}

int fp_pool_map_async(fp_pool *p, const char *task, const struct fp_buf *items,
		      size_t n, const fp_call_options *opts, fp_item_cb on_item,
		      fp_done_cb on_done, void *data, uint64_t *call_id)
{
	struct fp_call_spec spec = { .on_item = on_item, .on_done = on_done, .data = data };

	return call_submit(p, task, items, n, opts, &spec, call_id);
}

int fp_pool_map_borrow_async(fp_pool *p, const char *task, const struct fp_buf *items,
			     size_t n, const fp_call_options *opts, fp_items_cb on_items,
			     fp_done_cb on_done, void *data, uint64_t *call_id)
{
	struct fp_call_spec spec = {
		.on_items = on_items, .on_done = on_done, .data = data, .borrow = true,
	};

	return call_submit(p, task, items, n, opts, &spec, call_id);
}

int fp_pool_cancel(fp_pool *p, uint64_t call_id)
{
	struct fp_call *c = NULL;
	struct fp_worker *w;
	struct fp_group *g;
	unsigned i;

	FP_FOR_GROUPS(g, p, i) {
		for (c = g->calls; c && c->id != call_id; c = c->next)
			;
		if (c)
			break;
	}
	if (!c)
		return fp__pipe_cancel(p, call_id);
	if (c->cancelled)
		return -ENOENT;
	g = c->group;
	c->cancelled = true;
	fp__queue_fail(g, c, FP_ITEM_CANCELLED, "cancelled");
	/*
	 * Only workers with items of this call still unanswered (a chunk may
	 * hold several calls; the others' items go back to the queue), and a
	 * worker is never reaped before we stop signalling it, so the pid is
	 * the one we mean.
	 */
	for (w = g->workers; w; w = w->next) {
		uint64_t cur;
		uint32_t index;
		unsigned hop;

		if (fp__worker_exited(w) || !fp__worker_holds(w, c))
			continue;
		/* Its task may see fp_cancelled() and stop by itself within the grace. */
		cur = atomic_load_explicit(&w->shm->current, memory_order_acquire);
		fp__worker_stop(w, FP_KILL_CANCEL, fp__worker_item(w, cur, &index, &hop) == c);
	}
	return 0;
}

/* --- blocking forms ------------------------------------------------------ */

/*
 * fp_pool_map()'s results live in one block: a header, the array, and the
 * text of every value and message in pages chained from the header. A
 * million results cost a few dozen allocations instead of two million.
 */
#define RESULT_PAGE_SIZE (1u << 20)

struct result_page {
	struct result_page *next;
	size_t used, cap;
	char data[];
};

struct results_block {
	struct result_page *pages;
	struct fp_result r[];
};

struct sync_wait {
	struct fp_result *results;
	struct results_block *block;   /* map; NULL for apply */
	bool done;
	bool oom;
};

/* `len` bytes in b's open page (a page of their own when they would not fit one). */
static char *block_reserve(struct results_block *b, size_t len)
{
	struct result_page *pg = b->pages;
	char *d;

	if (!pg || pg->cap - pg->used < len) {
		size_t cap = len > RESULT_PAGE_SIZE ? len : RESULT_PAGE_SIZE;
		pg = fp_mem_alloc(sizeof(*pg) + cap);
		if (!pg)
			return NULL;
		pg->cap = cap;
		pg->used = 0;
		/* A page too big to share goes second, keeping the open page first. */
		if (cap > RESULT_PAGE_SIZE && b->pages) {
			pg->next = b->pages->next;
			b->pages->next = pg;
		} else {
			pg->next = b->pages;
			b->pages = pg;
		}
	}
	d = pg->data + pg->used;
	pg->used += len;
	return d;
}

static char *block_copy(struct results_block *b, const char *s, size_t len)
{
	char *d = block_reserve(b, len + 1);

	if (d) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static char *dup_bytes(const char *s, size_t len)
{
	char *d = malloc(len + 1);

	if (d) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static void sync_item(fp_pool *p, uint64_t id, const struct fp_result *r, void *data)
{
	struct sync_wait *sw = data;
	struct fp_result *dst = &sw->results[r->index];
	const char *msg = r->message, *tb = r->traceback;

	*dst = *r;
	if (sw->block) {
		dst->value = r->value ? block_copy(sw->block, r->value, r->value_len) : NULL;
		dst->message = msg ? block_copy(sw->block, msg, strlen(msg)) : NULL;
		dst->traceback = tb ? block_copy(sw->block, tb, strlen(tb)) : NULL;
	} else {
		dst->value = r->value ? dup_bytes(r->value, r->value_len) : NULL;
		dst->message = msg ? dup_bytes(msg, strlen(msg)) : NULL;
		dst->traceback = tb ? dup_bytes(tb, strlen(tb)) : NULL;
	}
	if ((r->value && !dst->value) || (msg && !dst->message) || (tb && !dst->traceback))
		sw->oom = true;
}

/* fp_pool_map()'s: a run's values copied into the block with one reservation. */
static void sync_items(fp_pool *p, uint64_t id, const struct fp_result *r, size_t n, void *data)
{
	struct sync_wait *sw = data;
	size_t i, bytes = 0;
	char *d;

	for (i = 0; i < n; i++)
		if (r[i].value)
			bytes += r[i].value_len + 1;
	d = bytes ? block_reserve(sw->block, bytes) : NULL;
	for (i = 0; i < n; i++) {
		struct fp_result *dst = &sw->results[r[i].index];

		if (r[i].message || r[i].traceback || (r[i].value && !d)) {
			/* Failures are few: each on its own, as fp_pool_apply() does. */
			sync_item(p, id, &r[i], data);
			continue;
		}
		*dst = r[i];
		if (r[i].value) {
			memcpy(d, r[i].value, r[i].value_len);
			d[r[i].value_len] = '\0';
			dst->value = d;
			d += r[i].value_len + 1;
		}
	}
}

static void sync_done(fp_pool *p, const struct fp_call_summary *s, void *data)
{
	struct sync_wait *sw = data;

	sw->done = true;
	fp_loop_stop(p->loop);
}

/*
 * Blocking: the call borrows the caller's items, which cannot change
 * before it returns; a map takes its results in runs.
 */
static int sync_run(fp_pool *p, const char *task, const struct fp_buf *items, size_t n,
		    const fp_call_options *opts, struct sync_wait *sw)
{
	struct fp_call_spec spec = {
		.on_item = sw->block ? NULL : sync_item,
		.on_items = sw->block ? sync_items : NULL,
		.on_done = sync_done,
		.data = sw,
		.borrow = true,
	};
	int err = call_submit(p, task, items, n, opts, &spec, NULL);

	if (err)
		return err;
	while (!sw->done)
		fp_loop_run(p->loop);
	return sw->oom ? -ENOMEM : 0;
}

int fp_pool_apply(fp_pool *p, const char *task, const char *args, size_t args_len,
		  const fp_call_options *opts, struct fp_result *out)
{
	struct fp_buf b = { args, args_len };
	struct sync_wait sw = { .results = out };
	int err;

	memset(out, 0, sizeof(*out));
	err = sync_run(p, task, &b, 1, opts, &sw);
	if (err)
		fp_result_clear(out);
	return err;
}

int fp_pool_map(fp_pool *p, const char *task, const struct fp_buf *items, size_t n,
		const fp_call_options *opts, struct fp_result **out)
{
	struct results_block *b = fp_mem_alloc(sizeof(*b) + (n ? n : 1) * sizeof(struct fp_result));
	struct sync_wait sw = { .block = b };
	int err;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	sw.results = b->r;
	err = sync_run(p, task, items, n, opts, &sw);
	if (err) {
		fp_results_free(b->r, n);
		return err;
	}
	*out = b->r;
	return 0;
}

void fp_result_clear(struct fp_result *r)
{
	if (!r)
		return;
	free((char *)r->value);
	free((char *)r->message);
	free((char *)r->traceback);
	memset(r, 0, sizeof(*r));
}

void fp_results_free(struct fp_result *r, size_t n)
{
	struct results_block *b;
	struct result_page *pg;

	if (!r)
		return;
	b = (struct results_block *)((char *)r - offsetof(struct results_block, r));
	while ((pg = b->pages)) {
		b->pages = pg->next;
		fp_mem_free(pg);
	}
	fp_mem_free(b);
}

/* --- introspection ------------------------------------------------------- */

/* Exec pools' figures are added in: one pool, as far as the caller can see. */
void fp_pool_stats(fp_pool *root, struct fp_pool_stats *s)
{
	struct fp_worker *w;
	struct fp_group *g;
	unsigned i, k;

	memset(s, 0, sizeof(*s));
	s->healthy = 1;
	FP_FOR_GROUPS(g, root, k) {
		s->workers += g->opts.workers;
		for (w = g->workers; w; w = w->next) {
			if (!fp__worker_exited(w))
				s->alive++;
			/*
			 * Able: a process that exists and takes work (starting,
			 * idle or busy, not leaving, not a standby). One asked of
			 * the zygote that neither the zygote's answer nor its own
			 * page has shown us yet may not exist at all: a zygote
			 * stopped or stuck makes none.
			 */
			if (fp__worker_serving(w) &&
			    fp__worker_learn_pid(w))
				s->able++;
			if (w->call)
				s->running += w->count - w->acked;
		}
		s->queued += g->queue.items;
		s->done += g->done;
		s->failed += g->failed;
		s->crashes += g->crashes;
		s->timeouts += g->timeouts;
		s->recycles += g->recycles;
		s->cancelled += g->ncancelled;
		s->init_failures += g->init_failures;
		if (!(g->state == FP_POOL_RUNNING && g->start_failures < FP_UNHEALTHY_AFTER))
			s->healthy = 0;
		for (i = 0; i < FP_DURATION_BUCKETS; i++)
			s->duration_counts[i] += g->duration_counts[i];
		s->duration_sum_s += (double)g->duration_sum_us / 1e6;
	}
}

size_t fp_pool_workers(fp_pool *root, struct fp_worker_stats *out, size_t max)
{
	struct fp_worker *w;
	size_t n = 0;
	struct fp_group *g;
	unsigned k;

	FP_FOR_GROUPS(g, root, k) {
		for (w = g->workers; w; w = w->next) {
			if (fp__worker_exited(w))
				continue;
			if (n < max) {
				struct fp_worker_stats *s = &out[n];
				int32_t prog = atomic_load(&w->shm->program_pid);

				/*
				 * 0 while its zygote has not said, nor the worker
				 * itself; an exec worker is known by its program's pid.
				 */
				s->pid = prog > 0 ? (pid_t)prog : fp__worker_learn_pid(w) ? w->pid : 0;
				s->pool = g->exec ? g->exec->name : NULL;
				s->slot = w->slot;
				s->generation = w->generation;
				s->state = fp__worker_shown_state(w);
				s->tasks_done = w->tasks_done;
				s->tasks_limit = w->tasks_limit;
				s->rss_bytes = w->rss_kib * 1024;
				/* The item the worker has begun, by its own account. */
				unsigned hop;
				struct fp_call *c = fp__worker_item(w, atomic_load(&w->shm->current),
								    NULL, &hop);
				if (c) {
					uint64_t ns = atomic_load_explicit(&w->shm->started_ns,
									   memory_order_relaxed);
					s->task = fp__item_task(c, hop);
					s->task_started_ms = ns / 1000000u;
				} else {
					s->task = NULL;
					s->task_started_ms = 0;
				}
				s->started_ms = w->started_ms;
			}
			n++;
		}
	}
	return n;
}

int fp_pool_has_task(fp_pool *p, const char *task)
{
	struct fp_group *g = fp__group_of(p, task);

	if (!g->exec)
		return fp_registry_find(&p->reg, task) != NULL;
	return fp__exec_has_task(g->exec, task + g->exec->name_len + 1);
}

const char *fp_pool_unavailable(fp_pool *p, const char *task)
{
	struct fp_group *g = task ? fp__group_of(p, task) : p->groups[0];

	return g->unavailable ? g->start_error : NULL;
}

/*
 * With exec pools the list is built again on each call, from the modules'
 * tasks and what each exec pool's programs last announced ("NAME.task",
 * module NAME); the previous list stays valid until the next call.
 */
const struct fp_task_info *fp_pool_tasks(fp_pool *p, size_t *n)
{
	struct fp_task_info *list;
	size_t count = p->reg.ntasks, bytes = 0, i, j, k;
	char *names, *d;

	*n = p->reg.ntasks;
	if (p->ngroups == 1)
		return p->reg.info;
	for (i = 1; i < p->ngroups; i++) {
		struct fp_exec *x = p->groups[i]->exec;

		count += x->ntasks;
		for (j = 0; j < x->ntasks; j++)
			bytes += x->name_len + 1 + strlen(x->tasks[j].name) + 1 +
				 (x->tasks[j].doc ? strlen(x->tasks[j].doc) + 1 : 0);
	}
	list = malloc((count ? count : 1) * sizeof(*list));
	names = malloc(bytes ? bytes : 1);
	if (!list || !names) {
		/* Out of memory: the modules' tasks, at least. */
		free(list);
		free(names);
		return p->reg.info;
	}
	memcpy(list, p->reg.info, p->reg.ntasks * sizeof(*list));
	k = p->reg.ntasks;
	d = names;
	for (i = 1; i < p->ngroups; i++) {
		struct fp_exec *x = p->groups[i]->exec;

		for (j = 0; j < x->ntasks; j++) {
			list[k].name = d;
			d += sprintf(d, "%s.%s", x->name, x->tasks[j].name) + 1;
			list[k].module = x->name;
			/* Copied: the next READY replaces the exec pool's list. */
			list[k].doc = NULL;
			if (x->tasks[j].doc) {
				list[k].doc = d;
				d += sprintf(d, "%s", x->tasks[j].doc) + 1;
			}
			list[k].generator = x->tasks[j].generator;
			k++;
		}
	}
	free(p->task_list);
	free(p->task_names);
	p->task_list = list;
	p->task_names = names;
	*n = count;
	return list;
}
