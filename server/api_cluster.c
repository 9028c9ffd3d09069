/*
 * The API's answers for cluster jobs (--cluster): submissions written to
 * Redis, and GET, DELETE and the results stream of a job any node took,
 * read from Redis (cluster_jobs.h). A hook from api.c's submissions and
 * job routes; the documents are those of api_jobs.c, from the job's hash.
 * Pipelines stay on the node that took them (docs/CLUSTER.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"
#include "cluster_jobs.h"

/* DELETE waits this long for a cancelled job's chunks to land (api_jobs.c's wait). */
#define CANCEL_WAIT_MS 5000

enum creq_what { CR_SUBMIT, CR_GET, CR_DELETE, CR_RESULTS, CR_LIST };

struct api_creq {
	fp_api *api;
	fp_http_request *req;
	struct api_creq *prev, *next;
	enum creq_what what;
	struct fp_cluster_op *op;
	struct fp_cluster_follow *follow;
	fp_timer timer;               /* ?wait= runs out */
	int64_t wait_ms;              /* -1: no wait */
	bool results;                 /* ?results=1: collect the outcomes */
	bool waiting;                 /* following until the end, for ?wait= */
	bool streaming;
	bool input_order;
	bool blocked;                 /* the client's window is full: drain first */
	int status;                   /* of the answer: 200, 202 */
	bool replayed;                /* Location is set already */
	uint64_t idem_hash;           /* the submission's request, for its key */
	char id[65];
	uint64_t chunks, next_chunk;
	char **held;                  /* input order, ?results=1: chunks' lines by number */
	size_t *held_len;
	char **held_att;              /* ?results=1: their attempts, "1,1,2", NUL-ended */
};

static void creq_free(struct api_creq *c, bool closed)
{
	uint64_t i;

	fp_cluster_op_drop(c->op);
	fp_cluster_follow_stop(c->follow);
	fp_timer_stop(&c->timer);
	if (!closed) {
		fp_http_on_close(c->req, NULL, NULL);
		fp_http_on_drain(c->req, NULL, NULL);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		c->api->creqs = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->held)
		for (i = 0; i < c->chunks; i++)
			free(c->held[i]);
	if (c->held_att)
		for (i = 0; i < c->chunks; i++)
			free(c->held_att[i]);
	free(c->held_att);
	free(c->held);
	free(c->held_len);
	free(c);
}

static void on_close(fp_http_request *req, void *data)
{
	(void)req;
	creq_free(data, true);
}

static struct api_creq *creq_new(fp_api *api, fp_http_request *req, enum creq_what what)
{
	struct api_creq *c = calloc(1, sizeof(*c));

	if (!c) {
		fp__api_error(req, 500, "internal", "out of memory");
		return NULL;
	}
	c->api = api;
	c->req = req;
	c->what = what;
	c->wait_ms = -1;
	c->timer.data = c;
	c->next = api->creqs;
	if (api->creqs)
		api->creqs->prev = c;
	api->creqs = c;
	fp_http_on_close(req, on_close, c);
	return c;
}

static void unavailable(fp_http_request *req)
{
	fp__api_error(req, 503, "store_unavailable",
		      "the cluster's Redis cannot be reached; nothing was done (retry later)");
}

/* After an error answer, or any answer: the request is done with. */
static void fail(struct api_creq *c, int err)
{
	fp_http_request *req = c->req;
	char id[65];

	snprintf(id, sizeof(id), "%s", c->id);
	creq_free(c, false);
	if (err == -ENOENT)
		fp__api_error(req, 404, "no_such_job", "no job with id '%s' in the cluster"
			      " (finished jobs are kept for a while, then forgotten)", id);
	else if (err == -ENOMEM)
		fp__api_error(req, 500, "internal", "out of memory");
	else
		unavailable(req);
}

/* --- the document ----------------------------------------------------------- */

/* `"value":V` or `"error":{…}` of an outcome line {"index":I,...}: its members but the index. */
static bool line_members(const char *line, size_t len, const char **m, size_t *mlen)
{
	const char *comma;

	while (len && line[len - 1] == '\n')
		len--;
	if (len < 11 || memcmp(line, "{\"index\":", 9) != 0 || line[len - 1] != '}' ||
	    !(comma = memchr(line, ',', len)))
		return false;
	*m = comma + 1;
	*mlen = len - 1 - (size_t)(comma + 1 - line);
	return true;
}

