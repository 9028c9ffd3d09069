/*
 * The embedded-API benchmark: one measurement per run, one result line.
 *
 *   bench-pool map N [CHUNKSIZE]          fp_pool_map of N `square` items
 *                                         (CHUNKSIZE 0 or absent: the pool's default)
 *   bench-pool apply-async N [WINDOW]     N fp_pool_apply_async calls; WINDOW
 *                                         outstanding at a time (0 or absent: all)
 *   bench-pool rtt N                      N sequential fp_pool_apply calls
 *   bench-pool mtpc M N map|async [MS]    N items with max_tasks_per_child M
 *                                         (0: no recycling); map uses chunksize 1,
 *                                         async submits every item at once; with
 *                                         MS (map only), `spin` items of MS ms
 *   bench-pool spin W N MS                fp_pool_map of N `spin` items of MS ms of
 *                                         CPU each, chunksize 1, on W workers
 *
 * Prints one line on stdout, e.g.
 *   result name=map backend=io_uring workers=2 items=1000000 chunksize=0 seconds=0.61 rate=1639344.3
 * and exits 1 if any item failed. tests/bench/pool_bench.py is the same
 * program written against Python's multiprocessing.Pool; scripts/bench runs
 * both and compares.
 *
 * The pool is created and warmed with one apply before the clock starts, so
 * only the calls are timed. Workers: one per online CPU (spin: W). FORKPOOL_LOOP picks
 * the backend. Nothing here asserts a time: the numbers are reported only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <forkpool.h>

/* Room for the decimal text of any size_t, and its NUL. */
#define NUM_MAX 24

struct bench {
	fp_pool *pool;
	size_t n;              /* items to run */
	size_t window;         /* outstanding calls at most; 0: all */
	size_t submitted, completed, ok;
	int submit_err;        /* first failed submission, or 0 */
	char failure[160];     /* the first failed item's status and message */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: bench-pool map N [CHUNKSIZE]\n"
		"       bench-pool apply-async N [WINDOW]\n"
		"       bench-pool rtt N\n"
		"       bench-pool mtpc M N map|async [SPIN_MS]\n"
		"       bench-pool spin W N MS\n");
	return 2;
}

static int parse_size(const char *s, size_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > SIZE_MAX)
		return -EINVAL;
	*out = (size_t)v;
	return 0;
}

static void note_failure(struct bench *b, const struct fp_result *r)
{
	if (b->failure[0])
		return;
	snprintf(b->failure, sizeof(b->failure), "item %zu: %s: %s", r->index,
		 fp_item_status_name(r->status), r->message ? r->message : "(no message)");
}

static int bench_pool_new(struct bench *b, unsigned workers, unsigned max_tasks)
{
	struct fp_result r;
	fp_options opts;
	char err[512] = "";
	int rc;

	fp_options_init(&opts);
	opts.workers = workers;
	opts.max_tasks_per_child = max_tasks;
	/* Per-recycle INFO lines would be timed along with the work. */
	opts.log_level = FP_LOG_WARN;
	rc = fp_pool_new(&b->pool, NULL, &opts, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "bench-pool: fp_pool_new: %s%s%s\n", fp_strerror(rc),
			err[0] ? ": " : "", err);
		return rc;
	}
	/* Warm up: every worker forked and the loop's first round trip done. */
	rc = fp_pool_apply(b->pool, "square", "1", 1, NULL, &r);
	if (rc == 0 && r.status != FP_ITEM_OK) {
		fprintf(stderr, "bench-pool: warm-up apply: %s: %s\n",
			fp_item_status_name(r.status), r.message ? r.message : "");
		rc = -EIO;
	} else if (rc < 0) {
		fprintf(stderr, "bench-pool: warm-up apply: %s\n", fp_strerror(rc));
	}
	fp_result_clear(&r);
	return rc;
}

static void bench_pool_free(struct bench *b)
{
	if (!b->pool)
		return;
	/* Not timed; a grace period so the workers leave on their own. */
	fp_pool_shutdown(b->pool, 2000);
	fp_pool_free(b->pool);
	b->pool = NULL;
}

static const char *backend_name(struct bench *b)
{
	return fp_loop_backend_name(fp_pool_loop(b->pool));
}

static unsigned pool_workers(struct bench *b)
{
	struct fp_pool_stats st;

	fp_pool_stats(b->pool, &st);
	return st.workers;
}

/* --- map ------------------------------------------------------------------ */

/* Items 0..n-1 as JSON numbers; *text holds them all. */
static struct fp_buf *items_make(size_t n, char **text)
{
	struct fp_buf *items = calloc(n ? n : 1, sizeof(*items));
	char *p;

	*text = malloc((n ? n : 1) * NUM_MAX);
	if (!items || !*text) {
		free(items);
		free(*text);
		*text = NULL;
		return NULL;
	}
	p = *text;
	for (size_t i = 0; i < n; i++) {
		items[i].base = p;
		items[i].len = (size_t)snprintf(p, NUM_MAX, "%zu", i);
		p += NUM_MAX;
	}
	return items;
}

