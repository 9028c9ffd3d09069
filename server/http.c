/*
 * HTTP/1.1 on an fp_loop, with http-parser doing the parsing.
 *
 * A connection owns three buffers, reused from request to request:
 *  - `in`, the bytes read and not yet given up. http-parser runs over it in
 *    place: the request line and headers are kept as offsets into it and
 *    NUL-terminated where the parser has already passed (the CR after a
 *    value, the ':' after a name, the space after the target), and a
 *    chunked body is compacted over its own chunk framing, so a request
 *    costs no allocation and no copy beyond the one out of the loop's read
 *    buffer. `in` never moves while the handler holds the request (the
 *    pointers it was given stay valid); what arrives meanwhile waits in
 *    `over`.
 *  - the output queue: blocks of OBLK_SIZE bytes that responses are
 *    formatted into, and a block of its own for a large body. One write is
 *    in flight per connection; it gathers up to FP_IO_IOV_MAX blocks, so
 *    the responses to a burst of pipelined requests leave in one write.
 *  - the request itself, embedded: one at a time per connection.
 *
 * Parsing pauses (http_parser_pause) after each complete request and
 * resumes over the bytes already read once its response is finished.
 *
 * Timeouts are deadlines in the connection, checked by one server-wide
 * timer that is re-armed only when a deadline comes before its due time:
 * a keep-alive request moves deadlines without touching the loop's timers.
 *
 * Entry points (loop callbacks and the request API) pin the connection
 * (busy); the last one out flushes output and frees what is dead, so no
 * callback ever runs on freed memory and responses made while handling a
 * read go out together.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

enum {
	IN_INIT = 4096,                /* first input buffer */
	IN_KEEP = 65536,               /* larger ones shrink between requests */
	OBLK_SIZE = 16384,             /* an output block */
	OBLK_CACHE = 2,                /* spare blocks a connection keeps */
	WRITE_MAX = 1 << 20,           /* bytes one write carries at most */
	HEAD_SLACK = 256,              /* status line, Date, lengths, Connection */
	LINGER_MS = 2000,              /* after an error: wait this long for the peer's FIN */
	LINGER_BYTES = 8 << 20,        /* ... or until it has sent this much more */
};

/* What a connection's request-side deadline means when it passes. */
enum deadline_kind { DL_NONE, DL_IDLE, DL_HEADER, DL_BODY, DL_LINGER };

enum phase {
	PH_IDLE,                       /* between requests: no byte of the next one */
	PH_HEADERS,                    /* request line and headers arriving */
	PH_BODY,
	PH_HANDLER,                    /* complete, the handler has it */
};

enum resp_state { R_NONE, R_STREAM, R_DONE };

struct buf {
	char *p;
	size_t len, cap;
};

/* Offsets into the connection's input buffer. */
struct hdr {
	size_t name, name_len;
	size_t val, val_len;
};

/* Offsets into the request's arena, each a NUL-terminated string. */
struct qparam {
	size_t key, val;
};

struct oblk {
	struct oblk *next;
	size_t cap, len;
	size_t sent;                   /* written, confirmed by a callback */
	size_t inflight;               /* end of what the write in flight carries */
	char data[];
};

struct listener {
	fp_io io;
	fp_http_server *srv;
	struct listener *next;
	int fd;
	int family;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];  /* unix: only */
	ino_t ino;                     /* the socket file we made, to unlink only it */
	dev_t dev;
};

struct conn;

struct fp_http_request {
	struct conn *c;
	void *data;
	void (*close_cb)(fp_http_request *req, void *data);
	void *close_data;
	void (*drain_cb)(fp_http_request *req, void *data);
	void *drain_data;

	uint8_t have_method;           /* the method is parsed */
	uint8_t target_ready;          /* the target is NUL-terminated */
	uint8_t headers_ready;         /* every header is NUL-terminated */
	uint8_t method;                /* enum http_method */
	uint8_t is_head;
	uint8_t keep_alive;
	uint8_t http_minor;
	uint8_t resp;                  /* enum resp_state */
	uint8_t close;                 /* the response ends the connection */
	uint8_t chunked;               /* streamed with chunked encoding */
	uint8_t bodiless;              /* HEAD, 204, 304: no body bytes */
	uint8_t gone;                  /* the client went away first */
	uint8_t has_server;            /* the handler set its own Server */
	uint8_t path_done, query_done;
	int status;
	uint64_t t_start_ns;           /* only measured with an access log */
	uint64_t out_start;            /* c->out_total when the response began */
	size_t url, url_len;
	size_t body, body_len;         /* body_len 0: body is "" */
	uint8_t body_started;
	const char *path;
	struct qparam *qp;
	unsigned nqp, qp_cap;
	char *arena;                   /* decoded path and query */
	size_t arena_cap, arena_len;
	struct buf rh;                 /* headers added by the handler */
};

