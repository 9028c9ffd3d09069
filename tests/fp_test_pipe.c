/* The pipeline suites' fixture: see fp_test_pipe.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fp_test.h"
#include "fp_test_pipe.h"

void fp_test_inputs_numbers(struct fp_test_inputs *in, size_t n, long long (*f)(size_t))
{
	size_t off = 0;

	in->n = n;
	in->items = calloc(n ? n : 1, sizeof(*in->items));
	in->text = malloc(n * 24 + 1);
	assert_non_null(in->items);
	assert_non_null(in->text);
	for (size_t i = 0; i < n; i++) {
		int l = snprintf(in->text + off, 24, "%lld", f(i));

		in->items[i] = (struct fp_buf){ in->text + off, (size_t)l };
		off += (size_t)l + 1;
	}
}

void fp_test_inputs_free(struct fp_test_inputs *in)
{
	free(in->items);
	free(in->text);
}

void fp_test_pipe_init(struct fp_test_pipe *o, fp_pool *p, size_t ninputs, const char *busy_task)
{
	memset(o, 0, sizeof(*o));
	o->pool = p;
	o->ninputs = ninputs;
	o->busy_task = busy_task;
	o->cancel_rc = 1;
	o->per_input = calloc(ninputs + 1, sizeof(*o->per_input));
	o->value_sum = calloc(ninputs + 1, sizeof(*o->value_sum));
	assert_non_null(o->per_input);
	assert_non_null(o->value_sum);
}

void fp_test_pipe_free(struct fp_test_pipe *o)
{
	free(o->per_input);
	free(o->value_sum);
}

static void sample(struct fp_test_pipe *o)
{
	struct fp_stage_stats st[FP_TEST_STAGES_MAX];
	int n = fp_pipeline_stats(o->pool, o->call_id, st, FP_TEST_STAGES_MAX);

	for (int i = 0; i < n && i < FP_TEST_STAGES_MAX; i++) {
		if (st[i].waiting_max > o->waiting_max[i])
			o->waiting_max[i] = st[i].waiting_max;
		if (st[i].waiting > o->waiting_seen[i])
			o->waiting_seen[i] = st[i].waiting;
	}
	if (o->busy_task) {
		struct fp_worker_stats ws[16];
		size_t nw = fp_pool_workers(o->pool, ws, 16);
		int k = 0;

		for (size_t i = 0; i < nw && i < 16; i++)
			k += ws[i].task && strcmp(ws[i].task, o->busy_task) == 0;
		if (k > o->busy_max)
			o->busy_max = k;
	}
}

void fp_test_pipe_item(fp_pool *p, uint64_t id, const struct fp_result *r, void *data)
{
	struct fp_test_pipe *o = data;

	assert_int_equal(id, o->call_id);
	if (!o->starts)
		o->early++;
	if (r->index < o->last_index)
		o->out_of_order = 1;
	o->last_index = r->index;
	/* A reduce's result is index 0, with or without inputs. */
	if (r->index >= o->ninputs && r->index != 0) {
		o->bad_index = 1;
	} else if (r->status == FP_ITEM_OK) {
		o->outputs++;
		o->per_input[r->index]++;
		o->value_sum[r->index] += atoll(r->value);
		snprintf(o->value, sizeof(o->value), "%.*s", (int)r->value_len, r->value);
		o->value_stage = r->stage;
		if (r->attempts > o->attempts_max)
			o->attempts_max = r->attempts;
	} else {
		if (!o->errors) {
			o->err_index = r->index;
			o->err_stage = r->stage;
			o->err_status = r->status;
			snprintf(o->err_msg, sizeof(o->err_msg), "%s", r->message);
			o->err_attempts = r->attempts;
		}
		o->errors++;
	}
	sample(o);
	if (o->cancel_after && r->status == FP_ITEM_OK && o->outputs == o->cancel_after)
		o->cancel_rc = fp_pool_cancel(p, id);
}

