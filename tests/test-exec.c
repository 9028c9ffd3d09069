/*
 * Exec pools end to end: real Python programs (tests/exec/pyworker.py, on
 * python/forkpool_worker.py) and a shell one, behind the pool API. Runs once
 * per loop backend (FORKPOOL_LOOP in the environment).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
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

static char py_command[4096], sh_command[4096];

/* One C worker beside an exec pool "py" of `workers` programs. */
static void test_options(fp_options *o, unsigned workers)
{
	fp_test_options(o, 1);
	o->kill_grace_ms = 300;
	o->exec[0] = (fp_exec_options){ .name = "py", .command = py_command, .workers = workers };
}

static fp_pool *new_pool(unsigned workers)
{
	fp_options o;

	test_options(&o, workers);
	return fp_test_pool_with(&o);
}

static void apply_ok(fp_pool *p, const char *task, const char *args, const char *want)
{
	struct fp_result r;

	assert_int_equal(fp_pool_apply(p, task, args, strlen(args), NULL, &r), 0);
	if (r.status != FP_ITEM_OK)
		fail_msg("%s(%s): %s: %s", task, args, fp_item_status_name(r.status), r.message);
	if (want)
		assert_string_equal(r.value, want);
	fp_result_clear(&r);
}

/* Apply `task`, expect it to fail with `status` and a message holding `says`. */
static void apply_fails(fp_pool *p, const char *task, const char *args,
			const fp_call_options *o, fp_item_status status, const char *says)
{
	struct fp_result r;

	assert_int_equal(fp_pool_apply(p, task, args, strlen(args), o, &r), 0);
	if (r.status != status || !r.message || !strstr(r.message, says))
		fail_msg("%s(%s): want %s with \"%s\", got %s: %s", task, args,
			 fp_item_status_name(status), says, fp_item_status_name(r.status),
			 r.message ? r.message : r.value);
	fp_result_clear(&r);
}

static int gone(void *data)
{
	return kill(*(pid_t *)data, 0) < 0 && errno == ESRCH;
}

/* --- tests --------------------------------------------------------------- */

