/*
 * POST /v1/pipelines: a pipeline of stages over items, as a job.
 *
 *   {"stages":[{"task":"words"},{"task":"lower","workers":1,"buffer":100}],
 *    "items":[...], "reduce":{"task":"count","batch":256}, "ordered":false,
 *    "timeout_ms":..., "retries":..., "retry_on":["crash","timeout"], "concurrency":N}
 *
 * or NDJSON items with the rest in the query, as an NDJSON map has it:
 *   /v1/pipelines?stages=words,lower&workers=0,1&buffer=,100&reduce=count
 *
 * Every mistake is answered before anything runs, with a 400 that names the
 * stage (by index and task) and the member that is wrong; a member or query
 * parameter not in this file's lists is refused as unknown. Also the pipeline
 * members of a job's document (its stages' counters, the reduced value).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

#define MAX_STAGES 64
#define MAX_STAGE_WORKERS 100000
#define MAX_BUFFER (1u << 24)
#define MAX_BATCH 1000000
#define MAX_RETRIES 100
#define MAX_TIMEOUT_MS (INT64_MAX / 1000000)

struct pipeline_req {
	fp_stage stages[MAX_STAGES];
	size_t nstages;
	fp_pipeline_options po;
	int64_t timeout_ms;        /* the default for stages that do not say */
	int64_t retries;
	unsigned retry_on;
	/* Every stage's cap: as its `workers`, whichever is smaller; 0 none. */
	int64_t concurrency;
	const struct fp_job_idem *idem;
};

/*
 * As the pool takes it: an exec pool's task is taken before that pool's
 * program said which tasks it has (its items then fail in the worker if it
 * has no such task), as apply and map take it.
 */
static bool task_exists(fp_api *api, const char *name)
{
	return fp_pool_has_task(api->pool, name) != 0;
}

/* Unknown tasks named with their stage, before the pool is asked. */
static int check_tasks(fp_api *api, fp_http_request *req, const struct pipeline_req *p)
{
	char where[64];

	for (size_t i = 0; i < p->nstages; i++) {
		if (!task_exists(api, p->stages[i].task)) {
			snprintf(where, sizeof(where), " in stage %zu", i);
			fp__api_unknown_task(api, req, p->stages[i].task, where);
			return -EINVAL;
		}
	}
	if (p->po.reduce && !task_exists(api, p->po.reduce)) {
		fp__api_unknown_task(api, req, p->po.reduce, " in reduce");
		return -EINVAL;
	}
	return 0;
}

/* The task to name for submit error err: the one whose pool is unavailable, if that is it. */
static const char *refused_task(fp_api *api, const struct pipeline_req *p, int err)
{
	for (size_t i = 0; err == FP_EUNAVAILABLE && i < p->nstages; i++)
		if (fp_pool_unavailable(api->pool, p->stages[i].task))
			return p->stages[i].task;
	if (err == FP_EUNAVAILABLE && p->po.reduce && fp_pool_unavailable(api->pool, p->po.reduce))
		return p->po.reduce;
	return p->stages[0].task;
}

/*
 * `text` non-NULL: the items are fp__api_ndjson_items()'s array pointing
 * into `text`, both taken by the job (lent to the pool) or freed.
 */
static void submit(fp_api *api, fp_http_request *req, struct pipeline_req *p,
		   struct fp_buf *items, size_t n, char *text)
{
	fp_job *job;
	bool answered;
	int err;

