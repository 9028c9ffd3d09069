/*
 * The job store over a real pool and the built-in demo tasks. Runs once per
 * loop backend (FORKPOOL_LOOP in the environment). Nothing here sleeps: the
 * loop runs until a condition holds, with a deadline that fails the test.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "forkpool.h"
#include "api.h"
#include "http.h"
#include "jobs.h"
#include "jobs_impl.h"
#include "journal.h"
#include "journal_impl.h"
#include "journal_jobs.h"
#include "fp_test.h"
#include "fp_test_jobs.h"
#include "forkpool/loop.h"

/* --- helpers ------------------------------------------------------------- */

static uint64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}


static int job_is_finished(void *data)
{
	return fp_job_finished(data);
}

static void wait_finished(struct fp_test_jobs *f, fp_job *job)
{
	assert_true(fp_test_run_until(f->pool, job_is_finished, job, 60000));
}

/* The pool has at least `want` items on workers. */
struct pool_running {
	fp_pool *pool;
	uint64_t want;
};

static int pool_is_running(void *data)
{
	struct pool_running *r = data;
	struct fp_pool_stats s;

	fp_pool_stats(r->pool, &s);
	return s.running >= r->want;
}

static void wait_running(struct fp_test_jobs *f, uint64_t want)
{
	struct pool_running r = { f->pool, want };

	assert_true(fp_test_run_until(f->pool, pool_is_running, &r, 30000));
}

static int pool_is_idle(void *data)
{
	struct fp_pool_stats s;

	fp_pool_stats(data, &s);
	return s.running == 0 && s.queued == 0;
}

/* The id's job is no longer found. */
struct gone {
	fp_jobs *jobs;
	const char *id;
};

static int job_is_gone(void *data)
{
	struct gone *g = data;

	return fp_jobs_find(g->jobs, g->id) == NULL;
}

static fp_job *submit_apply(struct fp_test_jobs *f, const char *task, const char *args)
{
	struct fp_buf b = { args, strlen(args) };
	fp_job *job = NULL;
	int rc = fp_jobs_submit(f->jobs, FP_JOB_APPLY, task, &b, 1, NULL, &job);

	if (rc != 0)
		fail_msg("submit %s(%s): %s", task, args, fp_strerror(rc));
	assert_non_null(job);
	return job;
}

/* n items, all `text`, or the numbers 0..n-1 when text is NULL. */
struct items {
	struct fp_buf *b;
	char *text;
	size_t n;
};

static void items_make(struct items *it, size_t n, const char *text)
{
	size_t off = 0;

	it->n = n;
	it->b = calloc(n ? n : 1, sizeof(*it->b));
	it->text = malloc(n * 21 + 1);
	assert_non_null(it->b);
	assert_non_null(it->text);
	for (size_t i = 0; i < n; i++) {
		int len = text ? snprintf(it->text + off, 21, "%s", text)
			       : snprintf(it->text + off, 21, "%zu", i);
		it->b[i].base = it->text + off;
		it->b[i].len = (size_t)len;
		off += (size_t)len;
	}
}

static void items_free(struct items *it)
{
	free(it->b);
	free(it->text);
}

static fp_job *submit_map(struct fp_test_jobs *f, const char *task, const struct items *it,
			  size_t chunksize)
{
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	fp_job *job = NULL;
	int rc;

	o.chunksize = chunksize;
	rc = fp_jobs_submit(f->jobs, FP_JOB_MAP, task, it->b, it->n, &o, &job);
	if (rc != 0)
		fail_msg("submit map %s: %s", task, fp_strerror(rc));
	assert_non_null(job);
	return job;
}

static int is_lower_hex(const char *s)
{
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

/* The completion order names every finished item once, and nothing more. */
static void assert_completion_permutation(const fp_job *job)
{
	size_t n = fp_job_total(job), k, finished = fp_job_done(job) + fp_job_failed(job);
	unsigned char *seen = calloc(n ? n : 1, 1);

	assert_non_null(seen);
	for (k = 0; k < finished; k++) {
		size_t i = fp_job_completed_index(job, k);
		struct fp_job_item it;

		assert_true(i < n);
		assert_int_equal(seen[i], 0);
		seen[i] = 1;
		fp_job_item(job, i, &it);
		assert_true(it.finished);
	}
	assert_int_equal(fp_job_completed_index(job, finished), SIZE_MAX);
	free(seen);
}

/* --- recording ----------------------------------------------------------- */

static void apply_records_its_value_and_times(void **state)
{
	struct fp_test_jobs f;
	struct fp_job_item it;
	struct fp_jobs_stats st;
	uint64_t before, after;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	before = wall_now();
	job = submit_apply(&f, "square", "7");
	after = wall_now();

	/* Nothing happens inside the submitting call. */
	assert_int_equal(fp_job_state(job), FP_JOB_QUEUED);
	assert_false(fp_job_finished(job));
	assert_int_equal(fp_job_kind(job), FP_JOB_APPLY);
	assert_string_equal(fp_job_task(job), "square");
	assert_int_equal(fp_job_total(job), 1);
	assert_int_equal(fp_job_done(job) + fp_job_failed(job), 0);
	assert_true(fp_job_created_at(job) >= before && fp_job_created_at(job) <= after);
	assert_int_equal(fp_job_finished_at(job), 0);
	fp_job_item(job, 0, &it);
	assert_false(it.finished);
	assert_null(it.value);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_pending, 1);
	assert_int_equal(st.by_state[FP_JOB_QUEUED], 1);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 1);

	wait_finished(&f, job);
	after = wall_now();
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_equal(fp_job_done(job), 1);
	assert_int_equal(fp_job_failed(job), 0);
	assert_true(fp_job_finished_at(job) >= fp_job_created_at(job));
	assert_true(fp_job_finished_at(job) <= after);
	fp_job_item(job, 0, &it);
	assert_true(it.finished);
	assert_int_equal(it.status, FP_ITEM_OK);
	assert_int_equal(it.value_len, 2);
	assert_memory_equal(it.value, "49", 3);   /* NUL-terminated too */
	assert_null(it.message);
	assert_int_equal(it.attempts, 1);
	assert_int_equal(fp_job_completed_index(job, 0), 0);
	assert_int_equal(fp_job_completed_index(job, 1), SIZE_MAX);

	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 1);
	assert_int_equal(st.items_pending, 0);
	assert_int_equal(st.items_ok, 1);
	assert_int_equal(st.items_failed, 0);
	assert_int_equal(st.submitted, 1);
	assert_int_equal(st.by_state[FP_JOB_DONE], 1);
	assert_int_equal(st.by_state[FP_JOB_QUEUED] + st.by_state[FP_JOB_RUNNING], 0);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 0);
	fp_test_jobs_teardown(&f);
}

static int job_is_running(void *data)
{
	return fp_job_state(data) == FP_JOB_RUNNING;
}

static void job_is_running_from_its_first_hand_off(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	fp_job *slow, *queued;

	/* One worker: the second job waits behind the first, and is cancelled there. */
	fp_test_jobs_setup(&f, 1);
	slow = submit_apply(&f, "sleep", "300");
	queued = submit_apply(&f, "square", "2");
	assert_int_equal(fp_job_state(slow), FP_JOB_QUEUED);
	assert_int_equal(fp_job_started_at(slow), 0);
	/* Running while its item runs, before any answer. */
	assert_true(fp_test_run_until(f.pool, job_is_running, slow, 10000));
	assert_int_equal(fp_job_done(slow) + fp_job_failed(slow), 0);
	assert_true(fp_job_started_at(slow) >= fp_job_created_at(slow));
	assert_true(fp_job_started_at(slow) <= wall_now());
	assert_int_equal(fp_job_state(queued), FP_JOB_QUEUED);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.by_state[FP_JOB_RUNNING], 1);
	assert_int_equal(st.by_state[FP_JOB_QUEUED], 1);
	assert_int_equal(fp_jobs_cancel(f.jobs, queued), 0);
	wait_finished(&f, queued);
	wait_finished(&f, slow);
	assert_int_equal(fp_job_state(slow), FP_JOB_DONE);
	assert_true(fp_job_finished_at(slow) >= fp_job_started_at(slow));
	/* Never handed to a worker: never started. */
	assert_int_equal(fp_job_state(queued), FP_JOB_CANCELLED);
	assert_int_equal(fp_job_started_at(queued), 0);
	fp_test_jobs_teardown(&f);
}

/*
 * An apply's outcome is kept in the job itself when short, else in one block
 * of its size: every length around the boundary reads back whole.
 */
static void apply_results_of_every_size_read_back_whole(void **state)
{
	static const size_t sizes[] = { 0, 1, 44, 45, 46, 47, 48, 100, 5000, 70000 };
	struct fp_test_jobs f;
	struct fp_job_item it;
	fp_job *jobs[sizeof(sizes) / sizeof(sizes[0])], *failing, *empty;
	size_t i, bytes, blocks;
	char arg[32];

	fp_test_jobs_setup(&f, 2);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(arg, sizeof(arg), "%zu", sizes[i]);
		jobs[i] = submit_apply(&f, "bytes", arg);
	}
	failing = submit_apply(&f, "fail", "\"a message for the job\"");
	empty = submit_apply(&f, "echo", "\"\"");
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		/* "bytes" answers a JSON string: n + 2 bytes with the quotes. */
		size_t len = sizes[i] + 2;

		wait_finished(&f, jobs[i]);
		assert_int_equal(fp_job_state(jobs[i]), FP_JOB_DONE);
		fp_job_item(jobs[i], 0, &it);
		assert_true(it.finished);
		assert_int_equal(it.value_len, len);
		assert_int_equal(it.value[0], '"');
		assert_int_equal(it.value[len - 1], '"');
		assert_int_equal(it.value[len], '\0');
		for (size_t k = 1; k + 1 < len; k++)
			if (it.value[k] != 'x')
				fail_msg("size %zu: byte %zu is %d", sizes[i], k, it.value[k]);
		/* The job, plus one block only when the text does not fit inside it. */
		fp_job_memory(jobs[i], &bytes, &blocks);
		assert_int_equal(blocks, len + 1 <= 48 ? 1 : 2);
		if (len + 1 > 48)
			assert_true(bytes >= len + 1 && bytes < len + 1024);
	}
	wait_finished(&f, failing);
	fp_job_item(failing, 0, &it);
	assert_int_equal(it.status, FP_ITEM_TASK_ERROR);
	assert_string_equal(it.message, "a message for the job");
	wait_finished(&f, empty);
	fp_job_item(empty, 0, &it);
	assert_int_equal(it.status, FP_ITEM_OK);
	assert_int_equal(it.value_len, 2);
	assert_string_equal(it.value, "\"\"");
	/* Forgetting frees what each held (ASan counts). */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		fp_jobs_forget(f.jobs, jobs[i]);
	fp_test_jobs_teardown(&f);
}

static void map_keeps_item_order_and_a_completion_permutation(void **state)
{
	const size_t n = 1000;
	struct fp_test_jobs f;
	struct items in;
	struct fp_jobs_stats st;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, n, NULL);
	job = submit_map(&f, "square", &in, 7);
	assert_int_equal(fp_job_kind(job), FP_JOB_MAP);
	wait_finished(&f, job);

	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_equal(fp_job_total(job), n);
	assert_int_equal(fp_job_done(job), n);
	assert_int_equal(fp_job_failed(job), 0);
	for (size_t i = 0; i < n; i++) {
		struct fp_job_item it;
		char want[32];

		fp_job_item(job, i, &it);
		snprintf(want, sizeof(want), "%zu", i * i);
		assert_true(it.finished);
		assert_int_equal(it.status, FP_ITEM_OK);
		assert_int_equal(it.value_len, strlen(want));
		assert_string_equal(it.value, want);
	}
	assert_completion_permutation(job);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_ok, n);
	assert_int_equal(st.items_pending, 0);

	items_free(&in);
	fp_test_jobs_teardown(&f);
}

static int all_but_one_done(void *data)
{
	return fp_job_done(data) + 1 == fp_job_total(data);
}

/*
 * The results stream reads values in runs (fp_job_values); a run must give
 * what fp_job_item() gives, in both orders, and stop before an error or an
 * item still running, whatever its length.
 */
static void values_in_runs_match_items_around_errors_and_running_items(void **state)
{
	static const size_t maxes[] = { 1, 2, 7, 64 };
	const size_t n = 300;
	struct fp_test_jobs f;
	struct items in, slow;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	/* Every 13th item is not a number: square fails it. */
	items_make(&in, n, NULL);
	for (size_t i = 0; i < n; i += 13)
		in.b[i] = (struct fp_buf){ "\"x\"", 3 };
	job = submit_map(&f, "square", &in, 5);
	wait_finished(&f, job);
	assert_int_equal(fp_job_failed(job), (n + 12) / 13);
	for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
		fp_test_assert_job_values(job, false, maxes[m]);
		fp_test_assert_job_values(job, true, maxes[m]);
	}

	/* Item 0 still sleeping while the others have finished. */
	items_make(&slow, 40, "0");
	slow.b[0] = (struct fp_buf){ "60000", 5 };
	job = submit_map(&f, "sleep", &slow, 1);
	assert_true(fp_test_run_until(f.pool, all_but_one_done, job, 30000));
	assert_false(fp_job_finished(job));
	for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
		struct fp_job_value v[1];

		fp_test_assert_job_values(job, false, maxes[m]);
		fp_test_assert_job_values(job, true, maxes[m]);
		assert_int_equal(fp_job_values(job, 0, false, v, 1), 0);
	}
	assert_int_equal(fp_jobs_cancel(f.jobs, job), 0);
	wait_finished(&f, job);
	items_free(&slow);
	items_free(&in);
	fp_test_jobs_teardown(&f);
}

static void empty_map_is_done(void **state)
{
	struct fp_test_jobs f;
	fp_job *job = NULL;

	fp_test_jobs_setup(&f, 1);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "square", NULL, 0, NULL, &job), 0);
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_equal(fp_job_total(job), 0);
	assert_int_equal(fp_job_completed_index(job, 0), SIZE_MAX);
	fp_test_jobs_teardown(&f);
}

static void a_failing_item_fails_the_job(void **state)
{
	struct fp_test_jobs f;
	struct fp_buf b[] = { { "1", 1 }, { "\"x\"", 3 }, { "3", 1 } };
	struct fp_job_item it;
	struct fp_jobs_stats st;
	fp_job *job, *app;

	fp_test_jobs_setup(&f, 2);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "square", b, 3, NULL, &job), 0);
	app = submit_apply(&f, "fail", "\"disk on fire\"");
	wait_finished(&f, job);
	wait_finished(&f, app);

	assert_int_equal(fp_job_state(job), FP_JOB_FAILED);
	assert_int_equal(fp_job_done(job), 2);
	assert_int_equal(fp_job_failed(job), 1);
	assert_completion_permutation(job);
	fp_job_item(job, 0, &it);
	assert_string_equal(it.value, "1");
	fp_job_item(job, 1, &it);
	assert_true(it.finished);
	assert_int_equal(it.status, FP_ITEM_TASK_ERROR);
	assert_null(it.value);
	assert_non_null(it.message);
	assert_non_null(strstr(it.message, "square"));
	fp_job_item(job, 2, &it);
	assert_string_equal(it.value, "9");

	assert_int_equal(fp_job_state(app), FP_JOB_FAILED);
	fp_job_item(app, 0, &it);
	assert_int_equal(it.status, FP_ITEM_TASK_ERROR);
	assert_string_equal(it.message, "disk on fire");

	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_ok, 2);
	assert_int_equal(st.items_failed, 2);
	assert_int_equal(st.by_state[FP_JOB_FAILED], 2);
	fp_test_jobs_teardown(&f);
}

