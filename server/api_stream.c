/*
 * The results stream, GET /v1/jobs/ID/results: NDJSON lines as items finish,
 * in input or completion order.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

/* A stream's chunk at most: its buffer is about this big while it lasts. */
#define STREAM_BATCH (64u * 1024)
/* Values a stream takes from the job at a time. */
#define VALUES_RUN 256

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
	size_t part;              /* bytes of item next's line written, when it goes in pieces */
	struct sbuf line;         /* an error's line, formatted whole */
	struct sbuf buf;          /* the chunk being formatted */
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
	fp_job_unref(s->job);
	sbuf_free(&s->line);
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

/* The next line's item, or false when it has not finished yet. */
static bool stream_item(struct api_stream *s, struct fp_job_item *it)
{
	size_t idx = stream_next_index(s);

	if (idx == SIZE_MAX)
		return false;
	fp_job_item(s->job, idx, it);
	return true;
}

/* An error's line, newline included, into s->line. */
static void error_line(struct api_stream *s, const struct fp_job_item *it)
{
	sbuf_reset(&s->line);
	fp__api_result_line(&s->line, it, s->pipeline);
	sbuf_add(&s->line, "\n", 1);
}

/*
 * Up to `left` more bytes of item next's line, from s->part on: a value's
 * head, a piece of its record and its tail, or a piece of an error's line.
 */
static void line_piece(struct api_stream *s, const struct fp_job_item *it, size_t left)
{
	char head[VALUE_LINE_EXTRA];
	const char *from[3];
	size_t len[3], skip = s->part, total = 0, take, i;

	if (it->status == FP_ITEM_OK) {
		from[0] = head;
		len[0] = (size_t)(value_head(head, it->index) - head);
		from[1] = it->value;
		len[1] = it->value_len;
		from[2] = "}\n";
		len[2] = 2;
	} else {
		if (!s->part)
			error_line(s, it);
		from[0] = s->line.data;
		len[0] = s->line.len;
		len[1] = len[2] = 0;
	}
	for (i = 0; i < 3; i++) {
		total += len[i];
		if (skip >= len[i]) {
			skip -= len[i];
			continue;
		}
		take = len[i] - skip < left ? len[i] - skip : left;
		sbuf_add(&s->buf, from[i] + skip, take);
		s->part += take;
		left -= take;
		skip = 0;
	}
	if (s->part == total) {
		s->part = 0;
		s->next++;
		sbuf_free(&s->line);
	}
}

/*
 * Format up to `budget` bytes of lines into s->buf: runs of values the fast
 * way, anything else line by line, and a line that does not fit in a chunk
 * of its own in pieces (it starts a chunk, so that it goes in as few as the
 * room allows).
 */
static void stream_fill(struct api_stream *s, size_t budget)
{
	struct fp_job_value vals[VALUES_RUN];
	struct fp_job_item it;
	size_t left, n, fit, need, one;

	while (s->buf.len < budget && !s->buf.oom) {
		left = budget - s->buf.len;
		if (s->part) {
			if (!stream_item(s, &it))
				break;
			line_piece(s, &it, left);
			continue;
		}
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
		if (!stream_item(s, &it))
			break;
		if (!n) {
			/* Not a value: an error, whose line is written whole when it fits. */
			error_line(s, &it);
			if (s->line.len <= left) {
				sbuf_add(&s->buf, s->line.data, s->line.len);
				s->next++;
				continue;
			}
		}
		if (s->buf.len)
			break;
		line_piece(s, &it, left);
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
	if (s->next == fp_job_total(s->job) && !s->part && fp_job_finished(s->job)) {
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
	s = calloc(1, sizeof(*s));
	if (!s) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	s->api = api;
	s->req = req;
	s->job = job;
	fp_job_ref(job);
	s->completion = order && strcmp(order, "completion") == 0;
	s->pipeline = fp_job_kind(job) == FP_JOB_PIPELINE;
	sbuf_init(&s->line);
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
	/* A finished job changes no more: only a running one is watched. */
	if (!fp_job_finished(job))
		fp_job_watch(job, &s->watch);
	stream_pump(s);
}

void fp__api_streams_end(fp_api *api)
{
	while (api->streams)
		stream_finish(api->streams);
}
