/*
 * Jobs over HTTP: the job document, the list (paged by a cursor), cancel and
 * forget, and the answers for jobs that are gone (410) or do not fit (507).
 * The results stream is api_stream.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000
/* DELETE waits this long for a cancelled job to settle before answering. */
#define CANCEL_WAIT_MS 5000

/*
 * `"value":V` or `"error":{"type":…,"message":…}` (and `"traceback":…` when
 * the task gave one): an item's outcome, without braces.
 */
void fp__api_item_members(struct sbuf *b, const struct fp_job_item *it)
{
	if (it->status == FP_ITEM_OK) {
		sbuf_add(b, "\"value\":", 8);
		sbuf_add(b, it->value, it->value_len);
		return;
	}
	sbuf_adds(b, "\"error\":{\"type\":\"");
	sbuf_adds(b, fp_item_status_name(it->status));
	sbuf_adds(b, "\",\"message\":");
	sbuf_json_string(b, it->message ? it->message : "", it->message ? strlen(it->message) : 0);
	if (it->traceback) {
		sbuf_adds(b, ",\"traceback\":");
		sbuf_json_string(b, it->traceback, strlen(it->traceback));
	}
	sbuf_adds(b, "}");
}

static void item_json(struct sbuf *b, const struct fp_job_item *it)
{
	sbuf_add(b, "{", 1);
	fp__api_item_members(b, it);
	sbuf_add(b, "}", 1);
}

/*
 * An entry of a document's "results": the item's line (pipelines) or
 * outcome, with how many times it was started.
 */
static void result_json(struct sbuf *b, const struct fp_job_item *it, bool pipeline)
{
	if (pipeline)
		fp__api_result_line(b, it, true);
	else
		item_json(b, it);
	/* The same object, one member more. */
	if (!b->oom && b->len && b->data[b->len - 1] == '}') {
		b->len--;
		sbuf_adds(b, ",\"attempts\":");
		sbuf_add_uint(b, it->attempts);
		sbuf_add(b, "}", 1);
	}
}

void fp__api_job_doc_head(struct sbuf *b, fp_job *job)
{
	size_t n = fp_job_total(job);

	/* Appends, not printf: a document an apply, tens of thousands a second. */
	sbuf_adds(b, "{\"id\":\"");
	sbuf_adds(b, fp_job_id(job));
	sbuf_adds(b, "\",\"kind\":\"");
	sbuf_adds(b, fp_job_kind_name(fp_job_kind(job)));
	sbuf_adds(b, "\",\"task\":");
	sbuf_json_string(b, fp_job_task(job), strlen(fp_job_task(job)));
	sbuf_adds(b, ",\"state\":\"");
	sbuf_adds(b, fp_job_state_name(fp_job_state(job)));
	sbuf_adds(b, "\",\"total\":");
	sbuf_add_uint(b, n);
	sbuf_adds(b, ",\"done\":");
	sbuf_add_uint(b, fp_job_done(job));
	sbuf_adds(b, ",\"failed\":");
	sbuf_add_uint(b, fp_job_failed(job));
	sbuf_adds(b, ",\"created_at\":");
	sbuf_json_time(b, fp_job_created_at(job));
	sbuf_adds(b, ",\"started_at\":");
	sbuf_json_time(b, fp_job_started_at(job));
	sbuf_adds(b, ",\"finished_at\":");
	sbuf_json_time(b, fp_job_finished_at(job));
	if (fp_job_kind(job) == FP_JOB_PIPELINE)
		fp__api_pipeline_doc(b, job);
}