static void cancel_ends_hanging_jobs_as_cancelled(void **state)
{
	struct fp_test_jobs f;
	struct items in;
	struct fp_job_item it;
	fp_job *app, *map;

	fp_test_jobs_setup(&f, 2);
	app = submit_apply(&f, "hang", "null");
	wait_running(&f, 1);
	/* No item has finished, and it is running: the pool told us it started. */
	assert_true(fp_test_run_until(f.pool, job_is_running, app, 10000));
	assert_int_equal(fp_jobs_cancel(f.jobs, app), 0);
	assert_int_equal(fp_jobs_cancel(f.jobs, app), 0);
	/* The pool's callbacks come from the loop, not from the cancel. */
	assert_false(fp_job_finished(app));
	wait_finished(&f, app);
	assert_int_equal(fp_job_state(app), FP_JOB_CANCELLED);
	assert_int_equal(fp_job_failed(app), 1);
	fp_job_item(app, 0, &it);
	assert_int_equal(it.status, FP_ITEM_CANCELLED);
	assert_non_null(it.message);
	assert_int_equal(fp_jobs_cancel(f.jobs, app), -EALREADY);

	/* A map: some items on workers, the rest queued. */
	items_make(&in, 6, "null");
	map = submit_map(&f, "hang", &in, 1);
	wait_running(&f, 2);
	assert_int_equal(fp_jobs_cancel(f.jobs, map), 0);
	wait_finished(&f, map);
	assert_int_equal(fp_job_state(map), FP_JOB_CANCELLED);
	assert_int_equal(fp_job_failed(map), 6);
	assert_int_equal(fp_job_done(map), 0);
	assert_completion_permutation(map);
	for (size_t i = 0; i < 6; i++) {
		fp_job_item(map, i, &it);
		assert_int_equal(it.status, FP_ITEM_CANCELLED);
	}
	assert_int_equal(fp_jobs_cancel(f.jobs, map), -EALREADY);
	items_free(&in);
	fp_test_jobs_teardown(&f);
}

/* --- submission ---------------------------------------------------------- */

static void unknown_task_and_bad_arguments_are_refused(void **state)
{
	struct fp_test_jobs f;
	struct fp_buf b[] = { { "1", 1 }, { "2", 1 } };
	struct fp_jobs_stats st;
	fp_job *job = (fp_job *)1, *list[4];

	fp_test_jobs_setup(&f, 1);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_APPLY, "no-such-task", b, 1, NULL, &job),
			 FP_EUNKNOWN_TASK);
	assert_null(job);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "no-such-task", b, 2, NULL, &job),
			 FP_EUNKNOWN_TASK);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_APPLY, "square", b, 2, NULL, &job),
			 -EINVAL);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 0);
	assert_int_equal(st.submitted, 0);
	assert_int_equal(st.items_pending, 0);
	assert_int_equal(fp_jobs_list(f.jobs, NULL, 0, list, 4), 0);
	fp_test_jobs_teardown(&f);
}

static void over_max_queue_is_refused_until_items_finish(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct items eight, three, ten, eleven;
	struct fp_jobs_stats st;
	fp_job *a, *b, *job = (fp_job *)1, *list[8];

	fp_jobs_options_init(&jo);
	jo.max_queue = 10;
	fp_test_jobs_setup_with(&f, 2, &jo);
	items_make(&eight, 8, "20");
	items_make(&three, 3, "1");
	items_make(&ten, 10, "1");
	items_make(&eleven, 11, "1");

	a = submit_map(&f, "sleep", &eight, 1);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "square", three.b, 3, NULL, &job),
			 -EBUSY);
	assert_null(job);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.rejected, 1);
	assert_int_equal(st.submitted, 1);
	assert_int_equal(st.jobs, 1);
	assert_int_equal(st.items_pending, 8);
	assert_int_equal(fp_jobs_list(f.jobs, NULL, 0, list, 8), 1);

	/* Up to the cap exactly is fine. */
	b = submit_map(&f, "square", &(struct items){ three.b, NULL, 2 }, 0);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_pending, 10);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_APPLY, "square", three.b, 1, NULL, &job),
			 -EBUSY);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.rejected, 2);

	wait_finished(&f, a);
	wait_finished(&f, b);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_pending, 0);
	job = submit_map(&f, "square", &ten, 0);
	/* More than the cap is never accepted, even with nothing pending. */
	wait_finished(&f, job);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "square", eleven.b, 11, NULL, &job),
			 -EBUSY);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.rejected, 3);
	assert_int_equal(st.submitted, 3);

	items_free(&eight);
	items_free(&three);
	items_free(&ten);
	items_free(&eleven);
	fp_test_jobs_teardown(&f);
}

static void ids_are_random_hex_and_found_by_id(void **state)
{
	enum { N = 150 };   /* past the table's first size */
	struct fp_test_jobs f;
	fp_job *jobs[N];
	char id[40];

	fp_test_jobs_setup(&f, 2);
	for (int i = 0; i < N; i++)
		jobs[i] = submit_apply(&f, "square", "3");
	for (int i = 0; i < N; i++) {
		const char *s = fp_job_id(jobs[i]);
		assert_int_equal(strlen(s), 32);
		assert_true(is_lower_hex(s));
		assert_ptr_equal(fp_jobs_find(f.jobs, s), jobs[i]);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(s, fp_job_id(jobs[j]));
	}

	/* Only the exact text finds the job. */
	strcpy(id, fp_job_id(jobs[0]));
	for (char *c = id; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	if (strcmp(id, fp_job_id(jobs[0])) != 0)
		assert_null(fp_jobs_find(f.jobs, id));
	strcpy(id, fp_job_id(jobs[0]));
	strcat(id, "0");
	assert_null(fp_jobs_find(f.jobs, id));
	id[31] = '\0';
	assert_null(fp_jobs_find(f.jobs, id));
	assert_null(fp_jobs_find(f.jobs, "00000000000000000000000000000000"));
	assert_null(fp_jobs_find(f.jobs, "zz"));
	assert_null(fp_jobs_find(f.jobs, ""));
	assert_null(fp_jobs_find(f.jobs, NULL));

	for (int i = 0; i < N; i++)
		wait_finished(&f, jobs[i]);
	fp_test_jobs_teardown(&f);
}

/* --- forgetting ---------------------------------------------------------- */

static void forget_drops_a_finished_job(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	char id[33];
	fp_job *job;

	fp_test_jobs_setup(&f, 1);
	job = submit_apply(&f, "square", "2");
	strcpy(id, fp_job_id(job));
	wait_finished(&f, job);
	fp_jobs_forget(f.jobs, job);
	assert_null(fp_jobs_find(f.jobs, id));
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 0);
	for (int s = 0; s < 5; s++)
		assert_int_equal(st.by_state[s], 0);
	assert_int_equal(st.items_ok, 1);
	fp_test_jobs_teardown(&f);
}

/* on_end's time on the monotonic clock: when the job finished, to the ms. */
static void ended_at(struct fp_job_watch *w, fp_job *job)
{
	*(uint64_t *)w->data = fp_now_ms();
}

static void ttl_forgets_finished_jobs_only(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	char a_id[33], b_id[33];
	struct gone ga = { NULL, a_id }, gb = { NULL, b_id };
	fp_job *hang, *a, *b;
	uint64_t ended = 0;
	struct fp_job_watch w = { .on_end = ended_at, .data = &ended };

	fp_jobs_options_init(&jo);
	jo.ttl_ms = 150;
	fp_test_jobs_setup_with(&f, 2, &jo);
	ga.jobs = gb.jobs = f.jobs;
	hang = submit_apply(&f, "hang", "null");

	a = submit_apply(&f, "square", "4");
	strcpy(a_id, fp_job_id(a));
	fp_job_watch(a, &w);
	wait_finished(&f, a);
	assert_true(ended > 0);
	if (fp_now_ms() + 1 < ended + jo.ttl_ms)
		assert_ptr_equal(fp_jobs_find(f.jobs, a_id), a);
	assert_true(fp_test_run_until(f.pool, job_is_gone, &ga, 10000));
	/* Not before its time (a millisecond of slack for a backend's cached clock). */
	assert_true(fp_now_ms() + 1 >= ended + jo.ttl_ms);

	/* The timer is armed again for the next one. */
	b = submit_apply(&f, "sleep", "10");
	strcpy(b_id, fp_job_id(b));
	wait_finished(&f, b);
	assert_true(fp_test_run_until(f.pool, job_is_gone, &gb, 10000));

	/* A job that has not finished is never expired. */
	assert_ptr_equal(fp_jobs_find(f.jobs, fp_job_id(hang)), hang);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 1);
	assert_int_equal(st.by_state[FP_JOB_DONE], 0);
	fp_test_jobs_teardown(&f);
}

/* Each job's end on the monotonic clock, and whether one was forgotten early. */
struct expiry {
	fp_jobs *jobs;
	uint64_t ttl_ms;
	char ids[3][33];
	uint64_t ended[3];
	int early;
};

static int expiry_all_gone(void *data)
{
	struct expiry *e = data;
	int gone = 0;

	for (int i = 0; i < 3; i++) {
		if (fp_jobs_find(e->jobs, e->ids[i]))
			continue;
		gone++;
		/* The timer never fires before it is due (a ms of slack for a cached clock). */
		if (fp_now_ms() + 1 < e->ended[i] + e->ttl_ms)
			e->early = 1;
	}
	return gone == 3;
}

static void ttl_timer_follows_several_finished_jobs(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct expiry e;
	struct fp_job_watch w[3];
	fp_job *job;

	fp_jobs_options_init(&jo);
	jo.ttl_ms = 80;
	fp_test_jobs_setup_with(&f, 2, &jo);
	memset(&e, 0, sizeof(e));
	e.jobs = f.jobs;
	e.ttl_ms = jo.ttl_ms;
	/* Finishing some tens of ms apart: separate expiries, one timer. */
	for (int i = 0; i < 3; i++) {
		job = submit_apply(&f, "sleep", "30");
		strcpy(e.ids[i], fp_job_id(job));
		w[i] = (struct fp_job_watch){ .on_end = ended_at, .data = &e.ended[i] };
		fp_job_watch(job, &w[i]);
		wait_finished(&f, job);
		assert_true(e.ended[i] > 0);
		assert_false(e.early);
		expiry_all_gone(&e);
	}
	assert_true(fp_test_run_until(f.pool, expiry_all_gone, &e, 10000));
	assert_false(e.early);
	fp_test_jobs_teardown(&f);
}

static void max_jobs_forgets_the_oldest_finished_first(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	char ids[3][33];
	fp_job *hang, *job;

	fp_jobs_options_init(&jo);
	jo.max_jobs = 2;
	fp_test_jobs_setup_with(&f, 2, &jo);
	hang = submit_apply(&f, "hang", "null");
	for (int i = 0; i < 3; i++) {
		job = submit_apply(&f, "square", "5");
		strcpy(ids[i], fp_job_id(job));
		wait_finished(&f, job);
	}
	assert_null(fp_jobs_find(f.jobs, ids[0]));
	assert_non_null(fp_jobs_find(f.jobs, ids[1]));
	assert_non_null(fp_jobs_find(f.jobs, ids[2]));
	/* Unfinished jobs are not counted against max_jobs. */
	assert_ptr_equal(fp_jobs_find(f.jobs, fp_job_id(hang)), hang);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 3);
	assert_int_equal(st.by_state[FP_JOB_DONE], 2);
	fp_test_jobs_teardown(&f);
}

/* --- watchers ------------------------------------------------------------ */

struct watcher {
	struct fp_job_watch w;
	fp_jobs *jobs;
	unsigned *seen;            /* per index, may be NULL */
	size_t items, ends;
	size_t finished_at_end;    /* done + failed when on_end ran */
	size_t unwatch_after;      /* unwatch itself after this many items; 0: never */
	struct fp_job_watch *victim;   /* unwatched on the first item */
	bool forget_on_item, forget_on_end;
	bool bad_order;
};

static void watcher_item(struct fp_job_watch *w, fp_job *job, size_t index)
{
	struct watcher *x = w->data;
	struct fp_job_item it;

	x->items++;
	if (x->seen)
		x->seen[index]++;
	/* Recorded before it is announced, and the latest to complete. */
	fp_job_item(job, index, &it);
	if (!it.finished ||
	    fp_job_completed_index(job, fp_job_done(job) + fp_job_failed(job) - 1) != index)
		x->bad_order = true;
	if (x->victim) {
		fp_job_unwatch(x->victim);
		x->victim = NULL;
	}
	if (x->unwatch_after && x->items == x->unwatch_after)
		fp_job_unwatch(w);
	if (x->forget_on_item) {
		x->forget_on_item = false;
		fp_jobs_forget(x->jobs, job);
	}
}

static void watcher_end(struct fp_job_watch *w, fp_job *job)
{
	struct watcher *x = w->data;

	x->ends++;
	/* Touches the job: it must still be valid during on_end. */
	x->finished_at_end = fp_job_finished(job) ? fp_job_done(job) + fp_job_failed(job)
						   : (size_t)strlen(fp_job_id(job));
	if (x->forget_on_end)
		fp_jobs_forget(x->jobs, job);
}

static void watcher_init(struct watcher *x, fp_jobs *jobs)
{
	memset(x, 0, sizeof(*x));
	x->jobs = jobs;
	x->w.on_item = watcher_item;
	x->w.on_end = watcher_end;
	x->w.data = x;
}

static void watchers_see_every_item_once_and_the_end_once(void **state)
{
	const size_t n = 200;
	struct fp_test_jobs f;
	struct items in;
	struct watcher all, self, victim, killer, late;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, n, NULL);
	job = submit_map(&f, "square", &in, 5);

	watcher_init(&all, f.jobs);
	all.seen = calloc(n, sizeof(*all.seen));
	watcher_init(&self, f.jobs);
	self.unwatch_after = 3;
	watcher_init(&victim, f.jobs);
	watcher_init(&killer, f.jobs);
	killer.victim = &victim.w;
	fp_job_watch(job, &all.w);
	fp_job_watch(job, &self.w);
	/* Newest first: killer runs just before victim, its successor in the round. */
	fp_job_watch(job, &victim.w);
	fp_job_watch(job, &killer.w);

	wait_finished(&f, job);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(all.seen[i], 1);
	assert_int_equal(all.items, n);
	assert_int_equal(all.ends, 1);
	assert_int_equal(all.finished_at_end, n);
	assert_false(all.bad_order);
	assert_null(all.w.job);

	assert_int_equal(self.items, 3);
	assert_int_equal(self.ends, 0);
	assert_null(self.w.job);
	assert_int_equal(victim.items, 0);
	assert_int_equal(victim.ends, 0);
	assert_int_equal(killer.items, n);
	assert_int_equal(killer.ends, 1);

	/* Watching a finished job links nothing and calls nothing. */
	watcher_init(&late, f.jobs);
	fp_job_watch(job, &late.w);
	assert_null(late.w.job);
	fp_job_unwatch(&late.w);
	assert_int_equal(late.items + late.ends, 0);

	free(all.seen);
	items_free(&in);
	fp_test_jobs_teardown(&f);
}

static void forget_from_inside_on_end_is_safe(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	struct watcher first, second;
	char id[33];
	fp_job *job;

	fp_test_jobs_setup(&f, 1);
	job = submit_apply(&f, "square", "6");
	strcpy(id, fp_job_id(job));
	watcher_init(&first, f.jobs);
	watcher_init(&second, f.jobs);
	/* `second` is called first and forgets; `first` must still get a live job. */
	second.forget_on_end = true;
	fp_job_watch(job, &first.w);
	fp_job_watch(job, &second.w);

	struct gone g = { f.jobs, id };
	assert_true(fp_test_run_until(f.pool, job_is_gone, &g, 30000));
	assert_int_equal(second.ends, 1);
	assert_int_equal(first.ends, 1);
	assert_int_equal(first.finished_at_end, 1);
	assert_int_equal(first.items, 1);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 0);
	assert_int_equal(st.by_state[FP_JOB_DONE], 0);
	fp_test_jobs_teardown(&f);
}