struct conn {
	fp_http_server *srv;
	struct conn *prev, *next;
	struct conn *sweep_next;       /* sweep_cb's list of expired ones */
	int fd;
	fp_io rio, wio;
	http_parser parser;

	unsigned busy;                 /* entry points on the stack */
	uint8_t phase;                 /* enum phase */
	uint8_t dead;                  /* ops cancelled; freed once they end */
	uint8_t closing;               /* no further request: flush, then shut down */
	uint8_t shut;                  /* SHUT_WR done, lingering */
	uint8_t read_done;             /* the read stream has ended */
	uint8_t processing;            /* inside conn_process() */
	uint8_t zombie;                /* gone, but the handler holds the request */
	uint8_t in_close_cb;
	uint8_t resume_pending;        /* parse buffered requests from the loop */
	uint8_t reap_later;            /* a released zombie, freed by the sweep */
	uint8_t want_drain;
	uint8_t hdr_state;             /* 0 none, 1 in a name, 2 in a value */
	uint8_t rdl_kind;              /* enum deadline_kind */
	uint8_t saved_set;
	uint8_t peer_done;
	uint8_t unix_peer;
	int err_status;                /* set by a parser callback that refused */
	const char *err_code;
	char err_msg[128];

	uint64_t rdeadline;            /* request side, per rdl_kind; 0 none */
	uint64_t wdeadline;            /* output must progress by then; 0 none */

	struct buf in;
	size_t in_off;                 /* parsed up to here */
	size_t msg_start;              /* where the current request began */
	struct buf over;               /* read while the handler has a request */
	size_t saved_at;               /* the body's NUL went here ... */
	char saved;                    /* ... over this byte */
	size_t discarded;              /* read and dropped while lingering */

	struct hdr *hdrs;
	unsigned nhdrs, hdrs_cap;

	struct oblk *oq_head, *oq_tail, *ofree;
	unsigned nfree;
	size_t unsent;
	uint64_t out_total;

	char peer[INET6_ADDRSTRLEN + 8];
	struct fp_http_request req;
};

struct fp_http_server {
	fp_loop *loop;
	struct fp_http_limits lim;
	fp_http_handler handler;
	void *data;
	fp_http_access_log log_fn;
	void *log_data;

	struct listener *listeners;
	unsigned nlisten_open;         /* listeners whose fd is open */
	struct conn *conns;
	struct fp_http_stats stats;

	fp_timer sweep;
	uint64_t sweep_due;            /* 0: not armed */

	uint8_t stopping;              /* no more accepts */
	uint8_t freeing;
	uint8_t killing;               /* fp_http_server_free() closing connections */
	uint8_t destroy_when_done;     /* freed from inside the loop: finish later */

	time_t date_sec;
	char date[40];                 /* "Date: ...\r\n" */
	size_t date_len;
};

static void conn_settle(struct conn *c);
static void conn_process(struct conn *c);
static void server_check_done(fp_http_server *srv);

/* --- small things -------------------------------------------------------- */

void fp_http_limits_init(struct fp_http_limits *lim)
{
	lim->max_header_bytes = 16 * 1024;
	lim->max_uri_bytes = 8 * 1024;
	lim->max_body_bytes = 64 * 1024 * 1024;
	lim->max_connections = 1024;
	lim->header_timeout_ms = 10000;
	lim->body_timeout_ms = 30000;
	lim->idle_timeout_ms = 60000;
	lim->high_water_bytes = 1024 * 1024;
}

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

/* Room for `extra` more bytes and a NUL after them. */
static int buf_reserve(struct buf *b, size_t extra)
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

