/*
 * Responses: the status line and headers (the Date header refreshed once a
 * second, reasons from http-parser's status table), whole responses,
 * streamed ones with chunked encoding and back-pressure, the error responses
 * the server makes itself, and the finish that moves a connection on to its
 * next request.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http_impl.h"

const char *fp_http_reason(int status)
{
	switch (status) {
#define FP__HTTP_REASON(num, name, string) case num: return #string;
	HTTP_STATUS_MAP(FP__HTTP_REASON)
#undef FP__HTTP_REASON
	default:
		return "Unknown";
	}
}

static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *put_hex(char *p, size_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[2 * sizeof(size_t)];
	int n = 0;

	do
		tmp[n++] = digits[v & 15];
	while ((v >>= 4));
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* --- the Date header ------------------------------------------------------ */

static void date_refresh(fp_http_server *srv)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;
	int n;

	if (now == srv->date_sec && srv->date_len)
		return;
	srv->date_sec = now;
	gmtime_r(&now, &tm);
	/* By hand: strftime's %a and %b follow the locale, HTTP wants English. */
	n = snprintf(srv->date, sizeof(srv->date),
		     "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
		     days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
		     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	srv->date_len = n > 0 && (size_t)n < sizeof(srv->date) ? (size_t)n : 0;
}

/* --- responses ------------------------------------------------------------ */

static void response_begin(struct conn *c, int status, int streamed)
{
	fp_http_request *req = &c->req;

	req->status = status;
	req->out_start = c->out_total;
	req->bodiless = req->is_head || status == 204 || status == 304;
	/* HTTP/1.0 has no chunks: a streamed body ends with the connection. */
	req->chunked = streamed && req->http_minor >= 1 && status != 204 && status != 304;
	/* After the client's FIN, the last complete request's answer closes. */
	req->close = !req->keep_alive || c->closing || c->srv->freeing ||
		     (streamed && !req->chunked && !req->bodiless) ||
		     (c->peer_eof && c->in_off == c->in.len && !c->over.len);
	c->srv->stats.responses[status / 100]++;
	if (status >= 100 && status <= 599)
		c->srv->stats.by_code[status - 100]++;
}

/* An upper bound on the head's size. */
static size_t head_size(struct conn *c, int status, size_t ctype_len)
{
	return HEAD_SLACK + strlen(fp_http_reason(status)) + c->srv->date_len +
	       ctype_len + c->req.rh.len;
}

static char *head_write(struct conn *c, char *p, int status, const char *ctype,
			size_t ctype_len, int streamed, size_t len)
{
	fp_http_request *req = &c->req;
	const char *reason = fp_http_reason(status);

	p = PUTS(p, "HTTP/1.1 ");
	p = put_u64(p, (uint64_t)status);
	*p++ = ' ';
	p = put(p, reason, strlen(reason));
	p = PUTS(p, "\r\n");
	if (!req->has_server)
		p = PUTS(p, "Server: forkpoold\r\n");
	p = put(p, c->srv->date, c->srv->date_len);
	if (ctype) {
		p = PUTS(p, "Content-Type: ");
		p = put(p, ctype, ctype_len);
		p = PUTS(p, "\r\n");
	}
	if (req->rh.len)
		p = put(p, req->rh.p, req->rh.len);
	if (status == 204 || status == 304) {
		/* No body and no length: RFC 9110 8.6. */
	} else if (!streamed) {
		p = PUTS(p, "Content-Length: ");
		p = put_u64(p, len);
		p = PUTS(p, "\r\n");
	} else if (req->chunked) {
		p = PUTS(p, "Transfer-Encoding: chunked\r\n");
	}
	if (req->close)
		p = PUTS(p, "Connection: close\r\n");
	else if (req->http_minor == 0)
		p = PUTS(p, "Connection: keep-alive\r\n");
	return PUTS(p, "\r\n");
}

static int ctype_ok(const char *ctype)
{
	return !ctype || !strpbrk(ctype, "\r\n");
}

/* Status line, headers and the whole body, queued. */
static int response_whole(struct conn *c, int status, const char *ctype,
			  const char *body, size_t len)
{
	size_t ctype_len = ctype ? strlen(ctype) : 0;
	char *p, *q;

	date_refresh(c->srv);
	response_begin(c, status, 0);
	/* HEAD keeps len: Content-Length says what GET would send. */
	p = fp__http_out_reserve(c, head_size(c, status, ctype_len) +
			(c->req.bodiless ? 0 : len));
	if (!p)
		return -ENOMEM;
	q = head_write(c, p, status, ctype, ctype_len, 0, len);
	if (!c->req.bodiless && len)
		q = put(q, body, len);
	fp__http_out_commit(c, (size_t)(q - p));
	return 0;
}

