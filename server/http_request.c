/*
 * The request as the handler sees it: method, target, the percent-decoded
 * path and query parameters (decoded at first use), headers, body, peer,
 * and the handler's own pointer and close callback.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http_impl.h"

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Percent-decode src[0..n) into dst (which may be src: the output is never
 * longer); `plus` turns '+' into a space, as forms encode queries. A
 * malformed escape is kept as it is, and so is %00: a NUL would cut the
 * string short where the handler could not see it.
 */
static size_t pct_decode(char *dst, const char *src, size_t n, int plus)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if (src[i] == '%' && i + 2 < n &&
		    (hi = hexval(src[i + 1])) >= 0 &&
		    (lo = hexval(src[i + 2])) >= 0 && (hi | lo)) {
			dst[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (plus && src[i] == '+') {
			dst[o++] = ' ';
		} else {
			dst[o++] = src[i];
		}
	}
	dst[o] = '\0';
	return o;
}

const char *fp_http_method(const fp_http_request *req)
{
	return req && req->have_method ? http_method_str((enum http_method)req->method) : "";
}

const char *fp_http_target(const fp_http_request *req)
{
	return req && req->target_ready ? req->c->in.p + req->url : "";
}

/*
 * The decoded path and query go to the arena, sized at first use for both
 * (the target plus two NULs per parameter fits), so it never moves after a
 * pointer into it is handed out.
 */
static int arena_ready(fp_http_request *req)
{
	size_t need = 3 * req->url_len + 8;
	char *p;

	if (req->arena_cap >= need)
		return 0;
	if (req->path_done || req->query_done)
		return -ENOMEM;
	p = realloc(req->arena, need);
	if (!p)
		return -ENOMEM;
	req->arena = p;
	req->arena_cap = need;
	return 0;
}

static char *arena_decode(fp_http_request *req, const char *s, size_t n, int plus)
{
	char *dst = req->arena + req->arena_len;

	req->arena_len += pct_decode(dst, s, n, plus) + 1;
	return dst;
}

/* The path part of origin-form "/p?q" or absolute-form "http://h/p?q". */
static void target_path(const fp_http_request *req, const char **ps, const char **pe)
{
	const char *t = req->c->in.p + req->url, *end = t + req->url_len, *s = t, *e;

	if (*t != '/' && *t != '*') {
		const char *scheme = strstr(t, "://");

		s = scheme ? memchr(scheme + 3, '/', (size_t)(end - scheme - 3)) : NULL;
		if (!s)
			s = end;
	}
	for (e = s; e < end && *e != '?' && *e != '#'; e++)
		;
	*ps = s;
	*pe = e;
}

const char *fp_http_path(const fp_http_request *creq)
{
	fp_http_request *req = (fp_http_request *)creq;
	const char *s, *e;

	if (!req || !req->target_ready)
		return "";
	if (req->path_done)
		return req->path;
	if (arena_ready(req) < 0)
		return "";
	target_path(req, &s, &e);
	req->path = s == e ? (arena_decode(req, "/", 1, 0)) : arena_decode(req, s, (size_t)(e - s), 0);
	req->path_done = 1;
	return req->path;
}

static int query_parse(fp_http_request *req)
{
	const char *s, *e, *end, *seg, *segend, *eq;
	unsigned cap;

	if (req->query_done)
		return 0;
	if (arena_ready(req) < 0)
		return -ENOMEM;
	target_path(req, &s, &e);
	end = req->c->in.p + req->url + req->url_len;
	if (e < end && *e == '?') {
		const char *hash = memchr(e, '#', (size_t)(end - e));

		if (hash)
			end = hash;
		for (seg = e + 1; seg < end; seg = segend + 1) {
			segend = memchr(seg, '&', (size_t)(end - seg));
			if (!segend)
				segend = end;
			if (segend == seg)
				continue;
			if (req->nqp == req->qp_cap) {
				struct qparam *n;

				cap = req->qp_cap ? req->qp_cap * 2 : 8;
				n = realloc(req->qp, cap * sizeof(*n));
				if (!n)
					return -ENOMEM;
				req->qp = n;
				req->qp_cap = cap;
			}
			eq = memchr(seg, '=', (size_t)(segend - seg));
			if (!eq)
				eq = segend;
			req->qp[req->nqp].key = (size_t)(arena_decode(req, seg, (size_t)(eq - seg), 1) - req->arena);
			req->qp[req->nqp].val = (size_t)(arena_decode(req, eq < segend ? eq + 1 : eq,
					(size_t)(segend - (eq < segend ? eq + 1 : eq)), 1) - req->arena);
			req->nqp++;
		}
	}
	req->query_done = 1;
	return 0;
}