static int buf_append(struct buf *b, const char *s, size_t n)
{
	int r = buf_reserve(b, n);

	if (r < 0)
		return r;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
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

/* --- deadlines ------------------------------------------------------------ */

static void sweep_cb(fp_timer *t);

/* Make the sweep come by `due` at the latest. */
static void sweep_arm(fp_http_server *srv, uint64_t due)
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

static void conn_rdeadline(struct conn *c, enum deadline_kind kind, uint64_t ms)
{
	c->rdl_kind = (uint8_t)kind;
	if (kind == DL_NONE || !ms) {
		c->rdeadline = 0;
		return;
	}
	c->rdeadline = fp_now_ms() + ms;
	sweep_arm(c->srv, c->rdeadline);
}

/* --- the output queue ----------------------------------------------------- */

static void oblk_put(struct conn *c, struct oblk *b)
{
	if (b->cap == OBLK_SIZE && c->nfree < OBLK_CACHE) {
		b->next = c->ofree;
		c->ofree = b;
		c->nfree++;
	} else {
		free(b);
	}
}

/*
 * Room for n contiguous bytes at the end of the queue; out_commit() says how
 * many were used. A large body gets a block of its own, sized for it.
 */
static char *out_reserve(struct conn *c, size_t n)
{
	struct oblk *b = c->oq_tail;

	if (b && b->cap - b->len >= n)
		return b->data + b->len;
	if (n <= OBLK_SIZE && c->ofree) {
		b = c->ofree;
		c->ofree = b->next;
		c->nfree--;
	} else {
		size_t cap = n > OBLK_SIZE ? n : OBLK_SIZE;

		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
	}
	b->len = b->sent = b->inflight = 0;
	b->next = NULL;
	if (c->oq_tail)
		c->oq_tail->next = b;
	else
		c->oq_head = b;
	c->oq_tail = b;
	return b->data;
}

static void out_commit(struct conn *c, size_t n)
{
	c->oq_tail->len += n;
	c->unsent += n;
	c->out_total += n;
}

static int out_append(struct conn *c, const char *s, size_t n)
{
	char *p = out_reserve(c, n);

	if (!p)
		return -ENOMEM;
	memcpy(p, s, n);
	out_commit(c, n);
	return 0;
}

static void conn_kill(struct conn *c);
static void conn_write_cb(fp_io *io, ssize_t res, const char *buf);

/* Start a write of what is queued, unless one is in flight. */
static void conn_flush(struct conn *c)
{
	fp_http_server *srv = c->srv;
	struct iovec iov[FP_IO_IOV_MAX];
	size_t budget = WRITE_MAX, take;
	struct oblk *b;
	int n = 0;

	if (c->dead || !c->unsent || fp_io_active(&c->wio))
		return;
	/*
	 * A large body goes out in several writes: each completion frees
	 * memory, reports progress to the drain callback and moves the
	 * stall deadline, which a single huge write would not.
	 */
	for (b = c->oq_head; b && n < FP_IO_IOV_MAX && budget; b = b->next) {
		if (b->len == b->sent)
			continue;
		take = b->len - b->sent < budget ? b->len - b->sent : budget;
		iov[n].iov_base = b->data + b->sent;
		iov[n].iov_len = take;
		b->inflight = b->sent + take;
		budget -= take;
		n++;
	}
	if (!n)
		return;
	if (fp_io_write(srv->loop, &c->wio, c->fd, iov, n, conn_write_cb) < 0) {
		for (b = c->oq_head; b; b = b->next)
			b->inflight = b->sent;
		conn_kill(c);
		return;
	}
	srv->stats.writes++;
	/* A peer that stops reading is dropped after idle_timeout_ms. */
	if (srv->lim.idle_timeout_ms) {
		c->wdeadline = fp_now_ms() + srv->lim.idle_timeout_ms;
		sweep_arm(srv, c->wdeadline);
	}
}

/* --- requests: bookkeeping ------------------------------------------------ */

static void access_log(struct conn *c, int status)
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
}

/*
 * The request is over (answered, or its client gone): give back the bytes it
 * used and move what was read meanwhile behind the rest of the input.
 */
static void request_release(struct conn *c)
{
	size_t rest;
	char *p;

	request_reset(&c->req);
	c->phase = PH_IDLE;
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
		if (buf_append(&c->in, c->over.p, c->over.len) < 0)
			conn_kill(c);
		c->over.len = 0;
	}
	/* A large body's buffer is not kept for a connection's lifetime. */
	if (c->in.cap > IN_KEEP && c->in.len < IN_INIT && (p = realloc(c->in.p, IN_INIT))) {
		c->in.p = p;
		c->in.cap = IN_INIT;
	}
	if (c->over.cap > IN_KEEP)
		buf_free(&c->over);
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
	access_log(c, req->status ? req->status : 499);
	cb = req->close_cb;
	if (!cb) {
		c->zombie = 1;
		return;
	}
	req->close_cb = NULL;
	c->in_close_cb = 1;
	cb(req, req->close_data);
	c->in_close_cb = 0;
	request_release(c);
}

/* Cancel everything; conn_reap() frees once the last callbacks are in. */
static void conn_kill(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	conn_gone(c);
	c->rdeadline = c->wdeadline = 0;
	c->rdl_kind = DL_NONE;
	fp_io_cancel(&c->rio);
	fp_io_cancel(&c->wio);
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
	req->close = !req->keep_alive || c->closing || c->srv->freeing ||
		     (streamed && !req->chunked && !req->bodiless);
	c->srv->stats.responses[status / 100]++;
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
	p = out_reserve(c, head_size(c, status, ctype_len) +
			(c->req.bodiless ? 0 : len));
	if (!p)
		return -ENOMEM;
	q = head_write(c, p, status, ctype, ctype_len, 0, len);
	if (!c->req.bodiless && len)
		q = put(q, body, len);
	out_commit(c, (size_t)(q - p));
	return 0;
}

static void conn_process(struct conn *c);

