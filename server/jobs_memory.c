/*
 * The job store's results memory (jobs.h, "Results memory"): room under
 * max_results_bytes, made by forgetting finished jobs oldest first; what a
 * job is estimated to need before it runs; the outcome kept when there is no
 * room; and readers' holds, which make a finished job's bytes not freeable.
 * What each job holds is counted where its records are made (jobs_record.c).
 */
#include <errno.h>
#include <string.h>

#include "jobs_impl.h"

/*
 * Room for `need` more bytes under max_results_bytes, forgetting finished
 * jobs that no reader holds, oldest first, if that makes it. False, having
 * forgotten nothing, when even all of them would not.
 */
bool fp__jobs_results_room(fp_jobs *jobs, uint64_t need)
{
	uint64_t limit = jobs->opts.max_results_bytes;
	uint64_t freeable = jobs->fin_bytes - jobs->fin_held_bytes;
	fp_job *job;

	if (!limit || !need || (jobs->stats.results_bytes <= limit &&
				need <= limit - jobs->stats.results_bytes))
		return true;
	if (need > limit || jobs->stats.results_bytes - freeable > limit - need)
		return false;
	while (jobs->stats.results_bytes > limit - need) {
		/*
		 * From the head each time: a forgotten job's watchers may forget
		 * others. Held ones would free nothing and stay.
		 */
		for (job = jobs->fin_head; job && job->refs; job = job->fnext)
			;
		if (!job)
			break;
		fp__jobs_forget_why(jobs, job, FP_JOB_GONE_MEMORY);
	}
	return jobs->stats.results_bytes <= limit - need;
}

/*
 * An outcome for which there is no room is kept as this instead: a value is
 * replaced by a too_large error, a message by the limit's (both by reference,
 * costing nothing), so the item still ends and the job goes on.
 */
const struct fp_result *fp__job_result_to_keep(fp_job *job, const struct fp_result *r,
					       struct fp_result *instead)
{
	fp_jobs *jobs = job->jobs;

	if (!jobs->opts.max_results_bytes ||
	    fp__jobs_results_room(jobs, fp__job_record_need(job, r)))
		return r;
	jobs->stats.results_dropped++;
	*instead = *r;
	if (instead->status == FP_ITEM_OK)
		instead->status = FP_ITEM_TOO_LARGE;
	instead->value = NULL;
	instead->value_len = 0;
	instead->message = fp__over_limit_message;
	instead->traceback = NULL;
	return instead;
}

/*
 * What a job will hold, estimated before it runs: itself, its records, and
 * as much text as its items (arguments) have, a result often being of their
 * order. Only for the admission check: what it holds is counted as it comes.
 */
uint64_t fp__job_estimate(const struct fp__job_start *s)
{
	uint64_t need = sizeof(struct fp_job) + strlen(s->name) + 1;
	size_t rec = s->kind == FP_JOB_PIPELINE ? sizeof(struct job_item) + sizeof(struct job_origin)
		     : s->n > 1 ? sizeof(struct job_item) + sizeof(uint32_t) : 0;

	need += (uint64_t)s->n * rec;
	for (size_t i = 0; s->items && i < s->n; i++)
		need += s->items[i].len + 1;
	return need;
}

int fp_jobs_fits_alone(fp_jobs *jobs, enum fp_job_kind kind, const char *task,
		       const struct fp_buf *items, size_t n)
{
	struct fp__job_start s = { .kind = kind, .name = task, .n = n, .items = items };
	uint64_t need;

	if (!jobs->opts.max_results_bytes)
		return 0;
	need = fp__job_estimate(&s);
	if (need <= jobs->opts.max_results_bytes)
		return 0;
	jobs->stats.rejected_memory++;
	jobs->stats.refused_need = need;
	jobs->stats.refused_held = 0;
	return -ENOSPC;
}

void fp_job_ref(fp_job *job)
{
	if (job->refs++ == 0 && job->finished && !job->forgotten && job->jobs)
		job->jobs->fin_held_bytes += job->held;
}

void fp_job_unref(fp_job *job)
{
	if (!job->refs || --job->refs)
		return;
	if (job->finished && !job->forgotten && job->jobs)
		job->jobs->fin_held_bytes -= job->held;
	fp__job_settle(job);
}
