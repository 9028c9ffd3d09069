/* The API's insides, shared by api.c (routing, submissions, waiting),
 * api_jobs.c (job documents, gone and full), api_stream.c (result streams),
 * api_idem.c (Idempotency-Key), api_pipeline.c, api_info.c (tasks, workers, health, metrics) and api_ui.c
 * (the status page). */
#ifndef FP_SERVER_API_IMPL_H
#define FP_SERVER_API_IMPL_H

#include "journal.h"
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "api.h"
#include "ndjson.h"
#include "sbuf.h"

struct api_waiter;
struct api_stream;

struct fp_api {
	fp_pool *pool;
	fp_jobs *jobs;
	fp_http_server *http;
	fp_loop *loop;
	char *token;
	size_t token_len;
	uint64_t max_wait_ms;
	char *version;
	bool draining;
	struct fp_cluster *cluster;    /* NULL: a single node */
	struct fp_cluster_jobs *cjobs; /* NULL: jobs run where they were taken */
	struct api_creq *creqs;        /* api_cluster.c's requests waiting for Redis */
	bool closing;              /* fp_api_free(): answers go whole, nothing is streamed */
	uint64_t started_ms;

	/* Open long-polls and streams, answered or ended by fp_api_free(). */
	struct api_waiter *waiters;
	struct api_stream *streams;

	/* Workers restarted by reloads, for /metrics (the rest: fp_pool_stats). */
	uint64_t reload_restarts;
	/* Submissions answered for their Idempotency-Key (api_idem.c), for /metrics. */
	uint64_t idem_replayed, idem_conflicts;

	/* The journal's start-up report (/metrics), and submissions waiting for their record. */
	struct fp_journal_report journal_report;
	bool journal_reported;
	struct api_jwait *jwaits;
};