const char *fp_http_query_nth(const fp_http_request *creq, const char *name, unsigned n)
{
	fp_http_request *req = (fp_http_request *)creq;
	unsigned i;

	if (!req || !name || !req->target_ready || query_parse(req) < 0)
		return NULL;
	for (i = 0; i < req->nqp; i++)
		if (!strcmp(req->arena + req->qp[i].key, name) && n-- == 0)
			return req->arena + req->qp[i].val;
	return NULL;
}

const char *fp_http_query(const fp_http_request *req, const char *name)
{
	return fp_http_query_nth(req, name, 0);
}

const char *fp_http_query_name(const fp_http_request *creq, unsigned i)
{
	fp_http_request *req = (fp_http_request *)creq;

	if (!req || !req->target_ready || query_parse(req) < 0 || i >= req->nqp)
		return NULL;
	return req->arena + req->qp[i].key;
}

const char *fp__http_header_find(const struct conn *c, const char *name)
{
	unsigned i;

	for (i = 0; i < c->nhdrs; i++)
		if (!strcasecmp(c->in.p + c->hdrs[i].name, name))
			return c->in.p + c->hdrs[i].val;
	return NULL;
}

const char *fp_http_header(const fp_http_request *req, const char *name)
{
	if (!req || !name || !req->headers_ready)
		return NULL;
	return fp__http_header_find(req->c, name);
}

const char *fp_http_body(const fp_http_request *req, size_t *len)
{
	if (!req || !req->body_started) {
		if (len)
			*len = 0;
		return "";
	}
	if (len)
		*len = req->body_len;
	return req->c->in.p + req->body;
}

const char *fp_http_peer(const fp_http_request *creq)
{
	fp_http_request *req = (fp_http_request *)creq;
	struct conn *c;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!req)
		return "";
	c = req->c;
	/* Asked for rarely: no getpeername() on every accept. */
	if (!c->peer_done) {
		c->peer_done = 1;
		if (c->unix_peer)
			snprintf(c->peer, sizeof(c->peer), "unix");
		else if (c->fd >= 0 && getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0)
			fp__http_format_inet(&ss, c->peer, sizeof(c->peer));
		else
			snprintf(c->peer, sizeof(c->peer), "unknown");
	}
	return c->peer;
}

void fp_http_set_data(fp_http_request *req, void *data)
{
	if (req)
		req->data = data;
}

void *fp_http_get_data(const fp_http_request *req)
{
	return req ? req->data : NULL;
}

void fp_http_set_log_field(fp_http_request *req, const char *key, const char *value)
{
	size_t n = strnlen(value, sizeof(req->log_value) - 1);

	/* As snprintf("%s") would, without printf: once a request. */
	req->log_key = key;
	memcpy(req->log_value, value, n);
	req->log_value[n] = '\0';
}

const char *fp_http_log_field(const fp_http_request *req, const char **key)
{
	if (!req->log_key)
		return NULL;
	*key = req->log_key;
	return req->log_value;
}

void fp_http_on_close(fp_http_request *req, void (*cb)(fp_http_request *req, void *data),
		      void *data)
{
	if (!req)
		return;
	req->close_cb = cb;
	req->close_data = cb ? data : NULL;
}
