/* The fixture the pool's suites share: see fp_test_pool.h. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fp_test_pool.h"
#include "forkpool/loop.h"

struct log_capture {
	char text[65536];
	size_t len;
};

static struct log_capture test_log;

static void capture_log(void *data, fp_log_level level, const char *msg)
{
	struct log_capture *c = data;
	int n = snprintf(c->text + c->len, sizeof(c->text) - c->len, "%s\n", msg);

	if (n > 0 && c->len + (size_t)n < sizeof(c->text))
		c->len += (size_t)n;
	if (getenv("FP_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

void fp_test_options(fp_options *o, unsigned workers)
{
	memset(&test_log, 0, sizeof(test_log));
	fp_options_init(o);
	o->workers = workers;
	o->kill_grace_ms = 200;
	o->log_level = FP_LOG_DEBUG;
	o->log = capture_log;
	o->log_data = &test_log;
}

fp_pool *fp_test_pool_with(fp_options *o)
{
	fp_pool *p = NULL;
	char err[512];
	int rc = fp_pool_new(&p, NULL, o, err, sizeof(err));

	if (rc != 0)
		fail_msg("fp_pool_new: %s (%s)", fp_strerror(rc), err);
	return p;
}

fp_pool *fp_test_pool(unsigned workers)
{
	fp_options o;

	fp_test_options(&o, workers);
	return fp_test_pool_with(&o);
}

const char *fp_test_log(void)
{
	return test_log.text;
}

int fp_test_log_has(const char *text)
{
	return strstr(test_log.text, text) != NULL;
}

int fp_test_log_says(void *text)
{
	return fp_test_log_has(text);
}

char *fp_test_module_path(const char *name)
{
	const char *dir = getenv("FP_TEST_MODULE_DIR");
	char *path;

	assert_non_null(dir);
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	return path;
}

pid_t fp_test_apply_pid(fp_pool *p, const char *task, pid_t *answered_by)
{
	struct fp_result r;
	pid_t pid;

	assert_int_equal(fp_pool_apply(p, task, "null", 4, NULL, &r), 0);
	if (r.status != FP_ITEM_OK)
		fail_msg("%s: %s: %s", task, fp_item_status_name(r.status),
			 r.message ? r.message : "");
	pid = (pid_t)atol(r.value);
	if (answered_by)
		*answered_by = r.pid;
	fp_result_clear(&r);
	return pid;
}

int fp_test_pids_known(void *p)
{
	struct fp_worker_stats ws[16];
	size_t n = fp_pool_workers(p, ws, 16);

	for (size_t i = 0; i < n && i < 16; i++)
		if (ws[i].pid <= 0)
			return 0;
	return n > 0;
}

void fp_test_assert_died_with_master(pid_t pid)
{
	int status;

	/* Blocking wait, bounded by the watchdog alarm. */
	alarm(10);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	alarm(0);
	if (WIFSIGNALED(status))
		assert_int_equal(WTERMSIG(status), SIGKILL);
	else
		assert_int_equal(WEXITSTATUS(status), 0);
}

int fp_test_backend_missing(void)
{
	fp_loop *loop;
	int err = fp_loop_new(&loop, FP_LOOP_AUTO);

	if (err) {
		fprintf(stderr, "no loop for FORKPOOL_LOOP=%s: %s\n",
			getenv("FORKPOOL_LOOP") ? getenv("FORKPOOL_LOOP") : "",
			fp_strerror(err));
		return 1;
	}
	fp_loop_free(loop);
	return 0;
}

void fp_test_collect_init(struct fp_test_collect *c, fp_pool *p, size_t n)
{
	memset(c, 0, sizeof(*c));
	c->pool = p;
	c->n = n;
	c->r = calloc(n ? n : 1, sizeof(*c->r));
	c->seen = calloc(n ? n : 1, sizeof(*c->seen));
	assert_non_null(c->r);
	assert_non_null(c->seen);
}

void fp_test_collect_item(fp_pool *p, uint64_t id, const struct fp_result *r, void *data)
{
	struct fp_test_collect *c = data;

	assert_ptr_equal(p, c->pool);
	assert_true(r->index < c->n);
	c->seen[r->index]++;
	fp_result_clear(&c->r[r->index]);
	c->r[r->index] = *r;
	c->r[r->index].value = r->value ? strndup(r->value, r->value_len) : NULL;
	c->r[r->index].message = r->message ? strdup(r->message) : NULL;
	if (c->each)
		c->each(c, r);
}

void fp_test_collect_done(fp_pool *p, const struct fp_call_summary *s, void *data)
{
	struct fp_test_collect *c = data;

	assert_ptr_equal(p, c->pool);
	c->done = 1;
	c->summary = *s;
	fp_pool_stop(p);
}

void fp_test_collect_wait(struct fp_test_collect *c)
{
	uint64_t deadline = fp_now_ms() + 60000;

	while (!c->done && fp_now_ms() < deadline)
		fp_pool_run(c->pool);
	assert_true(c->done);
}

int fp_test_collected(void *c)
{
	return ((struct fp_test_collect *)c)->done;
}

void fp_test_collect_free(struct fp_test_collect *c)
{
	for (size_t i = 0; i < c->n; i++)
		fp_result_clear(&c->r[i]);
	free(c->r);
	free(c->seen);
}