	for (size_t i = 0; i < p->nstages; i++) {
		if (p->stages[i].timeout_ms < 0)
			p->stages[i].timeout_ms = p->timeout_ms;
		if (p->stages[i].retries == UINT32_MAX)
			p->stages[i].retries = (unsigned)p->retries;
		if (!p->stages[i].retry_on)
			p->stages[i].retry_on = p->retry_on;
		/* One meaning: a job's concurrency is each stage's `workers` cap. */
		if (p->concurrency && (!p->stages[i].workers ||
				       p->stages[i].workers > (uint64_t)p->concurrency))
			p->stages[i].workers = (unsigned)p->concurrency;
	}
	answered = check_tasks(api, req, p) != 0;
	if (answered) {
		err = -EINVAL;
		if (text) {
			fp_ndjson_free(items);
			fp_mem_free(text);
		}
	} else if (text) {
		err = fp_jobs_submit_pipeline_taking(api->jobs, p->stages, p->nstages, items, n,
						     text, &p->po, p->idem, &job);
	} else {
		err = fp_jobs_submit_pipeline_idem(api->jobs, p->stages, p->nstages, items, n,
						   &p->po, p->idem, &job);
	}
	if (answered)
		return;
	if (err == -EINVAL)
		fp__api_error(req, 400, "bad_request", "the pool refused this pipeline: %s",
			      fp_strerror(err));
	else if (err)
		fp__api_submit_error(api, req, refused_task(api, p, err), err);
	else
		fp__api_submitted(api, req, job);
}

/* --- JSON ---------------------------------------------------------------- */

/* An integer member from lo to hi, or `dflt` when absent or null. */
static int member_int(fp_http_request *req, json_t *obj, const char *key, int64_t lo,
		      int64_t hi, int64_t dflt, int64_t *out, const char *where)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		fp__api_error(req, 400, "bad_request", "%s\"%s\" must be an integer from %lld to %lld",
			      where, key, (long long)lo, (long long)hi);
		return -EINVAL;
	}
	*out = json_integer_value(v);
	return 0;
}

/* The known members and parameters of each form, one list each. */
static const char *const stage_members[] = { "task", "workers", "buffer", "timeout_ms",
					     "retries", "retry_on", NULL };
static const char *const reduce_members[] = { "task", "batch", NULL };
static const char *const body_members[] = { "stages", "items", "reduce", "ordered",
					    "timeout_ms", "retries", "retry_on", "concurrency",
					    NULL };
static const char *const json_params[] = { "wait", "results", NULL };
static const char *const ndjson_params[] = { "stages", "workers", "buffer", "stage_timeout_ms",
					     "stage_retries", "reduce", "batch", "ordered",
					     "timeout_ms", "retries", "retry_on", "concurrency",
					     "wait", "results", NULL };

static int json_stage(fp_http_request *req, json_t *js, size_t i, fp_stage *st)
{
	char where[96];
	json_t *task;
	int64_t workers, buffer, timeout, retries;

	*st = (fp_stage)FP_STAGE_DEFAULT;
	/* "words" is short for {"task":"words"}. */
	if (json_is_string(js)) {
		st->task = json_string_value(js);
		st->retries = UINT32_MAX;
		return 0;
	}
	if (!json_is_object(js)) {
		fp__api_error(req, 400, "bad_request",
			      "stage %zu must be an object like {\"task\":\"NAME\"} or a task name", i);
		return -EINVAL;
	}
	task = json_object_get(js, "task");
	if (!json_is_string(task) || !*json_string_value(task)) {
		fp__api_error(req, 400, "bad_request",
			      "stage %zu: \"task\" must be a string naming a task", i);
		return -EINVAL;
	}
	snprintf(where, sizeof(where), "stage %zu (%.40s): ", i, json_string_value(task));
	if (fp__api_only_members(req, js, stage_members, where) ||
	    member_int(req, js, "workers", 0, MAX_STAGE_WORKERS, 0, &workers, where) ||
	    member_int(req, js, "buffer", 1, MAX_BUFFER, 0, &buffer, where) ||
	    member_int(req, js, "timeout_ms", 0, MAX_TIMEOUT_MS, -1, &timeout, where) ||
	    member_int(req, js, "retries", 0, MAX_RETRIES, UINT32_MAX, &retries, where) ||
	    fp__api_retry_on(req, json_object_get(js, "retry_on"), &st->retry_on, where))
		return -EINVAL;
	st->task = json_string_value(task);
	st->workers = (unsigned)workers;
	st->buffer = (size_t)buffer;
	st->timeout_ms = timeout;
	/* UINT32_MAX until the pipeline's default is known. */
	st->retries = (unsigned)retries;
	return 0;
}

