/*
 * The embedded pipeline benchmark: one measurement per run, one result line.
 *
 *   bench-pipeline N      fp_pool_pipeline_borrow_async over N items through
 *                         three stages of trivial tasks: square, echo, square
 *                         (the inputs are the program's own for the whole run,
 *                         so the pool borrows them rather than copying them)
 *
 * Item i is i % 1000, so every output is (i % 1000)^4; the outputs' sum is
 * checked against the one computed here, with every output's input index.
 * Prints e.g.
 *   result name=pipeline backend=io_uring workers=2 items=1000000 outputs=1000000 seconds=1.2 rate=833333.3
 * and exits 1 if any output failed or the sum is wrong.
 * tests/bench/pipeline_bench.py is the same pipeline in Python's
 * multiprocessing; scripts/bench pipeline runs both and compares.
 *
 * The pool is created and warmed with one apply before the clock starts.
 * Workers: one per online CPU, shared by the stages. FORKPOOL_LOOP picks the
 * backend. Nothing here asserts a time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <forkpool.h>

#define NUM_MAX 8

struct bench {
	size_t n;
	size_t outputs, failed, bad_index;
	unsigned long long sum;
	int done;
	char failure[160];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_item(fp_pool *pool, uint64_t call_id, const struct fp_result *r, void *data)
{
	struct bench *b = data;

	b->outputs++;
	if (r->index >= b->n)
		b->bad_index++;
	if (r->status != FP_ITEM_OK) {
		if (!b->failed++)
			snprintf(b->failure, sizeof(b->failure), "item %zu, stage %u: %s: %s",
				 r->index, r->stage, fp_item_status_name(r->status),
				 r->message ? r->message : "");
		return;
	}
	b->sum += strtoull(r->value, NULL, 10);
}

static void on_done(fp_pool *pool, const struct fp_call_summary *s, void *data)
{
	struct bench *b = data;

	b->done = 1;
	fp_pool_stop(pool);
}

int main(int argc, char **argv)
{
	static const fp_stage tmpl = FP_STAGE_DEFAULT;
	fp_stage stages[3] = { tmpl, tmpl, tmpl };
	struct bench b = { 0 };
	unsigned long long want = 0;
	struct fp_pool_stats st;
	struct fp_buf *items;
	struct fp_result r;
	fp_options opts;
	fp_pool *pool;
	char err[512] = "", *text, *end;
	double t0, secs;
	int rc;

	if (argc != 2 || (b.n = strtoul(argv[1], &end, 10)) == 0 || *end) {
		fprintf(stderr, "usage: bench-pipeline N\n");
		return 2;
	}
	stages[0].task = "square";
	stages[1].task = "echo";
	stages[2].task = "square";
	items = calloc(b.n, sizeof(*items));
	text = malloc(b.n * NUM_MAX);
	if (!items || !text) {
		fprintf(stderr, "bench-pipeline: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < b.n; i++) {
		unsigned long long k = i % 1000;
		items[i].base = text + i * NUM_MAX;
		items[i].len = (size_t)snprintf(text + i * NUM_MAX, NUM_MAX, "%llu", k);
		want += k * k * k * k;
	}

	fp_options_init(&opts);
	opts.log_level = FP_LOG_WARN;
	rc = fp_pool_new(&pool, NULL, &opts, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "bench-pipeline: fp_pool_new: %s %s\n", fp_strerror(rc), err);
		return 1;
	}
	rc = fp_pool_apply(pool, "square", "1", 1, NULL, &r);
	fp_result_clear(&r);
	if (rc < 0) {
		fprintf(stderr, "bench-pipeline: warm-up apply: %s\n", fp_strerror(rc));
		return 1;
	}

	t0 = now_s();
	rc = fp_pool_pipeline_borrow_async(pool, stages, 3, items, b.n, NULL, on_item, on_done, &b,
					   NULL);
	if (rc < 0) {
		fprintf(stderr, "bench-pipeline: fp_pool_pipeline_borrow_async: %s\n",
			fp_strerror(rc));
		return 1;
	}
	while (!b.done && rc >= 0)
		rc = fp_pool_run(pool);
	secs = now_s() - t0;

	fp_pool_stats(pool, &st);
	printf("result name=pipeline backend=%s workers=%u items=%zu outputs=%zu seconds=%.3f "
	       "rate=%.1f\n", fp_loop_backend_name(fp_pool_loop(pool)), st.workers, b.n,
	       b.outputs, secs, (double)b.n / secs);
	fp_pool_shutdown(pool, 2000);
	fp_pool_free(pool);
	free(items);
	free(text);
	if (!b.done || b.failed || b.bad_index || b.outputs != b.n || b.sum != want) {
		fprintf(stderr, "bench-pipeline: wrong: done=%d outputs=%zu failed=%zu bad_index=%zu "
			"sum=%llu want=%llu %s\n", b.done, b.outputs, b.failed, b.bad_index, b.sum,
			want, b.failure);
		return 1;
	}
	return 0;
}