void fp__api_job_doc(struct sbuf *b, fp_job *job, bool results)
{
	struct fp_job_item it;
	size_t i, n = fp_job_total(job);

	fp__api_job_doc_head(b, job);
	if (fp_job_kind(job) == FP_JOB_APPLY && n == 1) {
		fp_job_item(job, 0, &it);
		if (it.finished && it.status == FP_ITEM_OK) {
			sbuf_adds(b, ",\"result\":");
			sbuf_add(b, it.value, it.value_len);
		} else if (it.finished) {
			/* {"value":…} or {"error":{…}}: here the error object alone. */
			struct sbuf e;
			sbuf_init(&e);
			item_json(&e, &it);
			sbuf_adds(b, ",");
			sbuf_add(b, e.data + 1, e.len - 2);
			sbuf_free(&e);
		}
		if (it.finished) {
			sbuf_adds(b, ",\"attempts\":");
			sbuf_add_uint(b, it.attempts);
		}
	}
	if (results && fp_job_finished(job)) {
		sbuf_adds(b, ",\"results\":[");
		for (i = 0; i < n; i++) {
			fp_job_item(job, i, &it);
			if (i)
				sbuf_adds(b, ",");
			result_json(b, &it, fp_job_kind(job) == FP_JOB_PIPELINE);
		}
		sbuf_adds(b, "]");
	}
	sbuf_adds(b, "}");
}

void fp__api_job_get(fp_api *api, fp_http_request *req, fp_job *job)
{
	int64_t wait = fp__api_wait_ms(api, req);

	if (wait == -2) {
		fp__api_error(req, 400, "bad_request", "?wait= must be a number of seconds");
		return;
	}
	fp__api_answer_job(api, req, job, 200, wait, fp__api_want_results(req));
}

void fp__api_job_delete(fp_api *api, fp_http_request *req, fp_job *job)
{
	if (fp_job_finished(job)) {
		fp_jobs_forget(api->jobs, job);
		fp_http_respond(req, 204, NULL, NULL, 0);
		return;
	}
	fp_jobs_cancel(api->jobs, job);
	/* Killed workers and dropped items settle within a loop turn or two. */
	fp__api_answer_job(api, req, job, 200, CANCEL_WAIT_MS, false);
}

/* --- the list ------------------------------------------------------------ */

static const char *const list_params[] = { "state", "limit", "after", NULL };

/*
 * ?after= as the list's cursor: a "next" of an earlier page (the last job's
 * place in submission order, printed as a number, but opaque to clients),
 * or the id of a job still kept. 0 when absent; -1 after answering 400.
 */
static int list_after(fp_api *api, fp_http_request *req, uint64_t *before)
{
	const char *s = fp_http_query(req, "after");
	fp_job *job;
	char *end;

	*before = 0;
	if (!s)
		return 0;
	if (strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32) {
		job = fp_jobs_find(api->jobs, s);
		if (!job) {
			fp__api_error(req, 400, "bad_request", "?after=%s: no job with that id is kept"
				      " (any more); page with the \"next\" of the previous answer,"
				      " which outlives its job", s);
			return -1;
		}
		*before = fp_job_seq(job);
		return 0;
	}
	errno = 0;
	if (*s >= '1' && *s <= '9')
		*before = strtoull(s, &end, 10);
	if (!*before || *end || errno) {
		fp__api_error(req, 400, "bad_request", "?after= takes the \"next\" of a previous"
			      " answer (or a job's id), not '%.100s'", s);
		return -1;
	}
	return 0;
}

/*
 * GET /v1/jobs: newest first, by submission. A full page ends with "next",
 * the cursor ?after= takes to go on after its last job; null at the end.
 * Jobs submitted since do not shift the pages (they come before the first)
 * and jobs forgotten since do not either, the cursor's own included.
 */
