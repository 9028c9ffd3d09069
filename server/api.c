/*
 * The JSON API: routing, authentication, error bodies, submissions (apply,
 * map in JSON and NDJSON), and answering a job when it finishes (?wait=S).
 * Job documents are in api_jobs.c, result streams in api_stream.c,
 * submissions' Idempotency-Key in api_idem.c;
 * pipelines in api_pipeline.c; tasks, workers, health and metrics in
 * api_info.c; the status page in api_ui.c; the API's description in
 * api_openapi.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api_impl.h"
#include "apply_body.h"
#include "forkpool/loop.h"

#define DEFAULT_MAX_WAIT_MS (300u * 1000)
#define MAX_RETRIES 100

void fp_api_options_init(struct fp_api_options *o)
{
	memset(o, 0, sizeof(*o));
	o->max_wait_ms = DEFAULT_MAX_WAIT_MS;
	o->version = FP_VERSION_STRING;
}

int fp_api_new(fp_api **out, fp_pool *pool, fp_jobs *jobs, const struct fp_api_options *o)
{
	fp_api *api = calloc(1, sizeof(*api));

	*out = NULL;
	if (!api)
		return -ENOMEM;
	api->pool = pool;
	api->jobs = jobs;
	api->loop = fp_pool_loop(pool);
	api->max_wait_ms = o->max_wait_ms ? o->max_wait_ms : DEFAULT_MAX_WAIT_MS;
	api->version = strdup(o->version ? o->version : FP_VERSION_STRING);
	if (o->token) {
		api->token = strdup(o->token);
		api->token_len = strlen(o->token);
	}
	if (!api->version || (o->token && !api->token)) {
		free(api->version);
		free(api->token);
		free(api);
		return -ENOMEM;
	}
	if (o->journal_report) {
		api->journal_report = *o->journal_report;
		api->journal_reported = true;
	}
	api->started_ms = fp_now_ms();
	*out = api;
	return 0;
}

void fp_api_attach_http(fp_api *api, fp_http_server *http)
{
	api->http = http;
}

void fp_api_set_cluster(fp_api *api, struct fp_cluster *cluster)
{
	api->cluster = cluster;
}

void fp_api_set_cluster_jobs(fp_api *api, struct fp_cluster_jobs *cjobs)
{
	api->cjobs = cjobs;
}

void fp_api_set_draining(fp_api *api, bool draining)
{
	api->draining = draining;
}

void fp_api_count_reload(fp_api *api, unsigned workers)
{
	api->reload_restarts += workers;
}

/* --- responses ----------------------------------------------------------- */

void fp__api_json(fp_http_request *req, int status, struct sbuf *b)
{
	/* Its length from the literal itself: a count typed by hand once read past it. */
	static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";

	if (b->oom) {
		fp_http_respond(req, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	sbuf_add(b, "\n", 1);
	fp_http_respond(req, status, "application/json", b->data, b->len);
}

void fp__api_error(fp_http_request *req, int status, const char *code, const char *fmt, ...)
{
	struct sbuf b;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sbuf_init(&b);
	sbuf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
	sbuf_json_string(&b, msg, strlen(msg));
	sbuf_adds(&b, "}}");
	fp__api_json(req, status, &b);
	sbuf_free(&b);
}

/* --- strict input -------------------------------------------------------- */

/*
 * A name an endpoint does not know is a mistake that would otherwise pass
 * unseen (a misspelled "timeout_ms" silently left the default 60 s), so it
 * is refused with the known ones. Each endpoint keeps its known body members
 * and query parameters in NULL-terminated lists beside its handler: adding
 * one is one line there.
 */
static void known_names(struct sbuf *b, const char *const *known)
{
	for (size_t i = 0; known[i]; i++)
		sbuf_printf(b, "%s%s", i ? ", " : "", known[i]);
}

int fp__api_only_members(fp_http_request *req, json_t *obj, const char *const *known,
			 const char *where)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		size_t i;
		struct sbuf names;

		for (i = 0; known[i] && strcmp(known[i], key) != 0; i++)
			;
		if (known[i])
			continue;
		sbuf_init(&names);
		known_names(&names, known);
		fp__api_error(req, 400, "unknown_member", "%sunknown member \"%.100s\"; known: %s",
			      where, key, names.data ? names.data : "");
		sbuf_free(&names);
		return -EINVAL;
	}
	return 0;
}

int fp__api_only_params(fp_http_request *req, const char *const *known)
{
	const char *name;
	struct sbuf names;

	for (unsigned k = 0; (name = fp_http_query_name(req, k)); k++) {
		size_t i;

		for (i = 0; known[i] && strcmp(known[i], name) != 0; i++)
			;
		if (known[i])
			continue;
		if (!known[0]) {
			fp__api_error(req, 400, "unknown_parameter", "unknown query parameter"
				      " \"%.100s\": %s %s takes no query parameters", name,
				      fp_http_method(req), fp_http_path(req));
			return -EINVAL;
		}
		sbuf_init(&names);
		known_names(&names, known);
		fp__api_error(req, 400, "unknown_parameter", "unknown query parameter \"%.100s\""
			      " for %s %s; known: %s", name, fp_http_method(req), fp_http_path(req),
			      names.data ? names.data : "");
		sbuf_free(&names);
		return -EINVAL;
	}
	return 0;
}

