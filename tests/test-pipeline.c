/*
 * Generator tasks and pipelines, end to end: real workers, real crashes.
 * Runs once per loop backend (FORKPOOL_LOOP in the environment).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "forkpool.h"
#include "fp_test.h"
#include "fp_test_pipe.h"
#include "fp_test_pool.h"

/* --- helpers ------------------------------------------------------------- */

/* A pool with the test modules `pipe` and `abiv1` loaded. */
static fp_pool *new_pool(unsigned workers, char **paths)
{
	fp_options o;

	fp_test_options(&o, workers);
	paths[0] = fp_test_module_path("libfp-pipe.so");
	paths[1] = fp_test_module_path("libfp-abiv1.so");
	o.modules[0] = paths[0];
	o.modules[1] = paths[1];
	return fp_test_pool_with(&o);
}

static void free_pool(fp_pool *p, char **paths)
{
	fp_pool_free(p);
	free(paths[0]);
	free(paths[1]);
}

static int apply(fp_pool *p, const char *task, const char *args, struct fp_result *r)
{
	return fp_pool_apply(p, task, args, strlen(args), NULL, r);
}

/* Input `bad` failed at `stage` with `status`; every other one gave one output. */
static void assert_only_input_failed(const struct fp_test_pipe *o, size_t n,
				     size_t bad, unsigned stage, fp_item_status status)
{
	assert_int_equal(o->errors, 1);
	assert_int_equal(o->err_index, bad);
	assert_int_equal(o->err_stage, stage);
	assert_int_equal(o->err_status, status);
	assert_int_equal(o->outputs, n - 1);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(o->per_input[i], i == bad ? 0 : 1);
}

static long long identity(size_t i) { return (long long)i; }
static long long mod1000(size_t i) { return (long long)(i % 1000); }
static long long mod5(size_t i) { return (long long)(i % 5); }

/* --- generator tasks in map and apply ------------------------------------ */

/* One apply and what it must answer: the value when ok, else words of the message. */
static const struct apply_case {
	const char *task, *args;
	fp_item_status status;
	const char *want;
} generator_cases[] = {
	{ "words", "\" Hello  \\\"big\\\"\\tWorld \"", FP_ITEM_OK,
	  "[\"Hello\",\"\\\"big\\\"\",\"World\"]" },
	/* A declared generator that emits nothing answers [], a plain task null. */
	{ "pipe.none", "1", FP_ITEM_OK, "[]" },
	{ "pipe.twice", "\"x\"", FP_ITEM_OK, "[\"x\",\"x\"]" },
	/* Emitting and returning both is an error that names both. */
	{ "pipe.both", "1", FP_ITEM_TASK_ERROR, "both returned a value and emitted 1 output" },
	/* An output that is not JSON fails the item, naming which output. */
	{ "pipe.badjson", "1", FP_ITEM_BAD_OUTPUT, "pipe.badjson (output #2)" },
	/* The other demo tasks of issue 6. */
	{ "lower", "\"MiXeD Case\"", FP_ITEM_OK, "\"mixed case\"" },
	{ "sum", "[1, 2, 3]", FP_ITEM_OK, "6" },
	{ "sum", "[1, 2.5]", FP_ITEM_OK, "3.5" },
	{ "count", "[\"a\", {\"a\": 2, \"b\": 1}, \"b\"]", FP_ITEM_OK, "{\"a\":3,\"b\":2}" },
};