/* api.c */
void fp__api_error(fp_http_request *req, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void fp__api_json(fp_http_request *req, int status, struct sbuf *b);
/*
 * Strict input: a member of `obj` not in `known` (NULL-terminated), or a
 * query parameter not in `known`, is answered 400 unknown_member or
 * unknown_parameter naming it (after `where`, e.g. "stage 1 (lower): ") and
 * the known ones; -EINVAL then. fp__api_no_params: an endpoint that takes
 * none.
 */
int fp__api_only_members(fp_http_request *req, json_t *obj, const char *const *known,
			 const char *where);
int fp__api_only_params(fp_http_request *req, const char *const *known);
extern const char *const fp__api_no_params[];
/* ?results=1 (or true). */
bool fp__api_want_results(fp_http_request *req);
/* Seconds from ?wait=S as ms, capped; -1 when absent; -2 when malformed. */
int64_t fp__api_wait_ms(fp_api *api, fp_http_request *req);
/* Answer `job`'s document now, or once it finishes (or wait_ms passes). */
void fp__api_answer_job(fp_api *api, fp_http_request *req, fp_job *job, int status,
			int64_t wait_ms, bool results);

/* Submissions, shared with api_pipeline.c. */
bool fp__api_media_type_is(fp_http_request *req, const char *want);
/* The body as a JSON object, or NULL after answering 415 or 400. */
json_t *fp__api_parse_body(fp_http_request *req);
/*
 * A JSON array's members as items, each serialised on its own, for a call;
 * -ENOMEM after answering 500. Release with fp__api_json_items_free().
 */
int fp__api_json_items(fp_http_request *req, json_t *items, struct fp_buf **out, size_t *n);
void fp__api_json_items_free(struct fp_buf *bufs, size_t n);
/*
 * NDJSON items, pointing into *text, a copy of the body (both fp_mem_alloc()
 * memory, for a job to take, or to release with fp_ndjson_free() and
 * fp_mem_free()); -EINVAL after answering.
 */
int fp__api_ndjson_items(fp_http_request *req, struct fp_buf **out, size_t *n, char **text);
/* 400 unknown_task naming `task` (and `where`, e.g. " in stage 2") and the known ones. */
void fp__api_unknown_task(fp_api *api, fp_http_request *req, const char *task,
			  const char *where);
void fp__api_submit_error(fp_api *api, fp_http_request *req, const char *task, int err);
/*
 * "retry_on": a non-empty JSON array of "crash", "timeout", "task_error" as
 * FP_RETRY_* bits, 0 when absent or null; -EINVAL after answering 400 (its
 * message starts with `where`, e.g. "stage 1 (lower): ").
 */
int fp__api_retry_on(fp_http_request *req, json_t *v, unsigned *out, const char *where);
/* The same from ?retry_on=crash,task_error (NDJSON bodies). */
int fp__api_retry_on_query(fp_http_request *req, unsigned *out);
/* A job's "concurrency" (fp_call_options.concurrency) goes up to this. */
#define FP_API_CONCURRENCY_MAX 1000000
/* 0, or answers 400 and returns -EINVAL where a job's concurrency cannot be kept (a cluster). */
int fp__api_concurrency_here(fp_api *api, fp_http_request *req, int64_t concurrency);
/* 202 with Location, or the job once finished with ?wait=S. */
void fp__api_submitted(fp_api *api, fp_http_request *req, fp_job *job);
/*
 * The job a retry's Idempotency-Key found, answered as fp__api_idem_replay()
 * does once its JOB record is as safe as the first answer waits for (it may
 * still be on its way to the file); 507 if that record fails.
 */
void fp__api_replay_when_safe(fp_api *api, fp_http_request *req, fp_job *job);

/*
 * api_idem.c: a submission's Idempotency-Key. 1 once answered: 400 for a
 * bad key, 409 for a key another request's job holds, or that job replayed
 * (200, Idempotent-Replayed). 0: go on, submitting with *out (its key NULL
 * when the request has none; pointing into the request).
 */
int fp__api_idem(fp_api *api, fp_http_request *req, struct fp_job_idem *out);
/* The job the key holds, as a GET would give it (200, Idempotent-Replayed). */
void fp__api_idem_replay(fp_api *api, fp_http_request *req, fp_job *job);

/* api_kv.c: shared values (/v1/kv), over fp_pool_kv; the params lists for the route table. */
void fp__api_kv_get(fp_api *api, fp_http_request *req);
void fp__api_kv_put(fp_api *api, fp_http_request *req);
void fp__api_kv_delete(fp_api *api, fp_http_request *req);
void fp__api_kv_incr(fp_api *api, fp_http_request *req);
void fp__api_kv_cas(fp_api *api, fp_http_request *req);
void fp__api_kv_list(fp_api *api, fp_http_request *req);
extern const char *const fp__api_kv_put_params[];
extern const char *const fp__api_kv_incr_params[];
extern const char *const fp__api_kv_list_params[];

/* api_pipeline.c: submitted with `idem`'s key (fp__api_idem). */
void fp__api_post_pipeline(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem);
/* A pipeline job's own members of its document: stages, result. */
void fp__api_pipeline_doc(struct sbuf *b, fp_job *job);

/* api_jobs.c */
void fp__api_job_doc(struct sbuf *b, fp_job *job, bool results);
/* The document's members before its values (an apply's result, ?results=1), unclosed. */
void fp__api_job_doc_head(struct sbuf *b, fp_job *job);
/* `"value":V` or `"error":{"type":…,"message":…}`: an item's outcome, without braces. */
void fp__api_item_members(struct sbuf *b, const struct fp_job_item *it);
void fp__api_jobs_list(fp_api *api, fp_http_request *req);
void fp__api_job_get(fp_api *api, fp_http_request *req, fp_job *job);
void fp__api_job_delete(fp_api *api, fp_http_request *req, fp_job *job);
/* 410 naming why, when `id` is a job that was forgotten; false otherwise. */
bool fp__api_job_gone(fp_api *api, fp_http_request *req, const char *id);
/* 507 for a submission refused with -ENOSPC, naming the limit. */
void fp__api_no_room(fp_api *api, fp_http_request *req);

/* api_stream.c */
void fp__api_job_results(fp_api *api, fp_http_request *req, fp_job *job);
void fp__api_streams_end(fp_api *api);
/*
 * Answer with a finished job's document, streamed from its records, when it
 * carries many values (an apply's big result, ?results=1 of a big job):
 * true once answered. False for the others, which go whole as before.
 */
bool fp__api_job_doc_stream(fp_api *api, fp_http_request *req, fp_job *job, int status,
			    bool results);
/* An item with its index (a pipeline's: and its stage, when an error): a stream's line. */
void fp__api_result_line(struct sbuf *b, const struct fp_job_item *it, bool pipeline);

/*
 * api_cluster.c: with --cluster, apply and map go to Redis (an
 * Idempotency-Key with them, cluster-wide), and a job not kept here is
 * looked for there. fp__api_cluster_end() answers what waits
 * (fp_api_free()).
 */
enum fp_api_job_op { FP_API_JOB_GET, FP_API_JOB_DELETE, FP_API_JOB_RESULTS };
void fp__api_cluster_submit(fp_api *api, fp_http_request *req, enum fp_job_kind kind,
			    const char *task, const struct fp_buf *items, size_t n,
			    const fp_call_options *co, const struct fp_job_idem *idem);
void fp__api_cluster_job(fp_api *api, fp_http_request *req, enum fp_api_job_op what,
			 const char *id);
void fp__api_cluster_end(fp_api *api);
/* GET /v1/jobs with --cluster: the cluster's apply and map jobs (state and limit checked). */
void fp__api_cluster_list(fp_api *api, fp_http_request *req, const char *state, size_t limit);

/* api_ui.c: the status page, with its headers. */
void fp__api_ui(fp_api *api, fp_http_request *req);

/* api_openapi.c: docs/openapi.json, as compiled in. */
void fp__api_openapi(fp_api *api, fp_http_request *req);

/* api_info.c */
void fp__api_tasks(fp_api *api, fp_http_request *req);
void fp__api_workers(fp_api *api, fp_http_request *req);
void fp__api_health(fp_api *api, fp_http_request *req);
void fp__api_metrics(fp_api *api, fp_http_request *req);

#endif
