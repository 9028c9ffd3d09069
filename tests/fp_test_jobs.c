/* The fixture the job store's suites share: see fp_test_jobs.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "fp_test_jobs.h"
#include "fp_test_pool.h"

void fp_test_jobs_setup_with(struct fp_test_jobs *f, unsigned workers,
			     const struct fp_jobs_options *jo)
{
	fp_options o;

	fp_test_options(&o, workers);
	f->pool = fp_test_pool_with(&o);
	assert_int_equal(fp_jobs_new(&f->jobs, f->pool, jo), 0);
}

void fp_test_jobs_setup(struct fp_test_jobs *f, unsigned workers)
{
	fp_test_jobs_setup_with(f, workers, NULL);
}

void fp_test_jobs_teardown(struct fp_test_jobs *f)
{
	fp_jobs_free(f->jobs);
	fp_pool_free(f->pool);
}

void fp_test_assert_job_values(const fp_job *job, bool completion, size_t max)
{
	size_t total = fp_job_total(job), k, j, idx, n, runs = 0;
	struct fp_job_value v[64];
	struct fp_job_item it;

	assert_true(max > 0 && max <= 64);
	if (completion)
		total = fp_job_done(job) + fp_job_failed(job);
	for (k = 0; k <= total + 1; k++) {
		n = fp_job_values(job, k, completion, v, max);
		assert_true(n <= max);
		assert_true(k + n <= total || n == 0);
		for (j = 0; j < n; j++) {
			idx = completion ? fp_job_completed_index(job, k + j) : k + j;
			fp_job_item(job, idx, &it);
			assert_true(it.finished);
			assert_int_equal(it.status, FP_ITEM_OK);
			assert_ptr_equal(v[j].value, it.value);
			assert_int_equal(v[j].value_len, it.value_len);
			assert_int_equal(v[j].index, it.index);
		}
		if (n < max && k + n < total) {
			/* Stopped early: the next one is no value (yet). */
			idx = completion ? fp_job_completed_index(job, k + n) : k + n;
			fp_job_item(job, idx, &it);
			assert_true(!it.finished || it.status != FP_ITEM_OK);
		}
		runs += n > 0;
	}
	/* A job with values gave some. */
	if (fp_job_done(job))
		assert_true(runs > 0);
}