static void doc_json(struct sbuf *b, const struct fp_cluster_doc *d)
{
	const char *m;
	size_t mlen;

	sbuf_printf(b, "{\"id\":\"%s\",\"kind\":\"%s\",\"task\":", d->id, fp_job_kind_name(d->kind));
	sbuf_json_string(b, d->task, strlen(d->task));
	sbuf_printf(b, ",\"state\":\"%s\",\"total\":%llu,\"done\":%llu,\"failed\":%llu,"
		    "\"created_at\":", fp_job_state_name(d->state), (unsigned long long)d->total,
		    (unsigned long long)d->done, (unsigned long long)d->failed);
	sbuf_json_time(b, d->created_at);
	sbuf_adds(b, ",\"started_at\":");
	sbuf_json_time(b, d->started_at);
	sbuf_adds(b, ",\"finished_at\":");
	sbuf_json_time(b, d->finished_at);
	if (d->kind == FP_JOB_APPLY && d->outcome &&
	    line_members(d->outcome, d->outcome_len, &m, &mlen)) {
		if (mlen > 8 && !memcmp(m, "\"value\":", 8)) {
			sbuf_adds(b, ",\"result\":");
			sbuf_add(b, m + 8, mlen - 8);
		} else {
			sbuf_adds(b, ",");
			sbuf_add(b, m, mlen);
		}
		sbuf_printf(b, ",\"attempts\":%u", d->attempts);
	}
}

/* The held chunks' lines as the document's "results", in input order. */
static void results_json(struct sbuf *b, struct api_creq *c)
{
	uint64_t k;
	bool first = true;

	sbuf_adds(b, ",\"results\":[");
	for (k = 0; c->held && k < c->chunks; k++) {
		const char *p = c->held[k], *end = p ? p + c->held_len[k] : NULL;
		const char *att = c->held_att[k];

		while (p && p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p)), *m;
			size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p), mlen;
			/* The chunk's attempts, one a line, in the lines' order. */
			unsigned long a = att ? strtoul(att, (char **)&att, 10) : 0;

			if (att && *att == ',')
				att++;
			if (line_members(p, len, &m, &mlen)) {
				sbuf_adds(b, first ? "{" : ",{");
				sbuf_add(b, m, mlen);
				sbuf_printf(b, ",\"attempts\":%lu}", a);
				first = false;
			}
			p += len + 1;
		}
	}
	sbuf_adds(b, "]");
}

static void answer_doc(struct api_creq *c, const struct fp_cluster_doc *d)
{
	fp_http_request *req = c->req;
	int status = c->status ? c->status : 200;
	struct sbuf b;
	char loc[96];

	sbuf_init(&b);
	doc_json(&b, d);
	if (c->results && d->finished_at)
		results_json(&b, c);
	sbuf_adds(&b, "}");
	if (status == 202 && !c->replayed) {
		snprintf(loc, sizeof(loc), "/v1/jobs/%s", d->id);
		fp_http_add_header(req, "Location", loc);
	}
	creq_free(c, false);
	fp__api_json(req, status, &b);
	sbuf_free(&b);
}

static void final_doc_cb(void *data, int status, const struct fp_cluster_doc *d)
{
	struct api_creq *c = data;

	c->op = NULL;
	if (status < 0)
		fail(c, status);
	else
		answer_doc(c, d);
}

/* Read the document again and answer with it. */
static void answer_now(struct api_creq *c)
{
	int r;

	fp_cluster_follow_stop(c->follow);
	c->follow = NULL;
	fp_timer_stop(&c->timer);
	r = fp_cluster_jobs_get(c->api->cjobs, c->id, final_doc_cb, c, &c->op);
	if (r < 0)
		fail(c, r);
}

/* Keep a landed chunk's lines by its number (input order, ?results=1). */
static int hold(struct api_creq *c, const struct fp_cluster_landed *l)
{
	if (l->chunk >= c->chunks || c->held[l->chunk])
		return 0;             /* not this job's shape, or given twice: once is enough */
	if (!(c->held[l->chunk] = malloc(l->len ? l->len : 1)))
		return -ENOMEM;
	memcpy(c->held[l->chunk], l->lines, l->len);
	c->held_len[l->chunk] = l->len;
	if (c->results && l->attempts) {
		if (!(c->held_att[l->chunk] = strndup(l->attempts, l->attempts_len)))
			return -ENOMEM;
	}
	return 0;
}

