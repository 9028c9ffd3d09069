/*
 * Pipeline jobs in the job store (server/jobs_pipeline.c and the output
 * records of server/jobs.c) over a real pool and the built-in demo tasks.
 * Runs once per loop backend. Nothing sleeps: the loop runs until a
 * condition holds, with a deadline that fails the test.
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

#include "forkpool.h"
#include "jobs.h"
#include "fp_test.h"
#include "fp_test_jobs.h"
#include "forkpool/loop.h"

static int job_is_finished(void *data)
{
	return fp_job_finished(data);
}

static void wait_finished(struct fp_test_jobs *f, fp_job *job)
{
	assert_true(fp_test_run_until(f->pool, job_is_finished, job, 60000));
}

static int nothing_pending(void *data)
{
	struct fp_jobs_stats st;

	fp_jobs_stats(data, &st);
	return st.items_pending == 0;
}

/* Items from JSON texts given as a NULL-terminated list. */
static size_t bufs_of(struct fp_buf *b, const char *const *texts)
{
	size_t n = 0;

	for (; texts[n]; n++)
		b[n] = (struct fp_buf){ texts[n], strlen(texts[n]) };
	return n;
}

static fp_job *submit(struct fp_test_jobs *f, const char *const *tasks, const char *const *texts,
		      const fp_pipeline_options *po)
{
	fp_stage st[8];
	struct fp_buf b[64];
	size_t ns = 0, n = bufs_of(b, texts);
	fp_job *job = NULL;
	int rc;

	for (; tasks[ns]; ns++) {
		st[ns] = (fp_stage)FP_STAGE_DEFAULT;
		st[ns].task = tasks[ns];
	}
	rc = fp_jobs_submit_pipeline(f->jobs, st, ns, b, n, po, &job);
	if (rc != 0)
		fail_msg("submit pipeline: %s", fp_strerror(rc));
	assert_non_null(job);
	return job;
}

/* --- tests --------------------------------------------------------------- */

static void outputs_keep_their_input_index(void **state)
{
	static const char *const tasks[] = { "range", "square", NULL };
	static const char *const in[] = { "3", "0", "2", NULL };
	/* Values by input: range(3) squared, nothing, range(2) squared. */
	unsigned seen[3] = { 0 }, sum[3] = { 0 };
	struct fp_stage_stats st[2];
	struct fp_jobs_stats js;
	struct fp_test_jobs f;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	job = submit(&f, tasks, in, NULL);
	assert_int_equal(fp_job_kind(job), FP_JOB_PIPELINE);
	assert_string_equal(fp_job_kind_name(FP_JOB_PIPELINE), "pipeline");
	assert_string_equal(fp_job_task(job), "range|square");
	assert_int_equal(fp_job_inputs(job), 3);
	assert_int_equal(fp_job_stages(job), 2);
	assert_string_equal(fp_job_stage_task(job, 1), "square");
	assert_null(fp_job_stage_task(job, 2));
	assert_false(fp_job_has_reduce(job));
	fp_jobs_stats(f.jobs, &js);
	assert_int_equal(js.items_pending, 3);
	wait_finished(&f, job);

	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_equal(fp_job_total(job), 5);
	assert_int_equal(fp_job_done(job), 5);
	for (size_t k = 0; k < 5; k++) {
		struct fp_job_item it;

		/* Delivery order is completion order. */
		assert_int_equal(fp_job_completed_index(job, k), k);
		fp_job_item(job, k, &it);
		assert_true(it.finished);
		assert_int_equal(it.status, FP_ITEM_OK);
		assert_true(it.index == 0 || it.index == 2);
		assert_int_equal(it.stage, 1);
		seen[it.index]++;
		sum[it.index] += (unsigned)atoi(it.value);
	}
	assert_int_equal(fp_job_completed_index(job, 5), SIZE_MAX);
	assert_int_equal(seen[0], 3);
	assert_int_equal(seen[2], 2);
	assert_int_equal(sum[0], 0 + 1 + 4);
	assert_int_equal(sum[2], 0 + 1);
	/* Counters as they were at the end; the inputs left the queue count. */
	assert_int_equal(fp_job_stage_stats(job, st, 2), 2);
	assert_int_equal(st[0].in, 3);
	assert_int_equal(st[0].out, 5);
	assert_int_equal(st[1].in, 5);
	assert_int_equal(st[1].done, 5);
	assert_int_equal(st[1].waiting + st[1].running, 0);
	fp_jobs_stats(f.jobs, &js);
	assert_int_equal(js.items_pending, 0);
	assert_int_equal(js.items_ok, 5);
	fp_test_jobs_teardown(&f);
}