/* The response is complete: on to the next request, or to closing. */
static void request_finish(struct conn *c)
{
	fp_http_request *req = &c->req;

	req->resp = R_DONE;
	fp__http_access_log(c, req->status);
	if (req->close)
		c->closing = 1;
	fp__http_request_release(c);
	/* The client's FIN came while it was answered (after the response
	 * began): with nothing more to parse, the connection is done. */
	if (c->peer_eof && !c->in.len)
		c->closing = 1;
	if (c->dead || c->closing)
		return;
	fp__http_conn_rdeadline(c, DL_IDLE, c->srv->lim.idle_timeout_ms);
	fp__http_idle_enter(c);
	/*
	 * Pipelined bytes. Inside fp__http_conn_process() its loop goes on once the
	 * handler returns. Otherwise the handler's code is still on the stack
	 * (an answer from a timer, a drain or a job callback) and may touch
	 * the request it just finished, so the next one is not parsed into the
	 * same object until the loop turns: at this response's write
	 * completion, or from the sweep when nothing was written.
	 */
	if (c->in.len && !c->processing) {
		c->resume_pending = 1;
		if (!c->unsent)
			fp__http_sweep_arm(c->srv, fp_now_ms());
	}
}

static size_t json_escape(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (; *s && o + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20) {
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[ch >> 4];
			out[o + 5] = hex[ch & 15];
			o += 6;
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
	return o;
}

/*
 * Answer a request the server refuses, then close: no more of the input is
 * parsed, the response is flushed and the connection lingers (conn_settle).
 */
void fp__http_conn_error(struct conn *c, int status, const char *code,
		       const char *fmt, ...)
{
	char msg[256], emsg[512], body[768];
	va_list ap;
	int n;

	if (c->dead || c->closing)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_escape(emsg, sizeof(emsg), msg);
	n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
		     code, emsg);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = 0;
	c->phase = PH_IDLE;
	c->req.keep_alive = 0;
	c->req.rh.len = 0;
	if (response_whole(c, status, "application/json", body, (size_t)n) < 0) {
		fp__http_conn_kill(c);
		return;
	}
	fp__http_access_log(c, status);
	c->closing = 1;
	c->in.len = c->in_off = 0;
	fp__http_conn_rdeadline(c, DL_NONE, 0);
}

/* --- responding ----------------------------------------------------------- */

static int header_name_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s <= ' ' || *s == ':' || *s == 127)
			return 0;
	return 1;
}