const char *const fp__api_no_params[] = { NULL };

/* --- waiting for a job --------------------------------------------------- */

struct api_waiter {
	fp_api *api;
	fp_http_request *req;
	fp_job *job;
	struct fp_job_watch watch;
	fp_timer timer;
	int status;
	bool results;
	struct api_waiter *prev, *next;
};

static void waiter_unlink(struct api_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->api->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
}

/* `closed`: the request is gone (or answered), its callbacks must not be touched. */
static void waiter_free(struct api_waiter *w, bool closed)
{
	if (w->watch.job)
		fp_job_unwatch(&w->watch);
	fp_timer_stop(&w->timer);
	if (!closed)
		fp_http_on_close(w->req, NULL, NULL);
	waiter_unlink(w);
	free(w);
}

/* Answer with the job as it is now, and be done. */
static void waiter_answer(struct api_waiter *w)
{
	fp_http_request *req = w->req;
	fp_api *api = w->api;
	fp_job *job = w->job;
	int status = w->status;
	bool results = w->results;
	struct sbuf b;

	/* Let go of the request before answering: it is the server's after. */
	waiter_free(w, false);
	if (fp__api_job_doc_stream(api, req, job, status, results))
		return;
	sbuf_init(&b);
	fp__api_job_doc(&b, job, results);
	fp__api_json(req, status, &b);
	sbuf_free(&b);
}

static void waiter_on_end(struct fp_job_watch *watch, fp_job *job)
{
	struct api_waiter *w = watch->data;

	/* The watch is already unlinked. */
	w->watch.job = NULL;
	waiter_answer(w);
}

static void waiter_timeout(fp_timer *t)
{
	waiter_answer(t->data);
}

static void waiter_closed(fp_http_request *req, void *data)
{
	waiter_free(data, true);
}

void fp__api_answer_job(fp_api *api, fp_http_request *req, fp_job *job, int status,
			int64_t wait_ms, bool results)
{
	struct api_waiter *w;
	struct sbuf b;

	if (wait_ms > 0 && !fp_job_finished(job) && (w = calloc(1, sizeof(*w)))) {
		w->api = api;
		w->req = req;
		w->job = job;
		w->status = status;
		w->results = results;
		w->watch.on_end = waiter_on_end;
		w->watch.data = w;
		w->timer.data = w;
		w->next = api->waiters;
		if (api->waiters)
			api->waiters->prev = w;
		api->waiters = w;
		fp_job_watch(job, &w->watch);
		fp_timer_start(api->loop, &w->timer, (uint64_t)wait_ms, waiter_timeout);
		fp_http_on_close(req, waiter_closed, w);
		return;
	}
	if (fp__api_job_doc_stream(api, req, job, status, results))
		return;
	sbuf_init(&b);
	fp__api_job_doc(&b, job, results);
	fp__api_json(req, status, &b);
	sbuf_free(&b);
}

bool fp__api_want_results(fp_http_request *req)
{
	const char *r = fp_http_query(req, "results");

	return r && (strcmp(r, "1") == 0 || strcmp(r, "true") == 0);
}

int64_t fp__api_wait_ms(fp_api *api, fp_http_request *req)
{
	const char *s = fp_http_query(req, "wait");
	char *end;
	double secs;

	if (!s)
		return -1;
	/* Whole seconds, as clients mostly write them: strtod()'s answer without its cost. */
	if (*s >= '0' && *s <= '9' && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 9) {
		int64_t whole = 0;

		for (; *s; s++)
			whole = whole * 10 + (*s - '0');
		if ((double)whole * 1000.0 > (double)api->max_wait_ms)
			return (int64_t)api->max_wait_ms;
		return whole * 1000;
	}
	secs = strtod(s, &end);
	if (end == s || *end || secs < 0 || secs != secs)
		return -2;
	if (secs * 1000.0 > (double)api->max_wait_ms)
		return (int64_t)api->max_wait_ms;
	return (int64_t)(secs * 1000.0);
}

/* --- submissions --------------------------------------------------------- */