static void apply_map_and_generator(void **state)
{
	fp_pool *p = new_pool(2);
	struct fp_buf items[50];
	char text[50][8];
	struct fp_result *rs, r;
	pid_t prog, by;
	size_t i;

	apply_ok(p, "py.square", "7", "49");
	apply_ok(p, "py.echo", "{\"a\": [1,\n 2]}", "{\"a\":[1,2]}");
	/* The result's pid is the program's, which is not the pool's worker. */
	prog = fp_test_apply_pid(p, "py.pid", &by);
	assert_int_equal(prog, by);
	/* C tasks of the same pool are there as ever. */
	apply_ok(p, "square", "6", "36");

	for (i = 0; i < 50; i++) {
		snprintf(text[i], sizeof(text[i]), "%zu", i);
		items[i] = (struct fp_buf){ text[i], strlen(text[i]) };
	}
	assert_int_equal(fp_pool_map(p, "py.square", items, 50, NULL, &rs), 0);
	for (i = 0; i < 50; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%zu", i * i);
		assert_int_equal(rs[i].status, FP_ITEM_OK);
		assert_string_equal(rs[i].value, want);
	}
	fp_results_free(rs, 50);

	/* A generator's outputs, gathered under apply. */
	apply_ok(p, "py.count", "4", "[0,1,2,3]");
	apply_ok(p, "py.count", "0", "[]");

	assert_int_equal(fp_pool_apply(p, "py.fail", "\"bad input\"", 11, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_TASK_ERROR);
	assert_string_equal(r.message, "ValueError: bad input");
	fp_result_clear(&r);
	fp_pool_free(p);
}

static void tasks_workers_and_unknown_tasks(void **state)
{
	fp_pool *p = new_pool(2);
	struct fp_worker_stats ws[16];
	const struct fp_task_info *t;
	size_t n, i, nexec = 0, found = 0;
	struct fp_pool_stats st;

	apply_ok(p, "py.square", "3", "9");
	t = fp_pool_tasks(p, &n);
	for (i = 0; i < n; i++) {
		if (strncmp(t[i].name, "py.", 3))
			continue;
		assert_string_equal(t[i].module, "py");
		found += !strcmp(t[i].name, "py.square") + !strcmp(t[i].name, "py.count");
	}
	assert_int_equal(found, 2);
	/* Known now, so refused up front like a C task. */
	assert_int_equal(fp_pool_apply_async(p, "py.nope", "1", 1, NULL, NULL, NULL, NULL, NULL),
			 FP_EUNKNOWN_TASK);
	assert_int_equal(fp_pool_apply_async(p, "nope.square", "1", 1, NULL, NULL, NULL, NULL,
					     NULL), FP_EUNKNOWN_TASK);

	n = fp_pool_workers(p, ws, 16);
	assert_int_equal(n, 3);
	for (i = 0; i < n; i++) {
		if (!ws[i].pool)
			continue;
		assert_string_equal(ws[i].pool, "py");
		assert_true(ws[i].pid > 0);
		nexec++;
	}
	assert_int_equal(nexec, 2);
	fp_pool_stats(p, &st);
	assert_int_equal(st.workers, 3);
	assert_true(st.healthy);
	fp_pool_free(p);
}

/* Not a pipeline stage yet: refused up front with its own error, not "unknown". */
static void exec_tasks_are_refused_as_pipeline_stages(void **state)
{
	fp_pool *p = new_pool(1);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_buf item = { "3", 1 };
	struct fp_pool_stats ps;

	apply_ok(p, "py.square", "3", "9");
	st[0].task = "square";
	st[1].task = "py.square";
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, NULL, NULL, NULL, NULL, NULL),
			 -ENOTSUP);
	st[1].task = "square";
	po.reduce = "py.square";
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, &po, NULL, NULL, NULL, NULL),
			 -ENOTSUP);
	/* Nothing was queued by the refusals. */
	fp_pool_stats(p, &ps);
	assert_int_equal(ps.queued, 0);
	fp_pool_free(p);
}

static void crash_fails_one_item_and_is_replaced(void **state)
{
	fp_pool *p = new_pool(1);
	pid_t before = fp_test_apply_pid(p, "py.pid", NULL), after;

	apply_fails(p, "py.crash", "null", NULL, FP_ITEM_CRASH, "killed by SIGSEGV");
	assert_true(fp_test_log_has("worker program (pid"));
	after = fp_test_apply_pid(p, "py.pid", NULL);
	assert_true(after != before);

	apply_fails(p, "py.exit", "3", NULL, FP_ITEM_CRASH, "exited with status 3");
	apply_ok(p, "py.square", "5", "25");
	fp_pool_free(p);
}

static void non_json_output_is_quoted(void **state)
{
	fp_pool *p = new_pool(1);
	char want[64];
	pid_t prog = fp_test_apply_pid(p, "py.pid", NULL);

	snprintf(want, sizeof(want), "(pid %d) wrote a line that is not JSON: 'hello wor", (int)prog);
	apply_fails(p, "py.garbage", "null", NULL, FP_ITEM_BAD_OUTPUT, want);
	assert_true(fp_test_run_until(p, gone, &prog, 5000));
	apply_ok(p, "py.square", "4", "16");
	fp_pool_free(p);
}

static void hang_past_timeout_kills_the_program(void **state)
{
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	fp_pool *p = new_pool(1);
	pid_t prog = fp_test_apply_pid(p, "py.pid", NULL);

	o.timeout_ms = 300;
	/* SIGTERM reaches the program, which dies of it. */
	apply_fails(p, "py.hang", "null", &o, FP_ITEM_TIMEOUT, "killed by SIGTERM");
	assert_true(fp_test_run_until(p, gone, &prog, 5000));
	/* One that ignores SIGTERM is killed after the grace. */
	prog = fp_test_apply_pid(p, "py.pid", NULL);
	apply_fails(p, "py.hang", "\"stubborn\"", &o, FP_ITEM_TIMEOUT, "ran past its 300 ms timeout");
	assert_true(fp_test_run_until(p, gone, &prog, 5000));
	apply_ok(p, "py.square", "2", "4");
	fp_pool_free(p);
}

