/*
 * The results stream, GET /v1/jobs/ID/results: NDJSON lines as items finish,
 * in input or completion order. And, written the same way, a finished job's
 * document when it carries megabytes of values (?results=1, an apply's
 * result): its small members first, then the values from the records.
 *
 * It is written from the job's records as the client reads: the records
 * are the buffer, and a connection holds at most its window of
 * unsent output (the HTTP server's high-water mark, 256 KiB) plus one
 * chunk being formatted (STREAM_BATCH). A client that stops reading stops
 * the stream there, and is dropped when its output has not moved for the
 * write-stall timeout; N of them cost N windows, not N copies of the job.
 * The stream holds the job (fp_job_ref()): forgotten meanwhile (TTL,
 * max-jobs, memory, DELETE), its records stay until the stream ends.
 *
 * A line longer than the room for a chunk (a value of megabytes) is written
 * in pieces, each copied from the record into the output queue as room
 * comes. We chose that over referencing the record's bytes from the output
 * queue: a reference would tie the record's lifetime to a write in flight in
 * the loop's backend (io_uring reads the buffer until its completion, which
 * may come after the connection's close callback), for the saving of one
 * memcpy per byte, which the write's own copy into the socket costs again.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

/* A stream's chunk at most: its buffer is about this big while it lasts. */
#define STREAM_BATCH (64u * 1024)
/* Values a stream takes from the job at a time. */
#define VALUES_RUN 256
/* A document is streamed once its job holds this much: else it goes whole. */
#define DOC_STREAM_MIN (256u * 1024)

/* A value's line but its newline: what value_line() writes past `value_len`, at most. */
#define VALUE_LINE_EXTRA (sizeof("{\"index\":,\"value\":}") - 1 + 20)

/* `{"index":I,"value":` at d, returning its end: a value line's head. */
static char *value_head(char *d, size_t index)
{
	memcpy(d, "{\"index\":", 9);
	d = sbuf_put_uint(d + 9, index);
	memcpy(d, ",\"value\":", 9);
	return d + 9;
}

/*
 * `{"index":I,"value":V}` at d, returning its end: every line of a value
 * in a stream, written in place, digits by hand (snprintf and an append per
 * piece were most of a stream's cost, docs/PROFILE-http-pipeline.md).
 */