/* Content-Type's media type, without parameters, compared case-insensitively. */
bool fp__api_media_type_is(fp_http_request *req, const char *want)
{
	const char *ct = fp_http_header(req, "Content-Type");
	size_t n = strlen(want);

	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	return strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

void fp__api_unknown_task(fp_api *api, fp_http_request *req, const char *task,
			  const char *where)
{
	size_t n, i;
	const struct fp_task_info *t = fp_pool_tasks(api->pool, &n);
	struct sbuf known;

	sbuf_init(&known);
	for (i = 0; i < n; i++) {
		if (i)
			sbuf_adds(&known, ", ");
		sbuf_adds(&known, t[i].name);
	}
	fp__api_error(req, 400, "unknown_task", "unknown task '%s'%s; known tasks: %s", task,
		      where ? where : "", known.data ? known.data : "");
	sbuf_free(&known);
}

static void journal_failed(fp_api *api, fp_http_request *req, int err);

/* Map a submission error to its answer. */
void fp__api_submit_error(fp_api *api, fp_http_request *req, const char *task, int err)
{
	if (err == FP_EUNKNOWN_TASK) {
		fp__api_unknown_task(api, req, task, NULL);
	} else if (err == -EBUSY) {
		fp_http_add_header(req, "Retry-After", "1");
		fp__api_error(req, 429, "queue_full",
			      "too many items are waiting; try again later");
	} else if (err == -ENOSPC) {
		fp__api_no_room(api, req);
	} else if (err == -EEXIST) {
		/* fp__api_idem() answers a held key first: only a bug gets here. */
		fp__api_error(req, 409, "idempotency_conflict",
			      "the Idempotency-Key is held by another job");
	} else if (err == FP_ESTOPPED) {
		fp__api_error(req, 503, "shutting_down", "the server is shutting down");
	} else if (err == FP_EUNAVAILABLE) {
		const char *why = fp_pool_unavailable(api->pool, task);

		fp__api_error(req, 503, "pool_unavailable", "the workers of task '%s' cannot start; "
			      "it takes jobs again once one does: %s", task,
			      why ? why : fp_strerror(err));
	} else if (err == -E2BIG) {
		fp__api_error(req, 413, "body_too_large", "too many items in one call");
	} else if (err == -EIO && fp_jobs_journal(api->jobs)) {
		journal_failed(api, req, fp_jobs_journal_error(api->jobs));
	} else {
		fp__api_error(req, 500, "internal", "cannot submit: %s", fp_strerror(err));
	}
}

/* --- retry_on ------------------------------------------------------------ */

#define RETRY_ON_KNOWN "crash, timeout, task_error"

static const struct {
	const char *name;
	unsigned bit;
} retry_on_names[] = {
	{ "crash", FP_RETRY_CRASH },
	{ "timeout", FP_RETRY_TIMEOUT },
	{ "task_error", FP_RETRY_TASK_ERROR },
};

/* The FP_RETRY_* bit of a failure's name (len bytes), or 0. */
static unsigned retry_on_bit(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(retry_on_names) / sizeof(retry_on_names[0]); i++)
		if (strlen(retry_on_names[i].name) == len && !memcmp(retry_on_names[i].name, name, len))
			return retry_on_names[i].bit;
	return 0;
}

int fp__api_retry_on(fp_http_request *req, json_t *v, unsigned *out, const char *where)
{
	unsigned bits = 0, bit;
	json_t *e;
	size_t i;

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v) || !json_array_size(v)) {
		fp__api_error(req, 400, "bad_request",
			      "%s\"retry_on\" must be a non-empty list of the failures to retry, "
			      "from " RETRY_ON_KNOWN " (for no retries: \"retries\": 0)", where);
		return -EINVAL;
	}
	json_array_foreach(v, i, e) {
		if (!json_is_string(e) ||
		    !(bit = retry_on_bit(json_string_value(e), json_string_length(e)))) {
			char *text = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);

			fp__api_error(req, 400, "bad_request",
				      "%s\"retry_on\" names %.60s, which is no failure; known: "
				      RETRY_ON_KNOWN, where, text ? text : "an entry");
			free(text);
			return -EINVAL;
		}
		bits |= bit;
	}
	*out = bits;
	return 0;
}

int fp__api_retry_on_query(fp_http_request *req, unsigned *out)
{
	const char *s = fp_http_query(req, "retry_on"), *comma;
	unsigned bits = 0, bit;
	size_t len;

	*out = 0;
	if (!s)
		return 0;
	do {
		comma = strchr(s, ',');
		len = comma ? (size_t)(comma - s) : strlen(s);
		if (!(bit = retry_on_bit(s, len))) {
			fp__api_error(req, 400, "bad_request",
				      "?retry_on= lists the failures to retry, comma-separated, from "
				      RETRY_ON_KNOWN "; not \"%.*s\"", (int)(len > 60 ? 60 : len), s);
			return -EINVAL;
		}
		bits |= bit;
		s = comma + 1;
	} while (comma);
	*out = bits;
	return 0;
}

/* A non-negative integer member, or the default when absent. */
static int get_uint(json_t *obj, const char *key, int64_t dflt, int64_t max, int64_t *out,
		    fp_http_request *req)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
		fp__api_error(req, 400, "bad_request", "\"%s\" must be an integer from 0 to %lld",
			      key, (long long)max);
		return -EINVAL;
	}
	*out = json_integer_value(v);
	return 0;
}