/* data: { the pool, what the log must say } */
static int failed_once(void *data)
{
	void **a = data;
	struct fp_pool_stats st;

	fp_pool_stats(a[0], &st);
	return st.init_failures >= 1 && fp_test_log_has(a[1]);
}

static void start_failures_say_what_happened(void **state)
{
	static const struct {
		const char *command;
		const char *says;
	} cases[] = {
		{ "sleep 30", "did not say ready within 200 ms" },
		{ "sh -c 'echo starting up; sleep 30'",
		  "wrote a line that is not JSON before saying ready: 'starting up'" },
		{ "sh -c 'exit 3'", "exited with status 3 before saying ready" },
		{ "/nonexistent/worker", "cannot run /nonexistent/worker: No such file" },
	};
	fp_options o;
	fp_pool *p;
	struct fp_pool_stats st;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		test_options(&o, 1);
		o.exec[0].command = cases[i].command;
		o.exec[0].startup_timeout_ms = 200;
		p = fp_test_pool_with(&o);
		void *arg[2] = { p, (void *)cases[i].says };
		if (!fp_test_run_until(p, failed_once, arg, 10000))
			fail_msg("%s: no \"%s\" in the log:\n%s", cases[i].command, cases[i].says,
				 fp_test_log());
		fp_pool_stats(p, &st);
		assert_true(st.init_failures >= 1);
		fp_pool_free(p);
	}
}

static void recycles_after_exactly_k_tasks(void **state)
{
	fp_options o;
	fp_pool *p;
	pid_t pids[7];

	test_options(&o, 1);
	o.max_tasks_per_child = 3;
	p = fp_test_pool_with(&o);
	for (int i = 0; i < 7; i++)
		pids[i] = fp_test_apply_pid(p, "py.pid", NULL);
	assert_int_equal(pids[0], pids[1]);
	assert_int_equal(pids[1], pids[2]);
	assert_true(pids[3] != pids[2]);
	assert_int_equal(pids[3], pids[4]);
	assert_int_equal(pids[4], pids[5]);
	assert_true(pids[6] != pids[5]);
	fp_pool_free(p);
}

