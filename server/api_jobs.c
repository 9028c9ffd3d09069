/*
 * Jobs over HTTP: the job document, the list (paged by a cursor), cancel and
 * forget, and the NDJSON stream of results as items finish (in input or
 * completion order), written with back-pressure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000
/* A stream writes this much per chunk before checking back-pressure again. */
#define STREAM_BATCH (64u * 1024)
/* Values a stream takes from the job at a time (a chunk may pass STREAM_BATCH by that many lines). */
#define VALUES_RUN 256
/* DELETE waits this long for a cancelled job to settle before answering. */
#define CANCEL_WAIT_MS 5000

/* `"value":V` or `"error":{"type":…,"message":…}`: an item's outcome, without braces. */
static void item_members(struct sbuf *b, const struct fp_job_item *it)
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
	sbuf_adds(b, "}");
}

static void item_json(struct sbuf *b, const struct fp_job_item *it)
{
	sbuf_add(b, "{", 1);
	item_members(b, it);
	sbuf_add(b, "}", 1);
}

/* A value's line but its newline: what value_line() writes past `value_len`, at most. */
#define VALUE_LINE_EXTRA (sizeof("{\"index\":,\"value\":}") - 1 + 20)

/*
 * `{"index":I,"value":V}` at d, returning its end: every line of a value
 * in a stream, written in place, digits by hand (snprintf and an append per
 * piece were most of a stream's cost, docs/PROFILE-http-pipeline.md).
 */
static char *value_line(char *d, size_t index, const char *value, size_t value_len)
{
	memcpy(d, "{\"index\":", 9);
	d = sbuf_put_uint(d + 9, index);
	memcpy(d, ",\"value\":", 9);
	d += 9;
	memcpy(d, value, value_len);
	d += value_len;
	*d++ = '}';
	return d;
}

/*
 * An item with its index: a result stream's line. A pipeline's output does
 * not stand for one input: `index` is the input it came from, and an error
 * names the stage that failed it.
 */
static void line_json(struct sbuf *b, const struct fp_job_item *it, bool pipeline)
{
	char head[64], *d;
	int n;

	if (it->status == FP_ITEM_OK) {
		if ((d = sbuf_reserve(b, it->value_len + VALUE_LINE_EXTRA)))
			sbuf_commit(b, (size_t)(value_line(d, it->index, it->value, it->value_len) - d));
		return;
	}
	if (pipeline)
		n = snprintf(head, sizeof(head), "{\"index\":%zu,\"stage\":%u,", it->index, it->stage);
	else
		n = snprintf(head, sizeof(head), "{\"index\":%zu,", it->index);
	sbuf_add(b, head, (size_t)n);
	item_members(b, it);
	sbuf_add(b, "}", 1);
}

/*
 * A run of values' lines, newlines included, as line_json() writes each:
 * one reservation for the run, and no fp_job_item() per line.
 */
static void value_lines(struct sbuf *b, const struct fp_job_value *v, size_t n)
{
	size_t room = 0, i;
	char *d, *p;

	for (i = 0; i < n; i++)
		room += v[i].value_len + VALUE_LINE_EXTRA + 1;
	if (!(p = d = sbuf_reserve(b, room)))
		return;
	for (i = 0; i < n; i++) {
		p = value_line(p, v[i].index, v[i].value, v[i].value_len);
		*p++ = '\n';
	}
	sbuf_commit(b, (size_t)(p - d));
}

