/*
 * The job store's insides shared by jobs.c (the store, apply and map) and
 * jobs_pipeline.c (pipelines): how a kind of job starts its pool call, and
 * the state a kind keeps beside the store's records.
 */
#ifndef FP_SERVER_JOBS_IMPL_H
#define FP_SERVER_JOBS_IMPL_H

#include "jobs.h"

struct fp__job_start {
	enum fp_job_kind kind;
	const char *name;              /* the job's task name */
	size_t n;                      /* items that go in */
	const struct fp_buf *items;    /* apply and map */
	const fp_call_options *opts;
	/*
	 * Start the pool call with on_item/on_done and `job` as their data
	 * (a kind may pass callbacks of its own that end by calling these).
	 */
	int (*start)(fp_pool *pool, fp_job *job, const void *arg, fp_item_cb on_item,
		     fp_done_cb on_done, uint64_t *call_id);
	const void *arg;
	/* The job's once submitted (freed with ext_free); the caller's on failure. */
	void *ext;
	void (*ext_free)(void *ext);
};

/* Submit: the common part of every kind (limits, id, lists). */
int fp__jobs_submit(fp_jobs *jobs, const struct fp__job_start *s, fp_job **out);
void *fp__job_ext(const fp_job *job);
/* A tombstone: forgotten while its call was in the pool, keeping nothing. */
bool fp__job_forgotten(const fp_job *job);
uint64_t fp__job_call_id(const fp_job *job);
fp_pool *fp__jobs_pool(const fp_jobs *jobs);

#endif
