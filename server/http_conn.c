/*
 * A connection's life: accepted, its read stream (bytes go to `in`, or to
 * `over` while the handler holds a request), the request-side deadlines and
 * the one sweep timer that enforces them, the request released so the next
 * can be parsed, and the end: kill, half-close and linger, reap, free. The
 * entry points pin the connection; fp__http_conn_leave() settles it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_impl.h"

/* --- buffers -------------------------------------------------------------- */

/* Room for `extra` more bytes and a NUL after them. */
int fp__http_buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1, cap;
	char *p;

	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : IN_INIT;
	while (cap < need)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int fp__http_buf_append(struct buf *b, const char *s, size_t n)
{
	int r = fp__http_buf_reserve(b, n);

	if (r < 0)
		return r;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

void fp__http_buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* --- deadlines ------------------------------------------------------------ */

static void sweep_cb(fp_timer *t);

/* Make the sweep come by `due` at the latest. */
void fp__http_sweep_arm(fp_http_server *srv, uint64_t due)
{
	uint64_t now;

	if (srv->freeing || (srv->sweep_due && srv->sweep_due <= due))
		return;
	now = fp_now_ms();
	/* Without a timer the deadline is only enforced by a later sweep. */
	if (fp_timer_start(srv->loop, &srv->sweep, due > now ? due - now : 0,
			   sweep_cb) == 0)
		srv->sweep_due = due;
}

void fp__http_conn_rdeadline(struct conn *c, enum deadline_kind kind, uint64_t ms)
{
	c->rdl_kind = (uint8_t)kind;
	if (kind == DL_NONE || !ms) {
		c->rdeadline = 0;
		return;
	}
	c->rdeadline = fp_now_ms() + ms;
	fp__http_sweep_arm(c->srv, c->rdeadline);
}

/* --- requests: bookkeeping ------------------------------------------------ */

void fp__http_access_log(struct conn *c, int status)
{
	fp_http_server *srv = c->srv;
	uint64_t usec = 0;

	if (!srv->log_fn)
		return;
	if (c->req.t_start_ns)
		usec = (fp_now_ns() - c->req.t_start_ns) / 1000u;
	srv->log_fn(srv->log_data, &c->req, status, c->out_total - c->req.out_start, usec);
}

/* Forget the request, keeping its buffers for the next one. */
static void request_reset(fp_http_request *req)
{
	req->data = NULL;
	req->close_cb = NULL;
	req->close_data = NULL;
	req->drain_cb = NULL;
	req->drain_data = NULL;
	req->have_method = req->target_ready = req->headers_ready = 0;
	req->method = 0;
	req->is_head = req->keep_alive = req->http_minor = 0;
	req->resp = R_NONE;
	req->close = req->chunked = req->bodiless = req->gone = 0;
	req->has_server = req->path_done = req->query_done = 0;
	req->status = 0;
	req->t_start_ns = 0;
	req->url = req->url_len = 0;
	req->body = req->body_len = 0;
	req->body_started = 0;
	req->path = NULL;
	req->nqp = 0;
	req->arena_len = 0;
	req->rh.len = 0;
	req->log_key = NULL;
}

/*
 * The request is over (answered, or its client gone): give back the bytes it
 * used and move what was read meanwhile behind the rest of the input.
 */
void fp__http_request_release(struct conn *c)
{
	size_t rest;
	char *p;

	request_reset(&c->req);
	c->phase = PH_IDLE;
	fp__http_out_spare_free(c);
	c->want_drain = 0;
	c->nhdrs = 0;
	c->hdr_state = 0;
	if (c->saved_set) {
		c->in.p[c->saved_at] = c->saved;
		c->saved_set = 0;
	}
	if (c->dead || c->closing) {
		c->in.len = c->in_off = c->over.len = 0;
		return;
	}
	rest = c->in.len - c->in_off;
	if (rest && c->in_off)
		memmove(c->in.p, c->in.p + c->in_off, rest);
	c->in.len = rest;
	c->in_off = 0;
	if (c->over.len) {
		if (fp__http_buf_append(&c->in, c->over.p, c->over.len) < 0)
			fp__http_conn_kill(c);
		c->over.len = 0;
	}
	/* A large body's buffer is not kept for a connection's lifetime. */
	if (c->in.cap > IN_KEEP && c->in.len < IN_INIT && (p = realloc(c->in.p, IN_INIT))) {
		c->in.p = p;
		c->in.cap = IN_INIT;
	}
	if (c->over.cap > IN_KEEP)
		fp__http_buf_free(&c->over);
}

/*
 * The client went away, or the server is closing, while the handler holds a
 * request: its close callback runs and the request is released. Without a
 * callback the request stays allocated (a zombie) until the handler
 * finishes it, which then fails with -EPIPE.
 */
static void conn_gone(struct conn *c)
{
	fp_http_request *req = &c->req;
	void (*cb)(fp_http_request *, void *);

	if (c->phase != PH_HANDLER || req->gone)
		return;
	req->gone = 1;
	/* 499, nginx's "client closed request", when no response had begun. */
	fp__http_access_log(c, req->status ? req->status : 499);
	cb = req->close_cb;
	if (!cb) {
		c->zombie = 1;
		return;
	}
	req->close_cb = NULL;
	c->in_close_cb = 1;
	cb(req, req->close_data);
	c->in_close_cb = 0;
	fp__http_request_release(c);
}

/* Cancel everything; conn_reap() frees once the last callbacks are in. */
void fp__http_conn_kill(struct conn *c)
{
	fp_http_server *srv = c->srv;

	if (c->dead)
		return;
	c->dead = 1;
	/* Its fd stays open until the cancels are in, but it no longer counts
	 * toward a cap: a new connection may take its place at once. */
	srv->live--;
	if (c->ip_counted) {
		fp__http_peers_remove(srv->peers, &c->ip);
		c->ip_counted = 0;
	}
	fp__http_idle_leave(c);
	conn_gone(c);
	c->rdeadline = c->wdeadline = 0;
	c->rdl_kind = DL_NONE;
	c->io->cancel(c);
}

/* --- connections ---------------------------------------------------------- */

void fp__http_conn_free(struct conn *c)
{
	struct oblk *b;

	while ((b = c->oq_head)) {
		c->oq_head = b->next;
		free(b);
	}
	while ((b = c->ofree)) {
		c->ofree = b->next;
		free(b);
	}
	fp__http_out_spare_free(c);
	fp__http_buf_free(&c->in);
	fp__http_buf_free(&c->over);
	fp__http_buf_free(&c->req.rh);
	free(c->hdrs);
	free(c->req.qp);
	free(c->req.arena);
	free(c);
}

static void conn_unlink(struct conn *c)
{
	fp_http_server *srv = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

/* A dead connection whose operations have all ended: close, then free. */
static void conn_reap(struct conn *c)
{
	fp_http_server *srv = c->srv;

	if (c->busy || c->reap_later || !c->read_done || c->writing)
		return;
	if (!c->closed) {
		c->io->close(c);
		c->closed = 1;
		srv->stats.open--;
	}
	if (!c->zombie) {
		conn_unlink(c);
		fp__http_conn_free(c);
	}
	fp__http_server_check_done(srv);
}

/* Flushed and closing: half-close, then wait for the peer's FIN (linger). */
static void conn_shutdown(struct conn *c)
{
	c->shut = 1;
	c->io->shutdown(c);
	if (c->read_done)
		fp__http_conn_kill(c);
	else
		fp__http_conn_rdeadline(c, DL_LINGER, LINGER_MS);
}

static void conn_settle(struct conn *c)
{
	if (!c->dead) {
		fp__http_conn_flush(c);
		if (!c->dead && c->closing && !c->unsent && !c->shut)
			conn_shutdown(c);
	}
	if (c->dead)
		conn_reap(c);
}

/* The last thing an entry point does: c may be freed by it. */
void fp__http_conn_leave(struct conn *c)
{
	if (--c->busy == 0)
		conn_settle(c);
}

/* Bytes read while a request is with the handler: the next requests. */
static size_t over_limit(const struct conn *c)
{
	const struct fp_http_limits *lim = &c->srv->lim;

	return lim->max_header_bytes + lim->max_body_bytes + IN_KEEP;
}

static void conn_input(struct conn *c, const char *data, size_t n)
{
	if (c->dead || c->closing) {
		/* Lingering: read and drop until the peer is done. */
		c->discarded += n;
		if (c->shut && c->discarded > LINGER_BYTES)
			fp__http_conn_kill(c);
		return;
	}
	if (c->phase == PH_HANDLER) {
		/*
		 * Not into `in`: the handler holds pointers into it. The read
		 * stream is not paused, as cancelling it can lose bytes the
		 * kernel already handed over, so the limit is a hard one.
		 */
		if (c->over.len + n > over_limit(c) || fp__http_buf_append(&c->over, data, n) < 0)
			fp__http_conn_kill(c);
		return;
	}
	if (fp__http_buf_append(&c->in, data, n) < 0) {
		fp__http_conn_kill(c);
		return;
	}
	fp__http_conn_process(c);
}

/*
 * The client's FIN. It may have closed its socket, or only shut down its
 * sending side after its request (curl, and scripts that read the answer
 * after shutdown(SHUT_WR)): a TCP server cannot tell the two apart until
 * it writes (a closed socket answers with a reset). So requests that
 * arrived complete are still answered, and the connection closes after
 * them; a request cut short is never answered.
 */
static void conn_eof(struct conn *c, ssize_t res)
{
	if (c->dead)
		return;
	/* An error, or a FIN after ours (lingering). */
	if (res < 0 || c->shut) {
		fp__http_conn_kill(c);
		return;
	}
	c->peer_eof = 1;
	fp__http_idle_leave(c);
	/* The handler has a request, or complete ones wait to be parsed: the
	 * response to the last of them says close (http_response.c), and
	 * fp__http_conn_process() closes once nothing is left. */
	if (c->phase == PH_HANDLER || c->resume_pending)
		return;
	/* Between requests, or mid-request: what is queued still goes out. */
	if (c->unsent || c->closing)
		c->closing = 1;
	else
		fp__http_conn_kill(c);
}

void fp__http_conn_read(struct conn *c, ssize_t res, const char *buf)
{
	c->busy++;
	if (res > 0) {
		conn_input(c, buf, (size_t)res);
	} else {
		c->read_done = 1;
		conn_eof(c, res);
	}
	fp__http_conn_leave(c);
}

/* The body deadline passed: 408 saying how far the body got and what it was given. */
static void body_timeout(struct conn *c, uint64_t now)
{
	const struct fp_http_limits *lim = &c->srv->lim;
	char total[48] = " (chunked)", rate[64] = "";

	if (c->body_total)
		snprintf(total, sizeof(total), " of %llu", (unsigned long long)c->body_total);
	if (lim->body_min_rate)
		snprintf(rate, sizeof(rate), " plus 1 s per %llu bytes received",
			 (unsigned long long)lim->body_min_rate);
	fp__http_conn_error(c, 408, "request_timeout",
			    "body deadline: %llu%s body bytes arrived in %llu ms; a body is given"
			    " %llu ms after the headers%s",
			    (unsigned long long)c->body_rx, total,
			    (unsigned long long)(now - c->body_t0),
			    (unsigned long long)lim->body_timeout_ms, rate);
}

static void conn_timeout(struct conn *c, uint64_t now)
{
	const struct fp_http_limits *lim = &c->srv->lim;

	if (c->wdeadline && c->wdeadline <= now) {
		/* Output made no progress: the peer stopped reading. */
		fp__http_conn_kill(c);
		return;
	}
	if (!c->rdeadline || c->rdeadline > now)
		return;
	switch (c->rdl_kind) {
	case DL_HEADER:
		/* Nothing of a request yet: nobody to answer. */
		if (c->phase == PH_IDLE) {
			fp__http_conn_kill(c);
			break;
		}
		c->srv->stats.timed_out++;
		fp__http_conn_error(c, 408, "request_timeout",
			   "header deadline: the request line and headers were not complete"
			   " within %llu ms of the request's start",
			   (unsigned long long)lim->header_timeout_ms);
		break;
	case DL_BODY:
		c->srv->stats.timed_out++;
		body_timeout(c, now);
		break;
	default:
		/* Idle keep-alive, or lingering after our last response. */
		fp__http_conn_kill(c);
		break;
	}
}

static void sweep_cb(fp_timer *t)
{
	fp_http_server *srv = t->data;
	struct conn *c, *expired = NULL, **tail = &expired, *n;
	uint64_t now = fp_now_ms(), next = 0, d;

	srv->sweep_due = 0;
	/*
	 * Pin the ones with something to do first: a timeout runs handler
	 * code (a close callback), which must not free a connection under
	 * this walk.
	 */
	for (c = srv->conns; c; c = c->next) {
		if (c->reap_later || (!c->dead && c->resume_pending) ||
		    (!c->dead && c->rdeadline && c->rdeadline <= now) ||
		    (!c->dead && c->wdeadline && c->wdeadline <= now)) {
			c->busy++;
			c->sweep_next = NULL;
			*tail = c;
			tail = &c->sweep_next;
		}
	}
	for (c = expired; c; c = n) {
		n = c->sweep_next;
		c->reap_later = 0;
		if (c->resume_pending && !c->dead && !c->closing && c->phase == PH_IDLE)
			fp__http_conn_process(c);
		if (!c->dead)
			conn_timeout(c, now);
		fp__http_conn_leave(c);
	}
	for (c = srv->conns; c; c = c->next) {
		d = c->rdeadline;
		if (c->wdeadline && (!d || c->wdeadline < d))
			d = c->wdeadline;
		if (d && (!next || d < next))
			next = d;
	}
	/*
	 * A sweep walks every connection. Thousands of them whose deadlines
	 * pass one by one (a crowd of idle keep-alive clients, or a client
	 * opening connections to let them expire) would have it walk them all
	 * once per deadline; at most one walk per SWEEP_GAP_MS bounds that,
	 * and a deadline of seconds loses nothing by coming that much late.
	 * Work due at once (resume_pending, reap_later) arms the sweep itself.
	 */
	if (next) {
		if (next < now + SWEEP_GAP_MS)
			next = now + SWEEP_GAP_MS;
		fp__http_sweep_arm(srv, next);
	}
}

/* --- the socket transport ------------------------------------------------- */

static void sock_read_cb(fp_io *io, ssize_t res, const char *buf)
{
	fp__http_conn_read(io->data, res, buf);
}

static void sock_write_cb(fp_io *io, ssize_t res, const char *buf)
{
	fp__http_conn_written(io->data, res);
}

static int sock_write(struct conn *c, const struct iovec *iov, int iovcnt)
{
	return fp_io_write(c->srv->loop, &c->wio, c->fd, iov, iovcnt, sock_write_cb);
}

static void sock_cancel(struct conn *c)
{
	fp_io_cancel(&c->rio);
	fp_io_cancel(&c->wio);
}

static void sock_shutdown(struct conn *c)
{
	shutdown(c->fd, SHUT_WR);
}

static void sock_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
}

static const struct conn_io_ops sock_ops = {
	.write = sock_write,
	.cancel = sock_cancel,
	.shutdown = sock_shutdown,
	.close = sock_close,
};

struct conn *fp__http_conn_new(fp_http_server *srv, const struct conn_io_ops *io)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->srv = srv;
	c->io = io;
	c->fd = -1;
	c->rio.data = c;
	c->wio.data = c;
	c->req.c = c;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	return c;
}