static int nothing_pending(void *data)
{
	struct fp_jobs_stats st;

	fp_jobs_stats(data, &st);
	return st.items_pending == 0;
}

static void forget_from_inside_on_item_cancels_the_rest(void **state)
{
	const size_t n = 40;
	struct fp_test_jobs f;
	struct items in;
	struct fp_jobs_stats st;
	struct watcher first, second;
	char id[33];
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, n, "5");
	job = submit_map(&f, "sleep", &in, 1);
	strcpy(id, fp_job_id(job));
	watcher_init(&first, f.jobs);
	watcher_init(&second, f.jobs);
	second.forget_on_item = true;
	fp_job_watch(job, &first.w);
	fp_job_watch(job, &second.w);

	/* The job leaves at the first item; the pool's later callbacks find a tombstone. */
	assert_true(fp_test_run_until(f.pool, nothing_pending, f.jobs, 60000));
	assert_true(fp_test_run_until(f.pool, pool_is_idle, f.pool, 30000));
	assert_null(fp_jobs_find(f.jobs, id));
	assert_int_equal(second.items, 1);
	assert_int_equal(second.ends, 1);
	assert_int_equal(first.items, 0);
	assert_int_equal(first.ends, 1);
	assert_null(first.w.job);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 0);
	assert_int_equal(st.items_ok + st.items_failed, n);
	assert_true(st.items_failed > 0);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 0);
	items_free(&in);
	fp_test_jobs_teardown(&f);
}

/* A reader of a finished job: told when it is forgotten, and can still read it. */
struct holder {
	struct fp_job_watch w;
	size_t ends;
	char value[32];
};

static void holder_end(struct fp_job_watch *w, fp_job *job)
{
	struct holder *h = w->data;
	struct fp_job_item it;

	h->ends++;
	fp_job_item(job, 0, &it);
	snprintf(h->value, sizeof(h->value), "%s", it.value ? it.value : "(none)");
}

static void holder_init(struct holder *h)
{
	memset(h, 0, sizeof(*h));
	h->w.on_end = holder_end;
	h->w.data = h;
}

static void watch_forget_hears_when_a_finished_job_goes(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct holder byforget, byevict, byttl, quitter, unfinished, atfree;
	char ids[3][33];
	struct gone g;
	fp_job *a, *b, *c, *hang;

	fp_jobs_options_init(&jo);
	jo.max_jobs = 2;
	/* Long enough that nothing expires while the eviction part runs. */
	jo.ttl_ms = 300;
	fp_test_jobs_setup_with(&f, 2, &jo);

	hang = submit_apply(&f, "hang", "null");
	holder_init(&unfinished);
	assert_int_equal(fp_job_watch_forget(hang, &unfinished.w), -EINVAL);
	assert_null(unfinished.w.job);

	/* Forgotten on demand. */
	a = submit_apply(&f, "square", "8");
	wait_finished(&f, a);
	holder_init(&byforget);
	holder_init(&quitter);
	assert_int_equal(fp_job_watch_forget(a, &byforget.w), 0);
	assert_int_equal(fp_job_watch_forget(a, &quitter.w), 0);
	fp_job_unwatch(&quitter.w);
	fp_jobs_forget(f.jobs, a);
	assert_int_equal(byforget.ends, 1);
	assert_string_equal(byforget.value, "64");
	assert_null(byforget.w.job);
	assert_int_equal(quitter.ends, 0);

	/* Evicted over max_jobs, oldest first. */
	b = submit_apply(&f, "square", "9");
	strcpy(ids[0], fp_job_id(b));
	wait_finished(&f, b);
	holder_init(&byevict);
	assert_int_equal(fp_job_watch_forget(b, &byevict.w), 0);
	for (int i = 1; i < 3; i++) {
		c = submit_apply(&f, "square", "1");
		strcpy(ids[i], fp_job_id(c));
		wait_finished(&f, c);
	}
	assert_null(fp_jobs_find(f.jobs, ids[0]));
	assert_int_equal(byevict.ends, 1);
	assert_string_equal(byevict.value, "81");

	/* Expired. */
	c = fp_jobs_find(f.jobs, ids[2]);
	assert_non_null(c);
	holder_init(&byttl);
	assert_int_equal(fp_job_watch_forget(c, &byttl.w), 0);
	g = (struct gone){ f.jobs, ids[2] };
	assert_true(fp_test_run_until(f.pool, job_is_gone, &g, 10000));
	assert_int_equal(byttl.ends, 1);
	assert_string_equal(byttl.value, "1");

	/* The store going away calls nothing. */
	a = submit_apply(&f, "square", "2");
	wait_finished(&f, a);
	holder_init(&atfree);
	assert_int_equal(fp_job_watch_forget(a, &atfree.w), 0);
	fp_jobs_free(f.jobs);
	f.jobs = NULL;
	assert_int_equal(atfree.ends, 0);
	assert_null(atfree.w.job);
	assert_int_equal(unfinished.ends, 0);
	fp_test_jobs_teardown(&f);
}

/* --- listing, closing, freeing ------------------------------------------- */

static void list_is_newest_first_with_a_state_filter(void **state)
{
	struct fp_test_jobs f;
	fp_job *a, *b, *c, *d, *out[8];
	enum fp_job_state s;

	fp_test_jobs_setup(&f, 2);
	a = submit_apply(&f, "square", "1");
	wait_finished(&f, a);
	b = submit_apply(&f, "hang", "null");
	c = submit_apply(&f, "fail", "\"no\"");
	wait_finished(&f, c);
	d = submit_apply(&f, "square", "2");
	wait_finished(&f, d);

	assert_int_equal(fp_jobs_list(f.jobs, NULL, 0, out, 8), 4);
	assert_ptr_equal(out[0], d);
	assert_ptr_equal(out[1], c);
	assert_ptr_equal(out[2], b);
	assert_ptr_equal(out[3], a);
	assert_int_equal(fp_jobs_list(f.jobs, NULL, 0, out, 2), 2);
	assert_ptr_equal(out[0], d);
	assert_ptr_equal(out[1], c);

	assert_int_equal(fp_job_state_parse("done", &s), 0);
	assert_int_equal(fp_jobs_list(f.jobs, &s, 0, out, 8), 2);
	assert_ptr_equal(out[0], d);
	assert_ptr_equal(out[1], a);
	assert_int_equal(fp_job_state_parse("failed", &s), 0);
	assert_int_equal(fp_jobs_list(f.jobs, &s, 0, out, 8), 1);
	assert_ptr_equal(out[0], c);
	/* b's item is on a worker: running, not queued. */
	assert_int_equal(fp_job_state_parse("running", &s), 0);
	assert_int_equal(fp_jobs_list(f.jobs, &s, 0, out, 8), 1);
	assert_ptr_equal(out[0], b);
	assert_int_equal(fp_job_state_parse("queued", &s), 0);
	assert_int_equal(fp_jobs_list(f.jobs, &s, 0, out, 8), 0);
	assert_int_equal(fp_job_state_parse("cancelled", &s), 0);
	assert_int_equal(fp_jobs_list(f.jobs, &s, 0, out, 8), 0);
	fp_test_jobs_teardown(&f);
}

/* A page starts before a job's seq; neither new jobs nor forgotten ones move it. */
static void list_pages_from_a_cursor(void **state)
{
	struct fp_test_jobs f;
	fp_job *j[5], *e, *out[8];
	enum fp_job_state s;
	uint64_t cursor;

	fp_test_jobs_setup(&f, 2);
	for (int i = 0; i < 5; i++) {
		j[i] = submit_apply(&f, "square", "3");
		wait_finished(&f, j[i]);
		assert_int_equal(fp_job_seq(j[i]), i ? fp_job_seq(j[i - 1]) + 1 : 1);
	}
	assert_int_equal(fp_jobs_list(f.jobs, NULL, 0, out, 2), 2);
	assert_ptr_equal(out[1], j[3]);
	cursor = fp_job_seq(out[1]);
	/* The job the cursor names goes, a later one comes. */
	fp_jobs_forget(f.jobs, j[3]);
	e = submit_apply(&f, "square", "4");
	wait_finished(&f, e);
	assert_int_equal(fp_jobs_list(f.jobs, NULL, cursor, out, 8), 3);
	assert_ptr_equal(out[0], j[2]);
	assert_ptr_equal(out[1], j[1]);
	assert_ptr_equal(out[2], j[0]);
	assert_int_equal(fp_jobs_list(f.jobs, NULL, fp_job_seq(j[0]), out, 8), 0);
	assert_int_equal(fp_job_state_parse("done", &s), 0);
	assert_int_equal(fp_jobs_list(f.jobs, &s, fp_job_seq(j[2]), out, 1), 1);
	assert_ptr_equal(out[0], j[1]);
	fp_test_jobs_teardown(&f);
}

static void names_round_trip(void **state)
{
	enum fp_job_state s;

	for (int i = FP_JOB_QUEUED; i <= FP_JOB_CANCELLED; i++) {
		assert_int_equal(fp_job_state_parse(fp_job_state_name(i), &s), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(fp_job_state_name(FP_JOB_RUNNING), "running");
	assert_int_equal(fp_job_state_parse("bogus", &s), -EINVAL);
	assert_int_equal(fp_job_state_parse("", &s), -EINVAL);
	assert_string_equal(fp_job_kind_name(FP_JOB_APPLY), "apply");
	assert_string_equal(fp_job_kind_name(FP_JOB_MAP), "map");
}

static void close_refuses_new_jobs_and_lets_old_ones_finish(void **state)
{
	struct fp_test_jobs f;
	struct fp_buf b = { "1", 1 };
	struct fp_jobs_stats st;
	fp_job *job, *other = (fp_job *)1;

	fp_test_jobs_setup(&f, 1);
	job = submit_apply(&f, "sleep", "30");
	fp_jobs_close(f.jobs);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_APPLY, "square", &b, 1, NULL, &other),
			 FP_ESTOPPED);
	assert_null(other);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 1);
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 0);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.submitted, 1);
	assert_int_equal(st.rejected, 0);
	fp_test_jobs_teardown(&f);
}

static void free_with_jobs_running_then_run_the_loop(void **state)
{
	struct fp_test_jobs f;
	struct items in;
	struct watcher w;
	struct fp_pool_stats ps;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, 4, "null");
	job = submit_apply(&f, "hang", "null");
	submit_map(&f, "hang", &in, 1);
	submit_apply(&f, "square", "9");
	watcher_init(&w, f.jobs);
	fp_job_watch(job, &w.w);
	wait_running(&f, 2);

	fp_jobs_free(f.jobs);
	assert_null(w.w.job);
	/* The pool still delivers the cancelled calls: into tombstones. */
	assert_true(fp_test_run_until(f.pool, pool_is_idle, f.pool, 30000));
	fp_pool_stats(f.pool, &ps);
	assert_true(ps.cancelled >= 5);
	assert_int_equal(w.items + w.ends, 0);
	fp_pool_free(f.pool);
	items_free(&in);
}

static void free_with_jobs_running_then_free_the_pool(void **state)
{
	struct fp_test_jobs f;
	struct items in;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, 3, "null");
	submit_apply(&f, "hang", "null");
	submit_map(&f, "hang", &in, 1);
	wait_running(&f, 2);
	/* The pool's shutdown delivers what is left, after the store is gone. */
	fp_jobs_free(f.jobs);
	fp_pool_free(f.pool);
	items_free(&in);
}

/* --- limits: results memory, max_jobs, the ids of forgotten jobs --------- */

static uint64_t results_bytes(fp_jobs *jobs)
{
	struct fp_jobs_stats st;

	fp_jobs_stats(jobs, &st);
	return st.results_bytes;
}

/* The job whose id is `id` is gone, for `why`. */
static void assert_gone(fp_jobs *jobs, const char *id, enum fp_job_gone why)
{
	enum fp_job_gone got;
	uint64_t at = 0;

	assert_null(fp_jobs_find(jobs, id));
	if (!fp_jobs_gone(jobs, id, &got, &at))
		fail_msg("job %s is not remembered as gone", id);
	if (got != why)
		fail_msg("job %s went for %s, not %s", id, fp_job_gone_name(got), fp_job_gone_name(why));
	assert_true(at > 0 && at <= wall_now());
}

/* `n` JSON strings of `len` x's each. */
static struct fp_buf *long_strings(size_t n, size_t len)
{
	struct fp_buf *b = calloc(n, sizeof(*b));
	char *s = malloc(len + 2);

	assert_non_null(b);
	assert_non_null(s);
	memset(s, 'x', len + 2);
	s[0] = s[len + 1] = '"';
	for (size_t i = 0; i < n; i++)
		b[i] = (struct fp_buf){ s, len + 2 };
	return b;
}

static void long_strings_free(struct fp_buf *b)
{
	free((char *)b[0].base);
	free(b);
}

static void forgotten_ids_say_why_and_unknown_ones_are_not_gone(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	char ids[4][33];
	fp_job *job;

	fp_jobs_options_init(&jo);
	jo.max_jobs = 2;
	fp_test_jobs_setup_with(&f, 2, &jo);
	for (int i = 0; i < 4; i++) {
		job = submit_apply(&f, "square", "3");
		strcpy(ids[i], fp_job_id(job));
		wait_finished(&f, job);
		if (i == 0)
			fp_jobs_forget(f.jobs, job);
	}
	/* 0 deleted; 1 the oldest of three finished over max_jobs 2. */
	assert_gone(f.jobs, ids[0], FP_JOB_GONE_DELETED);
	assert_gone(f.jobs, ids[1], FP_JOB_GONE_MAX_JOBS);
	for (int i = 2; i < 4; i++) {
		assert_non_null(fp_jobs_find(f.jobs, ids[i]));
		assert_int_equal(fp_jobs_gone(f.jobs, ids[i], NULL, NULL), 0);
	}
	assert_int_equal(fp_jobs_gone(f.jobs, "00000000000000000000000000000000", NULL, NULL), 0);
	assert_int_equal(fp_jobs_gone(f.jobs, "nope", NULL, NULL), 0);
	ids[0][31] = '\0';
	assert_int_equal(fp_jobs_gone(f.jobs, ids[0], NULL, NULL), 0);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.forgotten[FP_JOB_GONE_DELETED], 1);
	assert_int_equal(st.forgotten[FP_JOB_GONE_MAX_JOBS], 1);
	assert_int_equal(st.forgotten[FP_JOB_GONE_TTL] + st.forgotten[FP_JOB_GONE_MEMORY], 0);
	assert_string_equal(fp_job_gone_name(FP_JOB_GONE_TTL), "ttl");
	assert_string_equal(fp_job_gone_name(FP_JOB_GONE_MAX_JOBS), "max_jobs");
	assert_string_equal(fp_job_gone_name(FP_JOB_GONE_MEMORY), "memory");
	assert_string_equal(fp_job_gone_name(FP_JOB_GONE_DELETED), "deleted");
	fp_test_jobs_teardown(&f);
}

static void an_expired_id_is_gone_for_its_ttl(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	char id[33];
	struct gone g = { NULL, id };
	fp_job *job;

	fp_jobs_options_init(&jo);
	jo.ttl_ms = 50;
	fp_test_jobs_setup_with(&f, 1, &jo);
	job = submit_apply(&f, "square", "2");
	strcpy(id, fp_job_id(job));
	g.jobs = f.jobs;
	assert_true(fp_test_run_until(f.pool, job_is_gone, &g, 10000));
	assert_gone(f.jobs, id, FP_JOB_GONE_TTL);
	fp_test_jobs_teardown(&f);
}

