/*
 * A gearman worker for scripts/bench peers: the same trivial work as
 * forkpool's demo `square`, written as a gearman user would write it.
 *
 *   gearman-worker HOST PORT
 *
 * Registers the function "square": the workload is a decimal integer, the
 * result its square in decimal. A workload that is not an integer, or whose
 * square does not fit in 64 bits, fails the job (WORK_FAIL) and says why on
 * stderr. One job at a time, forever; the bench stops the process by pid.
 * Exits 1 when the job server goes away or refuses it.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libgearman-1.0/gearman.h>

#include "bench-stats.h"

/* A decimal int64 and its NUL. */
#define NUM_MAX 24

/* gearman_worker_fn: the result is malloc()ed, and libgearman frees it. */
static void *square(gearman_job_st *job, void *context, size_t *result_size,
		    gearman_return_t *ret)
{
	const char *w = gearman_job_workload(job);
	size_t len = gearman_job_workload_size(job);
	char text[NUM_MAX], *end, *out;
	long long x;
	int n;

	*result_size = 0;
	*ret = GEARMAN_WORK_FAIL;
	if (len == 0 || len >= sizeof(text)) {
		fprintf(stderr, "gearman-worker: square: workload of %zu bytes is not an integer\n", len);
		return NULL;
	}
	memcpy(text, w, len);
	text[len] = '\0';
	errno = 0;
	x = strtoll(text, &end, 10);
	if (errno || *end || end == text) {
		fprintf(stderr, "gearman-worker: square: workload '%s' is not an integer\n", text);
		return NULL;
	}
	if (x > 3037000499LL || x < -3037000499LL) {
		fprintf(stderr, "gearman-worker: square: %lld squared does not fit in 64 bits\n", x);
		return NULL;
	}
	out = malloc(NUM_MAX);
	if (!out)
		return NULL;
	n = snprintf(out, NUM_MAX, "%lld", x * x);
	*result_size = (size_t)n;
	*ret = GEARMAN_SUCCESS;
	return out;
}

int main(int argc, char **argv)
{
	gearman_worker_st *w;
	gearman_return_t ret;
	size_t port;
	int rc = 1;

	if (argc != 3 || bench_parse_size(argv[2], &port) < 0 || port == 0 || port > 65535) {
		fprintf(stderr, "usage: gearman-worker HOST PORT\n");
		return 2;
	}
	w = gearman_worker_create(NULL);
	if (!w) {
		fprintf(stderr, "gearman-worker: gearman_worker_create failed\n");
		return 1;
	}
	ret = gearman_worker_add_server(w, argv[1], (in_port_t)port);
	if (ret != GEARMAN_SUCCESS) {
		fprintf(stderr, "gearman-worker: add server %s:%zu: %s\n", argv[1], port,
			gearman_worker_error(w));
		goto out;
	}
	ret = gearman_worker_add_function(w, "square", 0, square, NULL);
	if (ret != GEARMAN_SUCCESS) {
		fprintf(stderr, "gearman-worker: register square: %s\n", gearman_worker_error(w));
		goto out;
	}
	for (;;) {
		ret = gearman_worker_work(w);
		if (ret != GEARMAN_SUCCESS && ret != GEARMAN_WORK_FAIL) {
			fprintf(stderr, "gearman-worker: %s\n", gearman_worker_error(w));
			break;
		}
	}
out:
	gearman_worker_free(w);
	return rc;
}
