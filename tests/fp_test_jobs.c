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