static void ten_mib_argument_and_result(void **state)
{
	size_t n = 10u << 20;
	char *arg = malloc(n + 3);
	char num[32];
	struct fp_result r;
	fp_pool *p = new_pool(1);

	arg[0] = '"';
	memset(arg + 1, 'a', n);
	arg[n + 1] = '"';
	arg[n + 2] = '\0';
	assert_int_equal(fp_pool_apply(p, "py.echo", arg, n + 2, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_int_equal(r.value_len, n + 2);
	assert_memory_equal(r.value, arg, n + 2);
	fp_result_clear(&r);

	snprintf(num, sizeof(num), "%zu", n);
	assert_int_equal(fp_pool_apply(p, "py.bytes", num, strlen(num), NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_int_equal(r.value_len, n + 2);
	fp_result_clear(&r);
	free(arg);
	fp_pool_free(p);
}

static int running(void *data)
{
	struct fp_pool_stats st;

	fp_pool_stats(data, &st);
	return st.running == 1;
}

static void cancel_kills_the_program(void **state)
{
	fp_pool *p = new_pool(1);
	struct fp_test_collect c;
	pid_t prog = fp_test_apply_pid(p, "py.pid", NULL);
	uint64_t id;

	fp_test_collect_init(&c, p, 1);
	assert_int_equal(fp_pool_apply_async(p, "py.sleep", "20000", 5, NULL, fp_test_collect_item,
					     fp_test_collect_done, &c, &id), 0);
	assert_true(fp_test_run_until(p, running, p, 5000));
	assert_int_equal(fp_pool_cancel(p, id), 0);
	assert_true(fp_test_run_until(p, fp_test_collected, &c, 5000));
	assert_int_equal(c.r[0].status, FP_ITEM_CANCELLED);
	assert_true(fp_test_run_until(p, gone, &prog, 5000));
	fp_test_collect_free(&c);
	apply_ok(p, "py.square", "9", "81");
	fp_pool_free(p);
}

static int logged_print(void *data)
{
	return fp_test_log_has("a print() from a task");
}

static void print_goes_to_the_log(void **state)
{
	fp_pool *p = new_pool(1);
	char want[64];
	pid_t prog = fp_test_apply_pid(p, "py.pid", NULL);

	apply_ok(p, "py.noisy", "null", "\"quiet\"");
	assert_true(fp_test_run_until(p, logged_print, NULL, 5000));
	snprintf(want, sizeof(want), "(program pid %d): a print() from a task", (int)prog);
	assert_true(fp_test_log_has(want));
	fp_pool_free(p);
}

static void reload_starts_new_programs(void **state)
{
	fp_pool *p = new_pool(1);
	pid_t before = fp_test_apply_pid(p, "py.pid", NULL);

	assert_int_equal(fp_pool_reload(p), 0);
	for (int i = 0; i < 100 && fp_test_apply_pid(p, "py.pid", NULL) == before; i++)
		;
	assert_true(fp_test_apply_pid(p, "py.pid", NULL) != before);
	fp_pool_free(p);
}

static void shell_example_worker(void **state)
{
	fp_options o;
	fp_pool *p;

	test_options(&o, 1);
	o.exec[0] = (fp_exec_options){ .name = "sh", .command = sh_command };
	p = fp_test_pool_with(&o);
	apply_ok(p, "sh.upper", "\"hello\"", "\"HELLO\"");
	apply_fails(p, "sh.upper", "5", NULL, FP_ITEM_TASK_ERROR, "expected a string");
	fp_pool_free(p);
}

static void bad_exec_options_are_refused(void **state)
{
	fp_options o;
	fp_pool *p = NULL;
	char err[512];

	test_options(&o, 1);
	o.exec[0].name = "py thon";
	assert_int_equal(fp_pool_new(&p, NULL, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "exec pool name 'py thon'"));
	test_options(&o, 1);
	o.exec[0].command = "python3 'unterminated";
	assert_int_equal(fp_pool_new(&p, NULL, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unterminated quote"));
	test_options(&o, 1);
	o.exec[1] = o.exec[0];
	assert_int_equal(fp_pool_new(&p, NULL, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "two exec pools are named 'py'"));
}

int main(void)
{
	const char *dir = getenv("FP_TEST_EXEC_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(apply_map_and_generator),
		cmocka_unit_test(tasks_workers_and_unknown_tasks),
		cmocka_unit_test(exec_tasks_are_refused_as_pipeline_stages),
		cmocka_unit_test(crash_fails_one_item_and_is_replaced),
		cmocka_unit_test(non_json_output_is_quoted),
		cmocka_unit_test(hang_past_timeout_kills_the_program),
		cmocka_unit_test(start_failures_say_what_happened),
		cmocka_unit_test(recycles_after_exactly_k_tasks),
		cmocka_unit_test(ten_mib_argument_and_result),
		cmocka_unit_test(cancel_kills_the_program),
		cmocka_unit_test(print_goes_to_the_log),
		cmocka_unit_test(reload_starts_new_programs),
		cmocka_unit_test(shell_example_worker),
		cmocka_unit_test(bad_exec_options_are_refused),
	};

	if (!dir || !getenv("FP_TEST_SH_WORKER")) {
		fprintf(stderr, "FP_TEST_EXEC_DIR and FP_TEST_SH_WORKER must be set\n");
		return 1;
	}
	snprintf(py_command, sizeof(py_command), "python3 '%s/pyworker.py'", dir);
	snprintf(sh_command, sizeof(sh_command), "'%s'", getenv("FP_TEST_SH_WORKER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