static int held_init(struct api_creq *c, uint64_t chunks)
{
	c->chunks = chunks;
	c->held = calloc(chunks ? chunks : 1, sizeof(*c->held));
	c->held_len = calloc(chunks ? chunks : 1, sizeof(*c->held_len));
	c->held_att = calloc(chunks ? chunks : 1, sizeof(*c->held_att));
	return c->held && c->held_len && c->held_att ? 0 : -ENOMEM;
}

/* --- waiting (?wait=) ------------------------------------------------------- */

static void wait_timeout(fp_timer *t)
{
	answer_now(t->data);
}

static void wait_follow_cb(struct fp_cluster_follow *f, const struct fp_cluster_landed *l,
			   size_t n, bool end, const char *state,
			   const struct fp_cluster_doc *doc, void *data)
{
	struct api_creq *c = data;
	size_t i;

	(void)state;
	for (i = 0; c->results && i < n; i++)
		if (hold(c, &l[i]) < 0) {
			fail(c, -ENOMEM);
			return;
		}
	if (end && doc) {
		/* The end carries the document as it ended: no second read (a round trip). */
		fp_cluster_follow_stop(c->follow);
		c->follow = NULL;
		fp_timer_stop(&c->timer);
		answer_doc(c, doc);
	} else if (end) {
		answer_now(c);
	} else {
		fp_cluster_follow_more(f);
	}
}

/* Follow the job's results to their end (collected with ?results=1), or until wait_ms. */
static void wait_for_end(struct api_creq *c, bool finished)
{
	int r = fp_cluster_follow_start(c->api->cjobs, c->id, wait_follow_cb, c, &c->follow);

	if (r < 0) {
		fail(c, r);
		return;
	}
	if (!finished)
		fp_timer_start(c->api->loop, &c->timer, (uint64_t)c->wait_ms, wait_timeout);
}

/* The document now, or once the job finished (the end of its results) or wait_ms passed. */
static void answer_or_wait(struct api_creq *c, const struct fp_cluster_doc *d)
{
	if (d->finished_at && !c->results) {
		answer_doc(c, d);
		return;
	}
	if (c->results && held_init(c, d->chunks) < 0) {
		fail(c, -ENOMEM);
		return;
	}
	if (!d->finished_at && c->wait_ms <= 0) {
		answer_doc(c, d);
		return;
	}
	wait_for_end(c, d->finished_at != 0);
}

/* --- the results stream ----------------------------------------------------- */

static void stream_done(struct api_creq *c)
{
	fp_http_request *req = c->req;

	creq_free(c, false);
	fp_http_stream_end(req);
}

static int write_lines(struct api_creq *c, const char *s, size_t len)
{
	int r = fp_http_stream_write(c->req, s, len);

	if (r == 1)
		c->blocked = true;
	return r;
}

static void results_cb(struct fp_cluster_follow *f, const struct fp_cluster_landed *l,
		       size_t n, bool end, const char *state,
		       const struct fp_cluster_doc *doc, void *data)
{
	struct api_creq *c = data;
	size_t i;

	(void)state;
	(void)doc;
	for (i = 0; i < n; i++) {
		if (!c->input_order) {
			if (write_lines(c, l[i].lines, l[i].len) < 0)
				return;         /* gone: the close callback frees c */
			continue;
		}
		if (hold(c, &l[i]) < 0) {
			stream_done(c);
			return;
		}
		/* Chunks are ranges of the input, numbered in it: the next one goes when it came. */
		while (c->next_chunk < c->chunks && c->held[c->next_chunk]) {
			uint64_t k = c->next_chunk++;
			int r = write_lines(c, c->held[k], c->held_len[k]);

			free(c->held[k]);
			c->held[k] = NULL;
			if (r < 0)
				return;
		}
	}
	if (end) {
		stream_done(c);
		return;
	}
	if (!c->blocked)
		fp_cluster_follow_more(f);
}

static void on_drain(fp_http_request *req, void *data)
{
	struct api_creq *c = data;

	(void)req;
	c->blocked = false;
	fp_cluster_follow_more(c->follow);
}

