/*
 * Parsing in place: http-parser runs over the connection's input buffer;
 * its callbacks keep the request line and headers as offsets, NUL-terminate
 * them behind the parser, refuse what is over a limit (431, 414, 413, 400)
 * and compact a chunked body over its framing. The parser pauses after each
 * complete request, which is then dispatched to the handler.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_impl.h"

static int refuse(struct conn *c, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * A parser callback refuses the request: execute stops,
 * fp__http_conn_process() answers.
 */
static int refuse(struct conn *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	c->err_status = status;
	c->err_code = code;
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int refuse_headers(struct conn *c)
{
	return refuse(c, 431, "headers_too_large",
		      "request header section is over the limit of %zu bytes",
		      c->srv->lim.max_header_bytes);
}

static int header_section_over(struct conn *c, size_t end)
{
	return end - c->msg_start > c->srv->lim.max_header_bytes;
}

/* The space after the target has been parsed over by now. */
static void target_terminate(struct conn *c)
{
	fp_http_request *req = &c->req;

	if (req->target_ready || !req->have_method)
		return;
	c->in.p[req->url + req->url_len] = '\0';
	req->target_ready = 1;
}

static int on_message_begin(http_parser *p)
{
	struct conn *c = p->data;

	c->phase = PH_HEADERS;
	fp__http_idle_leave(c);
	/* Each execute starts at in_off and covers at most one message start. */
	c->msg_start = c->in_off;
	c->nhdrs = 0;
	c->hdr_state = 0;
	c->req.out_start = c->out_total;
	if (c->srv->log_fn)
		c->req.t_start_ns = fp_now_ns();
	/* A fresh connection's header deadline runs from the accept. */
	if (c->rdl_kind != DL_HEADER)
		fp__http_conn_rdeadline(c, DL_HEADER, c->srv->lim.header_timeout_ms);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	fp_http_request *req = &c->req;
	size_t off = (size_t)(at - c->in.p);

	if (!req->have_method) {
		req->have_method = 1;
		req->method = (uint8_t)p->method;
		req->is_head = p->method == HTTP_HEAD;
		req->url = off;
	}
	req->url_len += len;
	if (req->url_len > c->srv->lim.max_uri_bytes)
		return refuse(c, 414, "uri_too_long",
			      "request target is over the limit of %zu bytes",
			      c->srv->lim.max_uri_bytes);
	return header_section_over(c, off + len) ? refuse_headers(c) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	size_t off = (size_t)(at - c->in.p);
	struct hdr *h;

	target_terminate(c);
	if (c->hdr_state != 1) {
		if (c->nhdrs == c->hdrs_cap) {
			unsigned cap = c->hdrs_cap ? c->hdrs_cap * 2 : 16;
			struct hdr *n = realloc(c->hdrs, cap * sizeof(*n));

			if (!n)
				return refuse(c, 500, "internal_error", "out of memory");
			c->hdrs = n;
			c->hdrs_cap = cap;
		}
		h = &c->hdrs[c->nhdrs++];
		h->name = off;
		h->name_len = 0;
		c->hdr_state = 1;
	}
	h = &c->hdrs[c->nhdrs - 1];
	h->name_len += len;
	/* No value callback for "Name:": the value is the NUL on the colon. */
	h->val = h->name + h->name_len;
	h->val_len = 0;
	return header_section_over(c, off + len) ? refuse_headers(c) : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	size_t off = (size_t)(at - c->in.p);
	struct hdr *h = &c->hdrs[c->nhdrs - 1];

	if (c->hdr_state != 2) {
		h->val = off;
		h->val_len = 0;
		c->hdr_state = 2;
	}
	h->val_len += len;
	return header_section_over(c, off + len) ? refuse_headers(c) : 0;
}

static int on_headers_complete(http_parser *p)
{
	struct conn *c = p->data;
	fp_http_server *srv = c->srv;
	fp_http_request *req = &c->req;
	char *in = c->in.p;
	const char *expect;
	int chunked, has_len;
	unsigned i;
	struct hdr *h;

	/* Every byte up to here is parsed: terminate names and values in place. */
	target_terminate(c);
	for (i = 0; i < c->nhdrs; i++) {
		h = &c->hdrs[i];
		in[h->name + h->name_len] = '\0';
		while (h->val_len && (in[h->val + h->val_len - 1] == ' ' ||
				      in[h->val + h->val_len - 1] == '\t'))
			h->val_len--;
		in[h->val + h->val_len] = '\0';
	}
	req->headers_ready = 1;
	req->http_minor = p->http_major > 1 ? 1 : (uint8_t)p->http_minor;
	if (req->http_minor >= 1) {
		/* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host. */
		unsigned hosts = 0;

		for (i = 0; i < c->nhdrs; i++)
			hosts += !strcasecmp(in + c->hdrs[i].name, "Host");
		if (hosts != 1)
			return refuse(c, 400, "bad_request", hosts ?
				      "more than one Host header" :
				      "HTTP/1.1 request without a Host header");
	}
	req->keep_alive = (uint8_t)http_should_keep_alive(p);

	if (p->upgrade) {
		if (p->method == HTTP_CONNECT)
			return refuse(c, 400, "bad_request", "CONNECT is not supported");
		/* No protocol switch here: answer, then close, as the bytes
		 * after an Upgrade request are not HTTP to this server. */
		req->keep_alive = 0;
	}

	chunked = (p->flags & F_CHUNKED) != 0;
	has_len = !chunked && p->content_length != ULLONG_MAX && p->content_length > 0;
	if (has_len && p->content_length > srv->lim.max_body_bytes)
		return refuse(c, 413, "body_too_large",
			      "request body of %llu bytes is over the limit of %zu bytes",
			      (unsigned long long)p->content_length, srv->lim.max_body_bytes);
	if (!chunked && !has_len)
		return 0;

	/* The client waits for this before it sends the body (RFC 9110 10.1.1). */
	if (p->http_major == 1 && p->http_minor >= 1 &&
	    (expect = fp__http_header_find(c, "Expect")) && !strcasecmp(expect, "100-continue")) {
		if (fp__http_out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
			return refuse(c, 500, "internal_error", "out of memory");
		srv->stats.responses[1]++;
		srv->stats.by_code[100 - 100]++;
	}
	c->phase = PH_BODY;
	/* From here on the body's bytes, not time alone, earn it time (on_body). */
	c->body_t0 = fp_now_ms();
	c->body_rx = 0;
	c->body_total = has_len ? p->content_length : 0;
	fp__http_conn_rdeadline(c, DL_BODY, srv->lim.body_timeout_ms);
	return 0;
}

/*
 * Body bytes are moved down over the chunk framing as they come, so the
 * de-chunked body is contiguous right after the headers. Only bytes the
 * parser has passed are overwritten.
 */
static int on_body(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	fp_http_request *req = &c->req;
	size_t off = (size_t)(at - c->in.p), max = c->srv->lim.max_body_bytes;

	if (!req->body_started) {
		req->body_started = 1;
		req->body = off;
		req->body_len = 0;
	}
	if (len > max - req->body_len)
		return refuse(c, 413, "body_too_large",
			      "request body is over the limit of %zu bytes", max);
	if (req->body + req->body_len != off)
		memmove(c->in.p + req->body + req->body_len, at, len);
	req->body_len += len;
	c->body_rx += len;
	/* Only later: the sweep due at the old deadline sees the new one and
	 * comes back for it. */
	if (c->rdl_kind == DL_BODY && c->rdeadline && c->srv->lim.body_min_rate)
		c->rdeadline = c->body_t0 + c->srv->lim.body_timeout_ms +
			       c->body_rx * 1000u / c->srv->lim.body_min_rate;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct conn *c = p->data;
	fp_http_request *req = &c->req;
	size_t end;

	if (req->body_started) {
		/* The byte after the body may be the next request's first:
		 * it is put back when this request is released. */
		end = req->body + req->body_len;
		c->saved_at = end;
		c->saved = c->in.p[end];
		c->saved_set = 1;
		c->in.p[end] = '\0';
	}
	/* One request at a time: execute returns right after this one. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* Squeeze out the chunk framing the parser has passed since the last call. */
static void body_compact(struct conn *c)
{
	size_t end, rest;

	if (!c->req.body_started)
		return;
	end = c->req.body + c->req.body_len;
	if (c->in_off <= end)
		return;
	rest = c->in.len - c->in_off;
	memmove(c->in.p + end, c->in.p + c->in_off, rest);
	c->in.len = end + rest;
	c->in_off = end;
}

static void request_dispatch(struct conn *c)
{
	fp_http_server *srv = c->srv;

	c->phase = PH_HANDLER;
	fp__http_conn_rdeadline(c, DL_NONE, 0);
	srv->stats.requests++;
	srv->handler(&c->req, srv->data);
}

/* Parse what is buffered, dispatching each complete request in turn. */
void fp__http_conn_process(struct conn *c)
{
	http_parser *p = &c->parser;
	enum http_errno e;
	size_t start, n;

	if (c->processing)
		return;
	c->processing = 1;
	c->resume_pending = 0;
	while (!c->dead && !c->closing && c->phase != PH_HANDLER && c->in_off < c->in.len) {
		start = c->in_off;
		n = http_parser_execute(p, &parser_settings, c->in.p + start, c->in.len - start);
		c->in_off = start + n;
		e = HTTP_PARSER_ERRNO(p);
		if (c->err_status) {
			fp__http_conn_error(c, c->err_status, c->err_code, "%s", c->err_msg);
			break;
		}
		if (e == HPE_PAUSED) {
			http_parser_pause(p, 0);
			request_dispatch(c);
			continue;
		}
		if (e == HPE_HEADER_OVERFLOW) {
			refuse_headers(c);
			fp__http_conn_error(c, c->err_status, c->err_code, "%s", c->err_msg);
			break;
		}
		if (e != HPE_OK) {
			fp__http_conn_error(c, 400, "bad_request", "malformed request: %s",
				   http_errno_description(e));
			break;
		}
		if (c->phase == PH_HEADERS && header_section_over(c, c->in_off)) {
			refuse_headers(c);
			fp__http_conn_error(c, c->err_status, c->err_code, "%s", c->err_msg);
			break;
		}
		if (c->phase == PH_BODY)
			body_compact(c);
	}
	/* Only blank lines between requests were read: nothing to keep. */
	if (c->phase == PH_IDLE && !c->closing && c->in_off == c->in.len)
		c->in.len = c->in_off = 0;
	/*
	 * After the client's FIN, every complete request has been dispatched
	 * once the handler has none: what is left is not a request and never
	 * will be. What is queued goes out, then the connection closes.
	 */
	if (c->peer_eof && !c->dead && c->phase != PH_HANDLER)
		c->closing = 1;
	c->processing = 0;
}