/* 32 hex digits of a made-up id: `i` in its first bytes, `bucket` in its hashed ones. */
static void made_up_id(uint32_t i, uint32_t bucket, uint8_t raw[16], char hex[33])
{
	memset(raw, 0, 16);
	memcpy(raw, &i, sizeof(i));
	memcpy(raw + 8, &bucket, sizeof(bucket));
	for (int k = 0; k < 16; k++)
		snprintf(hex + 2 * k, 3, "%02x", raw[k]);
}

static void the_newest_forgotten_ids_are_kept_when_there_are_too_many(void **state)
{
	const uint32_t n = FP_JOBS_GONE_KEPT + 100;
	struct fp_test_jobs f;
	enum fp_job_gone why;
	uint8_t raw[16];
	char hex[33];

	fp_test_jobs_setup(&f, 1);
	/* A chain of 64 per bucket: the oldest are taken out of chains as they go. */
	for (uint32_t i = 0; i < n; i++) {
		made_up_id(i, i % 1024, raw, hex);
		fp__jobs_gone_add(f.jobs, raw, (enum fp_job_gone)(i % FP_JOB_GONE_COUNT));
	}
	for (uint32_t i = 0; i < n; i++) {
		made_up_id(i, i % 1024, raw, hex);
		if (fp_jobs_gone(f.jobs, hex, &why, NULL) != (i >= n - FP_JOBS_GONE_KEPT))
			fail_msg("id %u of %u: %s", i, n, i < 100 ? "still remembered" : "forgotten");
		if (i >= 100 && why != (enum fp_job_gone)(i % FP_JOB_GONE_COUNT))
			fail_msg("id %u: went for %s", i, fp_job_gone_name(why));
	}
	fp_test_jobs_teardown(&f);
}

static void results_memory_forgets_the_oldest_finished_first(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	struct fp_job_item it;
	char ids[5][33];
	fp_job *job;

	fp_jobs_options_init(&jo);
	jo.max_results_bytes = 3500 * 1024;
	fp_test_jobs_setup_with(&f, 2, &jo);
	for (int i = 0; i < 5; i++) {
		job = submit_apply(&f, "bytes", "1000000");
		strcpy(ids[i], fp_job_id(job));
		wait_finished(&f, job);
		assert_true(results_bytes(f.jobs) <= jo.max_results_bytes);
	}
	assert_gone(f.jobs, ids[0], FP_JOB_GONE_MEMORY);
	assert_gone(f.jobs, ids[1], FP_JOB_GONE_MEMORY);
	for (int i = 2; i < 5; i++) {
		job = fp_jobs_find(f.jobs, ids[i]);
		assert_non_null(job);
		fp_job_item(job, 0, &it);
		assert_int_equal(it.status, FP_ITEM_OK);
		assert_int_equal(it.value_len, 1000002);
	}
	assert_true(results_bytes(f.jobs) >= 3 * 1000003);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.forgotten[FP_JOB_GONE_MEMORY], 2);
	assert_int_equal(st.results_dropped, 0);
	fp_test_jobs_teardown(&f);
}

static void a_job_that_cannot_fit_is_refused_and_nothing_is_forgotten(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	struct fp_buf *three = long_strings(3, 400000);
	char id[33];
	fp_job *job, *map = NULL;

	fp_jobs_options_init(&jo);
	jo.max_results_bytes = 1 << 20;
	fp_test_jobs_setup_with(&f, 2, &jo);
	job = submit_apply(&f, "bytes", "400000");
	strcpy(id, fp_job_id(job));
	wait_finished(&f, job);

	/* 1.2 MB of items: over the limit whatever is forgotten. */
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "echo", three, 3, NULL, &map), -ENOSPC);
	assert_null(map);
	assert_non_null(fp_jobs_find(f.jobs, id));
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.rejected_memory, 1);
	assert_true(st.refused_need > 1200000 && st.refused_need < 1300000);

	/* 800 KB fits once the finished job is forgotten: it is, for memory. */
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "echo", three, 2, NULL, &map), 0);
	assert_gone(f.jobs, id, FP_JOB_GONE_MEMORY);
	wait_finished(&f, map);
	assert_int_equal(fp_job_state(map), FP_JOB_DONE);

	/* Held by a reader, the room cannot be made: refused, saying what is held. */
	fp_job_ref(map);
	job = NULL;
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "echo", three, 2, NULL, &job), -ENOSPC);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.rejected_memory, 2);
	assert_true(st.refused_held >= 800000 && st.refused_held <= results_bytes(f.jobs));
	assert_ptr_equal(fp_jobs_find(f.jobs, fp_job_id(map)), map);
	fp_job_unref(map);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "echo", three, 2, NULL, &job), 0);
	wait_finished(&f, job);
	long_strings_free(three);
	fp_test_jobs_teardown(&f);
}

static void a_value_past_the_limit_ends_too_large_and_the_job_goes_on(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	struct fp_buf b[] = { { "2000000", 7 }, { "5", 1 }, { "3", 1 } };
	struct fp_job_item it;
	char id[33];
	fp_job *job, *map;

	fp_jobs_options_init(&jo);
	jo.max_results_bytes = 1 << 20;
	fp_test_jobs_setup_with(&f, 1, &jo);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "bytes", b, 3, NULL, &map), 0);
	wait_finished(&f, map);
	assert_int_equal(fp_job_state(map), FP_JOB_FAILED);
	fp_job_item(map, 0, &it);
	assert_int_equal(it.status, FP_ITEM_TOO_LARGE);
	assert_non_null(strstr(it.message, "--max-results-memory"));
	fp_job_item(map, 1, &it);
	assert_string_equal(it.value, "\"xxxxx\"");
	fp_job_item(map, 2, &it);
	assert_string_equal(it.value, "\"xxx\"");
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.results_dropped, 1);
	assert_true(results_bytes(f.jobs) < 4096);

	/* A value that fits once a finished job is forgotten: it is. */
	job = submit_apply(&f, "bytes", "600000");
	strcpy(id, fp_job_id(job));
	wait_finished(&f, job);
	job = submit_apply(&f, "bytes", "600000");
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_gone(f.jobs, id, FP_JOB_GONE_MEMORY);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.results_dropped, 1);
	fp_test_jobs_teardown(&f);
}

static void results_bytes_count_records_and_text(void **state)
{
	const size_t n = 1000;
	struct fp_test_jobs f;
	struct items in;
	uint64_t text = 0, fixed = sizeof(struct fp_job) + sizeof("square");
	fp_job *job, *hang;

	fp_test_jobs_setup(&f, 2);
	assert_int_equal(results_bytes(f.jobs), 0);
	items_make(&in, n, NULL);
	job = submit_map(&f, "square", &in, 0);
	/* The records count from submission on. */
	assert_int_equal(results_bytes(f.jobs), fixed + n * 20);
	wait_finished(&f, job);
	for (size_t i = 0; i < n; i++) {
		char v[32];
		text += (uint64_t)snprintf(v, sizeof(v), "%zu", i * i) + 1;
	}
	/* And the text, with a few page headers. */
	assert_true(results_bytes(f.jobs) >= fixed + n * 20 + text);
	assert_true(results_bytes(f.jobs) <= fixed + n * 20 + text + 16 * 32);
	fp_jobs_forget(f.jobs, job);
	assert_int_equal(results_bytes(f.jobs), 0);
	/* A running job forgotten: its records go at once, its tombstone holds nothing. */
	hang = submit_apply(&f, "hang", "null");
	assert_true(results_bytes(f.jobs) > 0);
	fp_jobs_forget(f.jobs, hang);
	assert_int_equal(results_bytes(f.jobs), 0);
	items_free(&in);
	fp_test_jobs_teardown(&f);
}

static void a_held_job_is_read_after_it_is_forgotten(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_job_item it;
	uint64_t held;
	char id[33];
	fp_job *a, *b;

	fp_jobs_options_init(&jo);
	jo.max_jobs = 1;
	fp_test_jobs_setup_with(&f, 1, &jo);
	a = submit_apply(&f, "bytes", "100000");
	strcpy(id, fp_job_id(a));
	wait_finished(&f, a);
	fp_job_ref(a);
	fp_job_ref(a);
	held = results_bytes(f.jobs);
	b = submit_apply(&f, "square", "2");
	wait_finished(&f, b);
	/* Gone for everyone else, whole for its readers, and still counted. */
	assert_gone(f.jobs, id, FP_JOB_GONE_MAX_JOBS);
	fp_job_item(a, 0, &it);
	assert_int_equal(it.status, FP_ITEM_OK);
	assert_int_equal(it.value_len, 100002);
	assert_true(fp_job_finished(a));
	assert_true(results_bytes(f.jobs) > held);
	fp_job_unref(a);
	fp_job_item(a, 0, &it);
	assert_int_equal(it.value_len, 100002);
	fp_job_unref(a);
	/* The last reader let go: its memory went with it. */
	assert_true(results_bytes(f.jobs) < held - 100000 + 4096);
	fp_test_jobs_teardown(&f);
}

static void memory_eviction_passes_over_jobs_being_read(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	char ida[33], idb[33];
	fp_job *a, *b, *c;

	fp_jobs_options_init(&jo);
	jo.max_results_bytes = 2500 * 1024;
	fp_test_jobs_setup_with(&f, 1, &jo);
	a = submit_apply(&f, "bytes", "1000000");
	strcpy(ida, fp_job_id(a));
	wait_finished(&f, a);
	fp_job_ref(a);
	b = submit_apply(&f, "bytes", "1000000");
	strcpy(idb, fp_job_id(b));
	wait_finished(&f, b);
	/* Forgetting a, the oldest, would free nothing while it is read: b goes. */
	c = submit_apply(&f, "bytes", "1000000");
	wait_finished(&f, c);
	assert_int_equal(fp_job_state(c), FP_JOB_DONE);
	assert_ptr_equal(fp_jobs_find(f.jobs, ida), a);
	assert_gone(f.jobs, idb, FP_JOB_GONE_MEMORY);
	fp_job_unref(a);
	fp_test_jobs_teardown(&f);
}

static void freeing_the_store_leaves_a_held_job_to_its_reader(void **state)
{
	struct fp_test_jobs f;
	struct fp_job_item it;
	fp_job *a;

	fp_test_jobs_setup(&f, 1);
	a = submit_apply(&f, "bytes", "1000");
	wait_finished(&f, a);
	fp_job_ref(a);
	fp_jobs_free(f.jobs);
	f.jobs = NULL;
	fp_job_item(a, 0, &it);
	assert_int_equal(it.value_len, 1002);
	/* Freed here: ASan's leak check and use-after-free checks see to the rest. */
	fp_job_unref(a);
	fp_test_jobs_teardown(&f);
}

/* --- size ---------------------------------------------------------------- */

static void big_map_is_a_few_blocks(void **state)
{
	const size_t n = 100000;
	struct fp_test_jobs f;
	struct items in;
	struct fp_jobs_stats st;
	size_t bytes, blocks;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, n, NULL);
	job = submit_map(&f, "square", &in, 0);
	fp_job_memory(job, &bytes, &blocks);
	assert_int_equal(blocks, 3);   /* the job, its items, its completion order */
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	for (size_t i = 0; i < n; i++) {
		struct fp_job_item it;
		char want[32];

		fp_job_item(job, i, &it);
		snprintf(want, sizeof(want), "%zu", i * i);
		if (!it.finished || it.status != FP_ITEM_OK || strcmp(it.value, want) != 0)
			fail_msg("item %zu: %s, want %s", i, it.value ? it.value : "(null)", want);
	}
	/* About 1 MB of text: pages doubling to 1 MiB, never a block per item. */
	fp_job_memory(job, &bytes, &blocks);
	assert_true(blocks < 16);
	assert_true(bytes < n * 20 + ((size_t)4 << 20));
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_ok, n);
	items_free(&in);
	fp_test_jobs_teardown(&f);
}

/* `it` copied into fp_mem_alloc() blocks, as the API hands a taking submission. */
static fp_job *submit_map_taking(struct fp_test_jobs *f, const char *task,
				 const struct items *it, size_t chunksize, int want)
{
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_buf *b = fp_mem_alloc((it->n ? it->n : 1) * sizeof(*b));
	size_t bytes = 0, off = 0;
	char *text;
	fp_job *job = NULL;
	int rc;

	for (size_t i = 0; i < it->n; i++)
		bytes += it->b[i].len;
	text = fp_mem_alloc(bytes + 1);
	assert_non_null(b);
	assert_non_null(text);
	for (size_t i = 0; i < it->n; i++) {
		memcpy(text + off, it->b[i].base, it->b[i].len);
		b[i] = (struct fp_buf){ text + off, it->b[i].len };
		off += it->b[i].len;
	}
	o.chunksize = chunksize;
	rc = fp_jobs_submit_map_taking(f->jobs, task, b, it->n, text, &o, NULL, &job);
	assert_int_equal(rc, want);
	if (want == 0)
		assert_non_null(job);
	return job;
}

/*
 * A map on items the job took: the pool reads them as it hands chunks out
 * (here over many loop turns, chunksize 3), every answer is its item's, and
 * the job frees them when the call ends, whether it ended finished, failed
 * up front, forgotten while running, or with the store freed under it
 * (ASan's leak and use-after-free checks see to the freeing).
 */
static void a_map_on_taken_items_runs_them_and_frees_them_at_its_end(void **state)
{
	const size_t n = 2000;
	struct fp_test_jobs f;
	struct items in, slow;
	struct fp_jobs_stats st;
	struct gone g;
	char id[33];
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, n, NULL);
	job = submit_map_taking(&f, "square", &in, 3, 0);
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_equal(fp_job_done(job), n);
	for (size_t i = 0; i < n; i++) {
		struct fp_job_item it;
		char want[32];

		fp_job_item(job, i, &it);
		snprintf(want, sizeof(want), "%zu", i * i);
		if (!it.finished || it.status != FP_ITEM_OK || strcmp(it.value, want) != 0)
			fail_msg("item %zu: %s, want %s", i, it.value ? it.value : "(null)", want);
	}
	assert_completion_permutation(job);

	/* Refused up front: the items are freed all the same. */
	assert_null(submit_map_taking(&f, "no_such_task", &in, 0, FP_EUNKNOWN_TASK));

	/* Forgotten while its items run: the tombstone keeps them for the pool. */
	items_make(&slow, 40, "5");
	job = submit_map_taking(&f, "sleep", &slow, 1, 0);
	strcpy(id, fp_job_id(job));
	assert_true(fp_test_run_until(f.pool, job_is_running, job, 10000));
	fp_jobs_forget(f.jobs, job);
	g = (struct gone){ f.jobs, id };
	assert_true(fp_test_run_until(f.pool, job_is_gone, &g, 10000));
	assert_true(fp_test_run_until(f.pool, pool_is_idle, f.pool, 30000));
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.items_pending, 0);

	/* Still running when the store goes: freed by the pool's last callback. */
	job = submit_map_taking(&f, "sleep", &slow, 1, 0);
	assert_true(fp_test_run_until(f.pool, job_is_running, job, 10000));
	items_free(&in);
	items_free(&slow);
	fp_test_jobs_teardown(&f);
}

static void cancelled_big_map_stores_its_message_once(void **state)
{
	const size_t n = 100000;
	struct fp_test_jobs f;
	struct items in;
	struct fp_job_item it;
	size_t bytes, blocks;
	fp_job *job;

	fp_test_jobs_setup(&f, 2);
	items_make(&in, n, "null");
	job = submit_map(&f, "hang", &in, 0);
	wait_running(&f, 1);
	assert_int_equal(fp_jobs_cancel(f.jobs, job), 0);
	wait_finished(&f, job);
	assert_int_equal(fp_job_state(job), FP_JOB_CANCELLED);
	assert_int_equal(fp_job_failed(job), n);
	fp_job_item(job, 0, &it);
	assert_int_equal(it.status, FP_ITEM_CANCELLED);
	fp_job_item(job, n - 1, &it);
	assert_int_equal(it.status, FP_ITEM_CANCELLED);
	assert_string_equal(it.message, "cancelled");
	assert_completion_permutation(job);
	fp_job_memory(job, &bytes, &blocks);
	assert_true(blocks <= 5);
	assert_true(bytes < n * 20 + ((size_t)64 << 10));
	items_free(&in);
	fp_test_jobs_teardown(&f);
}