static void start_stream(struct api_creq *c, const struct fp_cluster_doc *d)
{
	int r;

	if (strcmp(fp_http_method(c->req), "HEAD") == 0) {
		fp_http_request *req = c->req;

		creq_free(c, false);
		if (fp_http_stream_start(req, 200, "application/x-ndjson") == 0)
			fp_http_stream_end(req);
		return;
	}
	if (c->input_order && held_init(c, d->chunks) < 0) {
		fail(c, -ENOMEM);
		return;
	}
	r = fp_cluster_follow_start(c->api->cjobs, c->id, results_cb, c, &c->follow);
	if (r < 0) {
		fail(c, r);
		return;
	}
	if (fp_http_stream_start(c->req, 200, "application/x-ndjson") < 0)
		return;                  /* gone: the close callback frees c */
	c->streaming = true;
	fp_http_on_drain(c->req, on_drain, c);
}

/* --- routes ----------------------------------------------------------------- */

static void doc_cb(void *data, int status, const struct fp_cluster_doc *d)
{
	struct api_creq *c = data;

	c->op = NULL;
	if (status < 0) {
		fail(c, status);
		return;
	}
	if (c->what == CR_RESULTS)
		start_stream(c, d);
	else
		answer_or_wait(c, d);
}

static void submit_cb(void *data, int status, const char *id,
		      const struct fp_cluster_held *held)
{
	struct api_creq *c = data;
	char loc[96];
	int r;

	c->op = NULL;
	if (status < 0) {
		fail(c, -ENOTCONN);
		return;
	}
	snprintf(c->id, sizeof(c->id), "%s", id);
	fp_http_set_log_field(c->req, "job", id);
	if (held->held && held->hash != c->idem_hash) {
		fp_http_request *req = c->req;

		c->api->idem_conflicts++;
		creq_free(c, false);
		fp__api_error(req, 409, "idempotency_conflict", "Idempotency-Key \"%s\" belongs to"
			      " job %s, made by another request (its route, body or parameters"
			      " differ); a new request needs a new key",
			      fp_http_header(req, "Idempotency-Key"), id);
		return;
	}
	if (held->held) {
		/* The same request again: the job it made, as a GET would give it. */
		c->api->idem_replayed++;
		c->status = 200;
		snprintf(loc, sizeof(loc), "/v1/jobs/%s", id);
		fp_http_add_header(c->req, "Location", loc);
		fp_http_add_header(c->req, "Idempotent-Replayed", "true");
		c->replayed = true;
	}
	/*
	 * A new job waited for (an apply's round trip, mostly): straight to its
	 * results' end, then the document; a round trip less than reading it first.
	 */
	if (!held->held && c->wait_ms > 0 && !c->results) {
		wait_for_end(c, false);
		return;
	}
	r = fp_cluster_jobs_get(c->api->cjobs, c->id, doc_cb, c, &c->op);
	if (r < 0)
		fail(c, r);
}

void fp__api_cluster_submit(fp_api *api, fp_http_request *req, enum fp_job_kind kind,
			    const char *task, const struct fp_buf *items, size_t n,
			    const fp_call_options *co, const struct fp_job_idem *idem)
{
	struct api_creq *c;
	int r;

	if (fp_pool_has_task(api->pool, task) == 0) {
		/* Every node runs the same modules: a task unknown here is unknown. */
		fp__api_unknown_task(api, req, task, "");
		return;
	}
	if (!fp_cluster_jobs_ready(api->cjobs)) {
		unavailable(req);
		return;
	}
	if (!(c = creq_new(api, req, CR_SUBMIT)))
		return;
	c->wait_ms = fp__api_wait_ms(api, req);
	c->results = c->wait_ms >= 0 && fp__api_want_results(req);
	c->status = c->wait_ms >= 0 ? 200 : 202;
	c->idem_hash = idem ? idem->hash : 0;
	r = fp_cluster_jobs_submit(api->cjobs, kind, task, items, n, co, idem, submit_cb, c,
				   &c->op);
	if (r < 0)
		fail(c, r == -ENOMEM ? r : -ENOTCONN);
}

static void cancel_cb(void *data, int status)
{
	struct api_creq *c = data;
	fp_http_request *req = c->req;

	c->op = NULL;
	if (status < 0) {
		fail(c, status);
	} else if (status == 0) {
		creq_free(c, false);
		fp_http_respond(req, 204, NULL, NULL, 0);
	} else {
		/* As on one node: the answer waits a little for the cancel to settle everywhere. */
		c->wait_ms = CANCEL_WAIT_MS;
		wait_for_end(c, false);
	}
}