void fp__http_conn_open(struct conn *c)
{
	fp_http_server *srv = c->srv;

	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->stats.accepted++;
	srv->stats.open++;
	srv->live++;
}

void fp__http_conn_await(struct conn *c)
{
	fp__http_conn_rdeadline(c, DL_HEADER, c->srv->lim.header_timeout_ms);
	fp__http_idle_enter(c);
}

void fp__http_conn_accept(fp_http_server *srv, struct listener *l, int fd)
{
	enum fp__http_admit admit;
	struct in6_addr ip;
	char ip_text[INET6_ADDRSTRLEN] = "";
	struct conn *c;
	int one = 1, by_ip;

	/* The address only when it is counted: no getpeername() per accept otherwise. */
	by_ip = srv->peers && l->family != AF_UNIX &&
		fp__http_peer_ip(fd, &ip, ip_text, sizeof(ip_text)) == 0;
	admit = fp__http_admit(srv, by_ip ? &ip : NULL);
	if (admit == FP__HTTP_REFUSE) {
		close(fd);
		srv->stats.refused++;
		return;
	}
	c = fp__http_conn_new(srv, &sock_ops);
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->unix_peer = l->family == AF_UNIX;
	/* Each response leaves in one write; Nagle would only delay the next. */
	if (!c->unix_peer)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fp_io_read_start(srv->loop, &c->rio, fd, sock_read_cb) < 0) {
		close(fd);
		free(c);
		return;
	}
	fp__http_conn_open(c);
	if (admit == FP__HTTP_ADMIT_OVER_IP) {
		srv->stats.refused_per_ip++;
		c->busy++;
		fp__http_conn_error(c, 429, "too_many_connections",
				    "too many connections from %s: at most %u per address",
				    ip_text, srv->lim.max_connections_per_ip);
		fp__http_conn_leave(c);
		return;
	}
	if (by_ip && fp__http_peers_add(srv->peers, &ip) == 0) {
		c->ip = ip;
		c->ip_counted = 1;
	}
	fp__http_conn_await(c);
}