void fp__api_jobs_list(fp_api *api, fp_http_request *req)
{
	const char *st = fp_http_query(req, "state"), *lim = fp_http_query(req, "limit");
	enum fp_job_state state;
	size_t limit = LIST_DEFAULT, n, i;
	uint64_t before = 0;
	fp_job **jobs;
	struct sbuf b;

	if (fp__api_only_params(req, list_params) ||
	    (!api->cjobs && list_after(api, req, &before) < 0))
		return;
	if (st && fp_job_state_parse(st, &state) < 0) {
		fp__api_error(req, 400, "bad_request",
			      "unknown state '%s'; states: queued, running, done, failed, cancelled", st);
		return;
	}
	if (lim) {
		char *end;
		unsigned long v = strtoul(lim, &end, 10);
		if (end == lim || *end || v == 0 || v > LIST_MAX) {
			fp__api_error(req, 400, "bad_request", "?limit= must be from 1 to %d", LIST_MAX);
			return;
		}
		limit = v;
	}
	if (api->cjobs) {
		/* With --cluster the list is the cluster's (api_cluster.c). */
		fp__api_cluster_list(api, req, st, limit);
		return;
	}
	/* One more than the page: whether there is a next one. */
	jobs = calloc(limit + 1, sizeof(*jobs));
	if (!jobs) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	n = fp_jobs_list(api->jobs, st ? &state : NULL, before, jobs, limit + 1);
	sbuf_init(&b);
	sbuf_adds(&b, "{\"jobs\":[");
	for (i = 0; i < n && i < limit; i++) {
		if (i)
			sbuf_adds(&b, ",");
		fp__api_job_doc(&b, jobs[i], false);
	}
	if (n > limit)
		sbuf_printf(&b, "],\"next\":\"%llu\"}",
			    (unsigned long long)fp_job_seq(jobs[limit - 1]));
	else
		sbuf_adds(&b, "],\"next\":null}");
	fp__api_json(req, 200, &b);
	sbuf_free(&b);
	free(jobs);
}

/* --- gone and full ------------------------------------------------------- */

/*
 * A size for a message: exact in the largest unit that divides it when that
 * reads short ("3500 KiB", "1 GiB": limits as they were given), else to a
 * tenth ("812.3 MiB").
 */
static const char *size_text(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 4;

	while (u && (n >> (10 * u)) == 0)
		u--;
	for (unsigned e = u; e; e--) {
		if (n % ((uint64_t)1 << (10 * e)) == 0 && (n >> (10 * e)) < 10000) {
			snprintf(buf, len, "%llu %s", (unsigned long long)(n >> (10 * e)), units[e]);
			return buf;
		}
	}
	if (!u)
		snprintf(buf, len, "%llu bytes", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", (double)n / (double)((uint64_t)1 << (10 * u)), units[u]);
	return buf;
}

bool fp__api_job_gone(fp_api *api, fp_http_request *req, const char *id)
{
	const struct fp_jobs_options *o = fp_jobs_get_options(api->jobs);
	enum fp_job_gone why;
	uint64_t at;
	char size[32];

	if (!fp_jobs_gone(api->jobs, id, &why, &at))
		return false;
	switch (why) {
	case FP_JOB_GONE_TTL:
		fp__api_error(req, 410, "expired", "job %s expired: finished jobs are kept for %llu s"
			      " (--job-ttl)", id, (unsigned long long)(o->ttl_ms / 1000));
		break;
	case FP_JOB_GONE_MAX_JOBS:
		fp__api_error(req, 410, "expired", "job %s was evicted: only the %zu most recently"
			      " finished jobs are kept (--max-jobs)", id, o->max_jobs);
		break;
	case FP_JOB_GONE_MEMORY:
		fp__api_error(req, 410, "expired", "job %s was evicted to keep the results held under"
			      " %s (--max-results-memory), oldest finished first", id,
			      size_text(o->max_results_bytes, size, sizeof(size)));
		break;
	case FP_JOB_GONE_DELETED:
	default:
		fp__api_error(req, 410, "expired", "job %s was deleted", id);
		break;
	}
	return true;
}

void fp__api_no_room(fp_api *api, fp_http_request *req)
{
	const struct fp_jobs_options *o = fp_jobs_get_options(api->jobs);
	struct fp_jobs_stats st;
	char limit[32], need[32], held[32];

	fp_jobs_stats(api->jobs, &st);
	size_text(o->max_results_bytes, limit, sizeof(limit));
	size_text(st.refused_need, need, sizeof(need));
	size_text(st.refused_held, held, sizeof(held));
	if (st.refused_need > o->max_results_bytes)
		fp__api_error(req, 507, "insufficient_storage", "this job's results would need about %s"
			      " (estimated from its items), over the %s the server keeps"
			      " (--max-results-memory)", need, limit);
	else
		fp__api_error(req, 507, "insufficient_storage", "no room for this job's results (about"
			      " %s, estimated from its items): %s of the %s limit (--max-results-memory)"
			      " are held by running jobs and results being read; try again later",
			      need, held, limit);
}