void fp__api_cluster_job(fp_api *api, fp_http_request *req, enum fp_api_job_op what,
			 const char *id)
{
	const char *order = fp_http_query(req, "order");
	struct api_creq *c;
	int r;

	if (what == FP_API_JOB_RESULTS && order && strcmp(order, "input") != 0 &&
	    strcmp(order, "completion") != 0) {
		fp__api_error(req, 400, "bad_request", "?order= is input or completion, not '%s'", order);
		return;
	}
	if (what == FP_API_JOB_GET && fp__api_wait_ms(api, req) == -2) {
		fp__api_error(req, 400, "bad_request", "?wait= must be a number of seconds");
		return;
	}
	if (!(c = creq_new(api, req, what == FP_API_JOB_GET ? CR_GET :
			   what == FP_API_JOB_DELETE ? CR_DELETE : CR_RESULTS)))
		return;
	snprintf(c->id, sizeof(c->id), "%s", id);
	if (what == FP_API_JOB_GET) {
		c->wait_ms = fp__api_wait_ms(api, req);
		c->results = fp__api_want_results(req);
	}
	c->input_order = !order || strcmp(order, "input") == 0;
	if (what == FP_API_JOB_DELETE)
		r = fp_cluster_jobs_cancel(api->cjobs, id, cancel_cb, c, &c->op);
	else
		r = fp_cluster_jobs_get(api->cjobs, id, doc_cb, c, &c->op);
	if (r < 0)
		fail(c, r);
}

/* --- the list ---------------------------------------------------------------- */

static void list_cb(void *data, int status, const struct fp_cluster_doc *docs,
		    const uint64_t *places, size_t n)
{
	struct api_creq *c = data;
	fp_http_request *req = c->req;
	size_t i, limit = (size_t)c->wait_ms;
	struct sbuf b;

	c->op = NULL;
	if (status == -ENOENT) {
		creq_free(c, false);
		fp__api_error(req, 400, "bad_request", "?after=%s: no job with that id is kept"
			      " (any more); page with the \"next\" of the previous answer,"
			      " which outlives its job", fp_http_query(req, "after"));
		return;
	}
	if (status < 0) {
		fail(c, status);
		return;
	}
	sbuf_init(&b);
	sbuf_adds(&b, "{\"jobs\":[");
	for (i = 0; i < n && i < limit; i++) {
		if (i)
			sbuf_adds(&b, ",");
		doc_json(&b, &docs[i]);
		sbuf_adds(&b, "}");
	}
	if (n > limit)
		sbuf_printf(&b, "],\"next\":\"%llu\"}", (unsigned long long)places[limit - 1]);
	else
		sbuf_adds(&b, "],\"next\":null}");
	creq_free(c, false);
	fp__api_json(req, 200, &b);
	sbuf_free(&b);
}

void fp__api_cluster_list(fp_api *api, fp_http_request *req, const char *state, size_t limit)
{
	const char *after = fp_http_query(req, "after");
	struct api_creq *c;
	int r;

	if (after && !(strlen(after) == 32 && strspn(after, "0123456789abcdef") == 32) &&
	    !(after[0] >= '1' && after[0] <= '9' && strspn(after, "0123456789") == strlen(after) &&
	      strlen(after) <= 19)) {
		fp__api_error(req, 400, "bad_request", "?after= takes the \"next\" of a previous"
			      " answer (or a job's id), not '%.100s'", after);
		return;
	}
	if (!(c = creq_new(api, req, CR_LIST)))
		return;
	c->wait_ms = (int64_t)limit;           /* the page's size, for list_cb */
	/* One more than the page: whether there is a next one. */
	r = fp_cluster_jobs_list(api->cjobs, after, limit + 1, state, list_cb, c, &c->op);
	if (r < 0)
		fail(c, r);
}

void fp__api_cluster_end(fp_api *api)
{
	while (api->creqs) {
		struct api_creq *c = api->creqs;
		fp_http_request *req = c->req;

		if (c->streaming) {
			stream_done(c);
			continue;
		}
		creq_free(c, false);
		fp__api_error(req, 503, "shutting_down", "the server is shutting down");
	}
}