/* Outputs read in runs (the results stream's way) are the outputs, and runs stop at an error. */
static void output_values_in_runs_match_outputs(void **state)
{
	static const char *const tasks[] = { "echo", "square", NULL };
	static const char *const in[] = { "2", "\"x\"", "3", "4", "\"y\"", "\"z\"", "5", "6",
					  "7", "\"w\"", NULL };
	struct fp_test_jobs f;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	job = submit(&f, tasks, in, NULL);
	wait_finished(&f, job);
	assert_int_equal(fp_job_total(job), 10);
	assert_int_equal(fp_job_failed(job), 4);
	for (size_t max = 1; max <= 11; max++) {
		fp_test_assert_job_values(job, false, max);
		fp_test_assert_job_values(job, true, max);
	}
	fp_test_jobs_teardown(&f);
}

/*
 * A pipeline on inputs the job took: the pool reads them for the life of
 * the call and the job frees them at its end, also when the call is refused
 * up front (ASan's leak and use-after-free checks see to the freeing).
 */
static void a_pipeline_on_taken_inputs_runs_them_and_frees_them(void **state)
{
	static const char *const in[] = { "2", "\"x\"", "3", "4" };
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_test_jobs f;

	st[0].task = "echo";
	st[1].task = "square";
	fp_test_jobs_setup(&f, 2);
	for (int refused = 0; refused < 2; refused++) {
		struct fp_buf *b = fp_mem_alloc(4 * sizeof(*b));
		char *text = fp_mem_alloc(16);
		size_t off = 0;
		unsigned sum = 0;
		fp_job *job = NULL;
		int rc;

		assert_non_null(b);
		assert_non_null(text);
		for (size_t i = 0; i < 4; i++) {
			memcpy(text + off, in[i], strlen(in[i]));
			b[i] = (struct fp_buf){ text + off, strlen(in[i]) };
			off += strlen(in[i]);
		}
		st[1].task = refused ? "no_such_task" : "square";
		rc = fp_jobs_submit_pipeline_taking(f.jobs, st, 2, b, 4, text, NULL, NULL, &job);
		if (refused) {
			assert_int_equal(rc, FP_EUNKNOWN_TASK);
			assert_null(job);
			continue;
		}
		assert_int_equal(rc, 0);
		wait_finished(&f, job);
		assert_int_equal(fp_job_total(job), 4);
		assert_int_equal(fp_job_failed(job), 1);
		for (size_t i = 0; i < 4; i++) {
			struct fp_job_item it;

			fp_job_item(job, i, &it);
			assert_true(it.finished);
			if (it.status == FP_ITEM_OK)
				sum += (unsigned)atoi(it.value);
			else
				assert_int_equal(it.index, 1);
		}
		assert_int_equal(sum, 4 + 9 + 16);
	}
	fp_test_jobs_teardown(&f);
}

static void a_failure_names_its_stage_and_the_rest_carries_on(void **state)
{
	static const char *const tasks[] = { "echo", "square", NULL };
	static const char *const in[] = { "2", "\"x\"", "3", NULL };
	struct fp_test_jobs f;
	size_t failed = 0;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	job = submit(&f, tasks, in, NULL);
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_FAILED);
	assert_int_equal(fp_job_total(job), 3);
	assert_int_equal(fp_job_done(job), 2);
	for (size_t k = 0; k < 3; k++) {
		struct fp_job_item it;

		fp_job_item(job, k, &it);
		if (it.status == FP_ITEM_OK)
			continue;
		failed++;
		assert_int_equal(it.status, FP_ITEM_TASK_ERROR);
		assert_int_equal(it.index, 1);
		assert_int_equal(it.stage, 1);
		assert_non_null(it.message);
	}
	assert_int_equal(failed, 1);
	fp_test_jobs_teardown(&f);
}

static void reduce_value_is_found(void **state)
{
	static const char *const tasks[] = { "range", NULL };
	static const char *const in[] = { "10", "20", NULL };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_stage_stats st[2];
	struct fp_job_item it;
	struct fp_test_jobs f;
	fp_job *job;

	po.reduce = "sum";
	po.reduce_batch = 4;
	fp_test_jobs_setup(&f, 2);
	job = submit(&f, tasks, in, &po);
	assert_true(fp_job_has_reduce(job));
	assert_int_equal(fp_job_stages(job), 2);
	assert_string_equal(fp_job_stage_task(job, 1), "sum");
	assert_string_equal(fp_job_task(job), "range|sum");
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_not_equal(fp_job_reduced(job), SIZE_MAX);
	fp_job_item(job, fp_job_reduced(job), &it);
	assert_int_equal(it.status, FP_ITEM_OK);
	assert_int_equal(atoi(it.value), 45 + 190);
	assert_int_equal(fp_job_stage_stats(job, st, 2), 2);
	assert_int_equal(st[0].out, 30);
	fp_test_jobs_teardown(&f);
}

static void ordered_outputs_come_in_input_order(void **state)
{
	static const char *const tasks[] = { "sleep", NULL };
	static const char *const in[] = { "150", "0", "60", "0", NULL };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_test_jobs f;
	fp_job *job;

	po.ordered = 1;
	fp_test_jobs_setup(&f, 2);
	job = submit(&f, tasks, in, &po);
	assert_true(fp_job_ordered(job));
	wait_finished(&f, job);
	for (size_t k = 0; k < 4; k++) {
		struct fp_job_item it;

		fp_job_item(job, k, &it);
		assert_int_equal(it.index, k);
	}
	fp_test_jobs_teardown(&f);
}

