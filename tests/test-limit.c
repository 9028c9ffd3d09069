/*
 * Concurrency limits (limit.c): a limited task never runs more items at
 * once than its limit, as the task itself records (tests/modules/overlap.c),
 * while other tasks' items pass its waiting ones; a named limit holds across
 * the tasks it covers; a call's own concurrency caps that call; and bad
 * limits are refused with the errno the header names. Runs once per loop
 * backend (FORKPOOL_LOOP in the environment).
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "forkpool.h"
#include "fp_test.h"
#include "fp_test_pool.h"
#include "queue.h"

#define WORKERS 4

struct fixture {
	fp_pool *pool;
	char *module;
	char dir[64];
	char path[2][96];
};

/* With an exec pool "ex" of 2 programs (tests/exec/overlap.py) when `exec`. */
static void fixture_init_exec(struct fixture *f, bool exec)
{
	static char command[4096];
	fp_options o;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/fp-test-limit-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	for (int i = 0; i < 2; i++)
		snprintf(f->path[i], sizeof(f->path[i]), "%s/overlap%d", f->dir, i);
	fp_test_options(&o, WORKERS);
	f->module = fp_test_module_path("libfp-overlap.so");
	o.modules[0] = f->module;
	if (exec) {
		const char *dir = getenv("FP_TEST_EXEC_DIR");

		assert_non_null(dir);
		snprintf(command, sizeof(command), "python3 '%s/overlap.py'", dir);
		o.exec[0] = (fp_exec_options){ .name = "ex", .command = command, .workers = 2 };
	}
	f->pool = fp_test_pool_with(&o);
}

static void fixture_init(struct fixture *f)
{
	fixture_init_exec(f, false);
}

static void fixture_free(struct fixture *f)
{
	fp_pool_free(f->pool);
	for (int i = 0; i < 2; i++)
		unlink(f->path[i]);
	rmdir(f->dir);
	free(f->module);
}

/* The most items that ran at once, as the tasks wrote in file i. */
static long most_at_once(struct fixture *f, int i)
{
	long running = -1, most = -1;
	FILE *in = fopen(f->path[i], "r");

	assert_non_null(in);
	assert_int_equal(fscanf(in, "%ld %ld", &running, &most), 2);
	fclose(in);
	assert_int_equal(running, 0);
	return most;
}

/* Map `task` over n items "PATH MS" with options o; the collector is c. */
static void submit(struct fixture *f, struct fp_test_collect *c, const char *task, int file,
		   size_t n, unsigned ms, const fp_call_options *o)
{
	struct fp_buf *items = calloc(n, sizeof(*items));
	char arg[160];

	assert_non_null(items);
	snprintf(arg, sizeof(arg), "\"%s %u\"", f->path[file], ms);
	for (size_t i = 0; i < n; i++)
		items[i] = (struct fp_buf){ arg, strlen(arg) };
	fp_test_collect_init(c, f->pool, n);
	assert_int_equal(fp_pool_map_async(f->pool, task, items, n, o, fp_test_collect_item,
					   fp_test_collect_done, c, NULL), 0);
	free(items);
}

static void all_ok(const struct fp_test_collect *c)
{
	assert_int_equal(c->summary.ok, c->n);
}

struct watch {
	fp_pool *pool;
	struct fp_test_collect *limited, *other;
	unsigned most_running;
	uint64_t waiting_seen;
	int other_first;           /* the other call ended while the limited one still ran */
};

/* Polled by fp_test_run_until: what /v1/tasks would show, and which call ends first. */
static int watch_both(void *data)
{
	struct watch *wt = data;
	struct fp_limit_stats st[4];
	size_t n = fp_pool_limits(wt->pool, st, 4);

	assert_int_equal(n, 1);
	if (st[0].running > wt->most_running)
		wt->most_running = st[0].running;
	if (st[0].waiting > wt->waiting_seen)
		wt->waiting_seen = st[0].waiting;
	if (wt->other->done && !wt->limited->done)
		wt->other_first = 1;
	return wt->limited->done && wt->other->done;
}

static void task_limited_to_one_never_runs_two_while_others_pass(void **state)
{
	struct fixture f;
	struct fp_test_collect hold, other;
	struct watch wt = { 0 };
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;

	(void)state;
	fixture_init(&f);
	assert_int_equal(fp_pool_task_concurrency(f.pool, "overlap.hold", 1), 0);
	assert_string_equal(fp_pool_task_limit_name(f.pool, "overlap.hold"), "overlap.hold");
	assert_null(fp_pool_task_limit_name(f.pool, "overlap.free"));
	/* Queued first, and with chunks as large as they can be: still one at a time. */
	o.chunksize = 6;
	submit(&f, &hold, "overlap.hold", 0, 6, 100, &o);
	submit(&f, &other, "overlap.free", 1, 6, 100, NULL);
	wt = (struct watch){ .pool = f.pool, .limited = &hold, .other = &other };
	assert_true(fp_test_run_until(f.pool, watch_both, &wt, 30000));
	all_ok(&hold);
	all_ok(&other);
	assert_int_equal(most_at_once(&f, 0), 1);
	/* The other task's items ran beside it, on the workers it did not hold. */
	assert_true(most_at_once(&f, 1) >= 2);
	assert_true(wt.other_first);
	assert_int_equal(wt.most_running, 1);
	assert_true(wt.waiting_seen >= 4);
	fp_test_collect_free(&hold);
	fp_test_collect_free(&other);
	fixture_free(&f);
}