int fp_http_add_header(fp_http_request *req, const char *name, const char *value)
{
	static const char *const own[] = {
		"Content-Length", "Transfer-Encoding", "Date", "Connection",
	};
	size_t nl, vl, i;
	struct buf *b;

	if (!req || !name || !value || !header_name_ok(name) || strpbrk(value, "\r\n"))
		return -EINVAL;
	if (req->resp != R_NONE || req->c->phase != PH_HANDLER)
		return -EALREADY;
	for (i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (!strcasecmp(name, own[i]))
			return -EINVAL;
	if (!strcasecmp(name, "Server"))
		req->has_server = 1;
	nl = strlen(name);
	vl = strlen(value);
	b = &req->rh;
	if (fp__http_buf_reserve(b, nl + vl + 4) < 0)
		return -ENOMEM;
	memcpy(b->p + b->len, name, nl);
	memcpy(b->p + b->len + nl, ": ", 2);
	memcpy(b->p + b->len + nl + 2, value, vl);
	memcpy(b->p + b->len + nl + 2 + vl, "\r\n", 2);
	b->len += nl + vl + 4;
	return 0;
}

/*
 * Common checks of the respond calls. 1: go on; 0 or less: return that.
 * A request whose client is gone fails with -EPIPE; a zombie is released
 * by the call that would have finished it.
 */
static int respond_check(fp_http_request *req, int finishing)
{
	struct conn *c = req->c;

	if (c->phase != PH_HANDLER)
		return -EINVAL;
	if (req->gone) {
		if (finishing && c->zombie && !c->in_close_cb) {
			/* Freed from the loop, not under the handler's feet. */
			c->zombie = 0;
			c->reap_later = 1;
			fp__http_request_release(c);
			fp__http_sweep_arm(c->srv, fp_now_ms());
		}
		return -EPIPE;
	}
	return 1;
}

/* Nothing sensible can be sent any more: the request is over, and so is its connection. */
static void request_abort(struct conn *c, fp_http_request *req)
{
	req->gone = 1;
	fp__http_request_release(c);
	fp__http_conn_kill(c);
}

int fp_http_respond(fp_http_request *req, int status, const char *content_type,
		    const char *body, size_t len)
{
	struct conn *c;
	int r;

	if (!req || status < 200 || status > 599 || (len && !body) || !ctype_ok(content_type))
		return -EINVAL;
	c = req->c;
	if (req->resp != R_NONE)
		return -EALREADY;
	c->busy++;
	r = respond_check(req, 1);
	if (r <= 0)
		goto out;
	r = response_whole(c, status, content_type, body, len);
	if (r < 0) {
		request_abort(c, req);
		goto out;
	}
	request_finish(c);
out:
	fp__http_conn_leave(c);
	return r;
}

int fp_http_stream_start(fp_http_request *req, int status, const char *content_type)
{
	struct conn *c;
	size_t ctype_len;
	char *p, *q;
	int r;

	if (!req || status < 200 || status > 599 || !ctype_ok(content_type))
		return -EINVAL;
	c = req->c;
	if (req->resp != R_NONE)
		return -EALREADY;
	c->busy++;
	r = respond_check(req, 0);
	if (r <= 0)
		goto out;
	ctype_len = content_type ? strlen(content_type) : 0;
	date_refresh(c->srv);
	response_begin(c, status, 1);
	p = fp__http_out_reserve(c, head_size(c, status, ctype_len));
	if (!p) {
		r = -ENOMEM;
		fp__http_conn_kill(c);
		goto out;
	}
	q = head_write(c, p, status, content_type, ctype_len, 1, 0);
	fp__http_out_commit(c, (size_t)(q - p));
	req->resp = R_STREAM;
	r = 0;
out:
	fp__http_conn_leave(c);
	return r;
}

/* A chunk's framing at most: its length in hex, two CRLFs. */
#define CHUNK_FRAMING (2 * sizeof(size_t) + 4)

size_t fp__http_stream_room(const struct conn *c)
{
	size_t used = c->unsent + CHUNK_FRAMING, mark = c->srv->lim.high_water_bytes;

	return used < mark ? mark - used : 0;
}

size_t fp_http_stream_room(const fp_http_request *req)
{
	return req ? fp__http_stream_room(req->c) : 0;
}

int fp_http_stream_write(fp_http_request *req, const char *data, size_t len)
{
	struct conn *c;
	char *p, *q;
	int r;

	if (!req || (len && !data))
		return -EINVAL;
	c = req->c;
	if (req->gone)
		return -EPIPE;
	if (c->phase != PH_HANDLER || req->resp != R_STREAM)
		return -EINVAL;
	/* An empty chunk would end the body. */
	if (!len || req->bodiless) {
		if (fp__http_stream_room(c))
			return 0;
		c->want_drain = 1;
		return 1;
	}
	c->busy++;
	p = fp__http_out_reserve(c, len + (req->chunked ? CHUNK_FRAMING : 0));
	if (!p) {
		r = -ENOMEM;
		fp__http_conn_kill(c);
		goto out;
	}
	q = p;
	if (req->chunked) {
		q = put_hex(q, len);
		q = PUTS(q, "\r\n");
	}
	q = put(q, data, len);
	if (req->chunked)
		q = PUTS(q, "\r\n");
	fp__http_out_commit(c, (size_t)(q - p));
	r = 0;
	if (!fp__http_stream_room(c)) {
		c->want_drain = 1;
		r = 1;
	}
out:
	fp__http_conn_leave(c);
	return r;
}

/*
 * A stream's close: ended (the last chunk of a chunked body, the connection
 * kept), or cut (flushed, then the connection closed without that last
 * chunk: the client sees the body incomplete, as it must when what it
 * streams has gone).
 */
static int stream_close(fp_http_request *req, bool cut)
{
	struct conn *c;
	int r;

	if (!req)
		return -EINVAL;
	c = req->c;
	if (!req->gone && req->resp != R_STREAM)
		return -EINVAL;
	c->busy++;
	r = respond_check(req, 1);
	if (r <= 0)
		goto out;
	r = 0;
	if (cut)
		req->close = 1;
	else if (req->chunked && !req->bodiless && fp__http_out_append(c, "0\r\n\r\n", 5) < 0) {
		r = -ENOMEM;
		request_abort(c, req);
		goto out;
	}
	request_finish(c);
out:
	fp__http_conn_leave(c);
	return r;
}

int fp_http_stream_end(fp_http_request *req)
{
	return stream_close(req, false);
}

int fp_http_stream_cut(fp_http_request *req)
{
	return stream_close(req, true);
}

/* --- back-pressure -------------------------------------------------------- */

size_t fp_http_unsent(const fp_http_request *req)
{
	return req ? req->c->unsent : 0;
}

void fp_http_on_drain(fp_http_request *req, void (*cb)(fp_http_request *req, void *data),
		      void *data)
{
	if (!req)
		return;
	req->drain_cb = cb;
	req->drain_data = cb ? data : NULL;
}