void fp_test_pipe_done(fp_pool *p, const struct fp_call_summary *s, void *data)
{
	struct fp_test_pipe *o = data;

	o->done_calls++;
	o->summary = *s;
	/* The final counters are there during on_done. */
	o->nstats = fp_pipeline_stats(p, o->call_id, o->final, FP_TEST_STAGES_MAX);
}

void fp_test_pipe_start(fp_pool *p, uint64_t id, void *data)
{
	struct fp_test_pipe *o = data;

	assert_int_equal(id, o->call_id);
	o->starts++;
}

int fp_test_pipe_finished(void *data)
{
	return ((struct fp_test_pipe *)data)->done_calls > 0;
}

/*
 * The final counters of a pipeline of nstages (and maybe a reduce) over n
 * inputs agree with each other and with what was delivered: nothing is left
 * waiting or running, every stage ended all it was given, each stage was
 * given exactly the outputs of the one before, and every error delivered is
 * one stage's failure. Stage fusion (pipeline.h) must keep all of it.
 */
static void assert_counters_add_up(const struct fp_test_pipe *o, size_t nstages, bool reduce,
				   size_t n)
{
	uint64_t failed = 0;

	assert_int_equal(o->nstats, (int)nstages + reduce);
	for (int k = 0; k < o->nstats && k < FP_TEST_STAGES_MAX; k++) {
		const struct fp_stage_stats *st = &o->final[k];

		if (st->running || st->waiting || st->in != st->done || st->fused > st->in)
			fail_msg("stage %d: in %llu done %llu running %llu waiting %llu fused %llu",
				 k, (unsigned long long)st->in, (unsigned long long)st->done,
				 (unsigned long long)st->running, (unsigned long long)st->waiting,
				 (unsigned long long)st->fused);
		if (k > 0 && (size_t)k < nstages && st->in != o->final[k - 1].out)
			fail_msg("stage %d was given %llu items, stage %d made %llu outputs", k,
				 (unsigned long long)st->in, k - 1,
				 (unsigned long long)o->final[k - 1].out);
		failed += st->failed;
	}
	assert_int_equal(o->final[0].in, n);
	assert_int_equal(o->final[0].fused, 0);
	if (o->nstats <= FP_TEST_STAGES_MAX)
		assert_int_equal(failed, o->errors);
}

void fp_test_pipe_run(fp_pool *p, const fp_stage *stages, size_t nstages,
		      const struct fp_test_inputs *in, const fp_pipeline_options *opts,
		      struct fp_test_pipe *o)
{
	int (*submit)(fp_pool *, const fp_stage *, size_t, const struct fp_buf *, size_t,
		      const fp_pipeline_options *, fp_item_cb, fp_done_cb, void *, uint64_t *) =
		o->borrow ? fp_pool_pipeline_borrow_async : fp_pool_pipeline_async;

	assert_int_equal(submit(p, stages, nstages, in->items, in->n, opts, fp_test_pipe_item,
				fp_test_pipe_done, o, &o->call_id), 0);
	assert_true(fp_test_run_until(p, fp_test_pipe_finished, o, 60000));
	assert_int_equal(o->done_calls, 1);
	assert_int_equal(o->summary.id, o->call_id);
	assert_int_equal(o->summary.ok, o->outputs);
	assert_int_equal(o->summary.failed, o->errors);
	assert_int_equal(o->summary.total, o->outputs + o->errors);
	assert_false(o->bad_index);
	assert_counters_add_up(o, nstages, opts && opts->reduce, in->n);
	/* Over: its statistics and its id are gone. */
	assert_int_equal(fp_pipeline_stats(p, o->call_id, NULL, 0), -ENOENT);
	assert_int_equal(fp_pool_cancel(p, o->call_id), -ENOENT);
}

void fp_test_pipe_assert_cancelled(const struct fp_test_pipe *o, size_t n)
{
	assert_int_equal(o->cancel_rc, 0);
	assert_true(o->summary.cancelled);
	assert_true(o->outputs >= o->cancel_after);
	assert_true(o->outputs < n);
	assert_true(o->errors > 0);
	assert_int_equal(o->outputs + o->errors, n);
	assert_int_equal(o->err_status, FP_ITEM_CANCELLED);
}
