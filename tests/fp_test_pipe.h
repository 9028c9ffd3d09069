/*
 * The fixture the pipeline suites share (test-pipeline, test-exec): inputs as
 * JSON texts, and everything a pipeline delivered with its counters sampled
 * at each delivery, so that a test can check outputs, the first error, the
 * buffers' bounds and how many workers ran one task at once.
 */
#ifndef FP_TEST_PIPE_H
#define FP_TEST_PIPE_H

#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

/* Inputs as JSON texts, kept in one block. */
struct fp_test_inputs {
	struct fp_buf *items;
	char *text;
	size_t n;
};

/* n inputs, input i being the number f(i). */
void fp_test_inputs_numbers(struct fp_test_inputs *in, size_t n, long long (*f)(size_t));
void fp_test_inputs_free(struct fp_test_inputs *in);

/* Stages (with the reduce) whose counters are kept. */
#define FP_TEST_STAGES_MAX 8

/* Everything a pipeline delivered, and its counters as they went. */
struct fp_test_pipe {
	fp_pool *pool;
	uint64_t call_id;
	size_t ninputs, outputs, errors;
	size_t *per_input;           /* outputs per input index */
	long long *value_sum;        /* sum of numeric outputs per input */
	int bad_index;               /* an index past the inputs (not a reduce's 0) */
	size_t last_index;
	int out_of_order;
	int borrow;                  /* fp_test_pipe_run(): fp_pool_pipeline_borrow_async() */
	char value[4096];            /* the last output's text, for reduce results */
	unsigned value_stage;
	size_t err_index;            /* the first error */
	unsigned err_stage;
	fp_item_status err_status;
	char err_msg[512];
	unsigned err_attempts;       /* the first error's attempts */
	unsigned attempts_max;       /* the most attempts any output came with */
	int starts;                  /* fp_test_pipe_start() calls */
	size_t early;                /* deliveries before the first of them */
	/* Counters sampled at each delivery, and the final ones (read in on_done). */
	uint64_t waiting_max[FP_TEST_STAGES_MAX], waiting_seen[FP_TEST_STAGES_MAX];
	struct fp_stage_stats final[FP_TEST_STAGES_MAX];
	int nstats;
	const char *busy_task;       /* count the workers running this task ... */
	int busy_max;                /* ... most seen at once */
	size_t cancel_after;         /* cancel once this many outputs came; 0: never */
	int cancel_rc;               /* fp_pool_cancel's answer then; 1 until */
	size_t done_calls;
	struct fp_call_summary summary;
};

/* For a pipeline of ninputs on p; busy_task may be NULL. */
void fp_test_pipe_init(struct fp_test_pipe *o, fp_pool *p, size_t ninputs, const char *busy_task);
void fp_test_pipe_free(struct fp_test_pipe *o);
/* The pipeline's callbacks, with o as their data. */
void fp_test_pipe_item(fp_pool *p, uint64_t id, const struct fp_result *r, void *data);
void fp_test_pipe_done(fp_pool *p, const struct fp_call_summary *s, void *data);
/* An fp_pipeline_options.on_start that counts starts. */
void fp_test_pipe_start(fp_pool *p, uint64_t id, void *data);
/* A condition for fp_test_run_until: the pipeline ended. */
int fp_test_pipe_finished(void *data);

/*
 * Submit and run to the end (within 60 s); checks that it ended once, that
 * its summary agrees with what was delivered, that no index was out of range
 * and that its id is gone.
 */
void fp_test_pipe_run(fp_pool *p, const fp_stage *stages, size_t nstages,
		      const struct fp_test_inputs *in, const fp_pipeline_options *opts,
		      struct fp_test_pipe *o);

/*
 * The pipeline of n inputs was cancelled once o->cancel_after outputs came:
 * the cancel took, and every input ended exactly once, some with an output,
 * the rest failing as cancelled.
 */
void fp_test_pipe_assert_cancelled(const struct fp_test_pipe *o, size_t n);

#endif
