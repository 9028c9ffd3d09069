/*
 * What the embedded pool does when a worker is SIGKILLed in the middle of a
 * task (the OOM killer, an operator's kill -9): one measurement per run.
 *
 *   bench-crash N MS KILL_MS      fp_pool_map of N `sleep` items of MS ms,
 *                                 chunksize 1, on 2 workers; KILL_MS after
 *                                 the call starts, SIGKILL one of the
 *                                 workers (KILL_MS 0: no kill, the baseline)
 *
 * With both workers busy from the start and KILL_MS between two multiples
 * of MS, the kill lands in the middle of an item. The run checks what the
 * pool promises: the job completes, exactly that item fails with `crash`
 * and a message naming SIGKILL, and every other item answers its own
 * number. Anything else exits 1. Prints one line, e.g.
 *   result name=crash backend=io_uring items=10 ms=200 kill_ms=300 seconds=1.02
 *     ok=9 failed=1 lost=0 hung=0 outcome=item_failed_naming_SIGKILL,_job_completed
 * (one line; seconds = from the call to its last result). The program that
 * does the same to Python's pools is tests/bench/crash_bench.py.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <forkpool.h>

#define WORKERS 2
#define NUM_MAX 24

/* What the killer thread needs: it only sleeps and calls kill(2). */
struct killer {
	pid_t pid;
	unsigned kill_ms;
	int err;                /* kill's errno, or 0 */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *killer_main(void *arg)
{
	struct killer *k = arg;
	struct timespec ts = { k->kill_ms / 1000, (long)(k->kill_ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	if (kill(k->pid, SIGKILL) < 0)
		k->err = errno;
	return NULL;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/*
 * The outcome the pool promises. Returns 0 when it holds, else -EIO with
 * the first thing that did not in `why`.
 */
static int check(const struct fp_result *res, unsigned n, unsigned ms, int killed,
		 unsigned *ok, unsigned *failed, char *why, size_t whylen)
{
	char want[NUM_MAX];
	int wlen = snprintf(want, sizeof(want), "%u", ms);

	*ok = *failed = 0;
	for (unsigned i = 0; i < n; i++) {
		if (res[i].status == FP_ITEM_OK) {
			if (res[i].value_len != (size_t)wlen ||
			    memcmp(res[i].value, want, (size_t)wlen) != 0) {
				snprintf(why, whylen, "item %u: got %.*s, want %s", i,
					 (int)res[i].value_len, res[i].value, want);
				return -EIO;
			}
			(*ok)++;
			continue;
		}
		(*failed)++;
		if (!killed || res[i].status != FP_ITEM_CRASH || !res[i].message ||
		    !strstr(res[i].message, "SIGKILL")) {
			snprintf(why, whylen, "item %u: %s: %s", i,
				 fp_item_status_name(res[i].status),
				 res[i].message ? res[i].message : "(no message)");
			return -EIO;
		}
	}
	if (killed && *failed != 1) {
		snprintf(why, whylen, "%u item(s) failed, want exactly the one killed", *failed);
		return -EIO;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct fp_worker_stats ws[WORKERS];
	fp_call_options copts = FP_CALL_OPTIONS_DEFAULT;
	struct killer k = { 0 };
	struct fp_result *res = NULL, r;
	struct fp_buf *items = NULL;
	unsigned n, ms, ok = 0, failed = 0;
	char text[NUM_MAX], err[512] = "", why[256] = "";
	fp_pool *pool = NULL;
	fp_options opts;
	pthread_t thread;
	int rc, started = 0;
	double t0, secs;

	if (argc != 4 || parse_uint(argv[1], 100000, &n) < 0 || n < WORKERS ||
	    parse_uint(argv[2], 600000, &ms) < 0 || ms == 0 ||
	    parse_uint(argv[3], 600000, &k.kill_ms) < 0) {
		fprintf(stderr, "usage: bench-crash N MS KILL_MS   (N >= %d, MS > 0)\n", WORKERS);
		return 2;
	}

	fp_options_init(&opts);
	opts.workers = WORKERS;
	/* The crash is logged at WARN; the bench wants its own line only. */
	opts.log_level = FP_LOG_ERROR;
	rc = fp_pool_new(&pool, NULL, &opts, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "bench-crash: fp_pool_new: %s%s%s\n", fp_strerror(rc),
			err[0] ? ": " : "", err);
		return 1;
	}
	/* Warm up, so that both workers are up and idle when the clock starts. */
	rc = fp_pool_apply(pool, "square", "1", 1, NULL, &r);
	if (rc == 0 && r.status != FP_ITEM_OK)
		rc = -EIO;
	fp_result_clear(&r);
	if (rc < 0 || fp_pool_workers(pool, ws, WORKERS) != WORKERS) {
		fprintf(stderr, "bench-crash: the pool did not come up with %d workers\n", WORKERS);
		rc = -EIO;
		goto out;
	}
	/*
	 * A worker's pid is 0 until the zygote has answered for it, and
	 * kill(0, ...) would hit this whole process group.
	 */
	k.pid = ws[0].pid;
	if (k.pid <= 0) {
		fprintf(stderr, "bench-crash: worker 0 has no pid yet\n");
		rc = -EAGAIN;
		goto out;
	}

	items = calloc(n, sizeof(*items));
	if (!items) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		items[i].base = text;
		items[i].len = (size_t)snprintf(text, sizeof(text), "%u", ms);
	}
	copts.chunksize = 1;
	t0 = now_s();
	if (k.kill_ms) {
		rc = pthread_create(&thread, NULL, killer_main, &k);
		if (rc) {
			fprintf(stderr, "bench-crash: pthread_create: %s\n", strerror(rc));
			rc = -rc;
			goto out;
		}
		started = 1;
	}
	rc = fp_pool_map(pool, "sleep", items, n, &copts, &res);
	secs = now_s() - t0;
	if (started)
		pthread_join(thread, NULL);
	if (rc < 0) {
		fprintf(stderr, "bench-crash: fp_pool_map: %s\n", fp_strerror(rc));
		goto out;
	}
	if (k.err) {
		fprintf(stderr, "bench-crash: kill %d: %s\n", (int)k.pid, strerror(k.err));
		rc = -k.err;
		goto out;
	}
	rc = check(res, n, ms, k.kill_ms != 0, &ok, &failed, why, sizeof(why));
	printf("result name=crash backend=%s items=%u ms=%u kill_ms=%u seconds=%.6f "
	       "ok=%u failed=%u lost=0 hung=0 outcome=%s\n",
	       fp_loop_backend_name(fp_pool_loop(pool)), n, ms, k.kill_ms, secs, ok, failed,
	       rc < 0 ? "not_what_forkpool_promises" :
	       k.kill_ms ? "item_failed_naming_SIGKILL,_job_completed" : "all_done");
	if (rc < 0)
		fprintf(stderr, "bench-crash: %s\n", why);

out:
	if (res)
		fp_results_free(res, n);
	free(items);
	fp_pool_shutdown(pool, 2000);
	fp_pool_free(pool);
	return rc < 0 ? 1 : 0;
}