/* --- idempotency keys ---------------------------------------------------- */

static fp_job *submit_keyed(struct fp_test_jobs *f, const char *task, const char *args,
			    const char *key, uint64_t hash, int want)
{
	struct fp_buf b = { args, strlen(args) };
	struct fp_job_idem idem = { key, strlen(key), hash };
	fp_job *job = NULL;
	int rc = fp_jobs_submit_idem(f->jobs, FP_JOB_APPLY, task, &b, 1, NULL, &idem, &job);

	if (rc != want)
		fail_msg("submit %s(%s) with key %s: %s, not %s", task, args, key,
			 fp_strerror(rc), fp_strerror(want));
	return job;
}

static void a_key_finds_its_job_until_it_is_forgotten(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	struct fp_job_idem got;
	fp_job *job, *again;
	char id[33];

	fp_test_jobs_setup(&f, 1);
	job = submit_keyed(&f, "square", "3", "order-17", 42, 0);
	strcpy(id, fp_job_id(job));
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "order-17", 8), job);
	assert_null(fp_jobs_idem_find(f.jobs, "order-1", 7));
	assert_true(fp_job_idem(job, &got));
	assert_int_equal(got.len, 8);
	assert_memory_equal(got.key, "order-17", 8);
	assert_int_equal(got.hash, 42);

	/* Queued, running or finished: the key is the job's, nothing new is made. */
	assert_null(submit_keyed(&f, "square", "3", "order-17", 42, -EEXIST));
	wait_finished(&f, job);
	assert_null(submit_keyed(&f, "square", "4", "order-17", 43, -EEXIST));
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "order-17", 8), job);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.submitted, 1);
	assert_int_equal(st.jobs, 1);

	/* Forgotten, the key goes with it: the next submission makes a new job. */
	fp_jobs_forget(f.jobs, job);
	assert_null(fp_jobs_idem_find(f.jobs, "order-17", 8));
	again = submit_keyed(&f, "square", "4", "order-17", 43, 0);
	assert_string_not_equal(fp_job_id(again), id);
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "order-17", 8), again);
	wait_finished(&f, again);
	fp_test_jobs_teardown(&f);
}

static void a_job_without_a_key_has_none(void **state)
{
	struct fp_test_jobs f;
	struct fp_job_idem got = { "x", 1, 1 };
	fp_job *job;

	fp_test_jobs_setup(&f, 1);
	job = submit_apply(&f, "square", "2");
	assert_false(fp_job_idem(job, &got));
	assert_null(got.key);
	assert_int_equal(got.len, 0);
	/* A NULL key is no key. */
	got = (struct fp_job_idem){ NULL, 0, 9 };
	{
		struct fp_buf b = { "2", 1 };
		fp_job *other;
		assert_int_equal(fp_jobs_submit_idem(f.jobs, FP_JOB_APPLY, "square", &b, 1,
						     NULL, &got, &other), 0);
		assert_false(fp_job_idem(other, &got));
		wait_finished(&f, other);
	}
	wait_finished(&f, job);
	fp_test_jobs_teardown(&f);
}

static void bad_keys_are_refused_and_nothing_is_submitted(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	char longest[FP_IDEM_KEY_MAX + 2];
	fp_job *job;

	memset(longest, 'k', sizeof(longest));
	longest[FP_IDEM_KEY_MAX + 1] = '\0';
	assert_int_equal(fp_idem_key_check("", 0), -EINVAL);
	assert_int_equal(fp_idem_key_check(longest, FP_IDEM_KEY_MAX + 1), -EINVAL);
	assert_int_equal(fp_idem_key_check(longest, FP_IDEM_KEY_MAX), 0);
	assert_int_equal(fp_idem_key_check("a\tb", 3), -EINVAL);
	assert_int_equal(fp_idem_key_check("a\x7f", 2), -EINVAL);
	assert_int_equal(fp_idem_key_check("caf\xc3\xa9", 5), -EINVAL);
	assert_int_equal(fp_idem_key_check(" ~!a z", 6), 0);

	fp_test_jobs_setup(&f, 1);
	assert_null(submit_keyed(&f, "square", "2", "", 1, -EINVAL));
	assert_null(submit_keyed(&f, "square", "2", "new\nline", 1, -EINVAL));
	assert_null(submit_keyed(&f, "square", "2", longest, 1, -EINVAL));
	longest[FP_IDEM_KEY_MAX] = '\0';
	job = submit_keyed(&f, "square", "2", longest, 1, 0);
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, longest, FP_IDEM_KEY_MAX), job);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.submitted, 1);
	wait_finished(&f, job);
	fp_test_jobs_teardown(&f);
}

/* A refused submission (over max_queue here) leaves its key free. */
static void a_refused_submission_does_not_take_its_key(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	fp_job *job;

	fp_jobs_options_init(&jo);
	jo.max_queue = 1;
	fp_test_jobs_setup_with(&f, 1, &jo);
	job = submit_apply(&f, "hang", "null");
	assert_null(submit_keyed(&f, "square", "2", "k", 1, -EBUSY));
	assert_null(fp_jobs_idem_find(f.jobs, "k", 1));
	fp_jobs_forget(f.jobs, job);
	assert_int_equal(fp_test_run_until(f.pool, pool_is_idle, f.pool, 30000), 1);
	assert_null(submit_keyed(&f, "no-such-task", "2", "k", 1, FP_EUNKNOWN_TASK));
	assert_null(fp_jobs_idem_find(f.jobs, "k", 1));
	job = submit_keyed(&f, "square", "2", "k", 1, 0);
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "k", 1), job);
	wait_finished(&f, job);
	fp_test_jobs_teardown(&f);
}

/* Forgotten for max_jobs, by TTL, or while it still runs: the key is free at once. */
static void a_key_goes_with_its_job_however_it_is_forgotten(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct gone g;
	fp_job *a, *b, *hang;
	char id[33];

	fp_jobs_options_init(&jo);
	jo.max_jobs = 1;
	jo.ttl_ms = 200;
	fp_test_jobs_setup_with(&f, 2, &jo);
	a = submit_keyed(&f, "square", "2", "a", 1, 0);
	wait_finished(&f, a);
	b = submit_keyed(&f, "square", "3", "b", 2, 0);
	wait_finished(&f, b);
	/* max_jobs 1: a went when b finished. */
	assert_null(fp_jobs_idem_find(f.jobs, "a", 1));
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "b", 1), b);
	strcpy(id, fp_job_id(b));
	g = (struct gone){ f.jobs, id };
	assert_true(fp_test_run_until(f.pool, job_is_gone, &g, 30000));
	assert_null(fp_jobs_idem_find(f.jobs, "b", 1));

	hang = submit_keyed(&f, "hang", "null", "h", 3, 0);
	wait_running(&f, 1);
	fp_jobs_forget(f.jobs, hang);
	assert_null(fp_jobs_idem_find(f.jobs, "h", 1));
	a = submit_keyed(&f, "square", "2", "h", 4, 0);
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "h", 1), a);
	wait_finished(&f, a);
	fp_test_jobs_teardown(&f);
}

/* Past the table's first 64 buckets, every key is still found (the index grows with it). */
static void keys_are_found_as_the_table_grows(void **state)
{
	struct fp_test_jobs f;
	fp_job *jobs[300];
	char key[32];

	fp_test_jobs_setup(&f, 2);
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		jobs[i] = submit_keyed(&f, "square", "1", key, (uint64_t)i, 0);
	}
	for (int i = 0; i < 300; i++) {
		struct fp_job_idem got;

		snprintf(key, sizeof(key), "key-%d", i);
		assert_ptr_equal(fp_jobs_idem_find(f.jobs, key, strlen(key)), jobs[i]);
		assert_true(fp_job_idem(jobs[i], &got));
		assert_int_equal(got.hash, (uint64_t)i);
	}
	for (int i = 0; i < 300; i += 2)
		fp_jobs_forget(f.jobs, jobs[i]);
	for (int i = 0; i < 300; i++) {
		fp_job *found;

		snprintf(key, sizeof(key), "key-%d", i);
		found = fp_jobs_idem_find(f.jobs, key, strlen(key));
		if (i % 2)
			assert_ptr_equal(found, jobs[i]);
		else
			assert_null(found);
	}
	fp_test_jobs_teardown(&f);
}

/* What the journal's replay does: a kept job given its key afterwards. */
static void attach_gives_a_kept_job_its_key(void **state)
{
	struct fp_test_jobs f;
	struct fp_job_idem k = { "restored", 8, 77 }, other = { "restored", 8, 78 };
	struct fp_job_idem bad = { "a\nb", 3, 1 }, got;
	fp_job *a, *b;

	fp_test_jobs_setup(&f, 1);
	a = submit_apply(&f, "square", "2");
	b = submit_apply(&f, "square", "3");
	assert_int_equal(fp_jobs_idem_attach(f.jobs, a, &bad), -EINVAL);
	assert_int_equal(fp_jobs_idem_attach(f.jobs, a, &k), 0);
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "restored", 8), a);
	assert_true(fp_job_idem(a, &got));
	assert_int_equal(got.hash, 77);
	/* The same again changes nothing (a replay may say it twice); another is refused. */
	assert_int_equal(fp_jobs_idem_attach(f.jobs, a, &k), 0);
	assert_int_equal(fp_jobs_idem_attach(f.jobs, a, &other), -EALREADY);
	assert_int_equal(fp_jobs_idem_attach(f.jobs, b, &k), -EEXIST);
	assert_false(fp_job_idem(b, &got));
	wait_finished(&f, a);
	wait_finished(&f, b);
	fp_jobs_forget(f.jobs, a);
	assert_int_equal(fp_jobs_idem_attach(f.jobs, b, &other), 0);
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "restored", 8), b);
	fp_test_jobs_teardown(&f);
}

static void a_pipeline_holds_its_key(void **state)
{
	struct fp_test_jobs f;
	fp_stage st[1] = { FP_STAGE_DEFAULT };
	struct fp_buf in[2] = { { "1", 1 }, { "2", 1 } };
	struct fp_job_idem k = { "pipe", 4, 5 }, got;
	fp_job *job, *none = NULL;

	st[0].task = "square";
	fp_test_jobs_setup(&f, 1);
	assert_int_equal(fp_jobs_submit_pipeline_idem(f.jobs, st, 1, in, 2, NULL, &k, &job), 0);
	assert_ptr_equal(fp_jobs_idem_find(f.jobs, "pipe", 4), job);
	assert_true(fp_job_idem(job, &got));
	assert_int_equal(got.hash, 5);
	assert_int_equal(fp_jobs_submit_pipeline_idem(f.jobs, st, 1, in, 2, NULL, &k, &none),
			 -EEXIST);
	assert_null(none);
	/* Apply, map and pipeline share one space of keys. */
	assert_null(submit_keyed(&f, "square", "2", "pipe", 5, -EEXIST));
	wait_finished(&f, job);
	fp_test_jobs_teardown(&f);
}

/*
 * The request hash is written in the journal and compared after a restart:
 * pinned to known values, so that a change to it is seen here first.
 */
static void the_request_hash_is_stable_and_hashes_where_pieces_end(void **state)
{
	uint64_t ab_c = fp_idem_hash(fp_idem_hash(FP_IDEM_HASH_INIT, "ab", 2), "c", 1);
	uint64_t a_bc = fp_idem_hash(fp_idem_hash(FP_IDEM_HASH_INIT, "a", 1), "bc", 2);
	uint64_t empty = fp_idem_hash(FP_IDEM_HASH_INIT, "", 0);
	const char *long_text = "{\"task\":\"square\",\"args\":12345678901234567890}";

	assert_true(ab_c != a_bc);
	assert_true(empty != FP_IDEM_HASH_INIT);
	assert_true(fp_idem_hash(FP_IDEM_HASH_INIT, "", 0) !=
		    fp_idem_hash(fp_idem_hash(FP_IDEM_HASH_INIT, "", 0), "", 0));
	assert_true(fp_idem_hash(FP_IDEM_HASH_INIT, "12345678", 8) !=
		    fp_idem_hash(FP_IDEM_HASH_INIT, "12345679", 8));
	assert_int_equal(ab_c, UINT64_C(0xb77b28da2ea658ea));
	assert_int_equal(fp_idem_hash(FP_IDEM_HASH_INIT, long_text, strlen(long_text)),
			 UINT64_C(0x05ea54223191a6d0));
}

/* --- the journal (jobs_journal.c) ---------------------------------------- */

struct jr {
	fp_journal *j;
	char dir[256];
	int closed;
	int wait_status, waited;
	struct fp_journal_wait w;
};

static void jr_closed(void *data)
{
	((struct jr *)data)->closed = 1;
}

static int jr_is_closed(void *data)
{
	return ((struct jr *)data)->closed;
}

static void jr_waited(struct fp_journal_wait *w, int status)
{
	struct jr *x = w->data;

	x->waited = 1;
	x->wait_status = status;
}

static int jr_has_waited(void *data)
{
	return ((struct jr *)data)->waited;
}

/* Open x->dir's journal for the store (replay into it), attach it, resume. */
static void jr_open(struct jr *x, struct fp_test_jobs *f, struct fp_jobs_recovery *rec)
{
	struct fp_journal_options o = {
		.dir = x->dir, .fsync = FP_FSYNC_INTERVAL, .replay = fp_jobs_replay,
		.data = f->jobs,
	};
	char err[512];
	int r = fp_journal_open(&x->j, fp_pool_loop(f->pool), &o, NULL, err, sizeof(err));

	if (r < 0)
		fail_msg("open %s: %s", x->dir, err);
	fp_jobs_attach_journal(f->jobs, x->j);
	assert_int_equal(fp_jobs_resume(f->jobs, rec), 0);
}

/*
 * A journal on /dev/full for the store: its first record fails with ENOSPC,
 * and every later one is refused at once (the journal is broken).
 */
static void jr_full(struct jr *x, struct fp_test_jobs *f)
{
	int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fp__journal_new(&x->j, fp_pool_loop(f->pool), fd, 0, 1, FP_FSYNC_NEVER, 0),
			 0);
	fp_jobs_attach_journal(f->jobs, x->j);
}

/* Wait for what the store appended so far, as an answer would. */
static int jr_wait(struct jr *x, struct fp_test_jobs *f)
{
	x->waited = 0;
	x->w.cb = jr_waited;
	x->w.data = x;
	fp_journal_wait_appended(x->j, &x->w);
	assert_true(fp_test_run_until(f->pool, jr_has_waited, x, 10000));
	return x->wait_status;
}

/* The store goes (writing nothing of what it cancels), then the journal. */
static void jr_close(struct jr *x, struct fp_test_jobs *f)
{
	fp_jobs_detach_journal(f->jobs);
	x->closed = 0;
	fp_journal_close(x->j, jr_closed, x);
	assert_true(fp_test_run_until(f->pool, jr_is_closed, x, 10000));
	x->j = NULL;
}

static void jr_dir(struct jr *x)
{
	const char *tmp = getenv("TMPDIR");

	memset(x, 0, sizeof(*x));
	snprintf(x->dir, sizeof(x->dir), "%s/fp-test-jobs-journal-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(x->dir));
}

static void jr_rm(struct jr *x)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/journal", x->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock", x->dir);
	unlink(path);
	rmdir(x->dir);
}

/* A new store over the same pool, as after a restart (jo NULL: the defaults). */
static void store_again_with(struct fp_test_jobs *f, const struct fp_jobs_options *jo)
{
	fp_jobs_free(f->jobs);
	assert_int_equal(fp_jobs_new(&f->jobs, f->pool, jo), 0);
}