/*
 * Every result is OK and is the square of its item, or with spin_ms the
 * number of milliseconds spun (what `spin` returns).
 */
static int map_check(struct bench *b, const struct fp_result *res, size_t n, size_t spin_ms)
{
	for (size_t i = 0; i < n; i++) {
		unsigned long long want = spin_ms ? spin_ms : (unsigned long long)i * i;

		if (res[i].status != FP_ITEM_OK) {
			note_failure(b, &res[i]);
			continue;
		}
		if (strtoull(res[i].value, NULL, 10) != want) {
			if (!b->failure[0])
				snprintf(b->failure, sizeof(b->failure),
					 "item %zu: got %.*s, want %llu", i,
					 (int)res[i].value_len, res[i].value, want);
			continue;
		}
		b->ok++;
	}
	return b->ok == n ? 0 : -EIO;
}

/* fp_pool_map of `square` over 0..n-1, or with spin_ms of n `spin` items of spin_ms; seconds in *secs. */
static int run_map(struct bench *b, size_t n, size_t chunksize, size_t spin_ms, double *secs)
{
	fp_call_options copts = FP_CALL_OPTIONS_DEFAULT;
	struct fp_result *res = NULL;
	struct fp_buf *items;
	char *text;
	double t0;
	int rc;

	items = items_make(n, &text);
	if (!items)
		return -ENOMEM;
	if (spin_ms) {
		/* Every item the same: the first one's text, made "MS". */
		items[0].len = (size_t)snprintf(text, NUM_MAX, "%zu", spin_ms);
		for (size_t i = 1; i < n; i++)
			items[i] = items[0];
	}
	copts.chunksize = chunksize;
	t0 = now_s();
	rc = fp_pool_map(b->pool, spin_ms ? "spin" : "square", items, n, &copts, &res);
	*secs = now_s() - t0;
	if (rc < 0) {
		fprintf(stderr, "bench-pool: fp_pool_map: %s\n", fp_strerror(rc));
	} else {
		b->completed = n;
		rc = map_check(b, res, n, spin_ms);
		fp_results_free(res, n);
	}
	free(items);
	free(text);
	return rc;
}

/* --- apply_async ---------------------------------------------------------- */

static void async_submit_more(struct bench *b);

static void async_item(fp_pool *pool, uint64_t id, const struct fp_result *r, void *data)
{
	struct bench *b = data;

	if (r->status == FP_ITEM_OK)
		b->ok++;
	else
		note_failure(b, r);
}

static void async_done(fp_pool *pool, const struct fp_call_summary *s, void *data)
{
	struct bench *b = data;

	b->completed++;
	if (b->window)
		async_submit_more(b);
	if (b->completed == b->n || (b->submit_err && b->completed == b->submitted))
		fp_pool_stop(pool);
}

/* Submit until the window is full or every item is out. */
static void async_submit_more(struct bench *b)
{
	char arg[NUM_MAX];
	int len, rc;

	while (!b->submit_err && b->submitted < b->n &&
	       (!b->window || b->submitted - b->completed < b->window)) {
		len = snprintf(arg, sizeof(arg), "%zu", b->submitted);
		rc = fp_pool_apply_async(b->pool, "square", arg, (size_t)len, NULL,
					 async_item, async_done, b, NULL);
		if (rc < 0) {
			fprintf(stderr, "bench-pool: fp_pool_apply_async #%zu: %s\n",
				b->submitted, fp_strerror(rc));
			b->submit_err = rc;
			break;
		}
		b->submitted++;
	}
}

static int run_async(struct bench *b, size_t n, size_t window, double *secs)
{
	double t0;
	int rc;

	b->n = n;
	b->window = window;
	t0 = now_s();
	async_submit_more(b);
	rc = b->submitted ? fp_pool_run(b->pool) : 0;
	*secs = now_s() - t0;
	if (rc < 0) {
		fprintf(stderr, "bench-pool: fp_pool_run: %s\n", fp_strerror(rc));
		return rc;
	}
	if (b->submit_err)
		return b->submit_err;
	if (b->completed != n) {
		fprintf(stderr, "bench-pool: the loop returned after %zu of %zu calls\n",
			b->completed, n);
		return -EIO;
	}
	return b->ok == n ? 0 : -EIO;
}

/* --- sequential apply ----------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p of the samples at or below it. */
static double percentile(const double *sorted, size_t n, double p)
{
	size_t rank = (size_t)(p * (double)n + 0.999999);

	if (rank < 1)
		rank = 1;
	return sorted[rank > n ? n - 1 : rank - 1];
}

static int run_rtt(struct bench *b, size_t n, double *secs, double *lat_us)
{
	char arg[NUM_MAX];
	struct fp_result r;
	double t0, t1, start;
	int len, rc = 0;

	start = now_s();
	for (size_t i = 0; i < n; i++) {
		len = snprintf(arg, sizeof(arg), "%zu", i);
		t0 = now_s();
		rc = fp_pool_apply(b->pool, "square", arg, (size_t)len, NULL, &r);
		t1 = now_s();
		if (rc < 0) {
			fprintf(stderr, "bench-pool: fp_pool_apply #%zu: %s\n", i, fp_strerror(rc));
			break;
		}
		lat_us[i] = (t1 - t0) * 1e6;
		b->completed++;
		if (r.status == FP_ITEM_OK)
			b->ok++;
		else
			note_failure(b, &r);
		fp_result_clear(&r);
	}
	*secs = now_s() - start;
	if (rc < 0)
		return rc;
	return b->ok == n ? 0 : -EIO;
}