#define SINGLES 60

struct singles {
	struct fp_test_collect c[SINGLES];
	size_t n;
};

static int singles_done(void *data)
{
	struct singles *s = data;

	for (size_t i = 0; i < s->n; i++)
		if (!s->c[i].done)
			return 0;
	return 1;
}

/*
 * Many single-item calls of a full limit, each its own queue entry, with
 * another task's between them: dispatch skips those it found held back
 * (queue.h's held_back) while the limit stays full, and the limit still
 * holds and every call ends.
 */
static void many_single_item_calls_of_a_full_limit(void **state)
{
	struct fixture f;
	struct singles *s = calloc(1, sizeof(*s));
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;

	(void)state;
	assert_non_null(s);
	fixture_init(&f);
	assert_int_equal(fp_pool_task_concurrency(f.pool, "overlap.hold", 1), 0);
	o.chunksize = 1;
	for (s->n = 0; s->n < SINGLES; s->n++) {
		bool other = s->n % 6 == 5;

		submit(&f, &s->c[s->n], other ? "overlap.free" : "overlap.hold", other, 1,
		       other ? 30 : 5, &o);
	}
	assert_true(fp_test_run_until(f.pool, singles_done, s, 60000));
	for (size_t i = 0; i < s->n; i++) {
		all_ok(&s->c[i]);
		fp_test_collect_free(&s->c[i]);
	}
	assert_int_equal(most_at_once(&f, 0), 1);
	/* The other task's calls, queued behind held-back ones, ran beside them. */
	assert_true(most_at_once(&f, 1) >= 2);
	free(s);
	fixture_free(&f);
}

/* The queue keeps its count of held-back leading entries true (queue.h). */
static void queue_keeps_its_held_back_count_true(void **state)
{
	struct fp_queue q = { 0 };
	struct fp_call *c = (struct fp_call *)&q;   /* never dereferenced by the queue */

	(void)state;
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(fp__queue_push(&q, c, i, 1, false), 0);
	q.held_back = 4;
	/* Taken from behind them, near the head and near the tail: unchanged. */
	fp__queue_remove(&q, 5);
	fp__queue_remove(&q, 4);
	assert_int_equal(q.held_back, 4);
	assert_int_equal(fp__queue_at(&q, 4)->first, 6);
	/* From among them, on either side of the middle: one fewer each. */
	fp__queue_remove(&q, 3);
	assert_int_equal(q.held_back, 3);
	fp__queue_remove(&q, 0);
	assert_int_equal(q.held_back, 2);
	assert_int_equal(fp__queue_at(&q, 0)->first, 1);
	assert_int_equal(fp__queue_at(&q, 1)->first, 2);
	assert_int_equal(fp__queue_at(&q, 2)->first, 6);
	fp__queue_pop(&q);
	assert_int_equal(q.held_back, 1);
	/* One pushed at the front is not among them: none are known. */
	assert_int_equal(fp__queue_push(&q, c, 9, 1, true), 0);
	assert_int_equal(q.held_back, 0);
	fp__queue_deinit(&q);
}

static void named_limit_holds_across_the_tasks_it_covers(void **state)
{
	struct fixture f;
	struct fp_test_collect a, b;

	(void)state;
	fixture_init(&f);
	assert_int_equal(fp_pool_limit_set(f.pool, "api", 2), 0);
	assert_int_equal(fp_pool_task_limit(f.pool, "overlap.hold", "api"), 0);
	assert_int_equal(fp_pool_task_limit(f.pool, "overlap.free", "api"), 0);
	/* Both tasks count in one file: the limit is on the two together. */
	submit(&f, &a, "overlap.hold", 0, 6, 60, NULL);
	submit(&f, &b, "overlap.free", 0, 6, 60, NULL);
	fp_test_collect_wait(&a);
	fp_test_collect_wait(&b);
	all_ok(&a);
	all_ok(&b);
	assert_int_equal(most_at_once(&f, 0), 2);
	fp_test_collect_free(&a);
	fp_test_collect_free(&b);
	fixture_free(&f);
}

/* Every worker is up and idle. */
static int all_idle(void *pool)
{
	struct fp_worker_stats ws[WORKERS + 1];
	size_t n = fp_pool_workers(pool, ws, WORKERS + 1);
	size_t idle = 0;

	for (size_t i = 0; i < n && i <= WORKERS; i++)
		idle += ws[i].state == FP_WORKER_IDLE;
	return n == WORKERS && idle == WORKERS;
}

