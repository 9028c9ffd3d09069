/* The fixture the job store's suites share: see fp_test_jobs.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "fp_test_jobs.h"

static void quiet_log(void *data, fp_log_level level, const char *msg)
{
	if (getenv("FP_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

void fp_test_jobs_setup_with(struct fp_test_jobs *f, unsigned workers,
			     const struct fp_jobs_options *jo)
{
	fp_options o;
	char err[512];
	int rc;

	fp_options_init(&o);
	o.workers = workers;
	o.kill_grace_ms = 200;
	o.log = quiet_log;
	o.log_level = FP_LOG_DEBUG;
	rc = fp_pool_new(&f->pool, NULL, &o, err, sizeof(err));
	if (rc != 0)
		fail_msg("fp_pool_new: %s (%s)", fp_strerror(rc), err);
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