static void store_again(struct fp_test_jobs *f)
{
	store_again_with(f, NULL);
}

/*
 * Finished jobs come back from the journal with every outcome, their times
 * and their state; a deleted one is gone, remembered as deleted.
 */
static void journaled_jobs_come_back_finished(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_recovery rec;
	struct fp_job_item it, it2;
	struct items items;
	fp_job *map, *apply, *gone, *back;
	char map_id[33], apply_id[33], gone_id[33];
	uint64_t finished_at;
	enum fp_job_gone why;
	uint64_t at;
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 2);
	jr_open(&x, &f, &rec);
	assert_int_equal(rec.jobs, 0);
	items_make(&items, 300, NULL);
	map = submit_map(&f, "square", &items, 7);
	apply = submit_apply(&f, "fail", "\"no\"");
	gone = submit_apply(&f, "square", "3");
	assert_int_equal(jr_wait(&x, &f), 0);
	wait_finished(&f, map);
	wait_finished(&f, apply);
	wait_finished(&f, gone);
	strcpy(map_id, fp_job_id(map));
	strcpy(apply_id, fp_job_id(apply));
	strcpy(gone_id, fp_job_id(gone));
	finished_at = fp_job_finished_at(map);
	fp_jobs_forget(f.jobs, gone);
	jr_close(&x, &f);

	store_again(&f);
	jr_open(&x, &f, &rec);
	assert_int_equal(rec.jobs, 2);
	assert_int_equal(rec.finished, 2);
	assert_int_equal(rec.resumed, 0);
	back = fp_jobs_find(f.jobs, map_id);
	assert_non_null(back);
	assert_true(fp_job_finished(back));
	assert_int_equal(fp_job_state(back), FP_JOB_DONE);
	assert_int_equal(fp_job_total(back), 300);
	assert_int_equal(fp_job_done(back), 300);
	assert_int_equal(fp_job_finished_at(back), finished_at);
	for (size_t i = 0; i < 300; i++) {
		char want[32];

		fp_job_item(back, i, &it);
		assert_true(it.finished);
		snprintf(want, sizeof(want), "%zu", i * i);
		assert_string_equal(it.value, want);
		assert_int_equal(it.attempts, 1);
	}
	fp_test_assert_job_values(back, true, 16);
	back = fp_jobs_find(f.jobs, apply_id);
	assert_non_null(back);
	assert_int_equal(fp_job_state(back), FP_JOB_FAILED);
	fp_job_item(back, 0, &it2);
	assert_int_equal(it2.status, FP_ITEM_TASK_ERROR);
	assert_string_equal(it2.message, "no");
	assert_null(fp_jobs_find(f.jobs, gone_id));
	assert_int_equal(fp_jobs_gone(f.jobs, gone_id, &why, &at), 1);
	assert_int_equal(why, FP_JOB_GONE_DELETED);

	jr_close(&x, &f);
	items_free(&items);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/* The map has `want` items done. */
struct done_at_least {
	fp_jobs *jobs;
	const char *id;
	size_t want;
};

static int has_done(void *data)
{
	struct done_at_least *c = data;
	fp_job *job = fp_jobs_find(c->jobs, c->id);

	/* And its outcomes have gone to the journal (the turn's timer ran). */
	return job && fp_job_done(job) >= c->want && !c->jobs->jr_dirty;
}

/*
 * An unfinished job resumes: the items whose outcome was written keep it,
 * the others run again, each counting the lost run as an attempt.
 */
static void unfinished_job_resumes_the_items_without_an_outcome(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_recovery rec;
	struct fp_job_item it;
	struct items items;
	struct done_at_least c;
	fp_job *map;
	char id[33];
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 2);
	jr_open(&x, &f, &rec);
	/* Eight quick items, then two that hold both workers: the master dies then. */
	items_make(&items, 10, "0");
	items.b[8] = items.b[9] = (struct fp_buf){ "1500", 4 };
	map = submit_map(&f, "sleep", &items, 1);
	strcpy(id, fp_job_id(map));
	assert_int_equal(jr_wait(&x, &f), 0);
	c = (struct done_at_least){ f.jobs, id, 8 };
	assert_true(fp_test_run_until(f.pool, has_done, &c, 20000));
	assert_int_equal(jr_wait(&x, &f), 0);
	assert_false(fp_job_finished(map));
	/* Detached first: the store's end writes nothing, as after a SIGKILL. */
	jr_close(&x, &f);
	store_again(&f);

	jr_open(&x, &f, &rec);
	assert_int_equal(rec.jobs, 1);
	assert_int_equal(rec.finished, 0);
	assert_int_equal(rec.resumed, 1);
	assert_int_equal(rec.items_kept, 8);
	assert_int_equal(rec.items_rerun, 2);
	map = fp_jobs_find(f.jobs, id);
	assert_non_null(map);
	assert_int_equal(fp_job_state(map), FP_JOB_RUNNING);
	assert_int_equal(fp_job_done(map), 8);
	wait_finished(&f, map);
	assert_int_equal(fp_job_state(map), FP_JOB_DONE);
	for (size_t i = 0; i < 10; i++) {
		fp_job_item(map, i, &it);
		assert_true(it.finished);
		assert_string_equal(it.value, i < 8 ? "0" : "1500");
		assert_int_equal(it.attempts, i < 8 ? 1 : 2);
	}
	assert_completion_permutation(map);
	jr_close(&x, &f);

	/* And once finished, it comes back finished. */
	store_again(&f);
	jr_open(&x, &f, &rec);
	assert_int_equal(rec.finished, 1);
	assert_int_equal(rec.resumed, 0);
	map = fp_jobs_find(f.jobs, id);
	assert_non_null(map);
	assert_int_equal(fp_job_state(map), FP_JOB_DONE);
	jr_close(&x, &f);
	items_free(&items);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