static int json_reduce(fp_http_request *req, json_t *jr, fp_pipeline_options *po)
{
	json_t *task;
	int64_t batch;

	if (!jr || json_is_null(jr))
		return 0;
	if (json_is_string(jr)) {
		po->reduce = json_string_value(jr);
		return 0;
	}
	task = json_is_object(jr) ? json_object_get(jr, "task") : NULL;
	if (!json_is_string(task) || !*json_string_value(task)) {
		fp__api_error(req, 400, "bad_request",
			      "\"reduce\" must be a task name or {\"task\":\"NAME\",\"batch\":N}");
		return -EINVAL;
	}
	if (fp__api_only_members(req, jr, reduce_members, "reduce: ") ||
	    member_int(req, jr, "batch", 2, MAX_BATCH, 0, &batch, "reduce: "))
		return -EINVAL;
	po->reduce = json_string_value(task);
	po->reduce_batch = (size_t)batch;
	return 0;
}

static void post_json(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem)
{
	struct pipeline_req p = { .po = FP_PIPELINE_OPTIONS_DEFAULT, .idem = idem };
	json_t *body, *stages, *items, *ordered, *v;
	struct fp_buf *bufs = NULL;
	size_t i, n = 0;

	if (fp__api_only_params(req, json_params) || !(body = fp__api_parse_body(req)))
		return;
	if (fp__api_only_members(req, body, body_members, ""))
		goto out;
	stages = json_object_get(body, "stages");
	items = json_object_get(body, "items");
	ordered = json_object_get(body, "ordered");
	if (!json_is_array(stages) || json_array_size(stages) == 0) {
		fp__api_error(req, 400, "bad_request",
			      "\"stages\" must be a non-empty array of {\"task\":\"NAME\",...}");
		goto out;
	}
	if (json_array_size(stages) > MAX_STAGES) {
		fp__api_error(req, 400, "bad_request", "at most %d stages, not %zu", MAX_STAGES,
			      json_array_size(stages));
		goto out;
	}
	if (!json_is_array(items)) {
		fp__api_error(req, 400, "bad_request", "\"items\" must be an array");
		goto out;
	}
	if (ordered && !json_is_boolean(ordered) && !json_is_null(ordered)) {
		fp__api_error(req, 400, "bad_request", "\"ordered\" must be true or false");
		goto out;
	}
	p.po.ordered = json_is_true(ordered);
	if (member_int(req, body, "timeout_ms", 0, MAX_TIMEOUT_MS, -1, &p.timeout_ms, "") ||
	    member_int(req, body, "retries", 0, MAX_RETRIES, 0, &p.retries, "") ||
	    member_int(req, body, "concurrency", 0, MAX_STAGE_WORKERS, 0, &p.concurrency, "") ||
	    fp__api_retry_on(req, json_object_get(body, "retry_on"), &p.retry_on, "") ||
	    json_reduce(req, json_object_get(body, "reduce"), &p.po))
		goto out;
	json_array_foreach(stages, i, v) {
		if (json_stage(req, v, i, &p.stages[i]))
			goto out;
	}
	p.nstages = json_array_size(stages);
	if (fp__api_json_items(req, items, &bufs, &n))
		goto out;
	submit(api, req, &p, bufs, n, NULL);
out:
	fp__api_json_items_free(bufs, n);
	json_decref(body);
}

/* --- NDJSON: the pipeline in the query ----------------------------------- */

/* The k-th field of a comma list ("" when there are fewer), as [s, s+len). */
static const char *list_field(const char *list, size_t k, size_t *len)
{
	const char *s = list, *c;

	while (k-- && s) {
		c = strchr(s, ',');
		s = c ? c + 1 : NULL;
	}
	if (!s) {
		*len = 0;
		return "";
	}
	c = strchr(s, ',');
	*len = c ? (size_t)(c - s) : strlen(s);
	return s;
}