/* The response is complete: on to the next request, or to closing. */
static void request_finish(struct conn *c)
{
	fp_http_request *req = &c->req;

	req->resp = R_DONE;
	access_log(c, req->status);
	if (req->close)
		c->closing = 1;
	request_release(c);
	if (c->dead || c->closing)
		return;
	conn_rdeadline(c, DL_IDLE, c->srv->lim.idle_timeout_ms);
	/*
	 * Pipelined bytes. Inside conn_process() its loop goes on once the
	 * handler returns. Otherwise the handler's code is still on the stack
	 * (an answer from a timer, a drain or a job callback) and may touch
	 * the request it just finished, so the next one is not parsed into the
	 * same object until the loop turns: at this response's write
	 * completion, or from the sweep when nothing was written.
	 */
	if (c->in.len && !c->processing) {
		c->resume_pending = 1;
		if (!c->unsent)
			sweep_arm(c->srv, fp_now_ms());
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
static void conn_error(struct conn *c, int status, const char *code,
		       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void conn_error(struct conn *c, int status, const char *code,
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
		conn_kill(c);
		return;
	}
	access_log(c, status);
	c->closing = 1;
	c->in.len = c->in_off = 0;
	conn_rdeadline(c, DL_NONE, 0);
}

/* --- parsing -------------------------------------------------------------- */

static int refuse(struct conn *c, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A parser callback refuses the request: execute stops, conn_process answers. */
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

static const char *header_find(const struct conn *c, const char *name)
{
	unsigned i;

	for (i = 0; i < c->nhdrs; i++)
		if (!strcasecmp(c->in.p + c->hdrs[i].name, name))
			return c->in.p + c->hdrs[i].val;
	return NULL;
}

static int on_message_begin(http_parser *p)
{
	struct conn *c = p->data;

	c->phase = PH_HEADERS;
	/* Each execute starts at in_off and covers at most one message start. */
	c->msg_start = c->in_off;
	c->nhdrs = 0;
	c->hdr_state = 0;
	c->req.out_start = c->out_total;
	if (c->srv->log_fn)
		c->req.t_start_ns = fp_now_ns();
	/* A fresh connection's header deadline runs from the accept. */
	if (c->rdl_kind != DL_HEADER)
		conn_rdeadline(c, DL_HEADER, c->srv->lim.header_timeout_ms);
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
	    (expect = header_find(c, "Expect")) && !strcasecmp(expect, "100-continue")) {
		if (out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
			return refuse(c, 500, "internal_error", "out of memory");
		srv->stats.responses[1]++;
	}
	c->phase = PH_BODY;
	conn_rdeadline(c, DL_BODY, srv->lim.body_timeout_ms);
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
	conn_rdeadline(c, DL_NONE, 0);
	srv->stats.requests++;
	srv->handler(&c->req, srv->data);
}

/* Parse what is buffered, dispatching each complete request in turn. */
static void conn_process(struct conn *c)
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
			conn_error(c, c->err_status, c->err_code, "%s", c->err_msg);
			break;
		}
		if (e == HPE_PAUSED) {
			http_parser_pause(p, 0);
			request_dispatch(c);
			continue;
		}
		if (e == HPE_HEADER_OVERFLOW) {
			refuse_headers(c);
			conn_error(c, c->err_status, c->err_code, "%s", c->err_msg);
			break;
		}
		if (e != HPE_OK) {
			conn_error(c, 400, "bad_request", "malformed request: %s",
				   http_errno_description(e));
			break;
		}
		if (c->phase == PH_HEADERS && header_section_over(c, c->in_off)) {
			refuse_headers(c);
			conn_error(c, c->err_status, c->err_code, "%s", c->err_msg);
			break;
		}
		if (c->phase == PH_BODY)
			body_compact(c);
	}
	/* Only blank lines between requests were read: nothing to keep. */
	if (c->phase == PH_IDLE && !c->closing && c->in_off == c->in.len)
		c->in.len = c->in_off = 0;
	c->processing = 0;
}

/* --- connections ---------------------------------------------------------- */

static void conn_free(struct conn *c)
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
	buf_free(&c->in);
	buf_free(&c->over);
	buf_free(&c->req.rh);
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

	if (c->busy || c->reap_later || fp_io_active(&c->rio) || fp_io_active(&c->wio))
		return;
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
		srv->stats.open--;
	}
	if (!c->zombie) {
		conn_unlink(c);
		conn_free(c);
	}
	server_check_done(srv);
}

/* Flushed and closing: half-close, then wait for the peer's FIN (linger). */
static void conn_shutdown(struct conn *c)
{
	c->shut = 1;
	shutdown(c->fd, SHUT_WR);
	if (c->read_done)
		conn_kill(c);
	else
		conn_rdeadline(c, DL_LINGER, LINGER_MS);
}

static void conn_settle(struct conn *c)
{
	if (!c->dead) {
		conn_flush(c);
		if (!c->dead && c->closing && !c->unsent && !c->shut)
			conn_shutdown(c);
	}
	if (c->dead)
		conn_reap(c);
}

