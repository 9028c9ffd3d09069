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
#include "fp_test_pipe.h"
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

/*
 * Dead: no such pid, or a zombie. A program's orphaned child is reaped by
 * whatever pid 1 is, which need not reap at once, or at all.
 */
static int dead(void *data)
{
	pid_t pid = *(pid_t *)data;
	char path[64], buf[256], *paren;
	FILE *f;
	size_t n;

	if (gone(data))
		return 1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

static pid_t apply_int(fp_pool *p, const char *task, const char *args)
{
	struct fp_result r;
	pid_t v;

	assert_int_equal(fp_pool_apply(p, task, args, strlen(args), NULL, &r), 0);
	if (r.status != FP_ITEM_OK)
		fail_msg("%s(%s): %s: %s", task, args, fp_item_status_name(r.status), r.message);
	v = (pid_t)atol(r.value);
	fp_result_clear(&r);
	return v;
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
	/* forkpool.worker sends the traceback; the pool hands it on. */
	assert_non_null(r.traceback);
	assert_non_null(strstr(r.traceback, "Traceback (most recent call last):"));
	assert_non_null(strstr(r.traceback, "raise ValueError(args)"));
	fp_result_clear(&r);
	/* A C task's error has none. */
	assert_int_equal(fp_pool_apply(p, "fail", "\"no\"", 4, NULL, &r), 0);
	assert_int_equal(r.status, FP_ITEM_TASK_ERROR);
	assert_null(r.traceback);
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

/* --- pipelines with exec stages ------------------------------------------ */

static long long identity(size_t i) { return (long long)i; }

static void c_exec_c_pipeline_matches_sequential(void **state)
{
	fp_pool *p = new_pool(2);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 500;

	st[0].task = "square";
	st[1].task = "py.inc";
	st[2].task = "square";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n);
	for (i = 0; i < n; i++) {
		long long v = (long long)(i * i) + 1;
		assert_int_equal(o.per_input[i], 1);
		assert_int_equal(o.value_sum[i], v * v);
	}
	assert_int_equal(o.final[1].out, n);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static void exec_tasks_are_taken_before_their_pool_is_ready(void **state)
{
	fp_pool *p = new_pool(2);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 50;

	/* No worker has said ready yet: the exec pool cannot tell its tasks. */
	assert_int_equal(fp_pool_has_task(p, "py.square"), -1);
	assert_int_equal(fp_pool_has_task(p, "py.nosuch"), -1);
	assert_int_equal(fp_pool_has_task(p, "square"), 1);
	assert_int_equal(fp_pool_has_task(p, "nosuch"), 0);
	assert_int_equal(fp_pool_has_task(p, "nosuch.square"), 0);
	/* A pipeline naming one is taken now, and runs once the program is up. */
	st[0].task = "square";
	st[1].task = "py.square";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	for (i = 0; i < n; i++)
		assert_int_equal(o.value_sum[i], (long long)(i * i * i * i));
	/* Now it knows. */
	assert_int_equal(fp_pool_has_task(p, "py.square"), 1);
	assert_int_equal(fp_pool_has_task(p, "py.nosuch"), 0);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static void unknown_exec_stage_is_refused_once_known(void **state)
{
	fp_pool *p = new_pool(1);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_buf item = { "3", 1 };
	struct fp_pool_stats ps;

	/* Its worker said ready: the exec pool knows its tasks. */
	apply_ok(p, "py.square", "3", "9");
	st[0].task = "square";
	st[1].task = "py.nosuch";
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, NULL, NULL, NULL, NULL, NULL),
			 FP_EUNKNOWN_TASK);
	st[1].task = "nosuch.square";
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, NULL, NULL, NULL, NULL, NULL),
			 FP_EUNKNOWN_TASK);
	st[1].task = "square";
	po.reduce = "py.nosuch";
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, &po, NULL, NULL, NULL, NULL),
			 FP_EUNKNOWN_TASK);
	/* Nothing was queued by the refusals. */
	fp_pool_stats(p, &ps);
	assert_int_equal(ps.queued, 0);
	fp_pool_free(p);
}