static void limit_above_the_workers_keeps_every_worker_busy(void **state)
{
	struct fixture f;
	struct fp_test_collect a;
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;

	(void)state;
	fixture_init(&f);
	/*
	 * 5 places over 4 idle workers and 5 items: one item each and the
	 * fifth after, not chunks of 2 + 2 + 1 that leave a worker idle.
	 */
	assert_int_equal(fp_pool_task_concurrency(f.pool, "overlap.hold", WORKERS + 1), 0);
	assert_true(fp_test_run_until(f.pool, all_idle, f.pool, 30000));
	o.chunksize = 8;
	submit(&f, &a, "overlap.hold", 0, WORKERS + 1, 100, &o);
	fp_test_collect_wait(&a);
	all_ok(&a);
	assert_int_equal(most_at_once(&f, 0), WORKERS);
	fp_test_collect_free(&a);
	fixture_free(&f);
}

static void named_limit_holds_across_a_c_task_and_an_exec_task(void **state)
{
	struct fixture f;
	struct fp_test_collect a, b;

	(void)state;
	fixture_init_exec(&f, true);
	assert_int_equal(fp_pool_limit_set(f.pool, "api", 1), 0);
	assert_int_equal(fp_pool_task_limit(f.pool, "overlap.hold", "api"), 0);
	assert_int_equal(fp_pool_task_limit(f.pool, "ex.hold", "api"), 0);
	/*
	 * 4 C workers and 2 programs, one place: an item ending in one pool
	 * lets the other pool's start, and never two at once across them.
	 */
	submit(&f, &a, "overlap.hold", 0, 4, 60, NULL);
	submit(&f, &b, "ex.hold", 0, 4, 60, NULL);
	fp_test_collect_wait(&a);
	fp_test_collect_wait(&b);
	all_ok(&a);
	all_ok(&b);
	assert_int_equal(most_at_once(&f, 0), 1);
	fp_test_collect_free(&a);
	fp_test_collect_free(&b);
	fixture_free(&f);
}

static void call_concurrency_caps_that_call_only(void **state)
{
	struct fixture f;
	struct fp_test_collect a, b;
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;

	(void)state;
	fixture_init(&f);
	o.concurrency = 2;
	submit(&f, &a, "overlap.free", 0, 8, 60, &o);
	submit(&f, &b, "overlap.free", 1, 8, 60, NULL);
	fp_test_collect_wait(&a);
	fp_test_collect_wait(&b);
	all_ok(&a);
	all_ok(&b);
	assert_int_equal(most_at_once(&f, 0), 2);
	/* The same task in another call is not capped by it: it ran beside. */
	assert_true(most_at_once(&f, 1) >= 2);
	fp_test_collect_free(&a);
	fp_test_collect_free(&b);
	fixture_free(&f);
}

static void bad_limits_are_refused(void **state)
{
	fp_pool *p = fp_test_pool(1);

	(void)state;
	assert_int_equal(fp_pool_limit_set(p, "api", 0), -EINVAL);
	assert_int_equal(fp_pool_limit_set(p, "bad name", 3), -EINVAL);
	assert_int_equal(fp_pool_limit_set(p, "", 3), -EINVAL);
	assert_int_equal(fp_pool_task_limit(p, "square", "nosuch"), -ENOENT);
	assert_int_equal(fp_pool_limit_set(p, "api", 3), 0);
	assert_int_equal(fp_pool_limit_set(p, "db", 1), 0);
	assert_int_equal(fp_pool_task_limit(p, "square", "api"), 0);
	/* Limited twice: refused, not moved. */
	assert_int_equal(fp_pool_task_limit(p, "square", "db"), -EEXIST);
	assert_int_equal(fp_pool_task_concurrency(p, "square", 2), -EEXIST);
	assert_string_equal(fp_pool_task_limit_name(p, "square"), "api");
	/* A task's own limit and a shared limit do not share a name. */
	assert_int_equal(fp_pool_task_concurrency(p, "api", 2), -EEXIST);
	assert_int_equal(fp_pool_task_concurrency(p, "sleep", 2), 0);
	assert_int_equal(fp_pool_limit_set(p, "sleep", 5), -EEXIST);
	/* Off again: the task runs unlimited and its limit is not listed. */
	assert_int_equal(fp_pool_task_concurrency(p, "sleep", 0), 0);
	assert_null(fp_pool_task_limit_name(p, "sleep"));
	assert_int_equal(fp_pool_limits(p, NULL, 0), 2);
	assert_int_equal(fp_pool_task_limit(p, "square", NULL), 0);
	assert_null(fp_pool_task_limit_name(p, "square"));
	fp_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(task_limited_to_one_never_runs_two_while_others_pass),
		cmocka_unit_test(many_single_item_calls_of_a_full_limit),
		cmocka_unit_test(queue_keeps_its_held_back_count_true),
		cmocka_unit_test(named_limit_holds_across_the_tasks_it_covers),
		cmocka_unit_test(limit_above_the_workers_keeps_every_worker_busy),
		cmocka_unit_test(named_limit_holds_across_a_c_task_and_an_exec_task),
		cmocka_unit_test(call_concurrency_caps_that_call_only),
		cmocka_unit_test(bad_limits_are_refused),
	};

	if (fp_test_backend_missing())
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