/* The last thing an entry point does: c may be freed by it. */
static void conn_leave(struct conn *c)
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
			conn_kill(c);
		return;
	}
	if (c->phase == PH_HANDLER) {
		/*
		 * Not into `in`: the handler holds pointers into it. The read
		 * stream is not paused, as cancelling it can lose bytes the
		 * kernel already handed over, so the limit is a hard one.
		 */
		if (c->over.len + n > over_limit(c) || buf_append(&c->over, data, n) < 0)
			conn_kill(c);
		return;
	}
	if (buf_append(&c->in, data, n) < 0) {
		conn_kill(c);
		return;
	}
	conn_process(c);
	if (!c->dead && !c->closing && c->phase == PH_BODY)
		conn_rdeadline(c, DL_BODY, c->srv->lim.body_timeout_ms);
}

static void conn_eof(struct conn *c, ssize_t res)
{
	if (c->dead)
		return;
	/* An error, a FIN after ours, or the client leaving mid-request. */
	if (res < 0 || c->shut || c->phase != PH_IDLE) {
		conn_kill(c);
		return;
	}
	/* Between requests: what is queued still goes out, then we close. */
	if (c->unsent || c->closing)
		c->closing = 1;
	else
		conn_kill(c);
}

static void conn_read_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct conn *c = io->data;

	c->busy++;
	if (res > 0) {
		conn_input(c, buf, (size_t)res);
	} else {
		c->read_done = 1;
		conn_eof(c, res);
	}
	conn_leave(c);
}

static void conn_write_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct conn *c = io->data;
	fp_http_request *req = &c->req;
	struct oblk *b, **pp, *prev = NULL;

	c->busy++;
	if (res < 0) {
		/* -EPIPE, -ECONNRESET: the client is gone; -ECANCELED: we killed it. */
		conn_kill(c);
		conn_leave(c);
		return;
	}
	for (pp = &c->oq_head; (b = *pp);) {
		if (b->inflight > b->sent) {
			c->unsent -= b->inflight - b->sent;
			b->sent = b->inflight;
		}
		if (b->sent == b->len) {
			*pp = b->next;
			if (c->oq_tail == b)
				c->oq_tail = prev;
			oblk_put(c, b);
			continue;
		}
		prev = b;
		pp = &b->next;
	}
	if (!c->unsent)
		c->wdeadline = 0;
	if (c->want_drain && c->unsent <= c->srv->lim.high_water_bytes) {
		c->want_drain = 0;
		if (c->phase == PH_HANDLER && req->resp == R_STREAM && !req->gone &&
		    req->drain_cb)
			req->drain_cb(req, req->drain_data);
	}
	if (c->resume_pending && !c->dead && !c->closing && c->phase == PH_IDLE)
		conn_process(c);
	conn_leave(c);
}

static void conn_timeout(struct conn *c, uint64_t now)
{
	const struct fp_http_limits *lim = &c->srv->lim;

	if (c->wdeadline && c->wdeadline <= now) {
		/* Output made no progress: the peer stopped reading. */
		conn_kill(c);
		return;
	}
	if (!c->rdeadline || c->rdeadline > now)
		return;
	switch (c->rdl_kind) {
	case DL_HEADER:
		/* Nothing of a request yet: nobody to answer. */
		if (c->phase == PH_IDLE)
			conn_kill(c);
		else
			conn_error(c, 408, "request_timeout",
				   "request headers not complete within %llu ms",
				   (unsigned long long)lim->header_timeout_ms);
		break;
	case DL_BODY:
		conn_error(c, 408, "request_timeout",
			   "request body stalled: no byte for %llu ms",
			   (unsigned long long)lim->body_timeout_ms);
		break;
	default:
		/* Idle keep-alive, or lingering after our last response. */
		conn_kill(c);
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
			conn_process(c);
		if (!c->dead)
			conn_timeout(c, now);
		conn_leave(c);
	}
	for (c = srv->conns; c; c = c->next) {
		d = c->rdeadline;
		if (c->wdeadline && (!d || c->wdeadline < d))
			d = c->wdeadline;
		if (d && (!next || d < next))
			next = d;
	}
	if (next)
		sweep_arm(srv, next);
}