static const char *const sentences[] = {
	"the cat sat", "", "a dog", "one two three four five six seven eight nine ten",
};

static void exec_generator_stage_fans_out(void **state)
{
	fp_pool *p = new_pool(2);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	const struct fp_task_info *t;
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n, found = 0;
	char text[4][128];

	/* The program declared it a generator, with a doc. */
	apply_ok(p, "py.square", "1", "1");
	t = fp_pool_tasks(p, &n);
	for (i = 0; i < n; i++) {
		if (!strcmp(t[i].name, "py.split")) {
			assert_true(t[i].generator);
			assert_string_equal(t[i].doc, "Split a string into its words.");
			found++;
		} else if (!strcmp(t[i].name, "py.square")) {
			assert_false(t[i].generator);
			found++;
		}
	}
	assert_int_equal(found, 2);

	/* Words out of Python, each lower-cased by a C task. */
	in.n = 4;
	in.items = calloc(4, sizeof(*in.items));
	in.text = NULL;
	for (i = 0; i < 4; i++) {
		snprintf(text[i], sizeof(text[i]), "\"%s\"", sentences[i]);
		in.items[i] = (struct fp_buf){ text[i], strlen(text[i]) };
	}
	st[0].task = "py.split";
	st[1].task = "lower";
	fp_test_pipe_init(&o, p, 4, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.per_input[0], 3);
	assert_int_equal(o.per_input[1], 0);
	assert_int_equal(o.per_input[2], 2);
	assert_int_equal(o.per_input[3], 10);
	assert_int_equal(o.outputs, 15);
	assert_int_equal(o.final[0].out, 15);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static long long tens(size_t i) { return (long long)(i + 1) * 10; }

static void exec_reduce_folds_everything(void **state)
{
	fp_pool *p = new_pool(2);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct fp_test_pipe o;

	/* C fan-out, squares in Python, summed in Python 8 at a time. */
	st[0].task = "range";
	st[1].task = "py.square";
	po.reduce = "py.add";
	po.reduce_batch = 8;
	fp_test_inputs_numbers(&in, 3, tens);    /* 10, 20, 30 */
	fp_test_pipe_init(&o, p, 3, NULL);
	fp_test_pipe_run(p, st, 2, &in, &po, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, 1);
	/* The sum of k^2 for k below 10, 20 and 30. */
	assert_string_equal(o.value, "11310");
	assert_int_equal(o.value_stage, 2);
	assert_int_equal(o.final[1].in, 60);
	assert_true(o.final[2].in > 1);    /* folded in several rounds */
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static void crash_in_exec_stage_fails_only_that_input(void **state)
{
	fp_pool *p = new_pool(2);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 100;

	st[0].task = "echo";
	st[1].task = "py.crash13";
	st[1].retries = 1;              /* tried twice, failed once */
	st[2].task = "square";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 1);
	assert_int_equal(o.err_index, 13);
	assert_int_equal(o.err_stage, 1);
	assert_int_equal(o.err_status, FP_ITEM_CRASH);
	if (!strstr(o.err_msg, "killed by SIGKILL") || !strstr(o.err_msg, "py.crash13") ||
	    !strstr(o.err_msg, "(attempt 2 of 2)"))
		fail_msg("the crash's message: %s", o.err_msg);
	assert_int_equal(o.outputs, n - 1);
	for (i = 0; i < n; i++) {
		assert_int_equal(o.per_input[i], i == 13 ? 0 : 1);
		if (i != 13)
			assert_int_equal(o.value_sum[i], (long long)(i * i));
	}
	assert_int_equal(o.final[1].failed, 1);
	/* The program was replaced: the pool goes on. */
	apply_ok(p, "py.square", "5", "25");
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static long long two_hundred(size_t i) { return 200; }

static void fast_c_stage_before_exec_stage_stays_within_the_buffer(void **state)
{
	fp_options opt;
	fp_pool *p;
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;

	/* Three C workers emitting fast, one Python program behind 16 places. */
	test_options(&opt, 1);
	opt.workers = 3;
	p = fp_test_pool_with(&opt);
	st[0].task = "range";
	st[1].task = "py.echo";
	st[1].buffer = 16;
	fp_test_inputs_numbers(&in, 2, two_hundred);
	fp_test_pipe_init(&o, p, 2, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, 400);
	assert_int_equal(o.value_sum[0], 199 * 200 / 2);
	/* The buffer was used, and never went over its bound. */
	assert_true(o.waiting_seen[1] > 0);
	assert_true(o.waiting_max[1] >= o.waiting_seen[1]);
	if (o.waiting_max[1] > 16 || o.final[1].waiting_max > 16)
		fail_msg("waiting_max %llu is over the buffer of 16",
			 (unsigned long long)o.final[1].waiting_max);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static long long seventh_sleeps(size_t i) { return i == 7 ? 5000 : 10; }

static void exec_stage_timeout_cap_and_input_order(void **state)
{
	fp_pool *p = new_pool(3);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 30;

	/* One program at a time of three, 10 ms each but input 7's 5 s. */
	st[0].task = "echo";
	st[1].task = "py.sleep";
	st[1].workers = 1;
	st[1].timeout_ms = 400;
	po.ordered = 1;
	fp_test_inputs_numbers(&in, n, seventh_sleeps);
	fp_test_pipe_init(&o, p, n, "py.sleep");
	fp_test_pipe_run(p, st, 2, &in, &po, &o);
	assert_int_equal(o.errors, 1);
	assert_int_equal(o.err_index, 7);
	assert_int_equal(o.err_stage, 1);
	assert_int_equal(o.err_status, FP_ITEM_TIMEOUT);
	if (!strstr(o.err_msg, "ran past its 400 ms timeout"))
		fail_msg("the timeout's message: %s", o.err_msg);
	assert_int_equal(o.outputs, n - 1);
	for (i = 0; i < n; i++)
		assert_int_equal(o.per_input[i], i == 7 ? 0 : 1);
	assert_false(o.out_of_order);
	assert_int_equal(o.busy_max, 1);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static long long forty(size_t i) { return 40; }

static void exec_generator_before_slow_c_stage_is_paused(void **state)
{
	fp_pool *p = new_pool(3);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;

	/*
	 * Two Python generators emitting 40 outputs each at once, into one
	 * C worker sleeping 0..39 ms per item behind 8 places: the master
	 * stops reading the shims (a third program is left free), which
	 * stop reading their programs.
	 */
	apply_ok(p, "py.square", "1", "1");     /* py.count is known as a generator */
	st[0].task = "py.count";
	st[1].task = "sleep";
	st[1].buffer = 8;
	st[1].workers = 1;
	fp_test_inputs_numbers(&in, 2, forty);
	fp_test_pipe_init(&o, p, 2, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, 80);
	assert_int_equal(o.value_sum[0], 39 * 40 / 2);
	assert_int_equal(o.value_sum[1], 39 * 40 / 2);
	assert_true(o.waiting_seen[1] > 0);
	if (o.final[1].waiting_max > 8)
		fail_msg("waiting_max %llu is over the buffer of 8",
			 (unsigned long long)o.final[1].waiting_max);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	fp_pool_free(p);
}

static long long twenty(size_t i) { return 20; }

static void cancel_mid_pipeline_with_exec_stage(void **state)
{
	fp_pool *p = new_pool(2);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 300;

	/* Each item sleeps 20 ms in Python: cancelled long before the end. */
	st[0].task = "echo";
	st[1].task = "py.sleep";
	fp_test_inputs_numbers(&in, n, twenty);
	fp_test_pipe_init(&o, p, n, NULL);
	o.cancel_after = 5;
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	fp_test_pipe_assert_cancelled(&o, n);
	apply_ok(p, "py.square", "9", "81");
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
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

/* An exec worker of pool p that has no process yet: its pid is unknown. */
static int exec_pid_unknown(void *p)
{
	struct fp_worker_stats ws[8];
	size_t n = fp_pool_workers(p, ws, 8);

	for (size_t i = 0; i < n && i < 8; i++)
		if (ws[i].pool && ws[i].pid == 0)
			return 1;
	return 0;
}

/*
 * An exec pool's workers are cloned by the pool's zygote, as its C workers
 * are (the master forked them itself, with its whole memory): while the
 * zygote is stopped, the worker asked for in place of one whose program
 * crashed is not made, so its pid is unknown, until the zygote goes on.
 */
static void exec_workers_are_cloned_by_the_zygote(void **state)
{
	fp_pool *p = new_pool(1);
	pid_t z;
	int seen;

	apply_ok(p, "py.square", "5", "25");
	z = fp_test_zygote(p);
	assert_true(fp_test_run_until(p, fp_test_pids_known, p, 10000));
	assert_int_equal(kill(z, SIGSTOP), 0);
	apply_fails(p, "py.crash", "null", NULL, FP_ITEM_CRASH, "killed by SIGSEGV");
	seen = fp_test_run_until(p, exec_pid_unknown, p, 3000);
	assert_int_equal(kill(z, SIGCONT), 0);
	assert_true(seen);
	assert_true(fp_test_run_until(p, fp_test_pids_known, p, 10000));
	apply_ok(p, "py.square", "6", "36");
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
		{ "sh -c 'echo \"{\\\"ready\\\":{\\\"tasks\\\":[\\\"a\\\",5]}}\"; sleep 30'",
		  "announced a bad task: entry 1 of \"tasks\": not a name or an object" },
		{ "sh -c 'echo \"{\\\"ready\\\":{\\\"tasks\\\":[{\\\"name\\\":\\\"x\\\","
		  "\\\"generater\\\":true}]}}\"; sleep 30'",
		  "entry 0 of \"tasks\": unknown member \"generater\" (known: name, generator, doc)" },
		{ "sh -c 'echo \"{\\\"ready\\\":{\\\"tasks\\\":[{\\\"name\\\":\\\"x\\\","
		  "\\\"generator\\\":1}]}}\"; sleep 30'",
		  "entry 0 of \"tasks\": \"generator\" must be true or false" },
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

static int pool_unavailable(void *p)
{
	return fp_pool_unavailable(p, "py.echo") != NULL;
}

static int pool_available(void *p)
{
	return fp_pool_unavailable(p, "py.echo") == NULL;
}

/*
 * A program that exits before it says ready (tests/exec/startfail.py, while
 * its marker file exists: a Python traceback on stderr, status 1): after 3
 * failed starts in a row the item queued for its pool fails with
 * start_failure, naming the exit status and the traceback, and new calls are
 * refused rather than queued, maybe forever. The C workers go on. Once the
 * program starts, its pool takes calls again.
 */
static void program_that_cannot_start_fails_its_items_until_it_can(void **state)
{
	char marker[] = "/tmp/fp-startfail-XXXXXX", command[4200];
	struct fp_test_collect c;
	struct fp_result r;
	const char *msg;
	fp_options o;
	fp_pool *p;
	int fd = mkstemp(marker);

	assert_true(fd >= 0);
	close(fd);
	snprintf(command, sizeof(command), "python3 '%s/startfail.py' '%s'",
		 getenv("FP_TEST_EXEC_DIR"), marker);
	test_options(&o, 1);
	o.exec[0].command = command;
	p = fp_test_pool_with(&o);
	fp_test_collect_init(&c, p, 1);
	assert_int_equal(fp_pool_apply_async(p, "py.echo", "1", 1, NULL, fp_test_collect_item,
					     fp_test_collect_done, &c, NULL), 0);
	/* It stayed queued for good before. */
	assert_true(fp_test_run_until(p, fp_test_collected, &c, 20000));
	msg = c.r[0].message;
	if (c.r[0].status != FP_ITEM_START_FAILURE)
		fail_msg("want start_failure, got %s: %s", fp_item_status_name(c.r[0].status),
			 msg ? msg : c.r[0].value);
	assert_non_null(strstr(msg, "exec pool py: 3 starts in a row failed, the last: "
				    "worker program (pid "));
	assert_non_null(strstr(msg, ") exited with status 1 before saying ready; its last output:\n"
				    "Traceback (most recent call last):\n"));
	assert_non_null(strstr(msg, "\nModuleNotFoundError: No module named "
				    "'forkpool_no_such_module'"));
	/* The log has it too, with the traceback (forkpoold: at warn). */
	assert_true(fp_test_log_has("failed to start: worker program"));
	assert_true(fp_test_log_has("; its last output:\nTraceback (most recent call last):"));

	assert_int_equal(fp_pool_apply(p, "py.echo", "2", 1, NULL, &r), FP_EUNAVAILABLE);
	assert_true(pool_unavailable(p));
	assert_non_null(strstr(fp_pool_unavailable(p, "py.echo"), "ModuleNotFoundError"));
	assert_null(fp_pool_unavailable(p, "echo"));
	apply_ok(p, "echo", "3", "3");

	assert_int_equal(unlink(marker), 0);
	assert_true(fp_test_run_until(p, pool_available, p, 20000));
	apply_ok(p, "py.echo", "4", "4");
	fp_test_collect_free(&c);
	fp_pool_free(p);
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


/* --- an exec pool's own limits ------------------------------------------- */

/* A C worker's pid, for telling it apart from the exec pool's. */
static pid_t c_pid(fp_pool *p)
{
	return apply_int(p, "pid", "null");
}

static void own_max_tasks_per_child_recycles_after_exactly_k(void **state)
{
	fp_options o;
	fp_pool *p;
	pid_t pids[7], c_before;

	test_options(&o, 1);
	o.max_tasks_per_child = 1000;
	o.max_tasks_jitter = 500;
	o.exec[0].max_tasks_per_child = 3;
	p = fp_test_pool_with(&o);
	c_before = c_pid(p);
	for (int i = 0; i < 7; i++)
		pids[i] = fp_test_apply_pid(p, "py.pid", NULL);
	/* Exactly 3: the pool's jitter spreads the pool's limit, not this one. */
	assert_int_equal(pids[0], pids[1]);
	assert_int_equal(pids[1], pids[2]);
	assert_true(pids[3] != pids[2]);
	assert_int_equal(pids[3], pids[4]);
	assert_int_equal(pids[4], pids[5]);
	assert_true(pids[6] != pids[5]);
	/* The C worker keeps its pid: 1000 is its limit. */
	for (int i = 0; i < 7; i++)
		assert_int_equal(c_pid(p), c_before);
	fp_pool_free(p);

	/* The other way round: C workers recycle after 2, the programs never. */
	test_options(&o, 1);
	o.max_tasks_per_child = 2;
	o.exec[0].max_tasks_per_child = FP_EXEC_NO_LIMIT;
	p = fp_test_pool_with(&o);
	pids[0] = fp_test_apply_pid(p, "py.pid", NULL);
	c_before = c_pid(p);
	c_pid(p);
	assert_true(c_pid(p) != c_before);
	for (int i = 0; i < 6; i++)
		assert_int_equal(fp_test_apply_pid(p, "py.pid", NULL), pids[0]);
	fp_pool_free(p);
}

static void tasks_limit_shows_the_pools_own(void **state)
{
	struct fp_worker_stats ws[4];
	fp_options o;
	fp_pool *p;
	size_t n;

	test_options(&o, 1);
	o.max_tasks_per_child = 1000;
	o.exec[0].max_tasks_per_child = 7;
	p = fp_test_pool_with(&o);
	fp_test_apply_pid(p, "py.pid", NULL);
	n = fp_pool_workers(p, ws, 4);
	assert_true(n >= 2 && n <= 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ws[i].tasks_limit, ws[i].pool ? 7 : 1000);
	fp_pool_free(p);
}

static void own_timeout_shorter_and_longer_than_the_pools(void **state)
{
	fp_options o;
	fp_pool *p;

	/* Shorter: the program gets 300 ms where C tasks get a minute. */
	test_options(&o, 1);
	o.timeout_ms = 60000;
	o.exec[0].timeout_ms = 300;
	p = fp_test_pool_with(&o);
	apply_fails(p, "py.hang", "null", NULL, FP_ITEM_TIMEOUT, "killed by SIGTERM");
	apply_ok(p, "sleep", "500", "500");
	fp_pool_free(p);

	/* Longer: C tasks time out after 300 ms, the program has 60 s. */
	test_options(&o, 1);
	o.timeout_ms = 300;
	o.exec[0].timeout_ms = 60000;
	p = fp_test_pool_with(&o);
	apply_ok(p, "py.sleep", "700", "700");
	apply_fails(p, "sleep", "700", NULL, FP_ITEM_TIMEOUT, "300 ms");
	fp_pool_free(p);

	/* None, where the pool has one: a call that asks for one still gets it. */
	test_options(&o, 1);
	o.timeout_ms = 300;
	o.exec[0].timeout_ms = FP_EXEC_NO_LIMIT;
	p = fp_test_pool_with(&o);
	apply_ok(p, "py.sleep", "700", "700");
	fp_pool_free(p);
}

static void own_max_rss_retires_a_growing_program(void **state)
{
	fp_options o;
	fp_pool *p;
	pid_t first, c_before;

	test_options(&o, 1);
	o.exec[0].max_rss_bytes = 96u << 20;
	p = fp_test_pool_with(&o);
	c_before = c_pid(p);
	first = fp_test_apply_pid(p, "py.pid", NULL);
	/* 40 MiB more each time: under 96 MiB at first, over it soon. */
	apply_int(p, "py.grow", "40");
	assert_int_equal(fp_test_apply_pid(p, "py.pid", NULL), first);
	apply_int(p, "py.grow", "40");
	apply_int(p, "py.grow", "40");
	assert_true(fp_test_apply_pid(p, "py.pid", NULL) != first);
	assert_true(fp_test_log_has("recycled: rss"));
	/* The C worker has no RSS limit and allocates more than that, unharmed. */
	apply_ok(p, "alloc", "150", NULL);
	assert_int_equal(c_pid(p), c_before);
	fp_pool_free(p);
}

static void bad_exec_limits_are_refused(void **state)
{
	fp_options o;
	fp_pool *p = NULL;
	char err[512];

	test_options(&o, 1);
	o.exec[0].max_tasks_per_child = (uint64_t)UINT32_MAX + 1;
	assert_int_equal(fp_pool_new(&p, NULL, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "exec pool py: max_tasks_per_child 4294967296 is over"));
}

/* --- process groups: what the program starts ends with it --------------- */

static int logged_exit_between_tasks(void *data)
{
	return fp_test_log_has("exited with status 4 while it had no task");
}

/* The program's child, started by py.spawn; killed by pid in any case. */
static pid_t grandchild = -1;

static int teardown_grandchild(void **state)
{
	if (grandchild > 0)
		kill(grandchild, SIGKILL);
	grandchild = -1;
	return 0;
}

static fp_pool *pool_with_grandchild(uint64_t max_tasks)
{
	fp_options o;
	fp_pool *p;

	test_options(&o, 1);
	o.exec[0].max_tasks_per_child = max_tasks;
	p = fp_test_pool_with(&o);
	grandchild = apply_int(p, "py.spawn", "null");
	assert_true(grandchild > 1);
	assert_false(dead(&grandchild));
	return p;
}

static void grandchild_ends_when_the_worker_is_recycled(void **state)
{
	fp_pool *p = pool_with_grandchild(2);

	apply_ok(p, "py.square", "3", "9");   /* the second task: it retires */
	assert_true(fp_test_run_until(p, dead, &grandchild, 5000));
	apply_ok(p, "py.square", "4", "16");
	fp_pool_free(p);
}

static void grandchild_ends_when_the_program_times_out(void **state)
{
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	fp_pool *p = pool_with_grandchild(0);

	co.timeout_ms = 300;
	/* The program ignores SIGTERM: SIGKILL after the grace, for all. */
	apply_fails(p, "py.hang", "\"stubborn\"", &co, FP_ITEM_TIMEOUT, "300 ms timeout");
	assert_true(fp_test_run_until(p, dead, &grandchild, 5000));
	fp_pool_free(p);
}

static void grandchild_ends_when_the_program_crashes(void **state)
{
	fp_pool *p = pool_with_grandchild(0);

	/*
	 * The grandchild holds the program's stdout open: the crash is seen
	 * from SIGCHLD, at once, not when the task would time out (60 s).
	 */
	apply_fails(p, "py.crash", "null", NULL, FP_ITEM_CRASH, "killed by SIGSEGV");
	assert_true(fp_test_run_until(p, dead, &grandchild, 5000));
	apply_ok(p, "py.square", "5", "25");
	fp_pool_free(p);
}

static void grandchild_ends_when_the_program_exits_between_tasks(void **state)
{
	fp_pool *p = pool_with_grandchild(0);
	pid_t prog = fp_test_apply_pid(p, "py.pid", NULL);

	/* Its stdout stays open (the grandchild): the exit is seen from SIGCHLD. */
	assert_int_equal(apply_int(p, "py.exit_soon", "4"), 4);
	assert_true(fp_test_run_until(p, dead, &grandchild, 5000));
	assert_true(fp_test_run_until(p, dead, &prog, 5000));
	assert_true(fp_test_run_until(p, logged_exit_between_tasks, NULL, 5000));
	assert_true(fp_test_apply_pid(p, "py.pid", NULL) != prog);
	fp_pool_free(p);
}

static void grandchild_ends_when_the_shim_is_sigkilled(void **state)
{
	fp_pool *p = pool_with_grandchild(0);
	pid_t prog = fp_test_apply_pid(p, "py.pid", NULL), shim = apply_int(p, "py.ppid", "null");

	/* PDEATHSIG takes the program; only the group kill takes its child. */
	assert_true(shim > 1 && shim != getpid());
	assert_int_equal(kill(shim, SIGKILL), 0);
	assert_true(fp_test_run_until(p, dead, &grandchild, 5000));
	assert_true(fp_test_run_until(p, dead, &prog, 5000));
	assert_true(fp_test_apply_pid(p, "py.pid", NULL) != prog);
	fp_pool_free(p);
}

static void grandchild_ends_when_its_call_is_cancelled(void **state)
{
	fp_pool *p = pool_with_grandchild(0);
	struct fp_test_collect c;
	uint64_t id;

	fp_test_collect_init(&c, p, 1);
	assert_int_equal(fp_pool_apply_async(p, "py.sleep", "20000", 5, NULL, fp_test_collect_item,
					     fp_test_collect_done, &c, &id), 0);
	assert_true(fp_test_run_until(p, running, p, 5000));
	assert_int_equal(fp_pool_cancel(p, id), 0);
	assert_true(fp_test_run_until(p, fp_test_collected, &c, 5000));
	assert_int_equal(c.r[0].status, FP_ITEM_CANCELLED);
	fp_test_collect_free(&c);
	assert_true(fp_test_run_until(p, dead, &grandchild, 5000));
	fp_pool_free(p);
}

static void grandchild_ends_at_shutdown(void **state)
{
	fp_pool *p = pool_with_grandchild(0);

	assert_int_equal(fp_pool_shutdown(p, 2000), 0);
	assert_true(fp_test_run_until(p, dead, &grandchild, 5000));
	fp_pool_free(p);
}

int main(void)
{
	const char *dir = getenv("FP_TEST_EXEC_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(apply_map_and_generator),
		cmocka_unit_test(tasks_workers_and_unknown_tasks),
		cmocka_unit_test(c_exec_c_pipeline_matches_sequential),
		cmocka_unit_test(exec_tasks_are_taken_before_their_pool_is_ready),
		cmocka_unit_test(unknown_exec_stage_is_refused_once_known),
		cmocka_unit_test(exec_generator_stage_fans_out),
		cmocka_unit_test(exec_reduce_folds_everything),
		cmocka_unit_test(crash_in_exec_stage_fails_only_that_input),
		cmocka_unit_test(fast_c_stage_before_exec_stage_stays_within_the_buffer),
		cmocka_unit_test(exec_generator_before_slow_c_stage_is_paused),
		cmocka_unit_test(exec_stage_timeout_cap_and_input_order),
		cmocka_unit_test(cancel_mid_pipeline_with_exec_stage),
		cmocka_unit_test(crash_fails_one_item_and_is_replaced),
		cmocka_unit_test(exec_workers_are_cloned_by_the_zygote),
		cmocka_unit_test(non_json_output_is_quoted),
		cmocka_unit_test(hang_past_timeout_kills_the_program),
		cmocka_unit_test(start_failures_say_what_happened),
		cmocka_unit_test(program_that_cannot_start_fails_its_items_until_it_can),
		cmocka_unit_test(recycles_after_exactly_k_tasks),
		cmocka_unit_test(ten_mib_argument_and_result),
		cmocka_unit_test(cancel_kills_the_program),
		cmocka_unit_test(print_goes_to_the_log),
		cmocka_unit_test(reload_starts_new_programs),
		cmocka_unit_test(shell_example_worker),
		cmocka_unit_test(bad_exec_options_are_refused),
		cmocka_unit_test(own_max_tasks_per_child_recycles_after_exactly_k),
		cmocka_unit_test(tasks_limit_shows_the_pools_own),
		cmocka_unit_test(own_timeout_shorter_and_longer_than_the_pools),
		cmocka_unit_test(own_max_rss_retires_a_growing_program),
		cmocka_unit_test(bad_exec_limits_are_refused),
		cmocka_unit_test_teardown(grandchild_ends_when_the_worker_is_recycled,
					  teardown_grandchild),
		cmocka_unit_test_teardown(grandchild_ends_when_the_program_times_out,
					  teardown_grandchild),
		cmocka_unit_test_teardown(grandchild_ends_when_the_program_crashes,
					  teardown_grandchild),
		cmocka_unit_test_teardown(grandchild_ends_when_the_program_exits_between_tasks,
					  teardown_grandchild),
		cmocka_unit_test_teardown(grandchild_ends_when_the_shim_is_sigkilled,
					  teardown_grandchild),
		cmocka_unit_test_teardown(grandchild_ends_when_its_call_is_cancelled,
					  teardown_grandchild),
		cmocka_unit_test_teardown(grandchild_ends_at_shutdown, teardown_grandchild),
	};

	if (!dir || !getenv("FP_TEST_SH_WORKER")) {
		fprintf(stderr, "FP_TEST_EXEC_DIR and FP_TEST_SH_WORKER must be set\n");
		return 1;
	}
	snprintf(py_command, sizeof(py_command), "python3 '%s/pyworker.py'", dir);
	snprintf(sh_command, sizeof(sh_command), "'%s'", getenv("FP_TEST_SH_WORKER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