static uint64_t journal_file_size(const struct jr *x)
{
	char path[300];
	struct stat st;

	snprintf(path, sizeof(path), "%s/journal", x->dir);
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/*
 * A resumed job's recovered outcomes are in the journal already: they are
 * not appended again when it goes on (200 of them would be some 3 KB), and
 * after another restart they are there once.
 */
static void resumed_job_does_not_write_its_outcomes_again(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_recovery rec;
	struct items items;
	struct done_at_least c;
	uint64_t before, grew;
	fp_job *map;
	char id[33];
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 2);
	jr_open(&x, &f, &rec);
	items_make(&items, 202, "0");
	items.b[200] = items.b[201] = (struct fp_buf){ "1500", 4 };
	map = submit_map(&f, "sleep", &items, 1);
	strcpy(id, fp_job_id(map));
	c = (struct done_at_least){ f.jobs, id, 200 };
	assert_true(fp_test_run_until(f.pool, has_done, &c, 20000));
	assert_int_equal(jr_wait(&x, &f), 0);
	jr_close(&x, &f);
	store_again(&f);
	before = journal_file_size(&x);

	jr_open(&x, &f, &rec);
	assert_int_equal(rec.items_kept, 200);
	assert_int_equal(rec.items_rerun, 2);
	map = fp_jobs_find(f.jobs, id);
	assert_non_null(map);
	wait_finished(&f, map);
	assert_int_equal(jr_wait(&x, &f), 0);
	/* Two outcomes, a STARTED and the END: not 202 outcomes. */
	grew = journal_file_size(&x) - before;
	if (grew >= 512)
		fail_msg("the rest of the job appended %llu bytes", (unsigned long long)grew);
	jr_close(&x, &f);
	store_again(&f);

	jr_open(&x, &f, &rec);
	assert_int_equal(rec.finished, 1);
	map = fp_jobs_find(f.jobs, id);
	assert_non_null(map);
	assert_int_equal(fp_job_state(map), FP_JOB_DONE);
	assert_int_equal(fp_job_done(map), 202);
	jr_close(&x, &f);
	items_free(&items);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/*
 * A journal written by an older build, its OUTCOMES in the fixed layout
 * (type 3, before the packed one): replayed as ever, the map comes back
 * finished with its values.
 */
static void outcomes_of_an_older_build_are_read(void **state)
{
	static const struct fp_jr_item in[] = { { "1", 1 }, { "2", 1 }, { "3", 1 } };
	static const char *const out[] = { "1", "4", "9" };
	struct fp_jobs_recovery rec;
	struct fp_test_jobs f;
	struct fp_jr_outcomes o;
	struct fp_jr_job r;
	struct fp_jr_mark m;
	struct fp_job_item it;
	fp_job *job;
	size_t start;
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 1);
	jr_open(&x, &f, &rec);
	memset(&r, 0, sizeof(r));
	for (size_t i = 0; i < FP_JR_ID_BYTES; i++)
		r.id[i] = (uint8_t)(0xa0 + i);
	r.kind = FP_JOB_MAP;
	r.created_at = 1765000000000ull;
	r.opts = (struct fp_jr_opts){ .task = "square", .task_len = 6, .timeout_ms = -1 };
	r.n = 3;
	r.items = (struct fp_jr_item *)in;
	start = fp_journal_begin(x.j);
	assert_int_equal(fp_jr_put_job(fp_journal_buf(x.j), &r), 0);
	assert_int_equal(fp_journal_end(x.j, start, FP_JR_JOB, NULL), 0);
	start = fp_journal_begin(x.j);
	fp_jr_outcomes_begin_as(&o, fp_journal_buf(x.j), r.id, false, FP_JR_OUTCOMES);
	for (uint32_t i = 0; i < 3; i++)
		fp_jr_outcomes_put(&o, &(struct fp_jr_outcome){ .pos = 2 - i, .attempts = 1,
								.text = out[2 - i], .len = 1 });
	fp_jr_outcomes_end(&o);
	assert_int_equal(fp_journal_end(x.j, start, FP_JR_OUTCOMES, NULL), 0);
	memcpy(m.id, r.id, FP_JR_ID_BYTES);
	m.value = FP_JOB_DONE;
	m.when = r.created_at + 5;
	start = fp_journal_begin(x.j);
	fp_jr_put_mark(fp_journal_buf(x.j), &m);
	assert_int_equal(fp_journal_end(x.j, start, FP_JR_END, NULL), 0);
	assert_int_equal(jr_wait(&x, &f), 0);
	jr_close(&x, &f);
	store_again(&f);

	jr_open(&x, &f, &rec);
	assert_int_equal(rec.jobs, 1);
	assert_int_equal(rec.finished, 1);
	job = fp_jobs_find(f.jobs, "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
	assert_non_null(job);
	assert_int_equal(fp_job_state(job), FP_JOB_DONE);
	assert_int_equal(fp_job_done(job), 3);
	for (size_t i = 0; i < 3; i++) {
		fp_job_item(job, i, &it);
		assert_string_equal(it.value, out[i]);
	}
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/*
 * A pipeline whose every input was recorded done, its END lost: a restart
 * ends it with the recorded outputs and runs nothing; a second restart
 * finds it finished with them, once each.
 */
static void pipeline_with_every_input_done_ends_at_restart(void **state)
{
	static const struct fp_jr_item in[] = { { "0", 1 }, { "1", 1 } };
	static const uint32_t done[] = { 1, 0 };
	struct fp_jr_opts stage = { .task = "sleep", .task_len = 5, .timeout_ms = -1 };
	struct fp_jobs_recovery rec;
	struct fp_test_jobs f;
	struct fp_jr_outcomes o;
	struct fp_jr_job r;
	struct fp_job_item it;
	fp_job *job;
	size_t start;
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 1);
	jr_open(&x, &f, &rec);
	memset(&r, 0, sizeof(r));
	memset(r.id, 0xb1, FP_JR_ID_BYTES);
	r.kind = FP_JOB_PIPELINE;
	r.created_at = 1765000000000ull;
	r.opts = (struct fp_jr_opts){ .task = "sleep", .task_len = 5 };
	r.nstages = 1;
	r.stages = &stage;
	r.n = 2;
	r.items = (struct fp_jr_item *)in;
	start = fp_journal_begin(x.j);
	assert_int_equal(fp_jr_put_job(fp_journal_buf(x.j), &r), 0);
	assert_int_equal(fp_journal_end(x.j, start, FP_JR_JOB, NULL), 0);
	start = fp_journal_begin(x.j);
	fp_jr_outcomes_begin(&o, fp_journal_buf(x.j), r.id, true);
	for (uint32_t i = 0; i < 2; i++)
		fp_jr_outcomes_put(&o, &(struct fp_jr_outcome){ .pos = i, .attempts = 1,
								.index = 1 - i, .text = in[1 - i].text,
								.len = 1 });
	fp_jr_outcomes_end(&o);
	assert_int_equal(fp_journal_end(x.j, start, fp_jr_outcomes_type(&o), NULL), 0);
	start = fp_journal_begin(x.j);
	fp_jr_put_inputs(fp_journal_buf(x.j), r.id, done, 2);
	assert_int_equal(fp_journal_end(x.j, start, FP_JR_INPUTS, NULL), 0);
	assert_int_equal(jr_wait(&x, &f), 0);
	jr_close(&x, &f);
	store_again(&f);

	for (int round = 0; round < 2; round++) {
		jr_open(&x, &f, &rec);
		assert_int_equal(rec.jobs, 1);
		assert_int_equal(rec.finished, round);
		assert_int_equal(rec.resumed, 0);
		assert_int_equal(rec.items_kept, round ? 0 : 2);
		assert_int_equal(rec.items_rerun, 0);
		job = fp_jobs_find(f.jobs, "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1");
		assert_non_null(job);
		assert_int_equal(fp_job_state(job), FP_JOB_DONE);
		assert_int_equal(fp_job_total(job), 2);
		for (size_t k = 0; k < 2; k++) {
			fp_job_item(job, k, &it);
			assert_int_equal(it.index, 1 - k);
			assert_string_equal(it.value, in[1 - k].text);
		}
		assert_true(fp_test_run_until(f.pool, nothing_pending, f.jobs, 10000));
		jr_close(&x, &f);
		store_again(&f);
	}
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/*
 * A pipeline the pool will not run again (its task is gone) ends failed
 * with one error saying why; the outputs recorded before are void, so a
 * second restart finds the same error, not an earlier output in its place.
 */
static void pipeline_refused_at_restart_keeps_its_error(void **state)
{
	static const struct fp_jr_item in[] = { { "0", 1 }, { "1", 1 } };
	struct fp_jr_opts stage = { .task = "nosuch", .task_len = 6, .timeout_ms = -1 };
	struct fp_jobs_recovery rec;
	struct fp_test_jobs f;
	struct fp_jr_outcomes o;
	struct fp_jr_job r;
	struct fp_job_item it;
	fp_job *job;
	size_t start;
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 1);
	jr_open(&x, &f, &rec);
	memset(&r, 0, sizeof(r));
	memset(r.id, 0xc2, FP_JR_ID_BYTES);
	r.kind = FP_JOB_PIPELINE;
	r.created_at = 1765000000000ull;
	r.opts = (struct fp_jr_opts){ .task = "nosuch", .task_len = 6 };
	r.nstages = 1;
	r.stages = &stage;
	r.n = 2;
	r.items = (struct fp_jr_item *)in;
	start = fp_journal_begin(x.j);
	assert_int_equal(fp_jr_put_job(fp_journal_buf(x.j), &r), 0);
	assert_int_equal(fp_journal_end(x.j, start, FP_JR_JOB, NULL), 0);
	/* An output of an input not done: partial, dropped at the restart. */
	start = fp_journal_begin(x.j);
	fp_jr_outcomes_begin(&o, fp_journal_buf(x.j), r.id, true);
	fp_jr_outcomes_put(&o, &(struct fp_jr_outcome){ .pos = 0, .attempts = 1, .index = 0,
							.text = "0", .len = 1 });
	fp_jr_outcomes_end(&o);
	assert_int_equal(fp_journal_end(x.j, start, fp_jr_outcomes_type(&o), NULL), 0);
	assert_int_equal(jr_wait(&x, &f), 0);
	jr_close(&x, &f);
	store_again(&f);

	for (int round = 0; round < 2; round++) {
		jr_open(&x, &f, &rec);
		assert_int_equal(rec.finished, round);
		job = fp_jobs_find(f.jobs, "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2");
		assert_non_null(job);
		assert_int_equal(fp_job_state(job), FP_JOB_FAILED);
		assert_int_equal(fp_job_total(job), 1);
		fp_job_item(job, 0, &it);
		assert_int_equal(it.status, FP_ITEM_START_FAILURE);
		assert_non_null(strstr(it.message, "not run again after the restart"));
		jr_close(&x, &f);
		store_again(&f);
	}
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/* A pipeline of one stage per task over texts (NULL-terminated lists). */
static fp_job *submit_pipeline(struct fp_test_jobs *f, const char *const *tasks,
			       const char *const *texts, const fp_pipeline_options *po)
{
	fp_stage st[4];
	struct fp_buf b[16];
	size_t ns = 0, n = 0;
	fp_job *job = NULL;
	int rc;

	for (; tasks[ns]; ns++) {
		st[ns] = (fp_stage)FP_STAGE_DEFAULT;
		st[ns].task = tasks[ns];
	}
	for (; texts[n]; n++)
		b[n] = (struct fp_buf){ texts[n], strlen(texts[n]) };
	rc = fp_jobs_submit_pipeline(f->jobs, st, ns, b, n, po, &job);
	if (rc != 0)
		fail_msg("submit pipeline: %s", fp_strerror(rc));
	return job;
}

/*
 * A finished pipeline comes back from the journal with its outputs, their
 * origins, its stages and its reduced value.
 */
static void finished_pipeline_comes_back_with_its_outputs(void **state)
{
	static const char *const tasks[] = { "range", "square", NULL };
	static const char *const in[] = { "3", "0", "2", NULL };
	static const char *const rtasks[] = { "range", NULL };
	static const char *const rin[] = { "10", "20", NULL };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_jobs_recovery rec;
	struct fp_jobs_stats js;
	struct fp_test_jobs f;
	struct fp_job_item it;
	fp_job *p, *r;
	char pid[33], rid[33];
	unsigned sum[3] = { 0 }, seen[3] = { 0 };
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 2);
	jr_open(&x, &f, &rec);
	p = submit_pipeline(&f, tasks, in, NULL);
	po.reduce = "sum";
	po.reduce_batch = 4;
	r = submit_pipeline(&f, rtasks, rin, &po);
	strcpy(pid, fp_job_id(p));
	strcpy(rid, fp_job_id(r));
	assert_int_equal(jr_wait(&x, &f), 0);
	wait_finished(&f, p);
	wait_finished(&f, r);
	jr_close(&x, &f);

	store_again(&f);
	jr_open(&x, &f, &rec);
	assert_int_equal(rec.jobs, 2);
	assert_int_equal(rec.finished, 2);
	assert_int_equal(rec.resumed, 0);
	assert_int_equal(rec.skipped, 0);
	p = fp_jobs_find(f.jobs, pid);
	assert_non_null(p);
	assert_int_equal(fp_job_kind(p), FP_JOB_PIPELINE);
	assert_int_equal(fp_job_state(p), FP_JOB_DONE);
	assert_string_equal(fp_job_task(p), "range|square");
	assert_int_equal(fp_job_stages(p), 2);
	assert_string_equal(fp_job_stage_task(p, 1), "square");
	assert_int_equal(fp_job_inputs(p), 3);
	/* range(3) squared from input 0, range(2) squared from input 2: once each. */
	assert_int_equal(fp_job_total(p), 5);
	for (size_t k = 0; k < 5; k++) {
		fp_job_item(p, k, &it);
		assert_int_equal(it.status, FP_ITEM_OK);
		assert_true(it.index == 0 || it.index == 2);
		assert_int_equal(it.stage, 1);
		seen[it.index]++;
		sum[it.index] += (unsigned)atoi(it.value);
	}
	assert_int_equal(seen[0], 3);
	assert_int_equal(sum[0], 0 + 1 + 4);
	assert_int_equal(seen[2], 2);
	assert_int_equal(sum[2], 0 + 1);
	r = fp_jobs_find(f.jobs, rid);
	assert_non_null(r);
	assert_true(fp_job_has_reduce(r));
	assert_string_equal(fp_job_task(r), "range|sum");
	assert_int_not_equal(fp_job_reduced(r), SIZE_MAX);
	fp_job_item(r, fp_job_reduced(r), &it);
	assert_int_equal(atoi(it.value), 45 + 190);
	fp_jobs_stats(f.jobs, &js);
	assert_int_equal(js.items_pending, 0);
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/* A recovered pipeline's outputs: each input's once, with its value; how many. */
static size_t outputs_once(fp_job *p, const char *const *in, size_t n)
{
	unsigned seen[8] = { 0 };
	struct fp_job_item it;

	assert_true(n <= 8);
	for (size_t k = 0; k < fp_job_total(p); k++) {
		fp_job_item(p, k, &it);
		assert_int_equal(it.status, FP_ITEM_OK);
		assert_true(it.index < n);
		seen[it.index]++;
		assert_string_equal(it.value, in[it.index]);
	}
	for (size_t i = 0; i < n; i++)
		assert_true(seen[i] <= 1);
	return fp_job_total(p);
}

/*
 * An unfinished pipeline resumes from its inputs that were not done: the
 * outputs of the done ones are kept, the others run again. Restarted again
 * before the rerun ends, it keeps the same (the kept outputs were written
 * again after a RERUN, in their new places: none twice); once finished, a
 * restart finds it finished with every input's output once.
 */
static void unfinished_pipeline_resumes_from_its_inputs_not_done(void **state)
{
	static const char *const tasks[] = { "sleep", NULL };
	static const char *const in[] = { "0", "0", "0", "1500", "1500", NULL };
	struct fp_jobs_recovery rec;
	struct fp_test_jobs f;
	struct done_at_least c;
	fp_job *p;
	char id[33];
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 2);
	jr_open(&x, &f, &rec);
	p = submit_pipeline(&f, tasks, in, NULL);
	strcpy(id, fp_job_id(p));
	assert_int_equal(jr_wait(&x, &f), 0);
	c = (struct done_at_least){ f.jobs, id, 3 };
	assert_true(fp_test_run_until(f.pool, has_done, &c, 20000));
	assert_int_equal(jr_wait(&x, &f), 0);
	assert_false(fp_job_finished(p));
	jr_close(&x, &f);
	store_again(&f);

	for (int round = 0; round < 3; round++) {
		jr_open(&x, &f, &rec);
		assert_int_equal(rec.jobs, 1);
		assert_int_equal(rec.skipped, 0);
		assert_int_equal(rec.finished, round == 2);
		assert_int_equal(rec.resumed, round < 2);
		assert_int_equal(rec.items_kept, round < 2 ? 3 : 0);
		assert_int_equal(rec.items_rerun, round < 2 ? 2 : 0);
		p = fp_jobs_find(f.jobs, id);
		assert_non_null(p);
		/* The three done inputs' outputs, there before anything ran. */
		assert_int_equal(outputs_once(p, in, 5), round < 2 ? 3 : 5);
		if (round == 0) {
			/* Restarted again while the two rerun. */
			assert_int_equal(jr_wait(&x, &f), 0);
			assert_false(fp_job_finished(p));
			jr_close(&x, &f);
			store_again(&f);
			continue;
		}
		wait_finished(&f, p);
		assert_int_equal(fp_job_state(p), FP_JOB_DONE);
		assert_int_equal(outputs_once(p, in, 5), 5);
		assert_true(fp_test_run_until(f.pool, nothing_pending, f.jobs, 10000));
		jr_close(&x, &f);
		store_again(&f);
	}
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/*
 * A pipeline with a reduce reruns whole: its values belong to no input, so
 * no input is done on its own, and a rerun folds every input once.
 */
static void unfinished_reduce_pipeline_reruns_whole(void **state)
{
	static const char *const tasks[] = { "sleep", NULL };
	static const char *const in[] = { "0", "0", "0", "1500", "1500", NULL };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_jobs_recovery rec;
	struct fp_test_jobs f;
	struct fp_job_item it;
	fp_job *p;
	char id[33];
	struct jr x;

	po.reduce = "sum";
	jr_dir(&x);
	fp_test_jobs_setup(&f, 2);
	jr_open(&x, &f, &rec);
	p = submit_pipeline(&f, tasks, in, &po);
	strcpy(id, fp_job_id(p));
	assert_int_equal(jr_wait(&x, &f), 0);
	assert_false(fp_job_finished(p));
	jr_close(&x, &f);
	store_again(&f);

	jr_open(&x, &f, &rec);
	assert_int_equal(rec.resumed, 1);
	assert_int_equal(rec.items_kept, 0);
	assert_int_equal(rec.items_rerun, 5);
	p = fp_jobs_find(f.jobs, id);
	assert_non_null(p);
	wait_finished(&f, p);
	assert_int_equal(fp_job_state(p), FP_JOB_DONE);
	assert_int_equal(fp_job_total(p), 1);
	fp_job_item(p, 0, &it);
	assert_string_equal(it.value, "3000");
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/*
 * A JOB record that cannot be written (ENOSPC: /dev/full) fails its waiter;
 * the submission is withdrawn without a trace, and the store goes on.
 */
static void a_job_whose_record_fails_is_withdrawn(void **state)
{
	struct fp_test_jobs f;
	struct fp_jobs_stats st;
	enum fp_job_gone why;
	fp_job *job;
	uint64_t at;
	char id[33];
	struct jr x;

	memset(&x, 0, sizeof(x));
	fp_test_jobs_setup(&f, 1);
	jr_full(&x, &f);
	job = submit_apply(&f, "sleep", "0");
	strcpy(id, fp_job_id(job));
	assert_int_equal(jr_wait(&x, &f), -ENOSPC);
	fp_jobs_withdraw(f.jobs, job);
	assert_null(fp_jobs_find(f.jobs, id));
	assert_int_equal(fp_jobs_gone(f.jobs, id, &why, &at), 0);
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.jobs, 0);
	/* Its call was cancelled: the pool owes it nothing more. */
	assert_true(fp_test_run_until(f.pool, nothing_pending, f.jobs, 10000));
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
}

/*
 * A journal that refuses a JOB record after the call started (broken by an
 * ENOSPC on /dev/full: every later record is refused at once) fails the
 * submission, and the call goes with the tombstone. A pipeline's own state
 * is then the job's: its done callback reads it and the job frees it, so the
 * submitter must not free it too (ASan: heap-use-after-free in
 * pipeline_done_cb, then a double free). A map refused the same way leaves
 * nothing behind either.
 */
static void a_started_call_whose_record_is_refused_goes_cleanly(void **state)
{
	static const char *const slow[] = { "300", "300", "300" };
	fp_stage st[2] = { FP_STAGE_DEFAULT, FP_STAGE_DEFAULT };
	struct fp_buf b[3];
	struct fp_test_jobs f;
	struct fp_jobs_stats stats;
	fp_job *job, *first;
	struct jr x;

	memset(&x, 0, sizeof(x));
	fp_test_jobs_setup(&f, 1);
	jr_full(&x, &f);
	first = submit_apply(&f, "sleep", "0");
	assert_int_equal(jr_wait(&x, &f), -ENOSPC);
	fp_jobs_withdraw(f.jobs, first);
	assert_true(fp_test_run_until(f.pool, nothing_pending, f.jobs, 10000));

	for (size_t i = 0; i < 3; i++)
		b[i] = (struct fp_buf){ slow[i], strlen(slow[i]) };
	st[0].task = "sleep";
	st[1].task = "echo";
	job = first;
	assert_int_equal(fp_jobs_submit_pipeline(f.jobs, st, 2, b, 3, NULL, &job), -EIO);
	assert_null(job);
	job = first;
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "sleep", b, 3, NULL, &job), -EIO);
	assert_null(job);
	fp_jobs_stats(f.jobs, &stats);
	assert_int_equal(stats.jobs, 0);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 0);
	/* Both calls were cancelled; their done callbacks come and free the tombstones. */
	assert_true(fp_test_run_until(f.pool, nothing_pending, f.jobs, 10000));
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
}

/* Every job but `keep` has finished. */
struct all_but {
	fp_jobs *jobs;
	size_t keep;
};

static int all_but_finished(void *data)
{
	struct all_but *c = data;

	return fp_jobs_unfinished(c->jobs) <= c->keep;
}

static int only_one_job(void *data)
{
	struct fp_jobs_stats st;

	fp_jobs_stats(data, &st);
	return st.jobs == 1;
}

/*
 * 100,000 short jobs with a short TTL: compactions keep the journal's size
 * to what the live jobs need, not the history; after them, a restart finds
 * the same live jobs (an unfinished one resumes with its items).
 */
static void compaction_keeps_the_journal_bounded(void **state)
{
	struct fp_jobs_options jo;
	struct fp_test_jobs f;
	struct fp_jobs_recovery rec;
	struct fp_journal_stats st;
	struct all_but c;
	struct fp_buf item = { "60000", 5 };
	uint64_t max_size = 0;
	fp_job *sleeper, *job;
	char id[33], last[33];
	struct jr x;
	int r;

	fp_jobs_options_init(&jo);
	jo.ttl_ms = 50;
	jo.journal_compact_min = 64 << 10;
	jr_dir(&x);
	fp_test_jobs_setup_with(&f, 2, &jo);
	jr_open(&x, &f, &rec);
	assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_MAP, "sleep", &item, 1, NULL, &sleeper), 0);
	strcpy(id, fp_job_id(sleeper));
	c = (struct all_but){ f.jobs, 1 };
	for (size_t i = 0; i < 100000; i++) {
		char args[24];
		struct fp_buf b = { args, (size_t)snprintf(args, sizeof(args), "%zu", i % 1000) };

		r = fp_jobs_submit(f.jobs, FP_JOB_APPLY, "square", &b, 1, NULL, &job);
		assert_int_equal(r, 0);
		if (i % 2000 == 1999) {
			assert_true(fp_test_run_until(f.pool, all_but_finished, &c, 60000));
			fp_journal_stats_get(x.j, &st);
			if (st.size > max_size)
				max_size = st.size;
		}
	}
	strcpy(last, fp_job_id(job));
	fp_journal_stats_get(x.j, &st);
	assert_true(st.compactions > 0);
	assert_int_equal(fp_jobs_journal_compact_error(f.jobs), 0);
	/* Some 20 MB of records went through it. */
	assert_true(st.bytes > (uint64_t)15 << 20);
	print_message("journal: %llu compactions, at most %llu bytes, %llu written\n",
		      (unsigned long long)st.compactions, (unsigned long long)max_size,
		      (unsigned long long)st.bytes);
	/*
	 * Bounded by the live jobs (a batch or two of 2,000 within their TTL,
	 * some 450 KB each) and what comes while a compaction runs (its fsyncs
	 * and rename take a while on a busy disk: 3-5 MB seen here), not by the
	 * history: a third of it at most.
	 */
	assert_true(max_size < (uint64_t)8 << 20);
	assert_true(max_size * 3 < st.bytes);
	jr_close(&x, &f);

	store_again_with(&f, &jo);
	jr_open(&x, &f, &rec);
	/* The sleeper, and at most the jobs of the last moments before their TTL. */
	sleeper = fp_jobs_find(f.jobs, id);
	assert_non_null(sleeper);
	assert_false(fp_job_finished(sleeper));
	assert_int_equal(rec.resumed, 1);
	/* The others had finished: they expire, their TTL counted from before. */
	assert_true(fp_test_run_until(f.pool, only_one_job, f.jobs, 10000));
	assert_int_equal(fp_jobs_cancel(f.jobs, sleeper), 0);
	wait_finished(&f, sleeper);
	assert_int_equal(fp_job_state(sleeper), FP_JOB_CANCELLED);
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