void fp__api_job_doc(struct sbuf *b, fp_job *job, bool results)
{
	struct fp_job_item it;
	size_t i, n = fp_job_total(job);

	sbuf_printf(b, "{\"id\":\"%s\",\"kind\":\"%s\",\"task\":", fp_job_id(job),
		    fp_job_kind_name(fp_job_kind(job)));
	sbuf_json_string(b, fp_job_task(job), strlen(fp_job_task(job)));
	sbuf_printf(b, ",\"state\":\"%s\",\"total\":%zu,\"done\":%zu,\"failed\":%zu,\"created_at\":",
		    fp_job_state_name(fp_job_state(job)), n, fp_job_done(job), fp_job_failed(job));
	sbuf_json_time(b, fp_job_created_at(job));
	sbuf_adds(b, ",\"finished_at\":");
	sbuf_json_time(b, fp_job_finished_at(job));
	if (fp_job_kind(job) == FP_JOB_PIPELINE)
		fp__api_pipeline_doc(b, job);
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
	}
	if (results && fp_job_finished(job)) {
		sbuf_adds(b, ",\"results\":[");
		for (i = 0; i < n; i++) {
			fp_job_item(job, i, &it);
			if (i)
				sbuf_adds(b, ",");
			if (fp_job_kind(job) == FP_JOB_PIPELINE)
				line_json(b, &it, true);
			else
				item_json(b, &it);
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
	uint64_t before;
	fp_job **jobs;
	struct sbuf b;

	if (fp__api_only_params(req, list_params) || list_after(api, req, &before) < 0)
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

/* --- the results stream -------------------------------------------------- */

struct api_stream {
	fp_api *api;
	fp_http_request *req;
	fp_job *job;
	struct fp_job_watch watch;
	bool completion;          /* ?order=completion */
	bool pipeline;
	bool blocked;             /* over the high-water mark: wait for drain */
	fp_timer soon;            /* a pump after this burst of items */
	size_t next;              /* next index (input order) or rank (completion) */
	struct sbuf buf;
	struct api_stream *prev, *next_stream;
};

/* `closed`: the request is gone (or finished), its callbacks must not be touched. */
static void stream_free(struct api_stream *s, bool closed)
{
	if (s->watch.job)
		fp_job_unwatch(&s->watch);
	fp_timer_stop(&s->soon);
	if (!closed) {
		fp_http_on_close(s->req, NULL, NULL);
		fp_http_on_drain(s->req, NULL, NULL);
	}
	if (s->prev)
		s->prev->next_stream = s->next_stream;
	else
		s->api->streams = s->next_stream;
	if (s->next_stream)
		s->next_stream->prev = s->prev;
	sbuf_free(&s->buf);
	free(s);
}

/* Finish the response and free the stream, letting go of the request first. */
static void stream_finish(struct api_stream *s)
{
	fp_http_request *req = s->req;

	stream_free(s, false);
	fp_http_stream_end(req);
}

/* The index of the next line to write, or SIZE_MAX if it is not known yet. */
static size_t stream_next_index(struct api_stream *s)
{
	struct fp_job_item it;

	if (s->next >= fp_job_total(s->job))
		return SIZE_MAX;
	if (s->completion) {
		if (s->next >= fp_job_done(s->job) + fp_job_failed(s->job))
			return SIZE_MAX;
		return fp_job_completed_index(s->job, s->next);
	}
	fp_job_item(s->job, s->next, &it);
	return it.finished ? s->next : SIZE_MAX;
}

/*
 * Write what is ready. `force` ignores back-pressure: used when the job is
 * about to be forgotten and nothing could be written later. Returns 1 when
 * the stream ended and was freed, -1 when the client is gone (its close
 * callback frees the stream), 0 when there is more to come.
 */
static int stream_pump(struct api_stream *s, bool force)
{
	struct fp_job_value vals[VALUES_RUN];
	struct fp_job_item it;
	size_t idx;
	int rc;

	while (!s->blocked || force) {
		sbuf_reset(&s->buf);
		while (s->buf.len < STREAM_BATCH) {
			/* Runs of values the fast way; anything else line by line. */
			size_t n = fp_job_values(s->job, s->next, s->completion, vals, VALUES_RUN);

			if (n) {
				value_lines(&s->buf, vals, n);
				s->next += n;
				continue;
			}
			if ((idx = stream_next_index(s)) == SIZE_MAX)
				break;
			fp_job_item(s->job, idx, &it);
			line_json(&s->buf, &it, s->pipeline);
			sbuf_adds(&s->buf, "\n");
			s->next++;
		}
		if (!s->buf.len)
			break;
		rc = fp_http_stream_write(s->req, s->buf.data, s->buf.len);
		if (rc < 0)
			return -1;
		if (rc == 1)
			s->blocked = true;
	}
	if (s->next == fp_job_total(s->job) && fp_job_finished(s->job)) {
		stream_finish(s);
		return 1;
	}
	return 0;
}

static void stream_soon_cb(fp_timer *t)
{
	stream_pump(t->data, false);
}

/*
 * Items come in bursts: the pool delivers all the answers of one read from
 * a worker at once. One pump after the burst (a zero-delay timer fires
 * after this loop turn's callbacks) writes them as one chunk; a pump per
 * item made a chunk, and its framing, per line (about a million chunks for a
 * million-item map streamed as it runs).
 */
static void stream_on_item(struct fp_job_watch *w, fp_job *job, size_t index)
{
	struct api_stream *s = w->data;

	if (s->blocked || fp_timer_active(&s->soon))
		return;
	if (fp_timer_start(s->api->loop, &s->soon, 0, stream_soon_cb) < 0)
		stream_pump(s, false);
}

static void stream_on_end(struct fp_job_watch *w, fp_job *job)
{
	struct api_stream *s = w->data;

	s->watch.job = NULL;
	/*
	 * Finished or being forgotten: either way this is the last moment the
	 * job can be read, so write the rest now.
	 */
	if (stream_pump(s, true) == 0) {
		/* Forgotten before it finished (cannot happen today): end anyway. */
		stream_finish(s);
	}
}

static void stream_on_drain(fp_http_request *req, void *data)
{
	struct api_stream *s = data;

	s->blocked = false;
	stream_pump(s, false);
}

static void stream_on_close(fp_http_request *req, void *data)
{
	stream_free(data, true);
}

void fp__api_job_results(fp_api *api, fp_http_request *req, fp_job *job)
{
	const char *order = fp_http_query(req, "order");
	struct api_stream *s;

	if (order && strcmp(order, "input") != 0 && strcmp(order, "completion") != 0) {
		fp__api_error(req, 400, "bad_request", "?order= is input or completion, not '%s'", order);
		return;
	}
	/* A pipeline's outputs are kept as delivered: its order was chosen at submission. */
	if (order && fp_job_kind(job) == FP_JOB_PIPELINE &&
	    (strcmp(order, "input") == 0) != fp_job_ordered(job)) {
		fp__api_error(req, 400, "bad_request",
			      "this pipeline delivers in %s order (\"ordered\": %s at submission), not %s",
			      fp_job_ordered(job) ? "input" : "completion",
			      fp_job_ordered(job) ? "true" : "false", order);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	s->api = api;
	s->req = req;
	s->job = job;
	s->completion = order && strcmp(order, "completion") == 0;
	s->pipeline = fp_job_kind(job) == FP_JOB_PIPELINE;
	sbuf_init(&s->buf);
	s->watch.on_item = stream_on_item;
	s->watch.on_end = stream_on_end;
	s->watch.data = s;
	s->soon.data = s;
	s->next_stream = api->streams;
	if (api->streams)
		api->streams->prev = s;
	api->streams = s;
	if (fp_http_stream_start(req, 200, "application/x-ndjson") < 0) {
		stream_free(s, true);
		return;
	}
	fp_http_on_close(req, stream_on_close, s);
	fp_http_on_drain(req, stream_on_drain, s);
	/*
	 * A finished job streams at the client's pace too: the watch tells us
	 * if it is about to be forgotten meanwhile (on_end, still readable),
	 * and the rest is written then.
	 */
	if (fp_job_finished(job))
		fp_job_watch_forget(job, &s->watch);
	else
		fp_job_watch(job, &s->watch);
	stream_pump(s, false);
}

void fp__api_streams_end(fp_api *api)
{
	while (api->streams)
		stream_finish(api->streams);
}