static void conn_accept(fp_http_server *srv, struct listener *l, int fd)
{
	struct conn *c;
	int one = 1;

	if (srv->lim.max_connections && srv->stats.open >= srv->lim.max_connections) {
		close(fd);
		srv->stats.refused++;
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	c->unix_peer = l->family == AF_UNIX;
	c->rio.data = c;
	c->wio.data = c;
	c->req.c = c;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	/* Each response leaves in one write; Nagle would only delay the next. */
	if (!c->unix_peer)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fp_io_read_start(srv->loop, &c->rio, fd, conn_read_cb) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->stats.accepted++;
	srv->stats.open++;
	conn_rdeadline(c, DL_HEADER, srv->lim.header_timeout_ms);
}

/* --- listeners ------------------------------------------------------------ */

static void listener_close(struct listener *l)
{
	struct stat st;

	if (l->fd < 0)
		return;
	close(l->fd);
	l->fd = -1;
	l->srv->nlisten_open--;
	/* Only our own socket file: another server may have taken the path. */
	if (l->path[0] && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_ino == l->ino && st.st_dev == l->dev)
		unlink(l->path);
}

static void accept_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct listener *l = io->data;
	fp_http_server *srv = l->srv;

	if (res >= 0) {
		if (srv->stopping)
			close((int)res);
		else
			conn_accept(srv, l, (int)res);
		return;
	}
	/* EMFILE and the like: the accept goes on, nothing to do here. */
	if (fp_io_active(io))
		return;
	listener_close(l);
	server_check_done(srv);
}

static int fail(char *errbuf, size_t errlen, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *errbuf, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (errbuf && errlen) {
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int listener_add(fp_http_server *srv, int fd, int family, const char *path,
			char *errbuf, size_t errlen)
{
	struct listener *l;
	struct stat st;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return fail(errbuf, errlen, -ENOMEM, "out of memory");
	}
	l->srv = srv;
	l->fd = fd;
	l->family = family;
	l->io.data = l;
	if (path) {
		snprintf(l->path, sizeof(l->path), "%s", path);
		if (stat(path, &st) == 0) {
			l->ino = st.st_ino;
			l->dev = st.st_dev;
		}
	}
	r = fp_io_accept_start(srv->loop, &l->io, fd, accept_cb);
	if (r < 0) {
		close(fd);
		if (path)
			unlink(path);
		free(l);
		return fail(errbuf, errlen, r, "cannot accept: %s", strerror(-r));
	}
	l->next = srv->listeners;
	srv->listeners = l;
	srv->nlisten_open++;
	return 0;
}

/* 1: a server answers on the socket file; 0: nobody does (a stale file). */
static int unix_socket_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int live;

	if (fd < 0)
		return 0;
	/* Non-blocking: a listener with a full backlog says EAGAIN, still live. */
	live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ||
	       errno == EAGAIN || errno == EINPROGRESS;
	close(fd);
	return live;
}