static void generator_outputs_come_back_as_a_list_per_item(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	const struct fp_buf items[] = { { "0", 1 }, { "1", 1 }, { "3", 1 }, { "-1", 2 } };
	struct fp_result *r, one;
	size_t i;

	assert_int_equal(fp_pool_map(p, "range", items, 4, NULL, &r), 0);
	assert_int_equal(r[0].status, FP_ITEM_OK);
	assert_string_equal(r[0].value, "[]");
	assert_string_equal(r[1].value, "[0]");
	assert_string_equal(r[2].value, "[0,1,2]");
	assert_int_equal(r[3].status, FP_ITEM_TASK_ERROR);
	assert_non_null(strstr(r[3].message, "range: expected a whole number"));
	fp_results_free(r, 4);

	for (i = 0; i < sizeof(generator_cases) / sizeof(generator_cases[0]); i++) {
		const struct apply_case *c = &generator_cases[i];

		assert_int_equal(apply(p, c->task, c->args, &one), 0);
		if (one.status != c->status)
			fail_msg("%s(%s): want %s, got %s: %s", c->task, c->args,
				 fp_item_status_name(c->status), fp_item_status_name(one.status),
				 one.message ? one.message : one.value);
		if (c->status == FP_ITEM_OK)
			assert_string_equal(one.value, c->want);
		else
			assert_non_null(strstr(one.message, c->want));
		fp_result_clear(&one);
	}

	/* fp_pool_tasks() says which tasks are generators. */
	const struct fp_task_info *t = fp_pool_tasks(p, &i);
	int seen = 0;
	while (i--) {
		if (strcmp(t[i].name, "range") == 0 || strcmp(t[i].name, "words") == 0 ||
		    strcmp(t[i].name, "pipe.twice") == 0) {
			assert_true(t[i].generator);
			seen++;
		} else if (strcmp(t[i].name, "square") == 0 || strcmp(t[i].name, "v1.twice") == 0) {
			assert_false(t[i].generator);
			seen++;
		}
	}
	assert_int_equal(seen, 5);
	free_pool(p, paths);
}

/* The worker checks plain values without jansson: as strictly as jansson. */
static void values_are_checked_as_json(void **state)
{
	static const char *const bad[] = {
		"01", "1.", "-", "1e", "1e+", ".5", "+1", "tru", "nul", "\"ab", "\"a\"b\"",
		"\"\x01\"", "[1,", "1 2",
	};
	static const char *const good[] = {
		"0", "-0.5E+3", "12e-7", " 7 ", "\"\"", "\"x\\\"y\"", "\"caf\xc3\xa9\"",
		"true", "false", "null", "[1, {\"a\": null}]",
	};
	char *paths[2];
	fp_pool *p = new_pool(1, paths);
	struct fp_result r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(apply(p, "echo", bad[i], &r), 0);
		if (r.status != FP_ITEM_BAD_OUTPUT)
			fail_msg("echo %s: %s", bad[i], fp_item_status_name(r.status));
		fp_result_clear(&r);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(apply(p, "echo", good[i], &r), 0);
		if (r.status != FP_ITEM_OK)
			fail_msg("echo %s: %s", good[i], r.message);
		assert_string_equal(r.value, good[i]);
		fp_result_clear(&r);
	}
	free_pool(p, paths);
}

static void abi1_module_loads_and_runs(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(1, paths);
	struct fp_result r;

	assert_int_equal(apply(p, "v1.twice", "21", &r), 0);
	assert_int_equal(r.status, FP_ITEM_OK);
	assert_string_equal(r.value, "42");
	fp_result_clear(&r);
	free_pool(p, paths);
}

/* --- pipelines ----------------------------------------------------------- */

