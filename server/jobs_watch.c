/*
 * A job's watchers: callbacks after each item and at the end, which may
 * unwatch, watch, forget or cancel anything from inside (jobs.h).
 */
#include <errno.h>

#include "forkpool/list.h"
#include "jobs_impl.h"

void fp_job_watch(fp_job *job, struct fp_job_watch *w)
{
	w->prev = w->next = NULL;
	w->job = NULL;
	if (!job || job->ended)
		return;
	/*
	 * At the head: a watcher added during an on_item round is not reached
	 * by that round, so it hears only of items recorded after it watched.
	 */
	w->job = job;
	FP_LIST_PUSH(job->watchers, w);
}

void fp_job_unwatch(struct fp_job_watch *w)
{
	fp_job *job = w->job;

	if (!job)
		return;
	if (job->cursor == w)
		job->cursor = w->next;
	FP_LIST_UNLINK(job->watchers, w);
	w->prev = w->next = NULL;
	w->job = NULL;
}

int fp_job_watch_forget(fp_job *job, struct fp_job_watch *w)
{
	w->prev = w->next = NULL;
	w->job = NULL;
	if (!job || !job->finished || job->forgotten)
		return -EINVAL;
	/* A finished job's list held only watchers of its end, all gone by now. */
	w->job = job;
	FP_LIST_PUSH(job->watchers, w);
	return 0;
}

void fp__job_watchers_item(fp_job *job, size_t index)
{
	struct fp_job_watch *w = job->watchers;

	/*
	 * The cursor lives in the job so that fp_job_unwatch() can move it past
	 * a watcher removed from inside a callback. Rounds never nest: the pool
	 * does not call back from inside a callback, and on_end rounds take
	 * watchers off the head without a cursor.
	 */
	job->busy++;
	while (w && !job->ended) {
		job->cursor = w->next;
		if (w->on_item)
			w->on_item(w, job, index);
		w = job->cursor;
	}
	job->cursor = NULL;
	job->busy--;
}

void fp__job_watchers_end(fp_job *job)
{
	struct fp_job_watch *w;

	/* `ended` first: a watcher watching again from on_end is not linked. */
	job->ended = true;
	job->busy++;
	while ((w = job->watchers)) {
		fp_job_unwatch(w);
		if (w->on_end)
			w->on_end(w, job);
	}
	job->busy--;
}