/* The same from the query string (for NDJSON maps). */
static int query_uint(fp_http_request *req, const char *key, int64_t dflt, int64_t max,
		      int64_t *out)
{
	const char *s = fp_http_query(req, key);
	char *end;
	long long v;

	if (!s) {
		*out = dflt;
		return 0;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end || errno || v < 0 || v > max) {
		fp__api_error(req, 400, "bad_request", "?%s= must be an integer from 0 to %lld",
			      key, (long long)max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

json_t *fp__api_parse_body(fp_http_request *req)
{
	size_t len;
	const char *body = fp_http_body(req, &len);
	json_error_t err;
	json_t *j;

	if (!fp__api_media_type_is(req, "application/json")) {
		fp__api_error(req, 415, "unsupported_media_type",
			      "expected Content-Type: application/json%s, got %s",
			      strcmp(fp_http_path(req), "/v1/apply") != 0 ? " or application/x-ndjson" : "",
			      fp_http_header(req, "Content-Type") ? fp_http_header(req, "Content-Type") : "none");
		return NULL;
	}
	j = json_loadb(body, len, 0, &err);
	if (!j) {
		fp__api_error(req, 400, "bad_json", "invalid JSON at byte %d (line %d, column %d): %s",
			      err.position, err.line, err.column, err.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		fp__api_error(req, 400, "bad_request", "the body must be a JSON object");
		json_decref(j);
		return NULL;
	}
	return j;
}

/*
 * A submission waiting for its JOB record to be as safe as --fsync makes
 * it: the answer promises the job survives a crash, so it waits.
 */
struct api_jwait {
	struct fp_journal_wait w;
	fp_api *api;
	fp_http_request *req;
	fp_job *job;
	bool replay;               /* a retry's: answered as a replay */
	struct api_jwait *prev, *next;
};

static void jwait_free(struct api_jwait *jw, bool closed)
{
	fp_journal_wait_cancel(&jw->w);
	if (!closed)
		fp_http_on_close(jw->req, NULL, NULL);
	if (jw->prev)
		jw->prev->next = jw->next;
	else
		jw->api->jwaits = jw->next;
	if (jw->next)
		jw->next->prev = jw->prev;
	fp_job_unref(jw->job);
	free(jw);
}

static void journal_failed(fp_api *api, fp_http_request *req, int err)
{
	if (err == -ENOSPC)
		fp__api_error(req, 507, "insufficient_storage", "the job was not accepted: the data"
			      " directory is full (the journal cannot be written: %s)", fp_strerror(err));
	else
		fp__api_error(req, 507, "insufficient_storage", "the job was not accepted: the"
			      " journal cannot be written: %s", fp_strerror(err));
}

static void submitted_now(fp_api *api, fp_http_request *req, fp_job *job);

static void jwait_cb(struct fp_journal_wait *w, int status)
{
	struct api_jwait *jw = w->data;
	fp_api *api = jw->api;
	fp_http_request *req = jw->req;
	fp_job *job = jw->job;
	bool replay = jw->replay;

	fp_job_ref(job);
	jwait_free(jw, false);
	if (status == 0 && replay && fp_jobs_find(api->jobs, fp_job_id(job)) != job) {
		/* Deleted while the retry waited: answered as a GET of it would be. */
		if (!fp__api_job_gone(api, req, fp_job_id(job)))
			fp__api_error(req, 404, "not_found", "no such job: %s", fp_job_id(job));
	} else if (status == 0) {
		if (replay)
			fp__api_idem_replay(api, req, job);
		else
			submitted_now(api, req, job);
	} else {
		/*
		 * Not in the journal: not accepted. What runs of it is cancelled.
		 * A retry's wait may have failed on later records only: the
		 * first request's own wait says what became of its job.
		 */
		if (!replay)
			fp_jobs_withdraw(api->jobs, job);
		journal_failed(api, req, status);
	}
	fp_job_unref(job);
}

static void jwait_closed(fp_http_request *req, void *data)
{
	jwait_free(data, true);
}

/* Answer once what was appended so far is safe: submitted, or a replay. */
static void answer_when_safe(fp_api *api, fp_http_request *req, fp_job *job, bool replay)
{
	struct fp_journal *j = fp_jobs_journal(api->jobs);
	struct api_jwait *jw;

	if (!j) {
		if (replay)
			fp__api_idem_replay(api, req, job);
		else
			submitted_now(api, req, job);
		return;
	}
	jw = calloc(1, sizeof(*jw));
	if (!jw) {
		if (!replay)
			fp_jobs_withdraw(api->jobs, job);
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	jw->api = api;
	jw->req = req;
	jw->job = job;
	jw->replay = replay;
	fp_job_ref(job);
	jw->w.cb = jwait_cb;
	jw->w.data = jw;
	jw->next = api->jwaits;
	if (api->jwaits)
		api->jwaits->prev = jw;
	api->jwaits = jw;
	fp_http_on_close(req, jwait_closed, jw);
	fp_journal_wait_appended(j, &jw->w);
}

void fp__api_submitted(fp_api *api, fp_http_request *req, fp_job *job)
{
	answer_when_safe(api, req, job, false);
}

void fp__api_replay_when_safe(fp_api *api, fp_http_request *req, fp_job *job)
{
	answer_when_safe(api, req, job, true);
}

static void submitted_now(fp_api *api, fp_http_request *req, fp_job *job)
{
	int64_t wait = fp__api_wait_ms(api, req);
	char loc[64];

	fp_http_set_log_field(req, "job", fp_job_id(job));
	if (wait >= 0) {
		fp__api_answer_job(api, req, job, 200, wait, fp__api_want_results(req));
		return;
	}
	snprintf(loc, sizeof(loc), "/v1/jobs/%s", fp_job_id(job));
	fp_http_add_header(req, "Location", loc);
	fp__api_answer_job(api, req, job, 202, 0, false);
}

/*
 * A job's "concurrency": at most that many of its items at once, 0 (or
 * absent) for no cap; refused on a cluster, which does not carry it to the
 * nodes that run the job's chunks.
 */
static int get_concurrency(fp_api *api, fp_http_request *req, json_t *body, int64_t *out)
{
	if (get_uint(body, "concurrency", 0, FP_API_CONCURRENCY_MAX, out, req))
		return -EINVAL;
	return fp__api_concurrency_here(api, req, *out);
}

int fp__api_concurrency_here(fp_api *api, fp_http_request *req, int64_t concurrency)
{
	if (!concurrency || !api->cjobs)
		return 0;
	fp__api_error(req, 400, "bad_request", "\"concurrency\" is not supported with --cluster:"
		      " a job's chunks run on several nodes, and limits across nodes are not"
		      " there yet");
	return -EINVAL;
}

/* What a submission's query may say when its body is JSON. */
static const char *const submit_params[] = { "wait", "results", NULL };

static const char *const apply_members[] = { "task", "args", "timeout_ms", "retries", "retry_on",
					      "concurrency", NULL };

/* Submit and answer an apply of `task` on the item `args` (JSON text). */
static void apply_submit(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem,
			 const char *task, const char *args, size_t args_len,
			 const fp_call_options *co)
{
	struct fp_buf item = { args, args_len };
	fp_job *job;
	int err;

	if (api->cjobs) {
		fp__api_cluster_submit(api, req, FP_JOB_APPLY, task, &item, 1, co, idem);
		return;
	}
	err = fp_jobs_submit_idem(api->jobs, FP_JOB_APPLY, task, &item, 1, co, idem, &job);
	if (err)
		fp__api_submit_error(api, req, task, err);
	else
		fp__api_submitted(api, req, job);
}

static void post_apply(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem)
{
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	struct fp_apply_body plain;
	json_t *body, *task, *args;
	int64_t timeout, retries, concurrency;
	const char *data;
	size_t len;
	char *text;

	if (fp__api_only_params(req, submit_params))
		return;
	/*
	 * The usual body, read by hand: the same job as jansson's way below
	 * would make of it, with every option at its default
	 * (apply_body.h). Any other body, or a wrong Content-Type, takes
	 * that way, errors and all.
	 */
	data = fp_http_body(req, &len);
	if (fp__api_media_type_is(req, "application/json") &&
	    fp_apply_body_plain(data, len, &plain)) {
		apply_submit(api, req, idem, plain.task, plain.args, plain.args_len, &co);
		return;
	}
	if (!(body = fp__api_parse_body(req)))
		return;
	if (fp__api_only_members(req, body, apply_members, ""))
		goto out;
	task = json_object_get(body, "task");
	if (!json_is_string(task)) {
		fp__api_error(req, 400, "bad_request", "\"task\" must be a string naming a task");
		goto out;
	}
	if (get_uint(body, "timeout_ms", -1, INT64_MAX / 1000000, &timeout, req) ||
	    get_uint(body, "retries", 0, MAX_RETRIES, &retries, req) ||
	    get_concurrency(api, req, body, &concurrency) ||
	    fp__api_retry_on(req, json_object_get(body, "retry_on"), &co.retry_on, ""))
		goto out;
	args = json_object_get(body, "args");
	text = args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
	if (!text) {
		fp__api_error(req, 500, "internal", "out of memory");
		goto out;
	}
	co.timeout_ms = timeout;
	co.retries = (unsigned)retries;
	co.concurrency = (unsigned)concurrency;
	apply_submit(api, req, idem, json_string_value(task), text, strlen(text), &co);
	free(text);
out:
	json_decref(body);
}

/*
 * `text` non-NULL: the items are fp__api_ndjson_items()'s array pointing
 * into `text`, both taken by the job (lent to the pool: no copy of a
 * million items) or freed here.
 */
static void submit_map(fp_api *api, fp_http_request *req, const char *task,
		       struct fp_buf *items, size_t n, const fp_call_options *co, char *text,
		       const struct fp_job_idem *idem)
{
	fp_job *job;
	int err;

	if (api->cjobs) {
		fp__api_cluster_submit(api, req, FP_JOB_MAP, task, items, n, co, idem);
		if (text) {
			fp_ndjson_free(items);
			fp_mem_free(text);
		}
		return;
	}
	if (text)
		err = fp_jobs_submit_map_taking(api->jobs, task, items, n, text, co, idem, &job);
	else
		err = fp_jobs_submit_idem(api->jobs, FP_JOB_MAP, task, items, n, co, idem, &job);
	if (err)
		fp__api_submit_error(api, req, task, err);
	else
		fp__api_submitted(api, req, job);
}

static const char *const map_members[] = { "task", "items", "timeout_ms", "retries",
					    "retry_on", "chunksize", "concurrency", NULL };

static void post_map_json(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem)
{
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	json_t *body, *task, *items;
	int64_t timeout, retries, chunksize, concurrency;
	struct fp_buf *bufs = NULL;
	size_t n = 0;

	if (fp__api_only_params(req, submit_params) || !(body = fp__api_parse_body(req)))
		return;
	if (fp__api_only_members(req, body, map_members, ""))
		goto out;
	task = json_object_get(body, "task");
	items = json_object_get(body, "items");
	if (!json_is_string(task)) {
		fp__api_error(req, 400, "bad_request", "\"task\" must be a string naming a task");
		goto out;
	}
	if (!json_is_array(items)) {
		fp__api_error(req, 400, "bad_request", "\"items\" must be an array");
		goto out;
	}
	if (get_uint(body, "timeout_ms", -1, INT64_MAX / 1000000, &timeout, req) ||
	    get_uint(body, "retries", 0, MAX_RETRIES, &retries, req) ||
	    get_uint(body, "chunksize", 0, UINT32_MAX, &chunksize, req) ||
	    get_concurrency(api, req, body, &concurrency) ||
	    fp__api_retry_on(req, json_object_get(body, "retry_on"), &co.retry_on, ""))
		goto out;
	if (fp__api_json_items(req, items, &bufs, &n))
		goto out;
	co.timeout_ms = timeout;
	co.retries = (unsigned)retries;
	co.chunksize = (size_t)chunksize;
	co.concurrency = (unsigned)concurrency;
	submit_map(api, req, json_string_value(task), bufs, n, &co, NULL, idem);
out:
	fp__api_json_items_free(bufs, n);
	json_decref(body);
}

int fp__api_json_items(fp_http_request *req, json_t *items, struct fp_buf **out, size_t *n)
{
	size_t i, len = json_array_size(items);
	struct fp_buf *bufs = calloc(len ? len : 1, sizeof(*bufs));
	json_t *v;

	if (!bufs)
		goto nomem;
	json_array_foreach(items, i, v) {
		char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!t) {
			fp__api_json_items_free(bufs, i);
			goto nomem;
		}
		bufs[i] = (struct fp_buf){ t, strlen(t) };
	}
	*out = bufs;
	*n = len;
	return 0;
nomem:
	fp__api_error(req, 500, "internal", "out of memory");
	return -ENOMEM;
}

void fp__api_json_items_free(struct fp_buf *bufs, size_t n)
{
	for (size_t i = 0; bufs && i < n; i++)
		free((char *)bufs[i].base);
	free(bufs);
}

/*
 * NDJSON: one item per line, so a client can stream millions of items
 * without building one array. Each line must be JSON on its own (ndjson.c).
 * The items point into the body; release *out with fp_ndjson_free(). On
 * error the answer is sent.
 */
int fp__api_ndjson_items(fp_http_request *req, struct fp_buf **out, size_t *nout, char **text)
{
	struct fp_ndjson_error e;
	size_t len;
	const char *body = fp_http_body(req, &len);
	int err = -ENOMEM;

	/*
	 * One copy of the whole body, which the job can keep for as long as
	 * the pool reads the items: cheaper than the pool's copy of each item.
	 */
	*out = NULL;
	*text = fp_mem_alloc(len + 1);
	if (*text) {
		memcpy(*text, body, len + 1);
		err = fp_ndjson_split(*text, len, out, nout, &e);
	}
	if (err) {
		fp_mem_free(*text);
		*text = NULL;
	}
	if (err == -EINVAL)
		fp__api_error(req, 400, "bad_json", "line %zu is not JSON (column %d): %s",
			      e.line, e.column, e.text);
	else if (err)
		fp__api_error(req, 500, "internal", "out of memory");
	return err ? -EINVAL : 0;
}

/* An NDJSON map says in its query what a JSON one says in its body. */
static const char *const map_ndjson_params[] = { "task", "timeout_ms", "retries", "retry_on",
						 "chunksize", "concurrency", "wait", "results",
						 NULL };

static void post_map_ndjson(fp_api *api, fp_http_request *req, const struct fp_job_idem *idem)
{
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	const char *task = fp_http_query(req, "task");
	int64_t timeout, retries, chunksize, concurrency;
	struct fp_buf *bufs;
	char *text;
	size_t n;

	if (fp__api_only_params(req, map_ndjson_params))
		return;
	if (!task || !*task) {
		fp__api_error(req, 400, "bad_request",
			      "an NDJSON map names its task in the query: /v1/map?task=NAME");
		return;
	}
	if (query_uint(req, "timeout_ms", -1, INT64_MAX / 1000000, &timeout) ||
	    query_uint(req, "retries", 0, MAX_RETRIES, &retries) ||
	    query_uint(req, "chunksize", 0, UINT32_MAX, &chunksize) ||
	    query_uint(req, "concurrency", 0, FP_API_CONCURRENCY_MAX, &concurrency) ||
	    fp__api_concurrency_here(api, req, concurrency) ||
	    fp__api_retry_on_query(req, &co.retry_on) ||
	    fp__api_ndjson_items(req, &bufs, &n, &text))
		return;
	co.timeout_ms = timeout;
	co.retries = (unsigned)retries;
	co.chunksize = (size_t)chunksize;
	co.concurrency = (unsigned)concurrency;
	submit_map(api, req, task, bufs, n, &co, text, idem);
}

/* --- routing ------------------------------------------------------------- */

static void method_not_allowed(fp_http_request *req, const char *allow)
{
	fp_http_add_header(req, "Allow", allow);
	fp__api_error(req, 405, "method_not_allowed", "%s is not allowed on %s; allowed: %s",
		      fp_http_method(req), fp_http_path(req), allow);
}

static bool method_is(fp_http_request *req, const char *m)
{
	return strcmp(fp_http_method(req), m) == 0;
}

/* GET, and HEAD where a GET is allowed. */
static bool is_get(fp_http_request *req)
{
	return method_is(req, "GET") || method_is(req, "HEAD");
}

/* Compare in constant time, so the token cannot be guessed byte by byte. */
static bool token_ok(fp_api *api, fp_http_request *req)
{
	const char *h = fp_http_header(req, "Authorization");
	unsigned char diff = 0;
	size_t i, n;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	diff = n != api->token_len;
	for (i = 0; i < api->token_len; i++)
		diff |= (unsigned char)(api->token[i] ^ (i < n ? h[i] : 0));
	return diff == 0;
}

/* What /v1/jobs/ID (GET; DELETE takes none) and /v1/jobs/ID/results take in their query. */
static const char *const job_get_params[] = { "wait", "results", NULL };
static const char *const job_results_params[] = { "order", NULL };

/*
 * A submission, of any of the three routes (its method checked by the
 * table). A retry whose key holds a job is answered with that job even
 * while draining: it asks for nothing new.
 */
static void post_submission(fp_api *api, fp_http_request *req)
{
	const char *path = fp_http_path(req);
	struct fp_job_idem idem;

	if (fp__api_wait_ms(api, req) == -2) {
		fp__api_error(req, 400, "bad_request", "?wait= must be a number of seconds");
	} else if (fp__api_idem(api, req, &idem)) {
		return;
	} else if (api->draining) {
		fp__api_error(req, 503, "shutting_down",
			      "the server is shutting down and takes no new jobs");
	} else if (strcmp(path, "/v1/pipelines") == 0) {
		fp__api_post_pipeline(api, req, &idem);
	} else if (strcmp(path, "/v1/apply") == 0) {
		post_apply(api, req, &idem);
	} else if (fp__api_media_type_is(req, "application/x-ndjson")) {
		post_map_ndjson(api, req, &idem);
	} else {
		post_map_json(api, req, &idem);
	}
}

/* No token on these: the status page, the API's description, health. */
#define ROUTE_PUBLIC 1

/*
 * Every operation the API answers, one row each: GET rows answer HEAD too.
 * "{...}" in a path stands for one segment: "{id}" a job's id, whose row's
 * job_fn gets the job; "{key}" a shared value's key, read by its handler. docs/openapi.json describes each row and no other, which
 * tests/integration/test_openapi.py checks by reading this table: a row
 * keeps the form `{ "METHOD", "/path", ...` on one line.
 */
static const struct api_route {
	const char *method;
	const char *path;
	unsigned flags;
	const char *const *params;      /* NULL: the handler checks its own */
	void (*fn)(fp_api *, fp_http_request *);
	void (*job_fn)(fp_api *, fp_http_request *, fp_job *);
} routes[] = {
	{ "GET", "/", ROUTE_PUBLIC, fp__api_no_params, fp__api_ui, NULL },
	{ "GET", "/ui", ROUTE_PUBLIC, fp__api_no_params, fp__api_ui, NULL },
	{ "GET", "/v1/openapi.json", ROUTE_PUBLIC, fp__api_no_params, fp__api_openapi, NULL },
	{ "GET", "/v1/health", ROUTE_PUBLIC, fp__api_no_params, fp__api_health, NULL },
	{ "POST", "/v1/apply", 0, NULL, post_submission, NULL },
	{ "POST", "/v1/map", 0, NULL, post_submission, NULL },
	{ "POST", "/v1/pipelines", 0, NULL, post_submission, NULL },
	{ "GET", "/v1/jobs", 0, NULL, fp__api_jobs_list, NULL },
	{ "GET", "/v1/jobs/{id}", 0, job_get_params, NULL, fp__api_job_get },
	{ "DELETE", "/v1/jobs/{id}", 0, fp__api_no_params, NULL, fp__api_job_delete },
	{ "GET", "/v1/jobs/{id}/results", 0, job_results_params, NULL, fp__api_job_results },
	{ "GET", "/v1/tasks", 0, fp__api_no_params, fp__api_tasks, NULL },
	{ "GET", "/v1/workers", 0, fp__api_no_params, fp__api_workers, NULL },
	{ "GET", "/metrics", 0, fp__api_no_params, fp__api_metrics, NULL },
	{ "GET", "/v1/kv", 0, fp__api_kv_list_params, fp__api_kv_list, NULL },
	{ "GET", "/v1/kv/{key}", 0, fp__api_no_params, fp__api_kv_get, NULL },
	{ "PUT", "/v1/kv/{key}", 0, fp__api_kv_put_params, fp__api_kv_put, NULL },
	{ "DELETE", "/v1/kv/{key}", 0, fp__api_no_params, fp__api_kv_delete, NULL },
	{ "POST", "/v1/kv/{key}/incr", 0, fp__api_kv_incr_params, fp__api_kv_incr, NULL },
	{ "POST", "/v1/kv/{key}/cas", 0, fp__api_no_params, fp__api_kv_cas, NULL },
};

#define ROUTES (sizeof(routes) / sizeof(routes[0]))
/*
 * The longest "{...}" segment a row takes: a job id past 79 bytes is no
 * path of the API (404 not_found); a key gets room past its limit of 256, so
 * that a long one is refused by its handler, by name.
 */
#define ID_MAX 1024
#define JOB_ID_MAX 80

/* Whether `path` is the route's; its "{...}" segment, if any, copied to id[ID_MAX]. */
static bool route_match(const char *route, const char *path, char *id)
{
	const char *brace = strchr(route, '{'), *tail;
	size_t head, len, max;

	if (!brace)
		return strcmp(route, path) == 0;
	tail = strchr(brace, '}') + 1;
	head = (size_t)(brace - route);
	if (strncmp(route, path, head) != 0)
		return false;
	path += head;
	len = strcspn(path, "/");
	max = strncmp(brace, "{id}", 4) == 0 ? JOB_ID_MAX : ID_MAX;
	if (len == 0 || len >= max || strcmp(path + len, tail) != 0)
		return false;
	memcpy(id, path, len);
	id[len] = '\0';
	return true;
}

static bool route_method_is(fp_http_request *req, const struct api_route *r)
{
	return method_is(req, r->method) || (strcmp(r->method, "GET") == 0 && is_get(req));
}

/* 405 naming the methods of every row of the path, as Allow. */
static void route_not_allowed(fp_http_request *req, const char *path)
{
	char allow[64] = "", id[ID_MAX];
	size_t len = 0;

	for (size_t i = 0; i < ROUTES; i++)
		if (route_match(routes[i].path, path, id))
			len += (size_t)snprintf(allow + len, sizeof(allow) - len, "%s%s%s",
						len ? ", " : "", routes[i].method,
						strcmp(routes[i].method, "GET") == 0 ? ", HEAD" : "");
	method_not_allowed(req, allow);
}

static void route_job(fp_api *api, fp_http_request *req, const struct api_route *r,
		      const char *id)
{
	fp_job *job = fp_jobs_find(api->jobs, id);

	if (!job && api->cjobs) {
		fp__api_cluster_job(api, req, r->job_fn == fp__api_job_get ? FP_API_JOB_GET :
				    r->job_fn == fp__api_job_delete ? FP_API_JOB_DELETE :
				    FP_API_JOB_RESULTS, id);
		return;
	}
	if (!job && fp__api_job_gone(api, req, id))
		return;
	if (!job) {
		fp__api_error(req, 404, "no_such_job",
			      "no job with id '%s' (finished jobs are kept for a while, then forgotten)", id);
		return;
	}
	fp_http_set_log_field(req, "job", fp_job_id(job));
	r->job_fn(api, req, job);
}

void fp_api_handler(fp_http_request *req, void *data)
{
	fp_api *api = data;
	const char *path = fp_http_path(req);
	const struct api_route *r = NULL, *first = NULL;
	char id[ID_MAX];

	for (size_t i = 0; i < ROUTES && !r; i++) {
		if (!route_match(routes[i].path, path, id))
			continue;
		if (!first)
			first = &routes[i];
		if (route_method_is(req, &routes[i]))
			r = &routes[i];
	}
	/* A path's rows share their flags: a public path is public whatever the method. */
	if (api->token && !(first && (first->flags & ROUTE_PUBLIC)) && !token_ok(api, req)) {
		fp_http_add_header(req, "WWW-Authenticate", "Bearer");
		fp__api_error(req, 401, "unauthorized",
			      "this server needs Authorization: Bearer TOKEN");
		return;
	}
	if (!first) {
		fp__api_error(req, 404, "not_found", "no such resource: %s", path);
		return;
	}
	if (!r) {
		route_not_allowed(req, path);
		return;
	}
	if (r->params && fp__api_only_params(req, r->params))
		return;
	if (r->job_fn)
		route_job(api, req, r, id);
	else
		r->fn(api, req);
}

void fp_api_free(fp_api *api)
{
	if (!api)
		return;
	/* Answer every long-poll with what there is now, whole: streams end here. */
	api->closing = true;
	while (api->waiters)
		waiter_answer(api->waiters);
	/*
	 * Submissions whose records are not safe yet (the shutdown's linger
	 * let most of them end): not accepted. Their JOB records may still
	 * reach the file as the journal closes, so each job is forgotten, its
	 * FORGET after its JOB: a restart does not bring back a job answered
	 * 503. A retry's wait concerns a job answered before: left alone.
	 */
	while (api->jwaits) {
		struct api_jwait *jw = api->jwaits;
		fp_http_request *req = jw->req;
		fp_job *job = jw->job;
		bool replay = jw->replay;

		fp_job_ref(job);
		jwait_free(jw, false);
		if (!replay)
			fp_jobs_forget(api->jobs, job);
		fp_job_unref(job);
		fp__api_error(req, 503, "shutting_down", "the server is shutting down");
	}
	fp__api_cluster_end(api);
	fp__api_streams_end(api);
	free(api->token);
	free(api->version);
	free(api);
}