/* --- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct bench b = { 0 };
	struct fp_pool_stats st;
	size_t n = 0, arg2 = 0, mtpc = 0, workers = 0;
	const char *cmd, *mode = NULL;
	double secs = 0, *lat = NULL;
	int rc;

	if (argc < 3)
		return usage();
	cmd = argv[1];
	if (strcmp(cmd, "mtpc") == 0) {
		if ((argc != 5 && argc != 6) || parse_size(argv[2], &mtpc) < 0 ||
		    mtpc > UINT32_MAX || parse_size(argv[3], &n) < 0)
			return usage();
		mode = argv[4];
		if (strcmp(mode, "map") != 0 && strcmp(mode, "async") != 0)
			return usage();
		if (argc == 6 && (strcmp(mode, "map") != 0 || parse_size(argv[5], &arg2) < 0 ||
				  arg2 == 0 || arg2 > 3600000))
			return usage();
	} else if (strcmp(cmd, "map") == 0 || strcmp(cmd, "apply-async") == 0) {
		if (argc > 4 || parse_size(argv[2], &n) < 0 ||
		    (argc == 4 && parse_size(argv[3], &arg2) < 0))
			return usage();
	} else if (strcmp(cmd, "rtt") == 0) {
		if (argc != 3 || parse_size(argv[2], &n) < 0)
			return usage();
	} else if (strcmp(cmd, "spin") == 0) {
		if (argc != 5 || parse_size(argv[2], &workers) < 0 || workers == 0 ||
		    workers > 1024 || parse_size(argv[3], &n) < 0 ||
		    parse_size(argv[4], &arg2) < 0 || arg2 == 0 || arg2 > 3600000)
			return usage();
	} else {
		return usage();
	}
	if (n == 0)
		return usage();

	if (strcmp(cmd, "rtt") == 0) {
		lat = malloc(n * sizeof(*lat));
		if (!lat) {
			fprintf(stderr, "bench-pool: out of memory\n");
			return 1;
		}
	}
	rc = bench_pool_new(&b, (unsigned)workers, (unsigned)mtpc);
	if (rc < 0)
		goto out;

	if (strcmp(cmd, "map") == 0) {
		rc = run_map(&b, n, arg2, 0, &secs);
		printf("result name=map backend=%s workers=%u items=%zu chunksize=%zu "
		       "seconds=%.6f rate=%.1f",
		       backend_name(&b), pool_workers(&b), n, arg2, secs, (double)n / secs);
	} else if (strcmp(cmd, "apply-async") == 0) {
		rc = run_async(&b, n, arg2, &secs);
		printf("result name=apply-async backend=%s workers=%u items=%zu window=%zu "
		       "seconds=%.6f rate=%.1f",
		       backend_name(&b), pool_workers(&b), n, arg2, secs,
		       (double)b.completed / secs);
	} else if (strcmp(cmd, "rtt") == 0) {
		rc = run_rtt(&b, n, &secs, lat);
		qsort(lat, b.completed, sizeof(*lat), cmp_double);
		printf("result name=rtt backend=%s workers=%u items=%zu seconds=%.6f rate=%.1f "
		       "p50_us=%.1f p99_us=%.1f",
		       backend_name(&b), pool_workers(&b), n, secs, (double)b.completed / secs,
		       b.completed ? percentile(lat, b.completed, 0.50) : 0.0,
		       b.completed ? percentile(lat, b.completed, 0.99) : 0.0);
	} else if (strcmp(cmd, "spin") == 0) {
		rc = run_map(&b, n, 1, arg2, &secs);
		printf("result name=spin backend=%s workers=%u items=%zu ms=%zu seconds=%.6f "
		       "rate=%.1f",
		       backend_name(&b), pool_workers(&b), n, arg2, secs, (double)n / secs);
	} else {
		if (strcmp(mode, "map") == 0)
			rc = run_map(&b, n, 1, arg2, &secs);
		else
			rc = run_async(&b, n, 0, &secs);
		fp_pool_stats(b.pool, &st);
		printf("result name=mtpc backend=%s workers=%u mtpc=%zu mode=%s spin_ms=%zu "
		       "items=%zu seconds=%.6f rate=%.1f recycles=%" PRIu64,
		       backend_name(&b), st.workers, mtpc, mode, arg2, n, secs,
		       (double)b.completed / secs, st.recycles);
	}
	printf(" ok=%zu failed=%zu\n", b.ok, b.completed - b.ok);
	if (b.failure[0])
		fprintf(stderr, "bench-pool: first failure: %s\n", b.failure);

out:
	bench_pool_free(&b);
	free(lat);
	return rc < 0 ? 1 : 0;
}