static void many_outputs_are_a_few_blocks(void **state)
{
	static const char *const tasks[] = { "range", NULL };
	static const char *const in[] = { "100000", NULL };
	size_t bytes, blocks;
	struct fp_test_jobs f;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	job = submit(&f, tasks, in, NULL);
	wait_finished(&f, job);
	assert_int_equal(fp_job_total(job), 100000);
	assert_int_equal(fp_job_done(job), 100000);
	fp_job_memory(job, &bytes, &blocks);
	/* The job, two record arrays grown by doubling, text pages. */
	assert_true(blocks < 16);
	assert_true(bytes < 100000 * 48 + ((size_t)4 << 20));
	fp_test_jobs_teardown(&f);
}

static void past_max_outputs_the_pipeline_is_cancelled(void **state)
{
	static const char *const tasks[] = { "range", NULL };
	static const char *const in[] = { "100000", "100000", NULL };
	struct fp_jobs_options jo;
	struct fp_jobs_stats st;
	struct fp_test_jobs f;
	fp_job *job;

	fp_jobs_options_init(&jo);
	assert_int_equal(jo.max_outputs, 10000000);
	jo.max_outputs = 1000;
	fp_test_jobs_setup_with(&f, 2, &jo);
	job = submit(&f, tasks, in, NULL);
	wait_finished(&f, job);
	assert_true(fp_job_overflowed(job));
	assert_int_equal(fp_job_state(job), FP_JOB_CANCELLED);
	assert_int_equal(fp_job_total(job), 1000);
	assert_true(fp_job_lost(job) >= 1);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_pending, 0);
	fp_test_jobs_teardown(&f);
}

static void forgetting_a_running_pipeline_releases_its_inputs(void **state)
{
	static const char *const tasks[] = { "echo", "sleep", NULL };
	static const char *const in[] = { "300", "300", "300", "300", "300", "300", NULL };
	struct fp_jobs_stats st;
	struct fp_test_jobs f;
	fp_job *job;
	char id[64];

	fp_test_jobs_setup(&f, 2);
	job = submit(&f, tasks, in, NULL);
	snprintf(id, sizeof(id), "%s", fp_job_id(job));
	fp_jobs_forget(f.jobs, job);
	assert_null(fp_jobs_find(f.jobs, id));
	/* The tombstone waits for the pool's done callback, then frees itself. */
	assert_true(fp_test_run_until(f.pool, nothing_pending, f.jobs, 30000));
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 0);
	fp_test_jobs_teardown(&f);
}

static void free_with_a_pipeline_running(void **state)
{
	static const char *const tasks[] = { "echo", "sleep", NULL };
	static const char *const in[] = { "300", "300", "300", NULL };
	struct fp_test_jobs f;

	fp_test_jobs_setup(&f, 2);
	submit(&f, tasks, in, NULL);
	/* The pool's late callbacks find a tombstone (ASan checks the rest). */
	fp_jobs_free(f.jobs);
	fp_pool_free(f.pool);
}

static void bad_pipelines_are_refused(void **state)
{
	static const char *const unknown[] = { "echo", "no-such-task", NULL };
	static const char *const in[] = { "1", NULL };
	struct fp_jobs_stats st;
	struct fp_test_jobs f;
	struct fp_buf b[1];
	fp_stage s[2];
	fp_job *job = (fp_job *)1;

	fp_test_jobs_setup(&f, 1);
	bufs_of(b, in);
	assert_int_equal(fp_jobs_submit_pipeline(f.jobs, s, 0, b, 1, NULL, &job), -EINVAL);
	assert_null(job);
	for (size_t i = 0; i < 2; i++) {
		s[i] = (fp_stage)FP_STAGE_DEFAULT;
		s[i].task = unknown[i];
	}
	assert_int_equal(fp_jobs_submit_pipeline(f.jobs, s, 2, b, 1, NULL, &job),
			 FP_EUNKNOWN_TASK);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 0);
	assert_int_equal(st.items_pending, 0);
	fp_test_jobs_teardown(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(outputs_keep_their_input_index),
		cmocka_unit_test(a_failure_names_its_stage_and_the_rest_carries_on),
		cmocka_unit_test(output_values_in_runs_match_outputs),
		cmocka_unit_test(a_pipeline_on_taken_inputs_runs_them_and_frees_them),
		cmocka_unit_test(reduce_value_is_found),
		cmocka_unit_test(ordered_outputs_come_in_input_order),
		cmocka_unit_test(many_outputs_are_a_few_blocks),
		cmocka_unit_test(past_max_outputs_the_pipeline_is_cancelled),
		cmocka_unit_test(forgetting_a_running_pipeline_releases_its_inputs),
		cmocka_unit_test(free_with_a_pipeline_running),
		cmocka_unit_test(bad_pipelines_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
