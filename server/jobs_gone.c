/*
 * The ids of forgotten jobs, so that asking for one is answered "gone, and
 * why" (410) rather than "never heard of it" (404): the last
 * FP_JOBS_GONE_KEPT of them, in a ring whose oldest record is overwritten,
 * found through a chained hash table of slot numbers.
 *
 * Bounded by count, not time, so that it costs at most 2.25 MiB however
 * many jobs go through. Both arrays come from calloc at the first forget:
 * large enough to be fresh mappings, whose pages the kernel zeroes only as
 * they are touched, so a store that forgets a few jobs pays for a few pages.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs_impl.h"

/* A power of two, as large as the ring: chains stay about one long. */
#define GONE_BUCKETS FP_JOBS_GONE_KEPT

static uint32_t *bucket_of(const fp_jobs *jobs, const uint8_t *id)
{
	uint64_t h;

	/* The ids are random: any 64 of their bits are a fine hash. */
	memcpy(&h, id + 8, sizeof(h));
	return &jobs->gone_buckets[h & (GONE_BUCKETS - 1)];
}

/* Take slot `i` out of its chain, before it is reused for a newer id. */
static void chain_remove(fp_jobs *jobs, uint32_t i)
{
	uint32_t *p = bucket_of(jobs, jobs->gone[i].id);

	while (*p && *p != i + 1)
		p = &jobs->gone[*p - 1].next;
	if (*p)
		*p = jobs->gone[i].next;
}

void fp__jobs_gone_add(fp_jobs *jobs, const uint8_t *id, enum fp_job_gone why)
{
	struct gone_rec *g;
	struct timespec ts;
	uint32_t i, *head;

	if (!jobs->gone) {
		jobs->gone = calloc(FP_JOBS_GONE_KEPT, sizeof(*jobs->gone));
		jobs->gone_buckets = calloc(GONE_BUCKETS, sizeof(*jobs->gone_buckets));
		if (!jobs->gone || !jobs->gone_buckets) {
			/* Without them a gone job is merely unknown: 404, not 410. */
			fp__jobs_gone_free(jobs);
			return;
		}
	}
	i = (uint32_t)jobs->gone_next;
	jobs->gone_next = (jobs->gone_next + 1) % FP_JOBS_GONE_KEPT;
	if (jobs->gone_count == FP_JOBS_GONE_KEPT)
		chain_remove(jobs, i);
	else
		jobs->gone_count++;
	g = &jobs->gone[i];
	memcpy(g->id, id, ID_BYTES);
	clock_gettime(CLOCK_REALTIME, &ts);
	g->at_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	g->why = (uint8_t)why;
	head = bucket_of(jobs, id);
	g->next = *head;
	*head = i + 1;
}

void fp__jobs_gone_free(fp_jobs *jobs)
{
	free(jobs->gone);
	free(jobs->gone_buckets);
	jobs->gone = NULL;
	jobs->gone_buckets = NULL;
	jobs->gone_next = jobs->gone_count = 0;
}

int fp_jobs_gone(const fp_jobs *jobs, const char *id, enum fp_job_gone *why, uint64_t *at_ms)
{
	uint8_t raw[ID_BYTES];
	uint32_t i;

	if (!jobs || !id || !jobs->gone || fp__job_id_parse(id, raw) < 0)
		return 0;
	for (i = *bucket_of(jobs, raw); i; i = jobs->gone[i - 1].next) {
		const struct gone_rec *g = &jobs->gone[i - 1];

		if (memcmp(g->id, raw, ID_BYTES) == 0) {
			if (why)
				*why = (enum fp_job_gone)g->why;
			if (at_ms)
				*at_ms = g->at_ms;
			return 1;
		}
	}
	return 0;
}