struct compacted {
	fp_journal *j;
	uint64_t before;
};

static int compaction_done(void *data)
{
	struct compacted *c = data;
	struct fp_journal_stats st;

	fp_journal_stats_get(c->j, &st);
	return st.compactions > c->before && !fp_journal_compacting(c->j);
}

/*
 * A compaction rewrites pipelines too (an unfinished one's done inputs as
 * one INPUTS record): after it, a finished one still comes
 * back with its outputs and reduced value, an unfinished one reruns.
 */
static void compaction_keeps_pipelines(void **state)
{
	static const char *const tasks[] = { "range", "square", NULL };
	static const char *const in[] = { "3", "5", NULL };
	static const char *const stasks[] = { "sleep", NULL };
	static const char *const sin[] = { "0", "60000", NULL };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	static fp_job *applies[2000];
	struct fp_jobs_recovery rec;
	struct fp_jobs_options jo;
	struct fp_job_item it;
	struct fp_test_jobs f;
	struct compacted cc;
	struct all_but c;
	fp_job *p, *sleeper;
	char pid[33], sid[33];
	struct jr x;

	fp_jobs_options_init(&jo);
	jo.journal_compact_min = 32 << 10;
	jr_dir(&x);
	fp_test_jobs_setup_with(&f, 2, &jo);
	jr_open(&x, &f, &rec);
	po.reduce = "sum";
	p = submit_pipeline(&f, tasks, in, &po);
	sleeper = submit_pipeline(&f, stasks, sin, NULL);
	strcpy(pid, fp_job_id(p));
	strcpy(sid, fp_job_id(sleeper));
	wait_finished(&f, p);
	/* Dead records: applies made and deleted, until a compaction runs. */
	cc = (struct compacted){ x.j, 0 };
	c = (struct all_but){ f.jobs, 1 };
	for (size_t i = 0; i < 2000; i++) {
		struct fp_buf b = { "7", 1 };

		assert_int_equal(fp_jobs_submit(f.jobs, FP_JOB_APPLY, "square", &b, 1, NULL,
						&applies[i]), 0);
	}
	assert_true(fp_test_run_until(f.pool, all_but_finished, &c, 60000));
	for (size_t i = 0; i < 2000; i++)
		fp_jobs_forget(f.jobs, applies[i]);
	assert_true(fp_test_run_until(f.pool, compaction_done, &cc, 20000));
	assert_int_equal(fp_jobs_journal_compact_error(f.jobs), 0);
	jr_close(&x, &f);

	store_again_with(&f, &jo);
	jr_open(&x, &f, &rec);
	assert_int_equal(rec.jobs, 2);
	assert_int_equal(rec.finished, 1);
	assert_int_equal(rec.resumed, 1);
	p = fp_jobs_find(f.jobs, pid);
	assert_non_null(p);
	assert_int_equal(fp_job_state(p), FP_JOB_DONE);
	assert_string_equal(fp_job_task(p), "range|square|sum");
	assert_int_not_equal(fp_job_reduced(p), SIZE_MAX);
	fp_job_item(p, fp_job_reduced(p), &it);
	assert_int_equal(atoi(it.value), 0 + 1 + 4 + 0 + 1 + 4 + 9 + 16);
	sleeper = fp_jobs_find(f.jobs, sid);
	assert_non_null(sleeper);
	assert_false(fp_job_finished(sleeper));
	assert_int_equal(fp_job_inputs(sleeper), 2);
	/* Its done input came through the compaction (an INPUTS record): kept, not rerun. */
	assert_int_equal(rec.items_kept, 1);
	assert_int_equal(rec.items_rerun, 1);
	assert_int_equal(fp_job_total(sleeper), 1);
	fp_job_item(sleeper, 0, &it);
	assert_int_equal(it.index, 0);
	assert_string_equal(it.value, "0");
	assert_int_equal(fp_jobs_cancel(f.jobs, sleeper), 0);
	wait_finished(&f, sleeper);
	assert_int_equal(fp_job_state(sleeper), FP_JOB_CANCELLED);
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

/* --- the journal and the API's Idempotency-Key ---------------------------- */

/* A client of the test's HTTP server: its request sent, its answer read to EOF. */
struct http_client {
	int fd;
	char buf[4096];
	size_t len;
	bool eof;
};

static void client_send(struct http_client *c, const char *bound, const char *req)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *colon = strrchr(bound, ':');

	memset(c, 0, sizeof(*c));
	assert_non_null(colon);
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(c->fd, req, strlen(req), 0), (ssize_t)strlen(req));
}

struct clients {
	struct http_client *c;
	size_t n;
};

static int clients_answered(void *data)
{
	struct clients *cs = data;
	size_t done = 0;

	for (size_t i = 0; i < cs->n; i++) {
		struct http_client *c = &cs->c[i];
		ssize_t r;

		while (!c->eof && c->len < sizeof(c->buf) - 1 &&
		       (r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len,
				 MSG_DONTWAIT)) >= 0) {
			c->eof = r == 0;
			c->len += (size_t)r;
		}
		c->buf[c->len] = '\0';
		done += c->eof;
	}
	return done == cs->n;
}

/*
 * A retry with the same Idempotency-Key that comes while the first
 * request's JOB record is still being written is not answered before that
 * record is safe: here the record fails (ENOSPC: /dev/full), so the first
 * request is refused 507 and the retry must not be told 200 for a job that
 * was never accepted. Both requests are sent before the loop runs, so the
 * server reads them in the same turn, before the write's outcome is known.
 */
static void a_retry_waits_for_the_first_requests_record(void **state)
{
	static const char req[] =
		"POST /v1/apply HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
		"Idempotency-Key: once\r\nConnection: close\r\nContent-Length: 25\r\n\r\n"
		"{\"task\":\"sleep\",\"args\":0}";
	struct fp_api_options ao;
	struct fp_http_limits lim;
	struct http_client c[2];
	struct clients cs = { c, 2 };
	struct fp_test_jobs f;
	fp_http_server *http;
	char bound[64], err[256];
	fp_api *api;
	struct jr x;

	memset(&x, 0, sizeof(x));
	fp_test_jobs_setup(&f, 1);
	jr_full(&x, &f);
	fp_api_options_init(&ao);
	assert_int_equal(fp_api_new(&api, f.pool, f.jobs, &ao), 0);
	fp_http_limits_init(&lim);
	assert_int_equal(fp_http_server_new(&http, fp_pool_loop(f.pool), &lim, fp_api_handler, api),
			 0);
	fp_api_attach_http(api, http);
	if (fp_http_listen(http, "127.0.0.1:0", bound, sizeof(bound), err, sizeof(err)) < 0)
		fail_msg("listen: %s", err);
	client_send(&c[0], bound, req);
	client_send(&c[1], bound, req);
	assert_true(fp_test_run_until(f.pool, clients_answered, &cs, 20000));
	for (size_t i = 0; i < 2; i++) {
		if (strncmp(c[i].buf, "HTTP/1.1 507", 12) != 0)
			fail_msg("request %zu was answered: %.300s", i, c[i].buf);
		assert_non_null(strstr(c[i].buf, "insufficient_storage"));
		close(c[i].fd);
	}
	assert_int_equal(fp_jobs_unfinished(f.jobs), 0);
	fp_api_free(api);
	fp_http_server_free(http);
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
}

/* The API's handler, then the loop stops: the turn that read a request is its last. */
struct stop_after {
	fp_api *api;
	fp_loop *loop;
	int handled;
};

static void handle_then_stop(fp_http_request *req, void *data)
{
	struct stop_after *s = data;

	fp_api_handler(req, s->api);
	s->handled++;
	fp_loop_stop(s->loop);
}

static void stop_loop_cb(fp_timer *t)
{
	fp_loop_stop(t->data);
}

/*
 * A submission whose JOB record is not safe yet when the API goes (a
 * shutdown) is answered 503; its record reaches the file as the journal
 * closes, and a restart must not bring back the job it refused.
 */
static void a_submission_refused_at_shutdown_does_not_come_back(void **state)
{
	static const char req[] =
		"POST /v1/apply HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
		"Connection: close\r\nContent-Length: 25\r\n\r\n"
		"{\"task\":\"sleep\",\"args\":0}";
	struct fp_jobs_recovery rec;
	struct fp_api_options ao;
	struct fp_http_limits lim;
	struct fp_jobs_stats st;
	struct http_client c;
	struct clients cs = { &c, 1 };
	struct stop_after sa;
	struct fp_test_jobs f;
	fp_http_server *http;
	char bound[64], err[256];
	fp_timer guard;
	struct jr x;

	jr_dir(&x);
	fp_test_jobs_setup(&f, 1);
	jr_open(&x, &f, &rec);
	fp_api_options_init(&ao);
	sa = (struct stop_after){ NULL, fp_pool_loop(f.pool), 0 };
	assert_int_equal(fp_api_new(&sa.api, f.pool, f.jobs, &ao), 0);
	fp_http_limits_init(&lim);
	assert_int_equal(fp_http_server_new(&http, sa.loop, &lim, handle_then_stop, &sa), 0);
	fp_api_attach_http(sa.api, http);
	if (fp_http_listen(http, "127.0.0.1:0", bound, sizeof(bound), err, sizeof(err)) < 0)
		fail_msg("listen: %s", err);
	client_send(&c, bound, req);
	memset(&guard, 0, sizeof(guard));
	guard.data = sa.loop;
	fp_timer_start(sa.loop, &guard, 10000, stop_loop_cb);
	while (!sa.handled && fp_timer_active(&guard))
		fp_pool_run(f.pool);
	fp_timer_stop(&guard);
	assert_int_equal(sa.handled, 1);
	/* Submitted, its record appended, the answer waiting for it: now the API goes. */
	fp_jobs_stats(f.jobs, &st);
	assert_int_equal(st.submitted, 1);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 1);
	fp_api_free(sa.api);
	assert_true(fp_test_run_until(f.pool, clients_answered, &cs, 20000));
	if (strncmp(c.buf, "HTTP/1.1 503", 12) != 0)
		fail_msg("answered: %.300s", c.buf);
	close(c.fd);
	fp_http_server_free(http);
	jr_close(&x, &f);

	store_again(&f);
	jr_open(&x, &f, &rec);
	assert_int_equal(rec.jobs, 0);
	assert_int_equal(fp_jobs_unfinished(f.jobs), 0);
	jr_close(&x, &f);
	fp_test_jobs_teardown(&f);
	jr_rm(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names_round_trip),
		cmocka_unit_test(journaled_jobs_come_back_finished),
		cmocka_unit_test(finished_pipeline_comes_back_with_its_outputs),
		cmocka_unit_test(unfinished_pipeline_resumes_from_its_inputs_not_done),
		cmocka_unit_test(unfinished_reduce_pipeline_reruns_whole),
		cmocka_unit_test(compaction_keeps_pipelines),
		cmocka_unit_test(unfinished_job_resumes_the_items_without_an_outcome),
		cmocka_unit_test(resumed_job_does_not_write_its_outcomes_again),
		cmocka_unit_test(outcomes_of_an_older_build_are_read),
		cmocka_unit_test(pipeline_with_every_input_done_ends_at_restart),
		cmocka_unit_test(pipeline_refused_at_restart_keeps_its_error),
		cmocka_unit_test(a_job_whose_record_fails_is_withdrawn),
		cmocka_unit_test(a_started_call_whose_record_is_refused_goes_cleanly),
		cmocka_unit_test(a_retry_waits_for_the_first_requests_record),
		cmocka_unit_test(a_submission_refused_at_shutdown_does_not_come_back),
		cmocka_unit_test(compaction_keeps_the_journal_bounded),
		cmocka_unit_test(apply_records_its_value_and_times),
		cmocka_unit_test(job_is_running_from_its_first_hand_off),
		cmocka_unit_test(apply_results_of_every_size_read_back_whole),
		cmocka_unit_test(map_keeps_item_order_and_a_completion_permutation),
		cmocka_unit_test(values_in_runs_match_items_around_errors_and_running_items),
		cmocka_unit_test(empty_map_is_done),
		cmocka_unit_test(a_failing_item_fails_the_job),
		cmocka_unit_test(cancel_ends_hanging_jobs_as_cancelled),
		cmocka_unit_test(unknown_task_and_bad_arguments_are_refused),
		cmocka_unit_test(over_max_queue_is_refused_until_items_finish),
		cmocka_unit_test(ids_are_random_hex_and_found_by_id),
		cmocka_unit_test(forget_drops_a_finished_job),
		cmocka_unit_test(ttl_forgets_finished_jobs_only),
		cmocka_unit_test(ttl_timer_follows_several_finished_jobs),
		cmocka_unit_test(max_jobs_forgets_the_oldest_finished_first),
		cmocka_unit_test(watchers_see_every_item_once_and_the_end_once),
		cmocka_unit_test(forget_from_inside_on_end_is_safe),
		cmocka_unit_test(forget_from_inside_on_item_cancels_the_rest),
		cmocka_unit_test(watch_forget_hears_when_a_finished_job_goes),
		cmocka_unit_test(list_is_newest_first_with_a_state_filter),
		cmocka_unit_test(list_pages_from_a_cursor),
		cmocka_unit_test(close_refuses_new_jobs_and_lets_old_ones_finish),
		cmocka_unit_test(free_with_jobs_running_then_run_the_loop),
		cmocka_unit_test(free_with_jobs_running_then_free_the_pool),
		cmocka_unit_test(big_map_is_a_few_blocks),
		cmocka_unit_test(cancelled_big_map_stores_its_message_once),
		cmocka_unit_test(a_map_on_taken_items_runs_them_and_frees_them_at_its_end),
		cmocka_unit_test(forgotten_ids_say_why_and_unknown_ones_are_not_gone),
		cmocka_unit_test(an_expired_id_is_gone_for_its_ttl),
		cmocka_unit_test(the_newest_forgotten_ids_are_kept_when_there_are_too_many),
		cmocka_unit_test(results_memory_forgets_the_oldest_finished_first),
		cmocka_unit_test(a_job_that_cannot_fit_is_refused_and_nothing_is_forgotten),
		cmocka_unit_test(a_value_past_the_limit_ends_too_large_and_the_job_goes_on),
		cmocka_unit_test(results_bytes_count_records_and_text),
		cmocka_unit_test(a_held_job_is_read_after_it_is_forgotten),
		cmocka_unit_test(memory_eviction_passes_over_jobs_being_read),
		cmocka_unit_test(freeing_the_store_leaves_a_held_job_to_its_reader),
		cmocka_unit_test(a_key_finds_its_job_until_it_is_forgotten),
		cmocka_unit_test(a_job_without_a_key_has_none),
		cmocka_unit_test(bad_keys_are_refused_and_nothing_is_submitted),
		cmocka_unit_test(a_refused_submission_does_not_take_its_key),
		cmocka_unit_test(a_key_goes_with_its_job_however_it_is_forgotten),
		cmocka_unit_test(keys_are_found_as_the_table_grows),
		cmocka_unit_test(attach_gives_a_kept_job_its_key),
		cmocka_unit_test(a_pipeline_holds_its_key),
		cmocka_unit_test(the_request_hash_is_stable_and_hashes_where_pieces_end),
	};
	fp_loop *loop = NULL;

	/* The backend FORKPOOL_LOOP asks for may not exist here: skip, not fail. */
	if (fp_loop_new(&loop, FP_LOOP_AUTO) != 0) {
		fprintf(stderr, "no event loop for FORKPOOL_LOOP=%s: skipped\n",
			getenv("FORKPOOL_LOOP") ? getenv("FORKPOOL_LOOP") : "");
		return 77;
	}
	fp_loop_free(loop);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