static int listen_unix(fp_http_server *srv, const char *path, char *bound,
		       size_t boundlen, char *errbuf, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, r;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (!*path)
		return fail(errbuf, errlen, -EINVAL, "unix: needs a path");
	if (strlen(path) >= sizeof(sa.sun_path))
		return fail(errbuf, errlen, -ENAMETOOLONG,
			    "unix:%s: path longer than %zu bytes", path,
			    sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return fail(errbuf, errlen, -EEXIST,
				    "unix:%s: exists and is not a socket", path);
		if (unix_socket_live(&sa))
			return fail(errbuf, errlen, -EADDRINUSE,
				    "unix:%s: another server is listening there", path);
		/* Left behind by a server that died: take the path over. */
		if (unlink(path) < 0 && errno != ENOENT)
			return fail(errbuf, errlen, -errno, "unix:%s: cannot remove stale socket: %s",
				    path, strerror(errno));
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(errbuf, errlen, -errno, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return fail(errbuf, errlen, r, "cannot bind unix:%s: %s", path, strerror(-r));
	}
	if (listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		close(fd);
		unlink(path);
		return fail(errbuf, errlen, r, "cannot listen on unix:%s: %s", path, strerror(-r));
	}
	r = listener_add(srv, fd, AF_UNIX, path, errbuf, errlen);
	if (r < 0)
		return r;
	if (bound && boundlen)
		snprintf(bound, boundlen, "unix:%s", path);
	return 0;
}

/* "host:port" or "[v6]:port" into its parts; host "" or "*" is any. */
static int split_host_port(const char *addr, char *host, size_t hostlen,
			   unsigned *port)
{
	const char *h = addr, *end, *ps;
	size_t n;
	char *stop;
	unsigned long v;

	if (*addr == '[') {
		h = addr + 1;
		end = strchr(h, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		ps = end + 2;
	} else {
		end = strrchr(addr, ':');
		if (!end)
			return -EINVAL;
		ps = end + 1;
		/* An IPv6 address without brackets is ambiguous with the port. */
		if (memchr(addr, ':', (size_t)(end - addr)))
			return -EINVAL;
	}
	n = (size_t)(end - h);
	if (n >= hostlen)
		return -ENAMETOOLONG;
	memcpy(host, h, n);
	host[n] = '\0';
	if (*ps < '0' || *ps > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(ps, &stop, 10);
	if (errno || *stop || v > 65535)
		return -EINVAL;
	*port = (unsigned)v;
	return 0;
}

static void format_inet(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

static int listen_inet(fp_http_server *srv, const char *addr, char *bound,
		       size_t boundlen, char *errbuf, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char host[256], portstr[8];
	unsigned port;
	int fd = -1, r, one = 1, gai;

	r = split_host_port(addr, host, sizeof(host), &port);
	if (r < 0)
		return fail(errbuf, errlen, r,
			    "%s: expected HOST:PORT, [IPV6]:PORT or unix:/path", addr);
	if (!*host || !strcmp(host, "*"))
		snprintf(host, sizeof(host), "0.0.0.0");
	snprintf(portstr, sizeof(portstr), "%u", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai)
		return fail(errbuf, errlen, gai == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL,
			    "%s: cannot resolve %s: %s", addr, host, gai_strerror(gai));

	/* The first address that binds ("localhost" may give ::1 and 127.0.0.1). */
	r = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* [::] must not take IPv4 too: 0.0.0.0 may be listened on apart. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		r = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fail(errbuf, errlen, r, "cannot listen on %s: %s", addr, strerror(-r));
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
		r = -errno;
		close(fd);
		return fail(errbuf, errlen, r, "getsockname: %s", strerror(-r));
	}
	r = listener_add(srv, fd, ss.ss_family, NULL, errbuf, errlen);
	if (r < 0)
		return r;
	if (bound && boundlen)
		format_inet(&ss, bound, boundlen);
	return 0;
}

int fp_http_listen(fp_http_server *srv, const char *addr, char *bound, size_t boundlen,
		   char *errbuf, size_t errlen)
{
	if (!srv || !addr)
		return fail(errbuf, errlen, -EINVAL, "no address");
	if (srv->freeing || srv->stopping)
		return fail(errbuf, errlen, -EINVAL, "the server is stopping");
	if (!strncmp(addr, "unix:", 5))
		return listen_unix(srv, addr + 5, bound, boundlen, errbuf, errlen);
	return listen_inet(srv, addr, bound, boundlen, errbuf, errlen);
}

int fp_http_addr_is_loopback(const char *addr)
{
	char host[256];
	unsigned port;
	struct in_addr a4;
	struct in6_addr a6;
	const char *h = host;

	if (!addr)
		return 0;
	if (!strncmp(addr, "unix:", 5))
		return 1;
	if (split_host_port(addr, host, sizeof(host), &port) < 0) {
		/* A bare host is fine too. */
		if (strlen(addr) >= sizeof(host))
			return 0;
		snprintf(host, sizeof(host), "%s", addr);
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {
			host[strlen(host) - 1] = '\0';
			h = host + 1;
		}
	}
	if (!strcasecmp(h, "localhost") || !strcasecmp(h, "localhost."))
		return 1;
	if (inet_pton(AF_INET, h, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, h, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
}

/* --- the server ----------------------------------------------------------- */

int fp_http_server_new(fp_http_server **out, fp_loop *loop,
		       const struct fp_http_limits *lim,
		       fp_http_handler handler, void *data)
{
	fp_http_server *srv;

	if (!out || !loop || !handler)
		return -EINVAL;
	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	if (lim)
		srv->lim = *lim;
	else
		fp_http_limits_init(&srv->lim);
	srv->handler = handler;
	srv->data = data;
	srv->sweep.data = srv;
	*out = srv;
	return 0;
}

void fp_http_set_access_log(fp_http_server *srv, fp_http_access_log fn, void *data)
{
	if (!srv)
		return;
	srv->log_fn = fn;
	srv->log_data = data;
}

void fp_http_server_stats(const fp_http_server *srv, struct fp_http_stats *out)
{
	if (!out)
		return;
	if (!srv) {
		memset(out, 0, sizeof(*out));
		return;
	}
	*out = srv->stats;
}

void fp_http_server_stop_accepting(fp_http_server *srv)
{
	struct listener *l;

	if (!srv)
		return;
	srv->stopping = 1;
	/* Each listener's fd is closed by its last callback. */
	for (l = srv->listeners; l; l = l->next)
		fp_io_cancel(&l->io);
}

static void server_destroy(fp_http_server *srv)
{
	struct listener *l;
	struct conn *c;

	fp_timer_stop(&srv->sweep);
	while ((c = srv->conns)) {
		srv->conns = c->next;
		/* Only zombies are left, their fds closed; a handler that still
		 * holds one must not touch it after the server is freed. */
		if (c->fd >= 0)
			close(c->fd);
		conn_free(c);
	}
	while ((l = srv->listeners)) {
		srv->listeners = l->next;
		listener_close(l);
		free(l);
	}
	free(srv);
}

static void free_done_cb(fp_timer *t)
{
	fp_http_server *srv = t->data;

	fp_loop_stop(srv->loop);
}

/* Called as the last thing of a callback: the server may be freed by it. */
static void server_check_done(fp_http_server *srv)
{
	if (!srv->freeing || srv->killing || srv->stats.open || srv->nlisten_open)
		return;
	if (srv->destroy_when_done) {
		server_destroy(srv);
		return;
	}
	/*
	 * Stop fp_http_server_free()'s run from a timer, not from here: on the
	 * epoll backend a stop from a deferred (cancelled) operation's callback
	 * leaves libuv's stop flag set outside uv_run, and the loop's teardown
	 * then leaks its handles. The sweep timer is idle while freeing.
	 */
	if (fp_timer_start(srv->loop, &srv->sweep, 0, free_done_cb) < 0)
		fp_loop_stop(srv->loop);
}

void fp_http_server_free(fp_http_server *srv)
{
	struct listener *l;
	struct conn *c, *n;
	unsigned stuck = 0;
	uint64_t before;
	int r;

	if (!srv || srv->freeing)
		return;
	srv->freeing = 1;
	srv->stopping = 1;
	fp_timer_stop(&srv->sweep);
	srv->sweep_due = 0;
	for (l = srv->listeners; l; l = l->next) {
		if (fp_io_active(&l->io))
			fp_io_cancel(&l->io);
		else
			listener_close(l);
	}
	/*
	 * Close callbacks are handler code: every connection is pinned while
	 * they run, so none is freed under this walk.
	 */
	srv->killing = 1;
	for (c = srv->conns; c; c = c->next)
		c->busy++;
	for (c = srv->conns; c; c = c->next)
		conn_kill(c);
	for (c = srv->conns; c; c = n) {
		n = c->next;
		conn_leave(c);
	}
	srv->killing = 0;

	/* Wait for the last callback of every operation before closing fds. */
	while (srv->stats.open || srv->nlisten_open) {
		before = srv->stats.open + srv->nlisten_open;
		r = fp_loop_run(srv->loop);
		if (r == -EBUSY) {
			/* Called from a callback: the last one to end frees. */
			srv->destroy_when_done = 1;
			return;
		}
		/* A loop that has nothing left yet returned: do not spin. */
		if (r < 0 || (before == srv->stats.open + srv->nlisten_open && ++stuck > 100))
			break;
	}
	server_destroy(srv);
}

/* --- the request ---------------------------------------------------------- */

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

const char *fp_http_header(const fp_http_request *req, const char *name)
{
	if (!req || !name || !req->headers_ready)
		return NULL;
	return header_find(req->c, name);
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
			format_inet(&ss, c->peer, sizeof(c->peer));
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

size_t fp_http_unsent(const fp_http_request *req)
{
	return req ? req->c->unsent : 0;
}

void fp_http_on_close(fp_http_request *req, void (*cb)(fp_http_request *req, void *data),
		      void *data)
{
	if (!req)
		return;
	req->close_cb = cb;
	req->close_data = cb ? data : NULL;
}

void fp_http_on_drain(fp_http_request *req, void (*cb)(fp_http_request *req, void *data),
		      void *data)
{
	if (!req)
		return;
	req->drain_cb = cb;
	req->drain_data = cb ? data : NULL;
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
	if (buf_reserve(b, nl + vl + 4) < 0)
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
			request_release(c);
			sweep_arm(c->srv, fp_now_ms());
		}
		return -EPIPE;
	}
	return 1;
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
		/* Nothing sensible can be sent any more; the request is over. */
		req->gone = 1;
		request_release(c);
		conn_kill(c);
		goto out;
	}
	request_finish(c);
out:
	conn_leave(c);
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
	p = out_reserve(c, head_size(c, status, ctype_len));
	if (!p) {
		r = -ENOMEM;
		conn_kill(c);
		goto out;
	}
	q = head_write(c, p, status, content_type, ctype_len, 1, 0);
	out_commit(c, (size_t)(q - p));
	req->resp = R_STREAM;
	r = 0;
out:
	conn_leave(c);
	return r;
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
	if (!len || req->bodiless)
		return c->unsent > c->srv->lim.high_water_bytes;
	c->busy++;
	p = out_reserve(c, len + (req->chunked ? 2 * sizeof(size_t) + 4 : 0));
	if (!p) {
		r = -ENOMEM;
		conn_kill(c);
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
	out_commit(c, (size_t)(q - p));
	r = 0;
	if (c->unsent > c->srv->lim.high_water_bytes) {
		c->want_drain = 1;
		r = 1;
	}
out:
	conn_leave(c);
	return r;
}

int fp_http_stream_end(fp_http_request *req)
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
	if (req->chunked && !req->bodiless && out_append(c, "0\r\n\r\n", 5) < 0) {
		r = -ENOMEM;
		req->gone = 1;
		request_release(c);
		conn_kill(c);
		goto out;
	}
	request_finish(c);
out:
	conn_leave(c);
	return r;
}