static void three_stages_equal_doing_it_sequentially(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(3, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 100000;

	st[0].task = "square";
	st[1].task = "pipe.inc";
	st[2].task = "square";
	fp_test_inputs_numbers(&in, n, mod1000);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n);
	for (i = 0; i < n; i++) {
		long long x = (long long)(i % 1000), want = (x * x + 1) * (x * x + 1);
		assert_int_equal(o.per_input[i], 1);
		assert_int_equal(o.value_sum[i], want);
	}
	/* Plain quick stages: items went through stages 1 and 2 chained to stage 0. */
	assert_true(o.final[1].fused > 0);
	assert_true(o.final[2].fused > 0);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

/*
 * The same from borrowed inputs: stage 0 reads the caller's items where
 * they are, and every output is there once and right.
 */
static void three_stages_from_borrowed_inputs(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 20000;

	st[0].task = "square";
	st[1].task = "pipe.inc";
	st[2].task = "square";
	fp_test_inputs_numbers(&in, n, mod1000);
	fp_test_pipe_init(&o, p, n, NULL);
	o.borrow = 1;
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n);
	for (i = 0; i < n; i++) {
		long long x = (long long)(i % 1000), want = (x * x + 1) * (x * x + 1);
		assert_int_equal(o.per_input[i], 1);
		assert_int_equal(o.value_sum[i], want);
	}
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void range_fans_out(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 300;

	st[0].task = "range";
	st[1].task = "square";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n * (n - 1) / 2);
	for (i = 0; i < n; i++) {
		long long k = (long long)i, want = (k - 1) * k * (2 * k - 1) / 6;
		assert_int_equal(o.per_input[i], i);
		assert_int_equal(o.value_sum[i], i ? want : 0);
	}
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static const char *const lines[] = {
	"The quick brown fox", "jumps over the lazy dog", "THE DOG barks",
	"", "  fox   and Dog  ", "the end",
};

static void word_count_with_reduce(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(3, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	size_t reps = 200, n = reps * 6, i;
	struct fp_test_inputs in = { 0 };
	struct fp_test_pipe o;
	json_t *got, *want;
	json_error_t jerr;
	char *text;

	/* Each line 200 times, as JSON strings. */
	in.n = n;
	in.items = calloc(n, sizeof(*in.items));
	in.text = malloc(n * 64);
	for (i = 0; i < n; i++) {
		int l = snprintf(in.text + i * 64, 64, "\"%s\"", lines[i % 6]);
		in.items[i] = (struct fp_buf){ in.text + i * 64, (size_t)l };
	}
	st[0].task = "words";
	st[1].task = "lower";
	po.reduce = "count";
	po.reduce_batch = 7;      /* many rounds of folding its own results */
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 2, &in, &po, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, 1);
	assert_int_equal(o.value_stage, 2);
	got = json_loads(o.value, 0, &jerr);
	assert_non_null(got);
	want = json_pack("{sI sI sI sI sI sI sI sI sI sI sI}",
			 "the", (json_int_t)reps * 4, "quick", (json_int_t)reps,
			 "brown", (json_int_t)reps, "fox", (json_int_t)reps * 2,
			 "jumps", (json_int_t)reps, "over", (json_int_t)reps,
			 "lazy", (json_int_t)reps, "dog", (json_int_t)reps * 3,
			 "barks", (json_int_t)reps, "and", (json_int_t)reps,
			 "end", (json_int_t)reps);
	text = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
	if (!json_equal(got, want))
		fail_msg("word counts: %s", text);
	free(text);
	json_decref(got);
	json_decref(want);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void reduce_of_nothing_folds_an_empty_list(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[1] = { FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct fp_test_pipe o;

	st[0].task = "range";
	po.reduce = "sum";
	fp_test_inputs_numbers(&in, 3, mod5);   /* 0, 1, 2: one output 0, one 0 and 1 */
	fp_test_pipe_init(&o, p, 3, NULL);
	fp_test_pipe_run(p, st, 1, &in, &po, &o);
	assert_int_equal(o.outputs, 1);
	assert_string_equal(o.value, "1");
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);

	fp_test_inputs_numbers(&in, 0, mod5);
	fp_test_pipe_init(&o, p, 0, NULL);
	fp_test_pipe_run(p, st, 1, &in, &po, &o);
	assert_int_equal(o.outputs, 1);
	assert_string_equal(o.value, "0");
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void crash_in_stage_two_fails_only_that_item(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 200;

	st[0].task = "echo";
	st[1].task = "pipe.crash13";
	st[2].task = "square";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_only_input_failed(&o, n, 13, 1, FP_ITEM_CRASH);
	assert_non_null(strstr(o.err_msg, "pipe.crash13"));
	/*
	 * A fresh pool fuses from the first chunk (no task is known to be
	 * slow), so input 13 died inside a chain, at its second task.
	 */
	assert_true(o.final[1].fused > 0);
	assert_int_equal(o.final[1].failed, 1);
	assert_int_equal(o.final[0].failed, 0);
	assert_int_equal(o.final[2].in, n - 1);
	for (i = 0; i < n; i++)
		if (i != 13)
			assert_int_equal(o.value_sum[i], (long long)(i * i));
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void retried_stage_counts_only_its_items_starts(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 200;

	/*
	 * Input 13 kills its worker at stage 1 every time: three starts with
	 * retries 2. The items sent in the same chunks behind it never started
	 * there, so each output comes with one attempt.
	 */
	st[0].task = "echo";
	st[1].task = "pipe.crash13";
	st[1].retries = 2;
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_only_input_failed(&o, n, 13, 1, FP_ITEM_CRASH);
	assert_int_equal(o.err_attempts, 3);
	assert_non_null(strstr(o.err_msg, "attempt 3 of 3"));
	assert_int_equal(o.attempts_max, 1);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

/* A pool with tests/modules/attempts.c loaded (*path to free). */
static fp_pool *attempts_pool(unsigned workers, char **path)
{
	fp_options o;

	fp_test_options(&o, workers);
	*path = fp_test_module_path("libfp-attempts.so");
	o.modules[0] = *path;
	return fp_test_pool_with(&o);
}

/* n inputs of attempts.starts: count in DIR/iI, fail by HOW for the first k starts. */
static void starts_inputs(struct fp_test_inputs *in, size_t n, const char *dir,
			  const char *how, int k)
{
	char *t;

	in->n = n;
	in->items = calloc(n, sizeof(*in->items));
	in->text = calloc(n, 160);
	assert_true(in->items && in->text);
	for (size_t i = 0; i < n; i++) {
		t = in->text + i * 160;
		snprintf(t, 160, "\"%s/i%zu %s %d\"", dir, i, how, k);
		in->items[i] = (struct fp_buf){ t, strlen(t) };
	}
}

static void remove_dir(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void emitted_outputs_are_not_given_twice_by_a_retry(void **state)
{
	char *path, dir[64] = "/tmp/fp-attempts.XXXXXX";
	fp_pool *p = attempts_pool(2, &path);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;

	/*
	 * Input 0 emits "1" twice at stage 0, which hands both on, then kills
	 * its worker: with retries it would emit them again. It is not retried;
	 * the other input runs as usual.
	 */
	assert_non_null(mkdtemp(dir));
	starts_inputs(&in, 1, dir, "emitcrash", 5);
	st[0].task = "attempts.starts";
	st[0].retries = 2;
	st[1].task = "echo";
	fp_test_pipe_init(&o, p, 1, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_int_equal(o.outputs, 2);
	assert_int_equal(o.per_input[0], 2);
	assert_int_equal(o.errors, 1);
	assert_int_equal(o.err_status, FP_ITEM_CRASH);
	assert_int_equal(o.err_attempts, 1);
	assert_non_null(strstr(o.err_msg, "not retried"));
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	remove_dir(dir);
	fp_pool_free(p);
	free(path);
}

static void stage_task_errors_are_retried_when_asked(void **state)
{
	char *path, dir[64] = "/tmp/fp-attempts.XXXXXX";
	fp_pool *p = attempts_pool(2, &path);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 50;

	/* Every input fails its first start at stage 0, and is run again. */
	assert_non_null(mkdtemp(dir));
	starts_inputs(&in, n, dir, "fail", 1);
	st[0].task = "attempts.starts";
	st[0].retries = 1;
	st[0].retry_on = FP_RETRY_TASK_ERROR;
	st[1].task = "echo";
	po.on_start = fp_test_pipe_start;
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 2, &in, &po, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n);
	/* Each input's value is its starts at stage 0: exactly two. */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(o.value_sum[i], 2);
	/* Stage 1 joins stage 0's chain (or not): its outputs' attempts are 1 or the chain's 2. */
	assert_true(o.attempts_max >= 1 && o.attempts_max <= 2);
	assert_int_equal(o.final[0].failed, 0);
	assert_int_equal(o.final[0].done, n);
	/* Told once, before the first output. */
	assert_int_equal(o.starts, 1);
	assert_int_equal(o.early, 0);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	remove_dir(dir);
	fp_pool_free(p);
	free(path);
}

static long long two_hundred(size_t i) { return 200; }
static long long seven_sleeps(size_t i) { return i == 7 ? 5000 : 1; }

static void fast_stage_before_slow_one_stays_within_the_buffer(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(3, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;

	/* Two inputs of 200 outputs each, into a 2 ms stage behind 16 places. */
	st[0].task = "range";
	st[1].task = "pipe.slow";
	st[1].buffer = 16;
	st[1].workers = 1;
	fp_test_inputs_numbers(&in, 2, two_hundred);
	fp_test_pipe_init(&o, p, 2, "pipe.slow");
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, 400);
	/* The buffer was used, and never went over its bound. */
	assert_true(o.waiting_seen[1] > 0);
	assert_true(o.waiting_max[1] >= o.waiting_seen[1]);
	if (o.waiting_max[1] > 16)
		fail_msg("waiting_max %llu is over the buffer of 16",
			 (unsigned long long)o.waiting_max[1]);
	/* workers = 1: never two running it at once. */
	assert_true(o.busy_max <= 1);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void cancel_mid_pipeline_ends_the_call_once(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	struct fp_result r;
	size_t n = 2000;

	st[0].task = "echo";
	st[1].task = "pipe.slow";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	o.cancel_after = 10;
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	fp_test_pipe_assert_cancelled(&o, n);
	/* The pool goes on. */
	assert_int_equal(apply(p, "square", "7", &r), 0);
	assert_string_equal(r.value, "49");
	fp_result_clear(&r);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void ordered_results_come_in_input_order(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(3, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 3000;

	st[0].task = "range";
	st[1].task = "pipe.crash13";    /* 13 never appears: range(i % 5) < 5 */
	st[1].buffer = 64;              /* the window: at most 64 inputs ahead */
	po.ordered = 1;
	fp_test_inputs_numbers(&in, n, mod5);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 2, &in, &po, &o);
	assert_int_equal(o.errors, 0);
	assert_false(o.out_of_order);
	assert_int_equal(o.outputs, (n / 5) * (0 + 1 + 2 + 3 + 4));
	for (i = 0; i < n; i++)
		assert_int_equal(o.per_input[i], i % 5);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

/* What on_input_done saw: the fixture first, as its callbacks take the same data. */
struct inputs_seen {
	struct fp_test_pipe o;
	size_t *told;                /* per input: times told */
	size_t n, count, next;
	size_t mod;                  /* input i makes i % mod outputs; 0: one */
	int bad;                     /* told with outputs missing, or after the end */
	int out_of_order;            /* ordered: told before an input before it */
	int after_cancel;
};

static void input_done_seen(fp_pool *p, uint64_t id, size_t input, void *data)
{
	struct inputs_seen *x = data;

	(void)p;
	(void)id;
	if (input >= x->n || x->o.done_calls ||
	    x->o.per_input[input] != (x->mod ? input % x->mod : 1))
		x->bad++;
	if (input < x->n)
		x->told[input]++;
	x->out_of_order += input != x->next;
	x->next = input + 1;
	x->after_cancel += x->o.cancel_rc != 1;
	x->count++;
}

static void inputs_seen_init(struct inputs_seen *x, fp_pool *p, size_t n, size_t mod)
{
	fp_test_pipe_init(&x->o, p, n, NULL);
	x->told = calloc(n ? n : 1, sizeof(*x->told));
	assert_non_null(x->told);
	x->n = n;
	x->mod = mod;
	x->count = x->next = 0;
	x->bad = x->out_of_order = x->after_cancel = 0;
}

static void inputs_seen_free(struct inputs_seen *x)
{
	free(x->told);
	fp_test_pipe_free(&x->o);
}

/*
 * An input is told done once, after every output it made (through a
 * generator, in every stage) was delivered and before the call's end; in
 * input order when the results are; never with a reduce, nor once the
 * call is cancelled.
 */
static void inputs_are_told_done_once_after_their_outputs(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(3, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct inputs_seen x;
	size_t i, n = 3000;

	/* range(i % 5): input i makes i % 5 outputs, through two more stages. */
	st[0].task = "range";
	st[1].task = "echo";
	st[2].task = "echo";
	st[1].buffer = 64;
	po.on_input_done = input_done_seen;
	fp_test_inputs_numbers(&in, n, mod5);
	for (int ordered = 0; ordered < 2; ordered++) {
		po.ordered = ordered;
		inputs_seen_init(&x, p, n, 5);
		fp_test_pipe_run(p, st, 3, &in, &po, &x.o);
		assert_int_equal(x.o.errors, 0);
		assert_int_equal(x.bad, 0);
		assert_int_equal(x.count, n);
		for (i = 0; i < n; i++)
			assert_int_equal(x.told[i], 1);
		if (ordered)
			assert_int_equal(x.out_of_order, 0);
		inputs_seen_free(&x);
	}
	/* With a reduce no input is its own. */
	po.ordered = 0;
	po.reduce = "sum";
	inputs_seen_init(&x, p, n, 5);
	fp_test_pipe_run(p, st, 3, &in, &po, &x.o);
	assert_int_equal(x.count, 0);
	assert_string_equal(x.o.value, "6000");
	inputs_seen_free(&x);
	fp_test_inputs_free(&in);

	/* Cancelled: the inputs it stopped are not done. */
	po.reduce = NULL;
	st[0].task = "echo";
	st[1].task = "pipe.slow";
	fp_test_inputs_numbers(&in, n, identity);
	inputs_seen_init(&x, p, n, 0);
	x.o.cancel_after = 10;
	fp_test_pipe_run(p, st, 2, &in, &po, &x.o);
	fp_test_pipe_assert_cancelled(&x.o, n);
	assert_int_equal(x.after_cancel, 0);
	assert_true(x.count <= x.o.outputs);
	inputs_seen_free(&x);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void stage_timeout_fails_only_that_input(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 40;

	/* Input 7 sleeps 5 s in stage 1, whose timeout is 200 ms. */
	st[0].task = "echo";
	st[1].task = "sleep";
	st[1].timeout_ms = 200;
	fp_test_inputs_numbers(&in, n, seven_sleeps);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 2, &in, NULL, &o);
	assert_only_input_failed(&o, n, 7, 1, FP_ITEM_TIMEOUT);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

/*
 * Stage fusion (pool/pipeline.h) keeps each stage's own failures, timeouts
 * and counters; these run the chains a fresh pool starts with.
 */
static long long four_hundred(size_t i) { return 400; }

static void chained_tasks_are_timed_each_on_its_own(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 2;

	/* Three 400 ms tasks in one chain, each within its 1 s, the chain not. */
	for (int k = 0; k < 3; k++) {
		st[k].task = "sleep";
		st[k].timeout_ms = 1000;
	}
	fp_test_inputs_numbers(&in, n, four_hundred);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n);
	assert_int_equal(o.final[1].fused, n);
	assert_int_equal(o.final[2].fused, n);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void timeout_in_a_chain_fails_its_stage(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 40;

	/* Input 7 sleeps 5 s in stage 1; every stage has the same 300 ms timeout. */
	st[0].task = "echo";
	st[1].task = "sleep";
	st[2].task = "echo";
	for (int k = 0; k < 3; k++)
		st[k].timeout_ms = 300;
	fp_test_inputs_numbers(&in, n, seven_sleeps);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_only_input_failed(&o, n, 7, 1, FP_ITEM_TIMEOUT);
	assert_non_null(strstr(o.err_msg, "task sleep ran past its 300 ms timeout"));
	assert_true(o.final[1].fused > 0);
	assert_int_equal(o.final[1].failed, 1);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void task_emitting_in_a_chain_hands_its_outputs_on(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 3000;

	/* pipe.dup emits twice without being declared a generator. */
	st[0].task = "pipe.inc";
	st[1].task = "pipe.dup";
	st[2].task = "square";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, 2 * n);
	for (i = 0; i < n; i++) {
		assert_int_equal(o.per_input[i], 2);
		assert_int_equal(o.value_sum[i], 2 * (long long)((i + 1) * (i + 1)));
	}
	assert_int_equal(o.final[1].out, 2 * n);
	/* The first chunk reached it chained; once seen emitting, it is never fused. */
	assert_true(o.final[1].fused > 0);
	assert_true(o.final[1].fused < n);
	assert_int_equal(o.final[2].fused, 0);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void stages_with_their_own_rules_are_not_fused(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[5] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT,
			   FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 2000;

	/*
	 * Each stage after the first has one thing that keeps it out of the
	 * chain before it: a retry, its own timeout, a worker cap, a declared
	 * generator.
	 */
	st[0].task = "echo";
	st[1].task = "echo";
	st[1].retries = 1;
	st[2].task = "echo";
	st[2].timeout_ms = 50000;
	st[3].task = "echo";
	st[3].workers = 1;
	st[4].task = "range";
	fp_test_inputs_numbers(&in, n, mod5);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 5, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, (n / 5) * (0 + 1 + 2 + 3 + 4));
	for (int k = 0; k < 5; k++)
		assert_int_equal(o.final[k].fused, 0);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void a_chain_keeps_the_buffer_after_it_within_bound(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(3, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t n = 400;

	/* Stages 0 and 1 chained, feeding a 2 ms stage on one worker behind 16 places. */
	st[0].task = "echo";
	st[1].task = "pipe.inc";
	st[2].task = "pipe.slow";
	st[2].workers = 1;
	st[2].buffer = 16;
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n);
	assert_true(o.final[1].fused > 0);
	/* The room checked is the buffer after the chain's last stage. */
	assert_true(o.waiting_seen[2] > 0);
	if (o.waiting_max[2] > 16 || o.final[2].waiting_max > 16)
		fail_msg("waiting_max %llu is over the buffer of 16",
			 (unsigned long long)o.final[2].waiting_max);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void chains_keep_input_order_and_feed_a_reduce(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(3, paths);
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	long long want = 0;
	size_t i, n = 20000;
	char text[32];

	st[0].task = "pipe.inc";
	st[1].task = "square";
	st[2].task = "pipe.inc";
	st[1].buffer = 256;             /* the ordered window */
	fp_test_inputs_numbers(&in, n, mod1000);
	po.ordered = 1;
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, &po, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, n);
	assert_false(o.out_of_order);
	assert_true(o.final[2].fused > 0);
	for (i = 0; i < n; i++) {
		long long x = (long long)(i % 1000) + 1;
		assert_int_equal(o.value_sum[i], x * x + 1);
		want += x * x + 1;
	}
	fp_test_pipe_free(&o);

	/* The same chain folded by a reduce: one value, their sum. */
	po.ordered = 0;
	po.reduce = "sum";
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, &po, &o);
	assert_int_equal(o.errors, 0);
	assert_int_equal(o.outputs, 1);
	assert_int_equal(o.value_stage, 3);
	snprintf(text, sizeof(text), "%lld", want);
	assert_string_equal(o.value, text);
	assert_true(o.final[2].fused > 0);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void chained_items_count_every_task_for_recycling(void **state)
{
	char *paths[2];
	fp_options opts;
	fp_pool *p;
	fp_stage st[3] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_pool_stats ps;
	struct fp_test_inputs in;
	struct fp_test_pipe o;
	size_t i, n = 300;

	fp_test_options(&opts, 2);
	paths[0] = fp_test_module_path("libfp-pipe.so");
	paths[1] = fp_test_module_path("libfp-abiv1.so");
	opts.modules[0] = paths[0];
	opts.modules[1] = paths[1];
	opts.max_tasks_per_child = 10;
	p = fp_test_pool_with(&opts);
	st[0].task = "pipe.inc";
	st[1].task = "pipe.inc";
	st[2].task = "pipe.inc";
	fp_test_inputs_numbers(&in, n, identity);
	fp_test_pipe_init(&o, p, n, NULL);
	fp_test_pipe_run(p, st, 3, &in, NULL, &o);
	assert_int_equal(o.errors, 0);
	for (i = 0; i < n; i++)
		assert_int_equal(o.value_sum[i], (long long)i + 3);
	assert_true(o.final[1].fused > 0);
	/*
	 * 900 tasks, each counted once however it was sent: every worker ran
	 * exactly 10 before it was recycled, the last of each slot fewer.
	 */
	fp_pool_stats(p, &ps);
	assert_int_equal(ps.done, 3 * n);
	assert_true(ps.recycles >= 3 * n / 10 - 2);
	assert_true(ps.recycles <= 3 * n / 10);
	assert_int_equal(ps.crashes, 0);
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void failed_reduce_is_an_error_and_no_value(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(2, paths);
	fp_stage st[1] = { FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_inputs in;
	struct fp_test_pipe o;

	/* sum of numbers is fine; count of numbers is not. */
	st[0].task = "square";
	po.reduce = "count";
	fp_test_inputs_numbers(&in, 10, identity);
	fp_test_pipe_init(&o, p, 10, NULL);
	fp_test_pipe_run(p, st, 1, &in, &po, &o);
	assert_int_equal(o.outputs, 0);
	assert_int_equal(o.errors, 1);
	assert_int_equal(o.err_stage, 1);
	assert_int_equal(o.err_status, FP_ITEM_TASK_ERROR);
	assert_non_null(strstr(o.err_msg, "neither a string nor"));
	fp_test_pipe_free(&o);
	fp_test_inputs_free(&in);
	free_pool(p, paths);
}

static void bad_pipelines_are_refused_up_front(void **state)
{
	char *paths[2];
	fp_pool *p = new_pool(1, paths);
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	const struct fp_buf item = { "1", 1 };

	st[0].task = "echo";
	st[1].task = "no-such-task";
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, NULL, NULL, NULL, NULL, NULL),
			 FP_EUNKNOWN_TASK);
	assert_int_equal(fp_pool_pipeline_async(p, st, 0, &item, 1, NULL, NULL, NULL, NULL, NULL),
			 -EINVAL);
	st[1].task = "echo";
	po.reduce = "nope";
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, &po, NULL, NULL, NULL, NULL),
			 FP_EUNKNOWN_TASK);
	po.reduce = "sum";
	po.reduce_batch = 1;
	assert_int_equal(fp_pool_pipeline_async(p, st, 2, &item, 1, &po, NULL, NULL, NULL, NULL),
			 -EINVAL);
	free_pool(p, paths);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(generator_outputs_come_back_as_a_list_per_item),
		cmocka_unit_test(values_are_checked_as_json),
		cmocka_unit_test(abi1_module_loads_and_runs),
		cmocka_unit_test(three_stages_equal_doing_it_sequentially),
		cmocka_unit_test(three_stages_from_borrowed_inputs),
		cmocka_unit_test(range_fans_out),
		cmocka_unit_test(word_count_with_reduce),
		cmocka_unit_test(reduce_of_nothing_folds_an_empty_list),
		cmocka_unit_test(crash_in_stage_two_fails_only_that_item),
		cmocka_unit_test(retried_stage_counts_only_its_items_starts),
		cmocka_unit_test(emitted_outputs_are_not_given_twice_by_a_retry),
		cmocka_unit_test(stage_task_errors_are_retried_when_asked),
		cmocka_unit_test(fast_stage_before_slow_one_stays_within_the_buffer),
		cmocka_unit_test(cancel_mid_pipeline_ends_the_call_once),
		cmocka_unit_test(ordered_results_come_in_input_order),
		cmocka_unit_test(inputs_are_told_done_once_after_their_outputs),
		cmocka_unit_test(stage_timeout_fails_only_that_input),
		cmocka_unit_test(chained_tasks_are_timed_each_on_its_own),
		cmocka_unit_test(timeout_in_a_chain_fails_its_stage),
		cmocka_unit_test(task_emitting_in_a_chain_hands_its_outputs_on),
		cmocka_unit_test(stages_with_their_own_rules_are_not_fused),
		cmocka_unit_test(a_chain_keeps_the_buffer_after_it_within_bound),
		cmocka_unit_test(chains_keep_input_order_and_feed_a_reduce),
		cmocka_unit_test(chained_items_count_every_task_for_recycling),
		cmocka_unit_test(failed_reduce_is_an_error_and_no_value),
		cmocka_unit_test(bad_pipelines_are_refused_up_front),
	};

	if (fp_test_backend_missing())
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
