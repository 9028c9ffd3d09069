/*
 * Clock and percentile helpers shared by the benchmark clients that are not
 * forkpool itself (gearman-client.c, http-rtt.c), so that every round trip in
 * scripts/bench is reduced to p50/p99 by the same method as bench-pool.c and
 * pool_bench.py: nearest rank over the sorted samples.
 */
#ifndef FP_BENCH_STATS_H
#define FP_BENCH_STATS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p of the samples at or below it. */
static inline double bench_percentile(const double *sorted, size_t n, double p)
{
	size_t rank = (size_t)(p * (double)n + 0.999999);

	if (n == 0)
		return 0.0;
	if (rank < 1)
		rank = 1;
	return sorted[rank > n ? n - 1 : rank - 1];
}

/* A decimal count or size, no sign, nothing after it. */
static inline int bench_parse_size(const char *s, size_t *out)
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

#endif