static size_t list_count(const char *list)
{
	size_t n = 1;

	for (; *list; list++)
		n += *list == ',';
	return n;
}

/* Field k of ?key= as an integer from lo to hi; an empty field is `dflt`. */
static int query_list_int(fp_http_request *req, const char *key, size_t k, const char *task,
			  int64_t lo, int64_t hi, int64_t dflt, int64_t *out)
{
	const char *list = fp_http_query(req, key), *f;
	char tmp[32], *end;
	size_t len;
	long long v;

	*out = dflt;
	if (!list)
		return 0;
	f = list_field(list, k, &len);
	if (!len)
		return 0;
	if (len < sizeof(tmp)) {
		memcpy(tmp, f, len);
		tmp[len] = '\0';
		errno = 0;
		v = strtoll(tmp, &end, 10);
		if (*end == '\0' && !errno && v >= lo && v <= hi) {
			*out = v;
			return 0;
		}
	}
	fp__api_error(req, 400, "bad_request",
		      "stage %zu (%s): ?%s= must list integers from %lld to %lld (empty: the default)",
		      k, task, key, (long long)lo, (long long)hi);
	return -EINVAL;
}

static int query_int(fp_http_request *req, const char *key, int64_t lo, int64_t hi,
		     int64_t dflt, int64_t *out)
{
	const char *s = fp_http_query(req, key);
	char *end;
	long long v;

	*out = dflt;
	if (!s)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi) {
		fp__api_error(req, 400, "bad_request", "?%s= must be an integer from %lld to %lld",
			      key, (long long)lo, (long long)hi);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static void post_ndjson(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem)
{
	struct pipeline_req p = { .po = FP_PIPELINE_OPTIONS_DEFAULT, .idem = idem };
	const char *list = fp_http_query(req, "stages"), *ord = fp_http_query(req, "ordered");
	const char *reduce = fp_http_query(req, "reduce");
	int64_t workers, buffer, timeout, retries, batch;
	char *names = NULL, *c;
	struct fp_buf *bufs = NULL;
	char *text;
	size_t i, n;

	if (fp__api_only_params(req, ndjson_params))
		return;
	if (!list || !*list) {
		fp__api_error(req, 400, "bad_request",
			      "an NDJSON pipeline names its stages in the query: "
			      "/v1/pipelines?stages=TASK,TASK,...");
		return;
	}
	p.nstages = list_count(list);
	if (p.nstages > MAX_STAGES) {
		fp__api_error(req, 400, "bad_request", "at most %d stages, not %zu", MAX_STAGES,
			      p.nstages);
		return;
	}
	if (ord && strcmp(ord, "1") != 0 && strcmp(ord, "true") != 0 &&
	    strcmp(ord, "0") != 0 && strcmp(ord, "false") != 0) {
		fp__api_error(req, 400, "bad_request", "?ordered= must be true or false");
		return;
	}
	p.po.ordered = ord && (strcmp(ord, "1") == 0 || strcmp(ord, "true") == 0);
	if (reduce && !*reduce) {
		fp__api_error(req, 400, "bad_request", "?reduce= must name a task");
		return;
	}
	p.po.reduce = reduce;
	if (query_int(req, "batch", 2, MAX_BATCH, 0, &batch) ||
	    query_int(req, "timeout_ms", 0, MAX_TIMEOUT_MS, -1, &p.timeout_ms) ||
	    query_int(req, "retries", 0, MAX_RETRIES, 0, &p.retries) ||
	    query_int(req, "concurrency", 0, MAX_STAGE_WORKERS, 0, &p.concurrency) ||
	    fp__api_retry_on_query(req, &p.retry_on))
		return;
	p.po.reduce_batch = (size_t)batch;
	/* The stage names, cut in place in a copy of the list. */
	names = strdup(list);
	if (!names) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	for (i = 0, c = names; i < p.nstages; i++) {
		char *comma = strchr(c, ',');
		if (comma)
			*comma = '\0';
		if (!*c) {
			fp__api_error(req, 400, "bad_request",
				      "stage %zu has no task: ?stages= is TASK,TASK,...", i);
			goto out;
		}
		p.stages[i] = (fp_stage)FP_STAGE_DEFAULT;
		p.stages[i].task = c;
		if (query_list_int(req, "workers", i, c, 0, MAX_STAGE_WORKERS, 0, &workers) ||
		    query_list_int(req, "buffer", i, c, 1, MAX_BUFFER, 0, &buffer) ||
		    query_list_int(req, "stage_timeout_ms", i, c, 0, MAX_TIMEOUT_MS, -1, &timeout) ||
		    query_list_int(req, "stage_retries", i, c, 0, MAX_RETRIES, UINT32_MAX, &retries))
			goto out;
		p.stages[i].workers = (unsigned)workers;
		p.stages[i].buffer = (size_t)buffer;
		p.stages[i].timeout_ms = timeout;
		p.stages[i].retries = (unsigned)retries;
		c = comma ? comma + 1 : c + strlen(c);
	}
	if (fp__api_ndjson_items(req, &bufs, &n, &text))
		goto out;
	submit(api, req, &p, bufs, n, text);
out:
	free(names);
}

void fp__api_post_pipeline(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem)
{
	if (fp__api_media_type_is(req, "application/x-ndjson"))
		post_ndjson(api, req, idem);
	else
		post_json(api, req, idem);
}

/* --- the job document ---------------------------------------------------- */

void fp__api_pipeline_doc(struct sbuf *b, fp_job *job)
{
	struct fp_stage_stats st[MAX_STAGES + 1];
	size_t n = fp_job_stage_stats(job, st, MAX_STAGES + 1), i, pos;
	bool reduce = fp_job_has_reduce(job);
	struct fp_job_item it;

	if (n > MAX_STAGES + 1)
		n = MAX_STAGES + 1;
	sbuf_printf(b, ",\"inputs\":%zu,\"ordered\":%s", fp_job_inputs(job),
		    fp_job_ordered(job) ? "true" : "false");
	if (fp_job_lost(job))
		sbuf_printf(b, ",\"lost\":%zu", fp_job_lost(job));
	if (fp_job_overflowed(job))
		sbuf_printf(b, ",\"error\":{\"type\":\"too_many_outputs\",\"message\":"
			    "\"the pipeline made more than %zu outputs, the most one job keeps: it was "
			    "cancelled, and its outputs after those are lost\"}", fp_job_total(job));
	sbuf_adds(b, ",\"stages\":[");
	for (i = 0; i < n; i++) {
		const char *task = fp_job_stage_task(job, i);
		sbuf_adds(b, i ? ",{\"task\":" : "{\"task\":");
		sbuf_json_string(b, task, strlen(task));
		if (reduce && i == n - 1)
			sbuf_adds(b, ",\"reduce\":true");
		sbuf_printf(b, ",\"in\":%llu,\"done\":%llu,\"failed\":%llu,\"out\":%llu,"
			    "\"waiting\":%llu,\"waiting_max\":%llu,\"running\":%llu,\"fused\":%llu}",
			    (unsigned long long)st[i].in, (unsigned long long)st[i].done,
			    (unsigned long long)st[i].failed, (unsigned long long)st[i].out,
			    (unsigned long long)st[i].waiting, (unsigned long long)st[i].waiting_max,
			    (unsigned long long)st[i].running, (unsigned long long)st[i].fused);
	}
	sbuf_adds(b, "]");
	pos = fp_job_reduced(job);
	if (pos != SIZE_MAX) {
		fp_job_item(job, pos, &it);
		if (it.finished && it.status == FP_ITEM_OK) {
			sbuf_adds(b, ",\"result\":");
			sbuf_add(b, it.value, it.value_len);
		}
	}
}
