/*
 * The Idempotency-Key header of a submission (POST /v1/apply, /v1/map,
 * /v1/pipelines): the key checked, the request hashed, and a request whose
 * key a kept job holds answered here, with that job when it is the same
 * request (200, Idempotent-Replayed: true) or 409 when it is another one.
 * The store keeps the key with its job and lets it go when the job is
 * forgotten (jobs.h); this file only reads requests.
 *
 * The same request is the same route, the same body bytes, the same media
 * type and the same query parameters, apart from the two that only say how
 * to answer (?wait, ?results): a retry may wait where the first try did not.
 * Parameters are compared by name whatever their order, repeats in the order
 * sent (the first one is the one used).
 *
 * With a journal, a replay is answered once what was appended before it is
 * as safe as --fsync makes it (api.c's journal waits): the job's JOB record
 * may still be on its way when a retry comes, and the retry's 200 promises
 * what the first 202 does.
 *
 * No request can slip between the look-up here and the submission that
 * links the key: the loop runs one handler at a time, and a handler is
 * called with the whole body (http.h), an NDJSON upload included. So of
 * many concurrent POSTs with one key the first to be handled makes the job
 * and the others find it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

/* The parameters that say how to answer, not what to run. */
static bool param_shapes_answer(const char *name)
{
	return strcmp(name, "wait") == 0 || strcmp(name, "results") == 0;
}

struct param {
	const char *name, *value;
	unsigned order;
};

static int param_cmp(const void *a, const void *b)
{
	const struct param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
	return fp_idem_hash(h, s, strlen(s));
}

/* -ENOMEM, or 0 and *out. */
static int request_hash(fp_http_request *req, uint64_t *out)
{
	uint64_t h = FP_IDEM_HASH_INIT;
	struct param *params = NULL;
	unsigned n = 0, i, k;
	const char *name, *body;
	size_t len;

	h = hash_str(h, fp_http_path(req));
	h = hash_str(h, fp__api_media_type_is(req, "application/x-ndjson") ? "ndjson" : "json");
	while (fp_http_query_name(req, n))
		n++;
	if (n && !(params = calloc(n, sizeof(*params))))
		return -ENOMEM;
	/* The k-th parameter of a name is its k-th occurrence: count them as they come. */
	for (i = 0; i < n; i++) {
		name = fp_http_query_name(req, i);
		k = 0;
		for (unsigned j = 0; j < i; j++)
			k += strcmp(params[j].name, name) == 0;
		params[i] = (struct param){ name, fp_http_query_nth(req, name, k), i };
		if (!params[i].value)
			params[i].value = "";
	}
	if (n)
		qsort(params, n, sizeof(*params), param_cmp);
	for (i = 0; i < n; i++) {
		if (param_shapes_answer(params[i].name))
			continue;
		h = hash_str(h, params[i].name);
		h = hash_str(h, params[i].value);
	}
	free(params);
	body = fp_http_body(req, &len);
	*out = fp_idem_hash(h, body ? body : "", body ? len : 0);
	return 0;
}

/* With ?wait and ?results=1 as asked. */
void fp__api_idem_replay(fp_api *api, fp_http_request *req, fp_job *job)
{
	int64_t wait = fp__api_wait_ms(api, req);
	char loc[64];

	fp_http_set_log_field(req, "job", fp_job_id(job));
	snprintf(loc, sizeof(loc), "/v1/jobs/%s", fp_job_id(job));
	fp_http_add_header(req, "Location", loc);
	fp_http_add_header(req, "Idempotent-Replayed", "true");
	fp__api_answer_job(api, req, job, 200, wait, fp__api_want_results(req));
}

int fp__api_idem(fp_api *api, fp_http_request *req, struct fp_job_idem *out)
{
	const char *key = fp_http_header(req, "Idempotency-Key");
	size_t len = key ? strlen(key) : 0;
	fp_job *job;
	uint64_t hash;

	*out = (struct fp_job_idem){ NULL, 0, 0 };
	if (!key)
		return 0;
	if (fp_idem_key_check(key, len) < 0) {
		fp__api_error(req, 400, "bad_request", "Idempotency-Key must be 1 to %d bytes of"
			      " printable ASCII (space to '~'); this one is %zu bytes%s",
			      FP_IDEM_KEY_MAX, len, len && len <= FP_IDEM_KEY_MAX ?
			      " with a byte outside that range" : "");
		return 1;
	}
	if (request_hash(req, &hash) < 0) {
		fp__api_error(req, 500, "internal", "out of memory");
		return 1;
	}
	job = fp_jobs_idem_find(api->jobs, key, len);
	if (job) {
		struct fp_job_idem held;

		fp_job_idem(job, &held);
		if (held.hash == hash) {
			api->idem_replayed++;
			/*
			 * Not before the first answer could be: a retry that came
			 * while the job's record is being written waits for it.
			 */
			fp__api_replay_when_safe(api, req, job);
			return 1;
		}
		api->idem_conflicts++;
		fp_http_set_log_field(req, "job", fp_job_id(job));
		fp__api_error(req, 409, "idempotency_conflict", "Idempotency-Key \"%s\" belongs to"
			      " job %s, made by another request (its route, body or parameters"
			      " differ); a new request needs a new key", key, fp_job_id(job));
		return 1;
	}
	*out = (struct fp_job_idem){ key, len, hash };
	return 0;
}
