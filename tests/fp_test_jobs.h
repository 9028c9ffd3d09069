/* A job store over a real pool, for the suites that test jobs. */
#ifndef FP_TEST_JOBS_H
#define FP_TEST_JOBS_H

#include "forkpool.h"
#include "jobs.h"

struct fp_test_jobs {
	fp_pool *pool;
	fp_jobs *jobs;
};

/*
 * A pool of `workers` (its own loop, FORKPOOL_LOOP's backend; the tests'
 * options of fp_test_pool.h, log kept for fp_test_log()) and a job store over it with options `jo`
 * (NULL: the defaults). Fails the test when either cannot be made.
 */
void fp_test_jobs_setup_with(struct fp_test_jobs *f, unsigned workers,
			     const struct fp_jobs_options *jo);
void fp_test_jobs_setup(struct fp_test_jobs *f, unsigned workers);
void fp_test_jobs_teardown(struct fp_test_jobs *f);

/*
 * fp_job_values() from every position (input order, or the completion order
 * with `completion`), `max` at a time, gives what fp_job_item() gives item by
 * item, and stops short only at the end or before an item that is not a value.
 */
void fp_test_assert_job_values(const fp_job *job, bool completion, size_t max);

#endif