static char *value_line(char *d, size_t index, const char *value, size_t value_len)
{
	d = value_head(d, index);
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
void fp__api_result_line(struct sbuf *b, const struct fp_job_item *it, bool pipeline)
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
	fp__api_item_members(b, it);
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

/* Where a document stream is: its parts, in order. */
enum doc_part { DOC_HEAD, DOC_RESULT, DOC_RESULTS_OPEN, DOC_ITEMS, DOC_TAIL, DOC_DONE };

struct api_stream {
	fp_api *api;
	fp_http_request *req;
	fp_job *job;              /* held by the stream (fp_job_ref) */
	struct fp_job_watch watch;
	bool completion;          /* ?order=completion */
	bool pipeline;
	bool blocked;             /* no room in the window: wait for drain */
	fp_timer soon;            /* a pump after this burst of items */
	size_t next;              /* next index (input order) or rank (completion) */
	size_t part;              /* bytes of the next unit written, when it goes in pieces */
	struct sbuf line;         /* an error's line, formatted whole */
	struct sbuf buf;          /* the chunk being formatted */
	/* A document instead of NDJSON: its part, and its members up to the values. */
	bool doc, doc_results;
	enum doc_part doc_at;
	struct sbuf head;
	struct api_stream *prev, *next_stream;
};

/* What a stream writes next, as up to three pieces: a head, a record's value, a tail. */
struct unit {
	const char *from[3];
	size_t len[3];
	char pre[VALUE_LINE_EXTRA + 2];
	char post[32];
};

/* `,"attempts":N` and `close` into u->post, for a document: how long it is. */
static size_t attempts_member(struct unit *u, unsigned attempts, const char *close)
{
	int n = snprintf(u->post, sizeof(u->post), ",\"attempts\":%u%s", attempts, close);

	return n > 0 && (size_t)n < sizeof(u->post) ? (size_t)n : 0;
}

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
	fp_job_unref(s->job);
	sbuf_free(&s->line);
	sbuf_free(&s->buf);
	sbuf_free(&s->head);
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

/* The next line's item, or false when it has not finished yet. */
static bool stream_item(struct api_stream *s, struct fp_job_item *it)
{
	size_t idx = stream_next_index(s);

	if (idx == SIZE_MAX)
		return false;
	fp_job_item(s->job, idx, it);
	return true;
}

/* An error's line into s->line: NDJSON's, or a document's `,{…}` (`{…}` first). */
static void error_line(struct api_stream *s, const struct fp_job_item *it)
{
	sbuf_reset(&s->line);
	if (!s->doc) {
		fp__api_result_line(&s->line, it, s->pipeline);
		sbuf_add(&s->line, "\n", 1);
		return;
	}
	if (s->next)
		sbuf_add(&s->line, ",", 1);
	if (s->pipeline) {
		fp__api_result_line(&s->line, it, true);
	} else {
		sbuf_add(&s->line, "{", 1);
		fp__api_item_members(&s->line, it);
		sbuf_add(&s->line, "}", 1);
	}
	/* A document's entry says how many times its item was started: one member more. */
	if (!s->line.oom && s->line.len) {
		s->line.len--;
		sbuf_printf(&s->line, ",\"attempts\":%u}", it->attempts);
	}
}

/* An item's unit: its value between a head and a tail, or its error's line. */
static void item_unit(struct api_stream *s, const struct fp_job_item *it, struct unit *u)
{
	char *d = u->pre;

	if (it->status != FP_ITEM_OK) {
		if (!s->part)
			error_line(s, it);
		u->from[0] = s->line.data;
		u->len[0] = s->line.len;
		return;
	}
	if (s->doc && s->next)
		*d++ = ',';
	if (s->doc && !s->pipeline) {
		memcpy(d, "{\"value\":", 9);
		d += 9;
	} else {
		d = value_head(d, it->index);
	}
	u->from[0] = u->pre;
	u->len[0] = (size_t)(d - u->pre);
	u->from[1] = it->value;
	u->len[1] = it->value_len;
	if (s->doc) {
		u->from[2] = u->post;
		u->len[2] = attempts_member(u, it->attempts, "}");
	} else {
		u->from[2] = "}\n";
		u->len[2] = 2;
	}
}

/* An apply's result in its document: `,"result":V` or `,"error":{…}`, then its attempts. */
static void result_unit(struct api_stream *s, const struct fp_job_item *it, struct unit *u)
{
	if (it->status == FP_ITEM_OK) {
		u->from[0] = ",\"result\":";
		u->len[0] = 10;
		u->from[1] = it->value;
		u->len[1] = it->value_len;
		u->from[2] = u->post;
		u->len[2] = attempts_member(u, it->attempts, "");
		return;
	}
	if (!s->part) {
		sbuf_reset(&s->line);
		sbuf_add(&s->line, ",", 1);
		fp__api_item_members(&s->line, it);
		sbuf_printf(&s->line, ",\"attempts\":%u", it->attempts);
	}
	u->from[0] = s->line.data;
	u->len[0] = s->line.len;
}

/* The next unit to write, or false when there is none yet (or none left). */
static bool unit_next(struct api_stream *s, struct unit *u)
{
	struct fp_job_item it;

	memset(u, 0, offsetof(struct unit, pre));
	if (!s->doc) {
		if (!stream_item(s, &it))
			return false;
		item_unit(s, &it, u);
		return true;
	}
	switch (s->doc_at) {
	case DOC_HEAD:
		u->from[0] = s->head.data;
		u->len[0] = s->head.len;
		return true;
	case DOC_RESULT:
		fp_job_item(s->job, 0, &it);
		result_unit(s, &it, u);
		return true;
	case DOC_RESULTS_OPEN:
		u->from[0] = ",\"results\":[";
		u->len[0] = 12;
		return true;
	case DOC_ITEMS:
		fp_job_item(s->job, s->next, &it);
		item_unit(s, &it, u);
		return true;
	case DOC_TAIL:
		u->from[0] = s->doc_results ? "]}\n" : "}\n";
		u->len[0] = s->doc_results ? 3 : 2;
		return true;
	case DOC_DONE:
		break;
	}
	return false;
}

/* The unit is written: on to the next one. */
static void unit_done(struct api_stream *s)
{
	bool apply = fp_job_kind(s->job) == FP_JOB_APPLY && fp_job_total(s->job) == 1;

	s->part = 0;
	if (s->line.cap > STREAM_BATCH)
		sbuf_free(&s->line);
	if (!s->doc) {
		s->next++;
		return;
	}
	switch (s->doc_at) {
	case DOC_HEAD:
		s->doc_at = apply ? DOC_RESULT : s->doc_results ? DOC_RESULTS_OPEN : DOC_TAIL;
		break;
	case DOC_RESULT:
		s->doc_at = s->doc_results ? DOC_RESULTS_OPEN : DOC_TAIL;
		break;
	case DOC_RESULTS_OPEN:
		s->doc_at = fp_job_total(s->job) ? DOC_ITEMS : DOC_TAIL;
		break;
	case DOC_ITEMS:
		if (++s->next == fp_job_total(s->job))
			s->doc_at = DOC_TAIL;
		break;
	case DOC_TAIL:
	case DOC_DONE:
		s->doc_at = DOC_DONE;
		break;
	}
}

/*
 * Up to `left` more bytes of the unit, from s->part on; unit_done() once
 * it is all written.
 */
static void unit_piece(struct api_stream *s, const struct unit *u, size_t left)
{
	size_t skip = s->part, total = 0, take, i;

	for (i = 0; i < 3; i++) {
		total += u->len[i];
		if (skip >= u->len[i]) {
			skip -= u->len[i];
			continue;
		}
		take = u->len[i] - skip < left ? u->len[i] - skip : left;
		sbuf_add(&s->buf, u->from[i] + skip, take);
		s->part += take;
		left -= take;
		skip = 0;
	}
	if (s->part == total)
		unit_done(s);
}

/*
 * Format up to `budget` bytes into s->buf: NDJSON runs of values the fast
 * way, anything else unit by unit, and a unit that does not fit in a chunk
 * of its own in pieces (it starts a chunk, so that it goes in as few as the
 * room allows).
 */
static void stream_fill(struct api_stream *s, size_t budget)
{
	struct fp_job_value vals[VALUES_RUN];
	struct unit u;
	size_t left, n, fit, need, one;

	while (s->buf.len < budget && !s->buf.oom) {
		left = budget - s->buf.len;
		if (!s->doc && !s->part) {
			n = fp_job_values(s->job, s->next, s->completion, vals, VALUES_RUN);
			for (fit = 0, need = 0; fit < n; fit++, need += one) {
				one = vals[fit].value_len + VALUE_LINE_EXTRA + 1;
				if (one > left - need)
					break;
			}
			if (fit) {
				value_lines(&s->buf, vals, fit);
				s->next += fit;
				continue;
			}
		}
		if (!unit_next(s, &u))
			break;
		if (!s->part && u.len[0] + u.len[1] + u.len[2] > left && s->buf.len)
			break;
		unit_piece(s, &u, left);
	}
}

/*
 * Write what is ready, as far as the window allows. Returns 1 when the
 * stream ended and was freed, -1 when the client is gone (its close callback
 * frees the stream), 0 when there is more to come.
 */
static int stream_pump(struct api_stream *s)
{
	size_t room;
	int rc;

	while (!s->blocked) {
		room = fp_http_stream_room(s->req);
		if (!room) {
			/* Asks for the drain callback. */
			s->blocked = fp_http_stream_write(s->req, NULL, 0) == 1;
			break;
		}
		sbuf_reset(&s->buf);
		stream_fill(s, room < STREAM_BATCH ? room : STREAM_BATCH);
		if (!s->buf.len)
			break;
		rc = fp_http_stream_write(s->req, s->buf.data, s->buf.len);
		if (rc < 0)
			return -1;
		if (rc == 1)
			s->blocked = true;
	}
	if (s->doc ? s->doc_at == DOC_DONE
		   : s->next == fp_job_total(s->job) && !s->part && fp_job_finished(s->job)) {
		stream_finish(s);
		return 1;
	}
	return 0;
}

static void stream_soon_cb(fp_timer *t)
{
	stream_pump(t->data);
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
		stream_pump(s);
}

static void stream_on_end(struct fp_job_watch *w, fp_job *job)
{
	struct api_stream *s = w->data;

	s->watch.job = NULL;
	if (!fp_job_finished(job)) {
		/*
		 * Forgotten before it finished (fp_jobs_forget() of a running job;
		 * the API forgets only finished ones): its records go now.
		 */
		stream_finish(s);
		return;
	}
	/* Finished: the rest is in the records, written as the client reads. */
	stream_pump(s);
}

static void stream_on_drain(fp_http_request *req, void *data)
{
	struct api_stream *s = data;

	s->blocked = false;
	stream_pump(s);
}

static void stream_on_close(fp_http_request *req, void *data)
{
	stream_free(data, true);
}

/* A stream of `job` for `req`, holding the job, on the API's list; NULL without memory. */
static struct api_stream *stream_new(fp_api *api, fp_http_request *req, fp_job *job)
{
	struct api_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->api = api;
	s->req = req;
	s->job = job;
	fp_job_ref(job);
	s->pipeline = fp_job_kind(job) == FP_JOB_PIPELINE;
	sbuf_init(&s->line);
	sbuf_init(&s->buf);
	sbuf_init(&s->head);
	s->watch.on_item = stream_on_item;
	s->watch.on_end = stream_on_end;
	s->watch.data = s;
	s->soon.data = s;
	s->next_stream = api->streams;
	if (api->streams)
		api->streams->prev = s;
	api->streams = s;
	return s;
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
	if (strcmp(fp_http_method(req), "HEAD") == 0) {
		/* The head says what a GET would get; there is no body to wait for. */
		if (fp_http_stream_start(req, 200, "application/x-ndjson") == 0)
			fp_http_stream_end(req);
		return;
	}
	s = stream_new(api, req, job);
	if (!s) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	s->completion = order && strcmp(order, "completion") == 0;
	if (fp_http_stream_start(req, 200, "application/x-ndjson") < 0) {
		stream_free(s, true);
		return;
	}
	fp_http_on_close(req, stream_on_close, s);
	fp_http_on_drain(req, stream_on_drain, s);
	/* A finished job changes no more: only a running one is watched. */
	if (!fp_job_finished(job))
		fp_job_watch(job, &s->watch);
	stream_pump(s);
}

bool fp__api_job_doc_stream(fp_api *api, fp_http_request *req, fp_job *job, int status,
			    bool results)
{
	bool apply = fp_job_kind(job) == FP_JOB_APPLY && fp_job_total(job) == 1;
	struct api_stream *s;
	size_t bytes;

	/*
	 * Only a finished job's document carries values, and only a big one is
	 * worth a stream: the others go whole, with a Content-Length, as a
	 * HEAD does (its body is not sent anyway).
	 */
	fp_job_memory(job, &bytes, NULL);
	if (!fp_job_finished(job) || !(apply || results) || bytes < DOC_STREAM_MIN ||
	    strcmp(fp_http_method(req), "HEAD") == 0)
		return false;
	if (api->closing || !(s = stream_new(api, req, job)))
		return false;
	s->doc = true;
	s->doc_results = results;
	fp__api_job_doc_head(&s->head, job);
	if (s->head.oom) {
		stream_free(s, true);
		return false;
	}
	if (fp_http_stream_start(req, status, "application/json") < 0) {
		/* The client is gone, or the server closed the connection. */
		stream_free(s, true);
		return true;
	}
	fp_http_on_close(req, stream_on_close, s);
	fp_http_on_drain(req, stream_on_drain, s);
	stream_pump(s);
	return true;
}

void fp__api_streams_end(fp_api *api)
{
	while (api->streams)
		stream_finish(api->streams);
}
