/*
 * The HTTP layer, under whichever backend FORKPOOL_LOOP names (meson runs
 * this once per backend). The server and its clients live in this thread:
 * clients are non-blocking sockets that a 1 ms tick timer reads, and every
 * wait is the loop running until a condition holds, bounded by a watchdog
 * timer that fails the test. Nothing sleeps.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_impl.h"
#include "http.h"

#define WATCHDOG_MS 10000
#define MAX_CLIENTS 8
#define MAX_DRIPS 2

/* --- a client socket, read by the tick ----------------------------------- */

struct client {
	int fd;
	char *buf;
	size_t len, cap;
	int eof;                 /* read returned 0 */
	int err;                 /* a read failed with this errno (ECONNRESET) */
	int paused;              /* the tick leaves it alone */
	size_t per_tick;         /* read at most this much per tick; 0: all */
	unsigned head_mask;      /* response i answers a HEAD: no body to parse */
};

/*
 * A client that sends `data` a few bytes at a time, `step` bytes every
 * `every_ms`, from the tick: a slow client, as a drip-feeding attacker is.
 */
struct drip {
	int client;
	const char *data;
	size_t len, pos, step;
	uint64_t every_ms, next_ms;
};

/* --- the test's world ---------------------------------------------------- */

struct t;
typedef void (*on_request_fn)(struct t *t, fp_http_request *req);

struct t {
	fp_loop *loop;
	fp_http_server *srv;
	struct fp_http_limits lim;
	char bound[160];
	fp_timer wd, tick;
	int wd_fired;
	int (*pred)(struct t *t);
	uint64_t ticks;
	struct client cl[MAX_CLIENTS];
	struct drip drips[MAX_DRIPS];

	on_request_fn on_request;
	unsigned handled;
	unsigned logged;
	int last_log_status;
	uint64_t last_log_bytes;
	fp_http_request *held;   /* answered later by the test */
	fp_timer later;
	unsigned closes;         /* close callbacks run */
	unsigned drains;
	int saw_backpressure;
	size_t max_unsent;
	size_t produced, to_produce;
	int by_room;             /* stream_produce writes no more than fp_http_stream_room() */
	int stream_done;
	int want_responses;      /* for the response predicate, client 0 */
	int want_client;
	char note[1024];         /* what a handler saw, for the test to check */
};

static void later_cb(fp_timer *tm);

static void handler(fp_http_request *req, void *data)
{
	struct t *t = data;

	t->handled++;
	t->on_request(t, req);
}

static void access_log(void *data, const fp_http_request *req, int status,
		       uint64_t bytes, uint64_t usec)
{
	struct t *t = data;

	t->logged++;
	t->last_log_status = status;
	t->last_log_bytes = bytes;
}

/* The default: "METHOD PATH BODYLEN:BODY". */
static void echo(struct t *t, fp_http_request *req)
{
	char out[4096];
	size_t blen;
	const char *body = fp_http_body(req, &blen);
	int n;

	n = snprintf(out, sizeof(out), "%s %s %zu:%.*s", fp_http_method(req),
		     fp_http_path(req), blen, (int)(blen > 2000 ? 2000 : blen), body);
	assert_int_equal(fp_http_respond(req, 200, "text/plain", out, (size_t)n), 0);
}

static void t_init_limits(struct t *t, const struct fp_http_limits *lim)
{
	int r;

	memset(t, 0, sizeof(*t));
	r = fp_loop_new(&t->loop, FP_LOOP_AUTO);
	if (r < 0) {
		fprintf(stderr, "no loop for FORKPOOL_LOOP=%s: %s\n",
			getenv("FORKPOOL_LOOP") ? getenv("FORKPOOL_LOOP") : "", strerror(-r));
		exit(77);
	}
	if (lim)
		t->lim = *lim;
	else
		fp_http_limits_init(&t->lim);
	t->on_request = echo;
	t->wd.data = t;
	t->tick.data = t;
	t->later.data = t;
	for (r = 0; r < MAX_CLIENTS; r++)
		t->cl[r].fd = -1;
	assert_int_equal(fp_http_server_new(&t->srv, t->loop, &t->lim, handler, t), 0);
	fp_http_set_access_log(t->srv, access_log, t);
}

static void t_listen(struct t *t, const char *addr)
{
	char err[256] = "";
	int r = fp_http_listen(t->srv, addr, t->bound, sizeof(t->bound), err, sizeof(err));

	if (r < 0)
		fail_msg("listen %s: %s (%d)", addr, err, r);
}

static void t_init(struct t *t, const struct fp_http_limits *lim)
{
	t_init_limits(t, lim);
	t_listen(t, "127.0.0.1:0");
}

static void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
	c->eof = c->err = c->paused = 0;
	c->per_tick = 0;
	c->head_mask = 0;
}

/* Close with a reset (SO_LINGER 0), not a FIN: the abortive close of a client that left. */
static void client_reset(struct client *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (c->fd >= 0)
		assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	client_close(c);
}

static void t_free_server(struct t *t)
{
	fp_timer_stop(&t->later);
	fp_http_server_free(t->srv);
	t->srv = NULL;
}

static void t_free(struct t *t)
{
	int i;

	if (t->srv)
		t_free_server(t);
	for (i = 0; i < MAX_CLIENTS; i++)
		client_close(&t->cl[i]);
	fp_timer_stop(&t->tick);
	fp_timer_stop(&t->wd);
	fp_loop_free(t->loop);
}

/* Read what is there (up to per_tick); EOF and errors are recorded. */
static void client_pump(struct client *c)
{
	size_t budget = c->per_tick ? c->per_tick : SIZE_MAX, want;
	ssize_t n;

	if (c->fd < 0 || c->paused || c->eof || c->err)
		return;
	while (budget) {
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 131072;
			c->buf = realloc(c->buf, c->cap + 1);
			assert_non_null(c->buf);
			/* Predicates read it as a string: never a freed buffer's bytes. */
			c->buf[c->len] = '\0';
		}
		want = c->cap - c->len < budget ? c->cap - c->len : budget;
		n = recv(c->fd, c->buf + c->len, want, 0);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
			budget -= (size_t)n;
			continue;
		}
		if (n == 0)
			c->eof = 1;
		else if (errno != EAGAIN && errno != EINTR)
			c->err = errno;
		break;
	}
}

static void drip_pump(struct t *t)
{
	uint64_t now = fp_now_ms();
	struct drip *d;
	size_t n;
	ssize_t w;
	int i;

	for (i = 0; i < MAX_DRIPS; i++) {
		d = &t->drips[i];
		if (!d->data || d->pos == d->len || now < d->next_ms)
			continue;
		if (t->cl[d->client].fd < 0 || t->cl[d->client].len || t->cl[d->client].eof) {
			/* Answered or closed: the server is done with it. */
			d->data = NULL;
			continue;
		}
		n = d->len - d->pos < d->step ? d->len - d->pos : d->step;
		w = send(t->cl[d->client].fd, d->data + d->pos, n, MSG_NOSIGNAL);
		if (w < 0) {
			d->data = NULL;
			continue;
		}
		d->pos += (size_t)w;
		d->next_ms = now + d->every_ms;
	}
}

/* Start client i dripping: `step` bytes of data now, and every `every_ms` after. */
static void drip_start(struct t *t, int slot, int i, const char *data, size_t step,
		       uint64_t every_ms)
{
	struct drip *d = &t->drips[slot];

	d->client = i;
	d->data = data;
	d->len = strlen(data);
	d->pos = 0;
	d->step = step;
	d->every_ms = every_ms;
	d->next_ms = 0;
	drip_pump(t);
}

static void tick_cb(fp_timer *tm)
{
	struct t *t = tm->data;
	int i;

	t->ticks++;
	drip_pump(t);
	for (i = 0; i < MAX_CLIENTS; i++)
		client_pump(&t->cl[i]);
	if (t->pred && t->pred(t)) {
		fp_loop_stop(t->loop);
		return;
	}
	assert_int_equal(fp_timer_start(t->loop, &t->tick, 1, tick_cb), 0);
}

static void wd_cb(fp_timer *tm)
{
	struct t *t = tm->data;

	t->wd_fired = 1;
	fp_loop_stop(t->loop);
}

/* Run the loop until pred holds; 0 if the watchdog (limit_ms) went first. */
static int run_for(struct t *t, int (*pred)(struct t *t), uint64_t limit_ms)
{
	t->pred = pred;
	t->wd_fired = 0;
	assert_int_equal(fp_timer_start(t->loop, &t->wd, limit_ms, wd_cb), 0);
	assert_int_equal(fp_timer_start(t->loop, &t->tick, 0, tick_cb), 0);
	assert_int_equal(fp_loop_run(t->loop), 0);
	fp_timer_stop(&t->tick);
	fp_timer_stop(&t->wd);
	t->pred = NULL;
	return !t->wd_fired;
}

static void run_until(struct t *t, int (*pred)(struct t *t))
{
	if (!run_for(t, pred, WATCHDOG_MS))
		fail_msg("watchdog: condition not reached in %d ms", WATCHDOG_MS);
}

/* Drive the loop for a few ticks: lets the server read what was sent. */
static uint64_t tick_goal;

static int ticks_done(struct t *t)
{
	return t->ticks >= tick_goal;
}

static void pump(struct t *t, unsigned n)
{
	tick_goal = t->ticks + n;
	run_until(t, ticks_done);
}

/* --- connecting ----------------------------------------------------------- */

static int client_connect_to(struct t *t, int i, const char *bound)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char host[128];
	const char *colon;
	int fd, family;

	memset(&ss, 0, sizeof(ss));
	if (!strncmp(bound, "unix:", 5)) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;

		family = AF_UNIX;
		su->sun_family = AF_UNIX;
		snprintf(su->sun_path, sizeof(su->sun_path), "%s", bound + 5);
		len = sizeof(*su);
	} else if (bound[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		const char *end = strchr(bound, ']');

		family = AF_INET6;
		snprintf(host, sizeof(host), "%.*s", (int)(end - bound - 1), bound + 1);
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
		s6->sin6_port = htons((uint16_t)atoi(end + 2));
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		family = AF_INET;
		colon = strrchr(bound, ':');
		snprintf(host, sizeof(host), "%.*s", (int)(colon - bound), bound);
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, host, &s4->sin_addr), 1);
		s4->sin_port = htons((uint16_t)atoi(colon + 1));
		len = sizeof(*s4);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	/* Blocking connect: the kernel completes it from the listen backlog. */
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		fail_msg("connect %s: %s", bound, strerror(errno));
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	client_close(&t->cl[i]);
	t->cl[i].fd = fd;
	return fd;
}

static void client_connect(struct t *t, int i)
{
	client_connect_to(t, i, t->bound);
}

static void client_send_n(struct t *t, int i, const char *s, size_t n)
{
	ssize_t w = send(t->cl[i].fd, s, n, MSG_NOSIGNAL);

	if (w < 0 || (size_t)w != n)
		fail_msg("send %zu bytes: %zd (%s)", n, w, strerror(errno));
}

static void client_send(struct t *t, int i, const char *s)
{
	client_send_n(t, i, s, strlen(s));
}

/* --- reading responses back, with http-parser in response mode ----------- */

struct resp {
	int status;
	char headers[4096];      /* "name: value\n", names lower-cased */
	size_t hlen;
	char *body;
	size_t body_len, body_cap;
	int complete;
	int chunked;
};

#define MAX_RESP 8

struct rparse {
	struct resp r[MAX_RESP];
	int n;
	unsigned head_mask;
	int in_value;
};

static int rp_begin(http_parser *p)
{
	struct rparse *rp = p->data;

	if (rp->n == MAX_RESP)
		return -1;
	memset(&rp->r[rp->n], 0, sizeof(rp->r[0]));
	rp->n++;
	rp->in_value = 0;
	return 0;
}

static void rp_hput(struct resp *r, const char *s, size_t n, int lower)
{
	size_t i;

	for (i = 0; i < n && r->hlen + 2 < sizeof(r->headers); i++)
		r->headers[r->hlen++] = lower ? (char)tolower((unsigned char)s[i]) : s[i];
	r->headers[r->hlen] = '\0';
}

static int rp_field(http_parser *p, const char *at, size_t n)
{
	struct rparse *rp = p->data;
	struct resp *r = &rp->r[rp->n - 1];

	if (rp->in_value)
		rp_hput(r, "\n", 1, 0);
	rp->in_value = 0;
	rp_hput(r, at, n, 1);
	return 0;
}

static int rp_value(http_parser *p, const char *at, size_t n)
{
	struct rparse *rp = p->data;
	struct resp *r = &rp->r[rp->n - 1];

	if (!rp->in_value)
		rp_hput(r, ": ", 2, 0);
	rp->in_value = 1;
	rp_hput(r, at, n, 0);
	return 0;
}

static int rp_headers_done(http_parser *p)
{
	struct rparse *rp = p->data;
	struct resp *r = &rp->r[rp->n - 1];

	if (rp->in_value)
		rp_hput(r, "\n", 1, 0);
	r->status = (int)p->status_code;
	r->chunked = (p->flags & F_CHUNKED) != 0;
	/* A HEAD response has the headers of a body it does not carry. */
	return (rp->head_mask >> (rp->n - 1)) & 1;
}

static int rp_body(http_parser *p, const char *at, size_t n)
{
	struct rparse *rp = p->data;
	struct resp *r = &rp->r[rp->n - 1];

	if (r->body_len + n + 1 > r->body_cap) {
		r->body_cap = (r->body_len + n + 1) * 2;
		r->body = realloc(r->body, r->body_cap);
		assert_non_null(r->body);
	}
	memcpy(r->body + r->body_len, at, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

static int rp_complete(http_parser *p)
{
	struct rparse *rp = p->data;

	rp->r[rp->n - 1].complete = 1;
	return 0;
}

static const http_parser_settings rp_settings = {
	.on_message_begin = rp_begin,
	.on_header_field = rp_field,
	.on_header_value = rp_value,
	.on_headers_complete = rp_headers_done,
	.on_body = rp_body,
	.on_message_complete = rp_complete,
};

static void rparse_free(struct rparse *rp)
{
	int i;

	for (i = 0; i < rp->n; i++)
		free(rp->r[i].body);
	rp->n = 0;
}

/* Parse everything client i has received; returns complete responses. */
static int parse_responses(struct t *t, int i, struct rparse *rp)
{
	struct client *c = &t->cl[i];
	http_parser p;
	int done = 0, k;

	memset(rp, 0, sizeof(*rp));
	rp->head_mask = c->head_mask;
	http_parser_init(&p, HTTP_RESPONSE);
	p.data = rp;
	http_parser_execute(&p, &rp_settings, c->buf ? c->buf : "", c->len);
	for (k = 0; k < rp->n; k++)
		done += rp->r[k].complete;
	return done;
}

static int have_responses(struct t *t)
{
	struct rparse rp;
	int n = parse_responses(t, t->want_client, &rp);

	rparse_free(&rp);
	return n >= t->want_responses;
}

/* Wait for n complete responses on client i, and parse them. */
static void wait_responses(struct t *t, int i, int n, struct rparse *rp)
{
	t->want_client = i;
	t->want_responses = n;
	run_until(t, have_responses);
	assert_int_equal(parse_responses(t, i, rp), n);
}

static int want_eof_client;

static int client_closed(struct t *t)
{
	return t->cl[want_eof_client].eof || t->cl[want_eof_client].err;
}

static void wait_closed(struct t *t, int i)
{
	want_eof_client = i;
	run_until(t, client_closed);
}

/* A header of a parsed response: the value, in a static buffer; NULL if absent. */
static const char *rheader(const struct resp *r, const char *name)
{
	static char val[512];
	char key[128];
	const char *p, *e;

	snprintf(key, sizeof(key), "%s: ", name);
	for (p = r->headers; (p = strstr(p, key)); p++) {
		if (p != r->headers && p[-1] != '\n')
			continue;
		p += strlen(key);
		e = strchr(p, '\n');
		snprintf(val, sizeof(val), "%.*s", (int)(e ? e - p : (ptrdiff_t)strlen(p)), p);
		return val;
	}
	return NULL;
}

static void assert_error_body(const struct resp *r, int status, const char *code,
			      const char *message_part)
{
	char want[128];

	assert_int_equal(r->status, status);
	assert_non_null(r->body);
	assert_string_equal(rheader(r, "content-type"), "application/json");
	snprintf(want, sizeof(want), "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
	if (strncmp(r->body, want, strlen(want)) != 0)
		fail_msg("error body %s does not start with %s", r->body, want);
	if (!strstr(r->body, message_part))
		fail_msg("error body %s does not name \"%s\"", r->body, message_part);
	assert_string_equal(r->body + r->body_len - 3, "\"}}");
	assert_string_equal(rheader(r, "connection"), "close");
}

/* --- plain requests -------------------------------------------------------- */

static void get_keepalive_two_requests(void **state)
{
	struct fp_http_stats st;
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	client_connect(&t, 0);
	client_send(&t, 0, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	assert_int_equal(rp.r[0].status, 200);
	assert_string_equal(rp.r[0].body, "GET /hello 0:");
	assert_string_equal(rheader(&rp.r[0], "content-length"), "13");
	assert_string_equal(rheader(&rp.r[0], "server"), "forkpoold");
	assert_string_equal(rheader(&rp.r[0], "content-type"), "text/plain");
	assert_non_null(rheader(&rp.r[0], "date"));
	assert_true(strstr(rheader(&rp.r[0], "date"), " GMT") != NULL);
	assert_null(rheader(&rp.r[0], "connection"));
	rparse_free(&rp);

	/* The same connection answers again. */
	client_send(&t, 0, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	assert_string_equal(rp.r[1].body, "GET /again 0:");
	assert_false(t.cl[0].eof);
	rparse_free(&rp);

	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.open, 1);
	assert_int_equal(st.requests, 2);
	assert_int_equal(st.responses[2], 2);
	assert_int_equal(st.by_code[200 - 100], 2);
	assert_int_equal(t.logged, 2);
	assert_int_equal(t.last_log_status, 200);
	/* Head and body: everything the client got for the second one. */
	assert_true(t.last_log_bytes > 13 && t.last_log_bytes < t.cl[0].len);
	t_free(&t);
}

/* /slow is answered from a timer; the requests behind it must wait. */
static void later_cb(fp_timer *tm)
{
	struct t *t = tm->data;
	fp_http_request *req = t->held;

	t->held = NULL;
	assert_int_equal(fp_http_respond(req, 200, "text/plain", "slow", 4), 0);
}

static void slow_or_echo(struct t *t, fp_http_request *req)
{
	if (!strcmp(fp_http_path(req), "/slow")) {
		t->held = req;
		assert_int_equal(fp_timer_start(t->loop, &t->later, 30, later_cb), 0);
		return;
	}
	echo(t, req);
}

static void pipelined_in_order_one_write(void **state)
{
	struct fp_http_stats before, after;
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = slow_or_echo;
	client_connect(&t, 0);
	client_send(&t, 0, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
			   "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
			   "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
			   "\r\nGET /d HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 4, &rp);
	assert_string_equal(rp.r[0].body, "slow");
	assert_string_equal(rp.r[1].body, "GET /b 0:");
	/* The body's terminating NUL did not eat the next request's first byte. */
	assert_string_equal(rp.r[2].body, "POST /c 3:xyz");
	assert_string_equal(rp.r[3].body, "GET /d 0:");
	rparse_free(&rp);

	/* Three quick ones in one segment: answered by one write. */
	fp_http_server_stats(t.srv, &before);
	client_send(&t, 0, "GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\nGET /3 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 7, &rp);
	assert_string_equal(rp.r[4].body, "GET /1 0:");
	assert_string_equal(rp.r[5].body, "GET /2 0:");
	assert_string_equal(rp.r[6].body, "GET /3 0:");
	rparse_free(&rp);
	fp_http_server_stats(t.srv, &after);
	assert_int_equal(after.requests - before.requests, 3);
	assert_int_equal(after.writes - before.writes, 1);
	t_free(&t);
}

static void post_content_length_and_chunked(void **state)
{
	const char *req = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nchunked wor\r\n2\r\nld\r\n0\r\n\r\n";
	struct rparse rp;
	struct t t;
	size_t i;

	t_init(&t, NULL);
	client_connect(&t, 0);
	client_send(&t, 0, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
	wait_responses(&t, 0, 1, &rp);
	assert_string_equal(rp.r[0].body, "POST /p 11:hello world");
	rparse_free(&rp);

	client_send(&t, 0, req);
	wait_responses(&t, 0, 2, &rp);
	assert_string_equal(rp.r[1].body, "POST /c 19:hello chunked world");
	rparse_free(&rp);

	/* The same, a byte at a time: every token split across reads. */
	for (i = 0; req[i]; i++) {
		client_send_n(&t, 0, req + i, 1);
		pump(&t, 1);
	}
	wait_responses(&t, 0, 3, &rp);
	assert_string_equal(rp.r[2].body, "POST /c 19:hello chunked world");
	rparse_free(&rp);
	t_free(&t);
}

static int handled_once(struct t *t)
{
	return t->handled >= 1;
}

static int got_continue(struct t *t)
{
	return t->cl[0].len >= 25;
}

static void expect_continue(void **state)
{
	struct fp_http_limits lim;
	struct fp_http_stats st;
	struct rparse rp;
	struct t t;

	fp_http_limits_init(&lim);
	lim.max_body_bytes = 100;
	t_init(&t, &lim);
	client_connect(&t, 0);
	client_send(&t, 0, "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
			   "Content-Length: 5\r\n\r\n");
	run_until(&t, got_continue);
	assert_memory_equal(t.cl[0].buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	assert_int_equal(t.cl[0].len, 25);
	assert_int_equal(t.handled, 0);
	client_send(&t, 0, "abcde");
	wait_responses(&t, 0, 2, &rp);
	assert_int_equal(rp.r[0].status, 100);
	assert_int_equal(rp.r[1].status, 200);
	assert_string_equal(rp.r[1].body, "PUT /e 5:abcde");
	rparse_free(&rp);

	/* Over the limit: 413 at once, no 100, the body is never asked for. */
	client_connect(&t, 1);
	client_send(&t, 1, "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
			   "Content-Length: 1000\r\n\r\n");
	wait_responses(&t, 1, 1, &rp);
	assert_error_body(&rp.r[0], 413, "body_too_large", "limit of 100 bytes");
	assert_null(strstr(t.cl[1].buf, "100 Continue"));
	rparse_free(&rp);
	wait_closed(&t, 1);
	assert_int_equal(t.handled, 1);
	/* The interim 100 is counted by its code too. */
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.responses[1], 1);
	assert_int_equal(st.by_code[100 - 100], 1);
	assert_int_equal(st.by_code[200 - 100], 1);
	assert_int_equal(st.by_code[413 - 100], 1);
	t_free(&t);
}

static void head_has_length_but_no_body(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	client_connect(&t, 0);
	t.cl[0].head_mask = 1;
	client_send(&t, 0, "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	/* "HEAD /x 0:" is what GET-like echo would send: 10 bytes. */
	assert_string_equal(rheader(&rp.r[0], "content-length"), "10");
	assert_null(rp.r[0].body);
	assert_non_null(strstr(t.cl[0].buf, "\r\n\r\n"));
	assert_int_equal(strstr(t.cl[0].buf, "\r\n\r\n") + 4 - t.cl[0].buf, (ptrdiff_t)t.cl[0].len);
	rparse_free(&rp);
	/* Nothing stray follows: the next response parses cleanly. */
	client_send(&t, 0, "GET /y HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	assert_string_equal(rp.r[1].body, "GET /y 0:");
	rparse_free(&rp);
	t_free(&t);
}

/* --- limits and malformed requests --------------------------------------- */

static int stats_open_is(struct t *t, uint64_t n);
static int open_is_zero(struct t *t);

static void error_case(struct t *t, const char *request, size_t len, int status,
		       const char *code, const char *part)
{
	struct rparse rp;

	client_connect(t, 0);
	client_send_n(t, 0, request, len);
	wait_responses(t, 0, 1, &rp);
	assert_error_body(&rp.r[0], status, code, part);
	rparse_free(&rp);
	/* Flushed, then a FIN (shutdown), not a reset that could lose it. */
	wait_closed(t, 0);
	assert_true(t->cl[0].eof);
	assert_int_equal(t->cl[0].err, 0);
	/* The server lingers until the peer closes too. */
	assert_true(stats_open_is(t, 1));
	client_close(&t->cl[0]);
	run_until(t, open_is_zero);
}

static void limits_answered_with_json_errors(void **state)
{
	struct fp_http_limits lim;
	struct fp_http_stats st;
	char big[4096];
	uint64_t sum = 0;
	struct t t;
	int n, code;

	fp_http_limits_init(&lim);
	lim.max_header_bytes = 1024;
	lim.max_uri_bytes = 256;
	lim.max_body_bytes = 64;
	t_init(&t, &lim);

	n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: t\r\nX-Big: %0*d\r\n\r\n", 1500, 0);
	error_case(&t, big, (size_t)n, 431, "headers_too_large", "limit of 1024 bytes");
	/* Many small headers add up too. */
	n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: t\r\n");
	while (n < 1400)
		n += snprintf(big + n, sizeof(big) - (size_t)n, "X-%d: v\r\n", n);
	n += snprintf(big + n, sizeof(big) - (size_t)n, "\r\n");
	error_case(&t, big, (size_t)n, 431, "headers_too_large", "1024 bytes");

	n = snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\nHost: t\r\n\r\n", 300, 0);
	error_case(&t, big, (size_t)n, 414, "uri_too_long", "limit of 256 bytes");

	n = snprintf(big, sizeof(big), "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n");
	error_case(&t, big, (size_t)n, 413, "body_too_large", "limit of 64 bytes");
	n = snprintf(big, sizeof(big), "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "20\r\n%032d\r\n21\r\n%033d\r\n0\r\n\r\n", 0, 0);
	error_case(&t, big, (size_t)n, 413, "body_too_large", "limit of 64 bytes");

	n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: t\r\nBad\001Header: x\r\n\r\n");
	error_case(&t, big, (size_t)n, 400, "bad_request", "invalid character in header");
	n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 12x\r\n\r\n");
	error_case(&t, big, (size_t)n, 400, "bad_request", "content-length");
	n = snprintf(big, sizeof(big), "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n");
	error_case(&t, big, (size_t)n, 400, "bad_request", "invalid HTTP method");
	/* RFC 9112 3.2: exactly one Host in HTTP/1.1. */
	n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n\r\n");
	error_case(&t, big, (size_t)n, 400, "bad_request", "Host");
	n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
	error_case(&t, big, (size_t)n, 400, "bad_request", "Host");

	assert_int_equal(t.handled, 0);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.responses[4], 10);
	/* Each code exactly, and nothing else in the class. */
	assert_int_equal(st.by_code[400 - 100], 5);
	assert_int_equal(st.by_code[413 - 100], 2);
	assert_int_equal(st.by_code[414 - 100], 1);
	assert_int_equal(st.by_code[431 - 100], 2);
	for (code = 400; code <= 499; code++)
		sum += st.by_code[code - 100];
	assert_int_equal(sum, st.responses[4]);
	assert_int_equal(t.logged, 10);
	assert_int_equal(t.last_log_status, 400);
	t_free(&t);
}

/* --- timeouts ------------------------------------------------------------- */

static void header_timeout_answers_408(void **state)
{
	struct fp_http_limits lim;
	struct rparse rp;
	uint64_t t0;
	struct t t;

	fp_http_limits_init(&lim);
	lim.header_timeout_ms = 150;
	t_init(&t, &lim);
	client_connect(&t, 0);
	t0 = fp_now_ms();
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: x\r\n");
	wait_responses(&t, 0, 1, &rp);
	assert_true(fp_now_ms() - t0 >= 140);
	assert_error_body(&rp.r[0], 408, "request_timeout", "150 ms");
	rparse_free(&rp);
	wait_closed(&t, 0);

	/* Connected, never a byte: closed without an answer. */
	client_connect(&t, 1);
	wait_closed(&t, 1);
	assert_int_equal(t.cl[1].len, 0);
	assert_int_equal(t.handled, 0);
	t_free(&t);
}

static void body_timeout_answers_408(void **state)
{
	struct fp_http_limits lim;
	struct rparse rp;
	struct t t;

	fp_http_limits_init(&lim);
	lim.body_timeout_ms = 120;
	t_init(&t, &lim);
	client_connect(&t, 0);
	client_send(&t, 0, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
	wait_responses(&t, 0, 1, &rp);
	assert_error_body(&rp.r[0], 408, "request_timeout", "120 ms");
	rparse_free(&rp);
	wait_closed(&t, 0);
	assert_int_equal(t.handled, 0);
	t_free(&t);
}

static void idle_timeout_closes(void **state)
{
	struct fp_http_limits lim;
	struct fp_http_stats st;
	struct rparse rp;
	size_t len;
	struct t t;

	fp_http_limits_init(&lim);
	lim.idle_timeout_ms = 100;
	t_init(&t, &lim);
	client_connect(&t, 0);
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	rparse_free(&rp);
	len = t.cl[0].len;
	wait_closed(&t, 0);
	/* Just closed: no 408 or anything else after the response. */
	assert_int_equal(t.cl[0].len, len);
	assert_int_equal(t.cl[0].err, 0);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.responses[4], 0);
	t_free(&t);
}

static void http10_and_connection_close(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	/* HTTP/1.0 closes by default. */
	client_connect(&t, 0);
	client_send(&t, 0, "GET /a HTTP/1.0\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	assert_string_equal(rp.r[0].body, "GET /a 0:");
	assert_string_equal(rheader(&rp.r[0], "connection"), "close");
	rparse_free(&rp);
	wait_closed(&t, 0);

	/* ... unless it asks to keep the connection. */
	client_connect(&t, 1);
	client_send(&t, 1, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	wait_responses(&t, 1, 1, &rp);
	assert_string_equal(rheader(&rp.r[0], "connection"), "keep-alive");
	rparse_free(&rp);
	client_send(&t, 1, "GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	wait_responses(&t, 1, 2, &rp);
	assert_string_equal(rp.r[1].body, "GET /c 0:");
	assert_false(t.cl[1].eof);
	rparse_free(&rp);

	/* HTTP/1.1 with Connection: close, and pipelined bytes after it are dropped. */
	client_connect(&t, 2);
	client_send(&t, 2, "GET /d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /e HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 2, 1, &rp);
	assert_string_equal(rheader(&rp.r[0], "connection"), "close");
	rparse_free(&rp);
	wait_closed(&t, 2);
	assert_int_equal(parse_responses(&t, 2, &rp), 1);
	rparse_free(&rp);
	assert_int_equal(t.handled, 4);
	t_free(&t);
}

static int stats_open_is(struct t *t, uint64_t n)
{
	struct fp_http_stats st;

	fp_http_server_stats(t->srv, &st);
	return st.open == n;
}

static int open_is_one(struct t *t)
{
	return stats_open_is(t, 1);
}

static void connection_cap_refuses(void **state)
{
	struct fp_http_limits lim;
	struct fp_http_stats st;
	struct rparse rp;
	struct t t;

	fp_http_limits_init(&lim);
	lim.max_connections = 2;
	t_init(&t, &lim);
	client_connect(&t, 0);
	client_send(&t, 0, "GET /0 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	rparse_free(&rp);
	client_connect(&t, 1);
	client_send(&t, 1, "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 1, 1, &rp);
	rparse_free(&rp);
	/* Both with a request under way: neither is closed for a newcomer. */
	client_send(&t, 0, "GET /0b HTTP/1.1\r\n");
	client_send(&t, 1, "GET /1b HTTP/1.1\r\n");
	pump(&t, 5);

	/* The third is accepted and closed at once, with no answer. */
	client_connect(&t, 2);
	client_send(&t, 2, "GET /2 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_closed(&t, 2);
	assert_int_equal(t.cl[2].len, 0);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.accepted, 2);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.open, 2);
	assert_int_equal(t.handled, 2);

	/* The first two still work; when one leaves there is room again. */
	client_send(&t, 0, "Host: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	rparse_free(&rp);
	client_close(&t.cl[1]);
	run_until(&t, open_is_one);
	client_connect(&t, 3);
	client_send(&t, 3, "GET /3 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 3, 1, &rp);
	assert_string_equal(rp.r[0].body, "GET /3 0:");
	rparse_free(&rp);
	t_free(&t);
}

/* Note the peer in the body. */
static void peer_echo(struct t *t, fp_http_request *req)
{
	const char *peer = fp_http_peer(req);

	snprintf(t->note, sizeof(t->note), "%s", peer);
	assert_int_equal(fp_http_respond(req, 200, "text/plain", peer, strlen(peer)), 0);
}

static void unix_socket_listener(void **state)
{
	char dir[] = "/tmp/fp-test-http-XXXXXX", path[64], addr[80], err[256];
	struct sockaddr_un su;
	fp_http_server *other;
	struct rparse rp;
	struct stat st;
	struct t t;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/api.sock", dir);
	snprintf(addr, sizeof(addr), "unix:%s", path);

	/* A stale socket file, as a crashed server leaves it. */
	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;
	snprintf(su.sun_path, sizeof(su.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&su, sizeof(su)), 0);
	close(fd);
	assert_int_equal(stat(path, &st), 0);

	t_init_limits(&t, NULL);
	t.on_request = peer_echo;
	t_listen(&t, addr);
	assert_string_equal(t.bound, addr);
	client_connect(&t, 0);
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	assert_string_equal(rp.r[0].body, "unix");
	rparse_free(&rp);

	/* A live socket is not taken over. */
	assert_int_equal(fp_http_server_new(&other, t.loop, NULL, handler, &t), 0);
	assert_int_equal(fp_http_listen(other, addr, NULL, 0, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, "another server is listening"));
	fp_http_server_free(other);

	t_free(&t);
	/* Our socket file goes with the server. */
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(errno, ENOENT);

	/* A file that is not a socket is never removed. */
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	t_init_limits(&t, NULL);
	assert_int_equal(fp_http_listen(t.srv, addr, NULL, 0, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	t_free(&t);
	assert_int_equal(stat(path, &st), 0);
	unlink(path);
	rmdir(dir);
}

/*
 * The socket file's mode is the listener's, not the umask's: 0660 unless
 * told otherwise, whatever umask the process runs under, which is left as
 * it was.
 */
static void unix_socket_mode_is_0660_or_as_set(void **state)
{
	char dir[] = "/tmp/fp-test-http-XXXXXX", path[64], addr[80];
	mode_t old = umask(022);
	struct stat st;
	struct t t;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/api.sock", dir);
	snprintf(addr, sizeof(addr), "unix:%s", path);

	t_init_limits(&t, NULL);
	t_listen(&t, addr);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	t_free(&t);

	umask(0);
	t_init_limits(&t, NULL);
	fp_http_set_unix_mode(t.srv, 0600);
	t_listen(&t, addr);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(umask(077), 0);
	client_connect(&t, 0);
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	{
		struct rparse rp;

		wait_responses(&t, 0, 1, &rp);
		assert_int_equal(rp.r[0].status, 200);
		rparse_free(&rp);
	}
	t_free(&t);
	umask(old);
	rmdir(dir);
}

/* The names of the query's parameters, in order, repeats included. */
static void query_names(struct t *t, fp_http_request *req)
{
	const char *name;
	size_t o = 0;

	t->note[0] = '\0';
	for (unsigned i = 0; (name = fp_http_query_name(req, i)); i++)
		o += (size_t)snprintf(t->note + o, sizeof(t->note) - o, "%s|", name);
	assert_int_equal(fp_http_respond(req, 204, NULL, NULL, 0), 0);
}

static void query_parameter_names_in_order(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = query_names;
	client_connect(&t, 0);
	client_send(&t, 0, "GET /p?b=1&a&&enc%20key=2&b=3#x HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	rparse_free(&rp);
	assert_string_equal(t.note, "b|a|enc key|b|");
	client_send(&t, 0, "GET /p HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	rparse_free(&rp);
	assert_string_equal(t.note, "");
	t_free(&t);
}

/* The API's answer when building a body ran out of memory. */
static void api_body_out_of_memory(struct t *t, fp_http_request *req)
{
	struct sbuf b;

	sbuf_init(&b);
	b.oom = true;
	fp__api_json(req, 200, &b);
	sbuf_free(&b);
}

static void api_out_of_memory_answer_is_exactly_its_text(void **state)
{
	static const char want[] =
		"{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = api_body_out_of_memory;
	client_connect(&t, 0);
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	assert_int_equal(rp.r[0].status, 500);
	assert_int_equal(rp.r[0].body_len, sizeof(want) - 1);
	assert_memory_equal(rp.r[0].body, want, sizeof(want) - 1);
	rparse_free(&rp);
	t_free(&t);
}

static void ipv6_loopback_listener(void **state)
{
	char err[256];
	struct rparse rp;
	struct t t;
	int r;

	t_init_limits(&t, NULL);
	t.on_request = peer_echo;
	r = fp_http_listen(t.srv, "[::1]:0", t.bound, sizeof(t.bound), err, sizeof(err));
	if (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT) {
		t_free(&t);
		skip();
	}
	assert_int_equal(r, 0);
	assert_int_equal(strncmp(t.bound, "[::1]:", 6), 0);
	assert_true(atoi(t.bound + 6) > 0);
	client_connect(&t, 0);
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	assert_int_equal(strncmp(rp.r[0].body, "[::1]:", 6), 0);
	rparse_free(&rp);
	t_free(&t);
}

static void listen_address_errors(void **state)
{
	char err[256], bound[64];
	struct t t;

	t_init_limits(&t, NULL);
	assert_int_equal(fp_http_listen(t.srv, "nope", bound, sizeof(bound), err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "HOST:PORT"));
	assert_int_equal(fp_http_listen(t.srv, "127.0.0.1:99999", NULL, 0, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(fp_http_listen(t.srv, "::1:80", NULL, 0, err, sizeof(err)), -EINVAL);
	assert_int_equal(fp_http_listen(t.srv, "127.0.0.1:", NULL, 0, err, sizeof(err)), -EINVAL);
	/* TEST-NET-1 is nobody's local address. */
	assert_int_equal(fp_http_listen(t.srv, "192.0.2.1:0", NULL, 0, err, sizeof(err)),
			 -EADDRNOTAVAIL);
	assert_non_null(strstr(err, "cannot listen on 192.0.2.1:0"));
	t_free(&t);
}

static void loopback_addresses(void **state)
{
	assert_true(fp_http_addr_is_loopback("127.0.0.1:8080"));
	assert_true(fp_http_addr_is_loopback("127.3.2.1:1"));
	assert_true(fp_http_addr_is_loopback("[::1]:8080"));
	assert_true(fp_http_addr_is_loopback("localhost:8080"));
	assert_true(fp_http_addr_is_loopback("LOCALHOST:1"));
	assert_true(fp_http_addr_is_loopback("unix:/run/forkpoold.sock"));
	assert_true(fp_http_addr_is_loopback("127.0.0.1"));
	assert_true(fp_http_addr_is_loopback("::1"));
	assert_false(fp_http_addr_is_loopback("0.0.0.0:8080"));
	assert_false(fp_http_addr_is_loopback("[::]:8080"));
	assert_false(fp_http_addr_is_loopback("10.0.0.1:80"));
	assert_false(fp_http_addr_is_loopback("example.com:80"));
	assert_false(fp_http_addr_is_loopback("128.0.0.1:80"));
	assert_false(fp_http_addr_is_loopback(NULL));
}

/* --- the request API ------------------------------------------------------ */

struct seen {
	char path[64], target[160];
	const char *q[10];
	char qv[10][32];
	const char *h[6];
	char hv[6][32];
};

static struct seen seen;

static void keep(const char *v, const char **slot, char *copy)
{
	*slot = v ? copy : NULL;
	if (v)
		snprintf(copy, 32, "%s", v);
}

static void record_request(struct t *t, fp_http_request *req)
{
	static const char *const qs[10] = {
		"x", "y", "flag", "empty", "plus", "pct", "missing", "enc key", "amp", "nul",
	};
	static const char *const hs[6] = {
		"x-custom", "X-CUSTOM", "x-dup", "X-Empty", "missing", "host",
	};
	int i;

	snprintf(seen.path, sizeof(seen.path), "%s", fp_http_path(req));
	snprintf(seen.target, sizeof(seen.target), "%s", fp_http_target(req));
	for (i = 0; i < 10; i++)
		keep(fp_http_query(req, qs[i]), &seen.q[i], seen.qv[i]);
	for (i = 0; i < 6; i++)
		keep(fp_http_header(req, hs[i]), &seen.h[i], seen.hv[i]);
	snprintf(t->note, sizeof(t->note), "%s|%s|%s", fp_http_query_nth(req, "x", 1),
		 fp_http_query_nth(req, "x", 2) ? "?" : "none", fp_http_method(req));
	fp_http_set_data(req, t);
	assert_ptr_equal(fp_http_get_data(req), t);
	echo(t, req);
}

static void query_and_headers(void **state)
{
	const char *target = "/p%20a/th%2Fx?x=1&y=a%2Fb&x=2&&flag&empty=&plus=a+b"
			     "&pct=%zz%4&enc%20key=v%3D1&amp=%26&nul=a%00b#frag";
	char req[512];
	struct rparse rp;
	struct t t;

	memset(&seen, 0, sizeof(seen));
	t_init(&t, NULL);
	t.on_request = record_request;
	client_connect(&t, 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: h\r\nX-Custom:   hello world  \r\n"
		 "x-dup: 1\r\nX-Dup: 2\r\nX-Empty:\r\n\r\n", target);
	client_send(&t, 0, req);
	wait_responses(&t, 0, 1, &rp);
	rparse_free(&rp);

	assert_string_equal(seen.path, "/p a/th/x");
	assert_string_equal(seen.target, target);
	assert_string_equal(seen.q[0], "1");          /* the first of a repeated one */
	assert_string_equal(seen.q[1], "a/b");
	assert_string_equal(seen.q[2], "");           /* ?flag */
	assert_string_equal(seen.q[3], "");           /* empty= */
	assert_string_equal(seen.q[4], "a b");
	assert_string_equal(seen.q[5], "%zz%4");      /* bad escapes kept as sent */
	assert_null(seen.q[6]);
	assert_string_equal(seen.q[7], "v=1");        /* keys are decoded too */
	assert_string_equal(seen.q[8], "&");
	assert_string_equal(seen.q[9], "a%00b");      /* no NUL smuggled in */
	assert_string_equal(t.note, "2|none|GET");

	assert_string_equal(seen.h[0], "hello world"); /* surrounding blanks dropped */
	assert_string_equal(seen.h[1], "hello world");
	assert_string_equal(seen.h[2], "1");
	assert_string_equal(seen.h[3], "");
	assert_null(seen.h[4]);
	assert_string_equal(seen.h[5], "h");

	/* Absolute-form target. */
	client_send(&t, 0, "GET http://example.com/abs/p%41th?x=9 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	rparse_free(&rp);
	assert_string_equal(seen.path, "/abs/pAth");
	assert_string_equal(seen.q[0], "9");
	t_free(&t);
}

static void headers_added(struct t *t, fp_http_request *req)
{
	assert_int_equal(fp_http_add_header(req, "X-Trace", "abc 123"), 0);
	assert_int_equal(fp_http_add_header(req, "Server", "custom/1"), 0);
	assert_int_equal(fp_http_add_header(req, "Content-Length", "5"), -EINVAL);
	assert_int_equal(fp_http_add_header(req, "connection", "close"), -EINVAL);
	assert_int_equal(fp_http_add_header(req, "X-Evil", "a\r\nInjected: 1"), -EINVAL);
	assert_int_equal(fp_http_add_header(req, "Bad Name", "v"), -EINVAL);
	assert_int_equal(fp_http_add_header(req, "", "v"), -EINVAL);
	assert_int_equal(fp_http_respond(req, 999, "text/plain", "x", 1), -EINVAL);
	assert_int_equal(fp_http_respond(req, 204, NULL, NULL, 0), 0);
}

static void response_headers(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = headers_added;
	client_connect(&t, 0);
	client_send(&t, 0, "DELETE /x HTTP/1.1\r\nHost: t\r\n\r\nDELETE /y HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	assert_int_equal(rp.r[0].status, 204);
	assert_string_equal(rheader(&rp.r[0], "x-trace"), "abc 123");
	assert_string_equal(rheader(&rp.r[0], "server"), "custom/1");
	assert_null(strstr(rp.r[0].headers, "forkpoold"));
	assert_null(rheader(&rp.r[0], "injected"));
	/* 204: neither a body nor a length. */
	assert_null(rheader(&rp.r[0], "content-length"));
	assert_null(rp.r[0].body);
	/* The second request's headers start afresh. */
	assert_int_equal(rp.r[1].status, 204);
	assert_string_equal(rheader(&rp.r[1], "x-trace"), "abc 123");
	assert_non_null(strstr(t.cl[0].buf, "X-Trace: abc 123\r\nServer: custom/1\r\n"));
	assert_null(strstr(strstr(t.cl[0].buf, "X-Trace") + 1, "X-Trace: abc 123\r\nX-Trace"));
	rparse_free(&rp);
	t_free(&t);
}

/* --- streaming ------------------------------------------------------------ */

#define STREAM_CHUNK 16384

static unsigned char pat(size_t i)
{
	return (unsigned char)((i * 131u + (i >> 11)) & 0xff);
}

static void stream_produce(struct t *t, fp_http_request *req)
{
	char chunk[STREAM_CHUNK];
	size_t n, i, unsent;
	int r;

	while (t->produced < t->to_produce) {
		n = t->to_produce - t->produced;
		if (n > STREAM_CHUNK)
			n = STREAM_CHUNK;
		if (t->by_room && n > fp_http_stream_room(req))
			n = fp_http_stream_room(req);
		/* A write returning 1 said there is no room: it never comes to 0 here. */
		assert_true(n > 0);
		for (i = 0; i < n; i++)
			chunk[i] = (char)pat(t->produced + i);
		r = fp_http_stream_write(req, chunk, n);
		assert_true(r == 0 || r == 1);
		t->produced += n;
		unsent = fp_http_unsent(req);
		if (unsent > t->max_unsent)
			t->max_unsent = unsent;
		/* 1 exactly when the mark is reached: no room for another byte. */
		assert_int_equal(r, fp_http_stream_room(req) == 0);
		assert_int_equal(r, unsent + 2 * sizeof(size_t) + 4 >= t->lim.high_water_bytes);
		if (r == 1) {
			t->saw_backpressure++;
			return;
		}
	}
	assert_int_equal(fp_http_stream_end(req), 0);
	t->stream_done = 1;
}

static void on_drain(fp_http_request *req, void *data)
{
	struct t *t = data;

	t->drains++;
	assert_true(fp_http_stream_room(req) > 0);
	stream_produce(t, req);
}

static void on_close_count(fp_http_request *req, void *data)
{
	struct t *t = data;

	t->closes++;
	fp_timer_stop(&t->later);
	t->held = NULL;
	/* Inside the callback the request is still valid, but gone. */
	assert_int_equal(fp_http_stream_write(req, "x", 1), -EPIPE);
}

static void streamer(struct t *t, fp_http_request *req)
{
	assert_int_equal(fp_http_stream_start(req, 200, "application/octet-stream"), 0);
	assert_int_equal(fp_http_stream_start(req, 200, NULL), -EALREADY);
	assert_int_equal(fp_http_respond(req, 200, NULL, NULL, 0), -EALREADY);
	fp_http_on_drain(req, on_drain, t);
	fp_http_on_close(req, on_close_count, t);
	stream_produce(t, req);
}

static int backpressured(struct t *t)
{
	return t->saw_backpressure > 0;
}

static int stream_received(struct t *t)
{
	const struct client *c = &t->cl[0];

	return t->stream_done && c->len >= 5 && !memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5);
}

/*
 * A producer that writes no more than the room (the results stream) holds
 * at most the mark, its chunks' framing included: the window is exact.
 */
static void stream_by_room_never_passes_the_mark(void **state)
{
	struct fp_http_limits lim;
	struct rparse rp;
	struct t t;
	size_t i, bad = 0;
	int rcv = 16384;

	fp_http_limits_init(&lim);
	/* The default: a stream's window. */
	assert_int_equal(lim.high_water_bytes, 256 * 1024);
	lim.high_water_bytes = 100000;
	t_init(&t, &lim);
	t.on_request = streamer;
	t.by_room = 1;
	t.to_produce = 6u << 20;
	client_connect(&t, 0);
	setsockopt(t.cl[0].fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	t.cl[0].paused = 1;
	client_send(&t, 0, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
	run_until(&t, backpressured);
	pump(&t, 20);
	assert_true(t.produced < t.to_produce);
	assert_true(t.max_unsent <= lim.high_water_bytes);
	t.cl[0].paused = 0;
	t.cl[0].per_tick = 256 * 1024;
	run_until(&t, stream_received);
	assert_int_equal(t.drains, t.saw_backpressure);
	assert_true(t.max_unsent <= lim.high_water_bytes);

	assert_int_equal(parse_responses(&t, 0, &rp), 1);
	assert_int_equal(rp.r[0].status, 200);
	assert_int_equal(rp.r[0].body_len, t.to_produce);
	for (i = 0; i < rp.r[0].body_len && !bad; i++)
		if ((unsigned char)rp.r[0].body[i] != pat(i))
			bad = 1;
	assert_false(bad);
	rparse_free(&rp);
	t_free(&t);
}

static void stream_with_backpressure(void **state)
{
	struct fp_http_limits lim;
	struct rparse rp;
	struct t t;
	size_t i, bad = 0;
	int rcv = 16384;

	fp_http_limits_init(&lim);
	lim.high_water_bytes = 65536;
	t_init(&t, &lim);
	t.on_request = streamer;
	t.to_produce = 12u << 20;
	client_connect(&t, 0);
	setsockopt(t.cl[0].fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	/* A reader that does not read: the socket buffers fill, then ours. */
	t.cl[0].paused = 1;
	client_send(&t, 0, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
	run_until(&t, backpressured);
	/*
	 * The first reports may drain while the kernel still takes bytes; a
	 * few more turns let the buffers fill. 12 MiB cannot fit in them, so
	 * production has stopped short, holding no more than the mark.
	 */
	pump(&t, 20);
	assert_true(t.produced < t.to_produce);
	assert_true(t.produced < 8u << 20);
	assert_true(t.max_unsent <= lim.high_water_bytes + STREAM_CHUNK + 32);
	/* Then a slow one: 256 KiB a tick. */
	t.cl[0].paused = 0;
	t.cl[0].per_tick = 256 * 1024;
	run_until(&t, stream_received);
	assert_true(t.drains >= 1);
	assert_int_equal(t.drains, t.saw_backpressure);
	/* Never more than the mark plus one chunk and its framing. */
	assert_true(t.max_unsent <= lim.high_water_bytes + STREAM_CHUNK + 32);

	assert_int_equal(parse_responses(&t, 0, &rp), 1);
	assert_int_equal(rp.r[0].status, 200);
	assert_true(rp.r[0].chunked);
	assert_int_equal(rp.r[0].body_len, t.to_produce);
	for (i = 0; i < rp.r[0].body_len && !bad; i++)
		if ((unsigned char)rp.r[0].body[i] != pat(i))
			bad = i + 1;
	assert_int_equal(bad, 0);
	rparse_free(&rp);
	assert_int_equal(t.closes, 0);
	assert_int_equal(t.logged, 1);
	assert_int_equal(t.last_log_status, 200);
	t_free(&t);
}

/* A stream fed by a timer until the client leaves. */
static void trickle_cb(fp_timer *tm)
{
	struct t *t = tm->data;

	assert_non_null(t->held);
	assert_int_equal(fp_http_stream_write(t->held, "tick\n", 5), 0);
	assert_int_equal(fp_timer_start(t->loop, &t->later, 2, trickle_cb), 0);
}

static void trickler(struct t *t, fp_http_request *req)
{
	assert_int_equal(fp_http_stream_start(req, 200, "text/plain"), 0);
	fp_http_on_close(req, on_close_count, t);
	assert_int_equal(fp_http_stream_write(req, "first\n", 6), 0);
	t->held = req;
	assert_int_equal(fp_timer_start(t->loop, &t->later, 2, trickle_cb), 0);
}

static int got_first(struct t *t)
{
	return t->cl[0].buf && strstr(t->cl[0].buf, "first\n") != NULL;
}

static int closed_once(struct t *t)
{
	return t->closes >= 1;
}

static int open_is_zero(struct t *t)
{
	return stats_open_is(t, 0);
}

static void client_leaves_mid_stream(void **state)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int reset;
	struct t t;

	for (reset = 0; reset <= 1; reset++) {
		t_init(&t, NULL);
		t.on_request = trickler;
		client_connect(&t, 0);
		client_send(&t, 0, "GET /trickle HTTP/1.1\r\nHost: t\r\n\r\n");
		run_until(&t, got_first);
		/* A plain close (the server reads EOF), or a reset. */
		if (reset)
			setsockopt(t.cl[0].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		client_close(&t.cl[0]);
		run_until(&t, closed_once);
		run_until(&t, open_is_zero);
		pump(&t, 5);
		assert_int_equal(t.closes, 1);
		assert_int_equal(t.logged, 1);
		assert_int_equal(t.last_log_status, 200);
		t_free(&t);
	}
}

static void stream_abc(struct t *t, fp_http_request *req)
{
	assert_int_equal(fp_http_stream_start(req, 200, "text/plain"), 0);
	assert_int_equal(fp_http_stream_write(req, "a", 1), 0);
	assert_int_equal(fp_http_stream_write(req, NULL, 0), 0);   /* no empty chunk */
	assert_int_equal(fp_http_stream_write(req, "bc", 2), 0);
	assert_int_equal(fp_http_stream_end(req), 0);
}

/* HTTP/1.1 gets chunks; HTTP/1.0 has none, so the body ends with the connection. */
static void stream_framing_by_version(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = stream_abc;
	client_connect(&t, 0);
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	assert_string_equal(rheader(&rp.r[0], "transfer-encoding"), "chunked");
	assert_null(rheader(&rp.r[0], "content-length"));
	assert_string_equal(rp.r[0].body, "abc");
	assert_non_null(strstr(t.cl[0].buf, "\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"));
	rparse_free(&rp);

	client_connect(&t, 1);
	client_send(&t, 1, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	wait_closed(&t, 1);
	assert_null(strstr(t.cl[1].buf, "Transfer-Encoding"));
	assert_non_null(strstr(t.cl[1].buf, "Connection: close\r\n"));
	assert_int_equal(strcmp(t.cl[1].buf + t.cl[1].len - 7, "\r\n\r\nabc"), 0);
	t_free(&t);
}

static int refused_now(struct t *t)
{
	struct sockaddr_in sa;
	int fd, r;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)atoi(strrchr(t->bound, ':') + 1));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED;
	close(fd);
	return r;
}

static void stop_accepting_keeps_open_connections(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	client_connect(&t, 0);
	client_send(&t, 0, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	rparse_free(&rp);
	fp_http_server_stop_accepting(t.srv);
	run_until(&t, refused_now);
	client_send(&t, 0, "GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	assert_string_equal(rp.r[1].body, "GET /b 0:");
	rparse_free(&rp);
	t_free(&t);
}

/* --- freeing the server with work in progress ---------------------------- */

static void mixed(struct t *t, fp_http_request *req)
{
	const char *path = fp_http_path(req);

	if (!strcmp(path, "/hold")) {
		fp_http_on_close(req, on_close_count, t);
	} else if (!strcmp(path, "/zombie")) {
		/* Held with no close callback: the server frees it anyway. */
	} else if (!strcmp(path, "/stream")) {
		assert_int_equal(fp_http_stream_start(req, 200, "text/plain"), 0);
		assert_int_equal(fp_http_stream_write(req, "part", 4), 0);
		fp_http_on_close(req, on_close_count, t);
	} else {
		echo(t, req);
	}
}

static int four_handled(struct t *t)
{
	return t->handled == 4 && t->cl[3].buf && strstr(t->cl[3].buf, "part");
}

static void server_free_with_open_connections(void **state)
{
	struct rparse rp;
	struct t t;
	int i;

	t_init(&t, NULL);
	t.on_request = mixed;
	client_connect(&t, 0);
	client_send(&t, 0, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);          /* idle keep-alive */
	rparse_free(&rp);
	client_connect(&t, 1);
	client_send(&t, 1, "GET / HTT");         /* half a request */
	client_connect(&t, 2);
	client_send(&t, 2, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
	client_connect(&t, 3);
	client_send(&t, 3, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
	client_connect(&t, 4);
	client_send(&t, 4, "POST /zombie HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"
			   "GET /behind HTTP/1.1\r\nHost: t\r\n\r\n");
	run_until(&t, four_handled);

	t_free_server(&t);
	assert_int_equal(t.closes, 2);
	/* Every client sees its connection end. */
	for (i = 0; i <= 4; i++) {
		t.cl[i].per_tick = 0;
		client_pump(&t.cl[i]);
		assert_true(t.cl[i].eof || t.cl[i].err);
	}
	t_free(&t);
}

/* The daemon may free the server from a callback (a signal, a request). */
static void quit_from_handler(struct t *t, fp_http_request *req)
{
	if (strcmp(fp_http_path(req), "/quit") != 0) {
		echo(t, req);
		return;
	}
	/* The loop is running: the server finishes freeing itself later. */
	fp_http_server_free(t->srv);
	t->srv = NULL;
}

static int both_closed(struct t *t)
{
	return (t->cl[0].eof || t->cl[0].err) && (t->cl[1].eof || t->cl[1].err);
}

static void server_freed_from_its_handler(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = quit_from_handler;
	client_connect(&t, 0);
	client_send(&t, 0, "GET /idle HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 1, &rp);
	rparse_free(&rp);
	client_connect(&t, 1);
	client_send(&t, 1, "GET /quit HTTP/1.1\r\nHost: t\r\n\r\n");
	run_until(&t, both_closed);
	assert_null(t.srv);
	assert_int_equal(t.cl[1].len, 0);
	/* The last callbacks arrive and the rest is freed (ASan checks). */
	pump(&t, 5);
	t_free(&t);
}

/* --- requests the handler finishes late --------------------------------- */

static void end_stream_later_cb(fp_timer *tm)
{
	struct t *t = tm->data;
	fp_http_request *req = t->held;

	t->held = NULL;
	assert_int_equal(fp_http_stream_write(req, "dropped", 7), 0);
	assert_int_equal(fp_http_stream_end(req), 0);
}

static void head_stream_later(struct t *t, fp_http_request *req)
{
	if (!strcmp(fp_http_method(req), "HEAD")) {
		assert_int_equal(fp_http_stream_start(req, 200, "text/plain"), 0);
		t->held = req;
		assert_int_equal(fp_timer_start(t->loop, &t->later, 20, end_stream_later_cb), 0);
		return;
	}
	echo(t, req);
}

/*
 * A streamed answer to HEAD is headers only, and when it ends from a timer
 * with nothing left to write, the request pipelined behind it still runs.
 */
static void head_stream_then_pipelined(void **state)
{
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = head_stream_later;
	client_connect(&t, 0);
	t.cl[0].head_mask = 1;
	client_send(&t, 0, "HEAD /s HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	assert_string_equal(rheader(&rp.r[0], "transfer-encoding"), "chunked");
	assert_null(rp.r[0].body);
	assert_null(strstr(t.cl[0].buf, "dropped"));
	assert_string_equal(rp.r[1].body, "GET /after 0:");
	rparse_free(&rp);
	t_free(&t);
}

static void zombie_answer_cb(fp_timer *tm)
{
	struct t *t = tm->data;

	assert_int_equal(fp_http_respond(t->held, 200, "text/plain", "late", 4), -EPIPE);
	t->held = NULL;
	t->stream_done = 1;
}

static void hold_without_close_cb(struct t *t, fp_http_request *req)
{
	t->held = req;
}

static int zombie_answered(struct t *t)
{
	return t->stream_done && stats_open_is(t, 0);
}

/* The client leaves while the handler, which set no close callback, works. */
static void late_answer_after_client_left(void **state)
{
	struct t t;

	t_init(&t, NULL);
	t.on_request = hold_without_close_cb;
	client_connect(&t, 0);
	client_send(&t, 0, "GET /long-poll HTTP/1.1\r\nHost: t\r\n\r\n");
	run_until(&t, handled_once);
	/*
	 * A reset says the client is gone; a FIN alone would not (it may have
	 * only half-closed, and is answered: half_closed_client_gets_its_answer).
	 */
	client_reset(&t.cl[0]);
	run_until(&t, open_is_zero);
	/* The request is still the handler's: answering it fails, then it is freed. */
	assert_non_null(t.held);
	assert_int_equal(fp_timer_start(t.loop, &t.later, 1, zombie_answer_cb), 0);
	run_until(&t, zombie_answered);
	pump(&t, 3);
	assert_int_equal(t.logged, 1);
	assert_int_equal(t.last_log_status, 499);
	t_free(&t);
}

/*
 * A request finished from a timer is not reused for the pipelined request
 * behind it until the loop turns: the caller may still clear its callbacks
 * right after finishing it (as the API's long-poll does), without touching
 * the next request.
 */
static fp_http_request *next_req;

static void answer_next_cb(fp_timer *tm)
{
	struct t *t = tm->data;

	assert_ptr_equal(fp_http_get_data(next_req), t);
	assert_int_equal(fp_http_respond(next_req, 200, "text/plain", "next", 4), 0);
	next_req = NULL;
}

static void answer_first_cb(fp_timer *tm)
{
	struct t *t = tm->data;
	fp_http_request *req = t->held;

	t->held = NULL;
	assert_int_equal(fp_http_respond(req, 200, "text/plain", "first", 5), 0);
	fp_http_on_close(req, NULL, NULL);
	fp_http_set_data(req, NULL);
	assert_null(next_req);
}

static void first_then_next(struct t *t, fp_http_request *req)
{
	if (!strcmp(fp_http_path(req), "/first")) {
		t->held = req;
		fp_http_on_close(req, on_close_count, t);
		assert_int_equal(fp_timer_start(t->loop, &t->later, 5, answer_first_cb), 0);
		return;
	}
	next_req = req;
	fp_http_set_data(req, t);
	fp_http_on_close(req, on_close_count, t);
	assert_int_equal(fp_timer_start(t->loop, &t->later, 5, answer_next_cb), 0);
}

static void finished_request_not_reused_under_caller(void **state)
{
	struct rparse rp;
	struct t t;

	next_req = NULL;
	t_init(&t, NULL);
	t.on_request = first_then_next;
	client_connect(&t, 0);
	client_send(&t, 0, "GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(&t, 0, 2, &rp);
	assert_string_equal(rp.r[0].body, "first");
	assert_string_equal(rp.r[1].body, "next");
	rparse_free(&rp);
	assert_int_equal(t.closes, 0);
	t_free(&t);
}

/* A reader that stops reading for good is dropped once output stalls. */
static void stalled_reader_dropped(void **state)
{
	struct fp_http_limits lim;
	struct t t;

	fp_http_limits_init(&lim);
	lim.high_water_bytes = 65536;
	lim.idle_timeout_ms = 200;
	t_init(&t, &lim);
	t.on_request = streamer;
	t.to_produce = 64u << 20;
	client_connect(&t, 0);
	t.cl[0].paused = 1;
	client_send(&t, 0, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
	run_until(&t, closed_once);
	assert_int_equal(t.closes, 1);
	assert_true(t.produced < t.to_produce);
	run_until(&t, open_is_zero);
	t_free(&t);
}

/* --- slow, idle and half-closed clients (issue 13) ------------------------ */

static void limits_defaults(void **state)
{
	struct fp_http_limits lim;

	fp_http_limits_init(&lim);
	assert_int_equal(lim.max_connections, 16384);
	assert_int_equal(lim.max_connections_per_ip, 0);
	assert_int_equal(lim.header_timeout_ms, 10000);
	assert_int_equal(lim.body_timeout_ms, 20000);
	assert_int_equal(lim.body_min_rate, 500);
	assert_int_equal(lim.idle_timeout_ms, 60000);
}

static const char slow_head[] =
	"GET /slow-headers HTTP/1.1\r\nHost: t\r\n"
	"X-Pad: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n";
static const char slow_body_head[] =
	"POST /slow-body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n";
static const char slow_body[] =
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"012345678901234567890123456789";

/*
 * A byte every 20 ms would deliver either request in about 2 s; the header
 * and body deadlines (300 ms, no rate) hold however often a byte comes.
 */
static void deadlines_not_extended_by_drip_feeding(void **state)
{
	struct fp_http_limits lim;
	struct fp_http_stats st;
	struct rparse rp;
	uint64_t t0, took;
	struct t t;

	fp_http_limits_init(&lim);
	lim.header_timeout_ms = 300;
	lim.body_timeout_ms = 300;
	lim.body_min_rate = 0;
	t_init(&t, &lim);

	client_connect(&t, 0);
	t0 = fp_now_ms();
	drip_start(&t, 0, 0, slow_head, 1, 20);
	wait_responses(&t, 0, 1, &rp);
	took = fp_now_ms() - t0;
	assert_error_body(&rp.r[0], 408, "request_timeout", "header deadline");
	assert_non_null(strstr(rp.r[0].body, "300 ms"));
	rparse_free(&rp);
	assert_true(took >= 290);
	wait_closed(&t, 0);

	client_connect(&t, 1);
	client_send(&t, 1, slow_body_head);
	t0 = fp_now_ms();
	drip_start(&t, 1, 1, slow_body, 1, 20);
	wait_responses(&t, 1, 1, &rp);
	took = fp_now_ms() - t0;
	assert_error_body(&rp.r[0], 408, "request_timeout", "body deadline");
	assert_non_null(strstr(rp.r[0].body, "of 100 body bytes"));
	rparse_free(&rp);
	assert_true(took >= 290);
	wait_closed(&t, 1);

	assert_int_equal(t.handled, 0);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.by_code[408 - 100], 2);
	assert_int_equal(st.timed_out, 2);
	t_free(&t);
}

static char rate_body[3001];
static char rate_head[128];

/*
 * Body deadline 200 ms after the headers, plus 1 s per 2000 bytes: a client
 * sending 5000 bytes a second finishes a 3000-byte body in about 600 ms,
 * past the grace; one sending 333 a second falls behind and gets a 408.
 */
static void body_min_rate_after_grace(void **state)
{
	struct fp_http_limits lim;
	struct rparse rp;
	struct t t;

	memset(rate_body, 'b', sizeof(rate_body) - 1);
	snprintf(rate_head, sizeof(rate_head),
		 "POST /rate HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
		 sizeof(rate_body) - 1);
	fp_http_limits_init(&lim);
	lim.body_timeout_ms = 200;
	lim.body_min_rate = 2000;
	t_init(&t, &lim);

	client_connect(&t, 0);
	client_connect(&t, 1);
	client_send(&t, 0, rate_head);
	client_send(&t, 1, rate_head);
	drip_start(&t, 0, 0, rate_body, 150, 30);
	drip_start(&t, 1, 1, rate_body, 10, 30);

	wait_responses(&t, 1, 1, &rp);
	assert_error_body(&rp.r[0], 408, "request_timeout", "body deadline");
	assert_non_null(strstr(rp.r[0].body, "1 s per 2000 bytes"));
	rparse_free(&rp);
	wait_closed(&t, 1);

	wait_responses(&t, 0, 1, &rp);
	assert_int_equal(rp.r[0].status, 200);
	assert_true(rp.r[0].body_len > 12);
	assert_memory_equal(rp.r[0].body, "POST /rate 3000:", 16);
	rparse_free(&rp);
	assert_int_equal(t.handled, 1);
	t_free(&t);
}

/* /hold is kept by the test (t->held) until it answers; the rest echo. */
static void hold_or_echo(struct t *t, fp_http_request *req)
{
	if (!strcmp(fp_http_path(req), "/hold")) {
		t->held = req;
		fp_http_on_close(req, on_close_count, t);
		return;
	}
	echo(t, req);
}

static void answer_held(struct t *t)
{
	fp_http_request *req = t->held;

	assert_non_null(req);
	t->held = NULL;
	fp_http_on_close(req, NULL, NULL);
	assert_int_equal(fp_http_respond(req, 200, "text/plain", "held", 4), 0);
}

static int want_handled;

static int handled_reached(struct t *t)
{
	return t->handled >= (unsigned)want_handled;
}

static void get_answered(struct t *t, int i, int nth)
{
	struct rparse rp;

	client_send(t, i, "GET /idle HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_responses(t, i, nth, &rp);
	assert_int_equal(rp.r[nth - 1].status, 200);
	rparse_free(&rp);
}

/*
 * At the cap, the connection idle the longest is closed for a new one; one
 * with a request under way never is, and with none idle the new one is
 * refused.
 */
static void idle_connections_evicted_at_cap(void **state)
{
	struct fp_http_limits lim;
	struct fp_http_stats st;
	struct rparse rp;
	struct t t;

	fp_http_limits_init(&lim);
	lim.max_connections = 3;
	t_init(&t, &lim);
	t.on_request = hold_or_echo;

	client_connect(&t, 0);
	get_answered(&t, 0, 1);
	client_connect(&t, 1);
	get_answered(&t, 1, 1);
	client_connect(&t, 2);
	client_send(&t, 2, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
	want_handled = 3;
	run_until(&t, handled_reached);
	assert_non_null(t.held);

	/* Client 0 has been idle the longest: it makes room for client 3. */
	client_connect(&t, 3);
	get_answered(&t, 3, 1);
	wait_closed(&t, 0);
	assert_int_equal(parse_responses(&t, 0, &rp), 1);
	rparse_free(&rp);
	assert_false(t.cl[1].eof);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.evicted, 1);
	assert_int_equal(st.refused, 0);

	/* Then client 1, for client 4. */
	client_connect(&t, 4);
	get_answered(&t, 4, 1);
	wait_closed(&t, 1);

	/* Requests under way on every connection (one held, two half-sent). */
	client_send(&t, 3, "GET /partial HTTP/1.1\r\n");
	client_send(&t, 4, "GET /partial HTTP/1.1\r\n");
	pump(&t, 5);
	client_connect(&t, 5);
	client_send(&t, 5, "GET /5 HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_closed(&t, 5);
	assert_int_equal(t.cl[5].len, 0);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.evicted, 2);
	assert_false(t.cl[2].eof || t.cl[3].eof || t.cl[4].eof);

	/* Each of them completes. */
	client_send(&t, 3, "Host: t\r\n\r\n");
	wait_responses(&t, 3, 2, &rp);
	rparse_free(&rp);
	client_send(&t, 4, "Host: t\r\n\r\n");
	wait_responses(&t, 4, 2, &rp);
	rparse_free(&rp);
	answer_held(&t);
	wait_responses(&t, 2, 1, &rp);
	assert_string_equal(rp.r[0].body, "held");
	rparse_free(&rp);
	assert_int_equal(t.closes, 0);
	t_free(&t);
}

/* Connect client i to the server from the local address `src`; -1 if it cannot bind. */
static int client_connect_from(struct t *t, int i, const char *src)
{
	struct sockaddr_in from, to;
	const char *colon = strrchr(t->bound, ':');
	char host[64];
	int fd;

	memset(&from, 0, sizeof(from));
	from.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
	memset(&to, 0, sizeof(to));
	to.sin_family = AF_INET;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - t->bound), t->bound);
	assert_int_equal(inet_pton(AF_INET, host, &to.sin_addr), 1);
	to.sin_port = htons((uint16_t)atoi(colon + 1));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0) {
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0)
		fail_msg("connect %s from %s: %s", t->bound, src, strerror(errno));
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	client_close(&t->cl[i]);
	t->cl[i].fd = fd;
	return fd;
}

/*
 * Two connections per address: a third from 127.0.0.1 takes the place of
 * that address's idle one; with none idle it is answered 429. Another
 * address is not affected.
 */
static void per_address_cap(void **state)
{
	struct fp_http_limits lim;
	struct fp_http_stats st;
	struct rparse rp;
	struct t t;

	fp_http_limits_init(&lim);
	lim.max_connections_per_ip = 2;
	t_init(&t, &lim);

	client_connect(&t, 0);
	get_answered(&t, 0, 1);
	client_connect(&t, 1);
	client_send(&t, 1, "GET /partial HTTP/1.1\r\n");
	pump(&t, 5);

	client_connect(&t, 2);
	get_answered(&t, 2, 1);
	wait_closed(&t, 0);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.evicted, 1);

	client_send(&t, 2, "GET /partial HTTP/1.1\r\n");
	pump(&t, 5);
	client_connect(&t, 3);
	wait_responses(&t, 3, 1, &rp);
	assert_error_body(&rp.r[0], 429, "too_many_connections", "127.0.0.1");
	assert_non_null(strstr(rp.r[0].body, "2 per address"));
	rparse_free(&rp);
	wait_closed(&t, 3);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.refused_per_ip, 1);
	assert_int_equal(st.by_code[429 - 100], 1);
	assert_false(t.cl[1].eof || t.cl[2].eof);

	/* Another address has room of its own. */
	if (client_connect_from(&t, 4, "127.0.0.2") >= 0) {
		get_answered(&t, 4, 1);
		client_connect_from(&t, 5, "127.0.0.2");
		get_answered(&t, 5, 1);
	}

	/* The ones under way complete. */
	client_send(&t, 1, "Host: t\r\n\r\n");
	wait_responses(&t, 1, 1, &rp);
	rparse_free(&rp);
	client_send(&t, 2, "Host: t\r\n\r\n");
	wait_responses(&t, 2, 2, &rp);
	rparse_free(&rp);
	t_free(&t);
}

/* /stream begins a stream that end_stream_later_cb ends 30 ms later. */
static void stream_later_or_slow(struct t *t, fp_http_request *req)
{
	if (!strcmp(fp_http_path(req), "/stream")) {
		assert_int_equal(fp_http_stream_start(req, 200, "text/plain"), 0);
		assert_int_equal(fp_http_stream_write(req, "begun;", 6), 0);
		t->held = req;
		assert_int_equal(fp_timer_start(t->loop, &t->later, 30, end_stream_later_cb), 0);
		return;
	}
	slow_or_echo(t, req);
}

static int got_begun(struct t *t)
{
	return t->cl[4].buf && strstr(t->cl[4].buf, "begun;") != NULL;
}

/*
 * A client that half-closes after its request (shutdown(SHUT_WR), as curl
 * and scripts do) still gets its answer, then the server closes; a request
 * it left incomplete is not answered.
 */
static void half_closed_client_gets_its_answer(void **state)
{
	struct fp_http_stats st;
	struct rparse rp;
	struct t t;

	t_init(&t, NULL);
	t.on_request = stream_later_or_slow;

	client_connect(&t, 0);
	client_send(&t, 0, "POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
	assert_int_equal(shutdown(t.cl[0].fd, SHUT_WR), 0);
	wait_responses(&t, 0, 1, &rp);
	assert_int_equal(rp.r[0].status, 200);
	assert_string_equal(rp.r[0].body, "slow");
	assert_string_equal(rheader(&rp.r[0], "connection"), "close");
	rparse_free(&rp);
	wait_closed(&t, 0);
	assert_int_equal(t.cl[0].err, 0);

	/* With Connection: close, as curl sends it. */
	client_connect(&t, 1);
	client_send(&t, 1, "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	assert_int_equal(shutdown(t.cl[1].fd, SHUT_WR), 0);
	wait_responses(&t, 1, 1, &rp);
	assert_string_equal(rp.r[0].body, "slow");
	rparse_free(&rp);
	wait_closed(&t, 1);

	/* Pipelined: every complete request is answered, the last with close. */
	client_connect(&t, 2);
	client_send(&t, 2, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_int_equal(shutdown(t.cl[2].fd, SHUT_WR), 0);
	wait_responses(&t, 2, 2, &rp);
	assert_string_equal(rp.r[0].body, "slow");
	assert_null(rheader(&rp.r[0], "connection"));
	assert_string_equal(rp.r[1].body, "GET /b 0:");
	assert_string_equal(rheader(&rp.r[1], "connection"), "close");
	rparse_free(&rp);
	wait_closed(&t, 2);

	/* An incomplete request and a FIN: closed, nothing answered. */
	client_connect(&t, 3);
	client_send(&t, 3, "GET /never HTTP/1.1\r\nHo");
	assert_int_equal(shutdown(t.cl[3].fd, SHUT_WR), 0);
	wait_closed(&t, 3);
	assert_int_equal(t.cl[3].len, 0);
	assert_int_equal(t.handled, 4);

	/* The FIN comes while the answer streams: it ends, then the server closes. */
	client_connect(&t, 4);
	client_send(&t, 4, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
	run_until(&t, got_begun);
	assert_int_equal(shutdown(t.cl[4].fd, SHUT_WR), 0);
	wait_closed(&t, 4);
	assert_int_equal(parse_responses(&t, 4, &rp), 1);
	assert_string_equal(rp.r[0].body, "begun;dropped");
	rparse_free(&rp);
	assert_int_equal(t.cl[4].err, 0);

	for (int i = 0; i < 5; i++)
		client_close(&t.cl[i]);
	run_until(&t, open_is_zero);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.responses[2], 5);
	assert_int_equal(t.closes, 0);
	t_free(&t);
}
/*
 * The memory transport (tests and the fuzzer): the same parsing and
 * responses with no socket. Two pipelined requests are answered in order,
 * in one write, completed by the caller's turn; a malformed third gets its
 * 400, and the server then half-closes and, at the client's FIN, closes.
 */
static void memory_connection_pipelined_then_error(void **state)
{
	static const char in[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
				 "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
				 "BAD\x01 / HTTP/1.1\r\n\r\n";
	struct t t;
	fp_http_mem *m;
	const char *out;
	size_t len;
	struct fp_http_stats st;

	t_init_limits(&t, NULL);
	assert_int_equal(fp_http_mem_open(t.srv, &m), 0);
	assert_int_equal(fp_http_mem_send(m, in, sizeof(in) - 1), 0);
	/* Nothing is written before the turn that stands for the loop. */
	while (fp_http_mem_turn(m) > 0)
		;
	out = fp_http_mem_output(m, &len);
	assert_non_null(strstr(out, "GET /a 0:"));
	assert_non_null(strstr(out, "POST /b 3:xyz"));
	assert_true(strstr(out, "GET /a 0:") < strstr(out, "POST /b 3:xyz"));
	assert_non_null(strstr(out, "HTTP/1.1 400 "));
	assert_true(fp_http_mem_server_shut(m));
	assert_false(fp_http_mem_closed(m));
	fp_http_mem_shutdown(m);
	while (fp_http_mem_turn(m) > 0)
		;
	assert_true(fp_http_mem_closed(m));
	assert_int_equal(fp_http_mem_send(m, "x", 1), -EPIPE);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.open, 0);
	assert_int_equal(t.handled, 2);
	fp_http_mem_close(m);
	t_free(&t);
}

static void hold_with_close_cb(struct t *t, fp_http_request *req)
{
	t->held = req;
	fp_http_on_close(req, on_close_count, t);
}

/* A client that leaves while the handler holds its request: the close callback runs. */
static void memory_connection_reset_runs_close_callback(void **state)
{
	static const char in[] = "GET /held HTTP/1.1\r\nHost: x\r\n\r\n";
	struct t t;
	fp_http_mem *m;
	struct fp_http_stats st;

	t_init_limits(&t, NULL);
	t.on_request = hold_with_close_cb;
	assert_int_equal(fp_http_mem_open(t.srv, &m), 0);
	assert_int_equal(fp_http_mem_send(m, in, sizeof(in) - 1), 0);
	assert_int_equal(t.handled, 1);
	assert_int_equal(t.closes, 0);
	fp_http_mem_close(m);
	assert_int_equal(t.closes, 1);
	fp_http_server_stats(t.srv, &st);
	assert_int_equal(st.open, 0);
	t_free(&t);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(get_keepalive_two_requests),
		cmocka_unit_test(pipelined_in_order_one_write),
		cmocka_unit_test(post_content_length_and_chunked),
		cmocka_unit_test(expect_continue),
		cmocka_unit_test(head_has_length_but_no_body),
		cmocka_unit_test(http10_and_connection_close),
		cmocka_unit_test(limits_answered_with_json_errors),
		cmocka_unit_test(header_timeout_answers_408),
		cmocka_unit_test(body_timeout_answers_408),
		cmocka_unit_test(idle_timeout_closes),
		cmocka_unit_test(connection_cap_refuses),
		cmocka_unit_test(unix_socket_listener),
		cmocka_unit_test(unix_socket_mode_is_0660_or_as_set),
		cmocka_unit_test(query_parameter_names_in_order),
		cmocka_unit_test(api_out_of_memory_answer_is_exactly_its_text),
		cmocka_unit_test(ipv6_loopback_listener),
		cmocka_unit_test(listen_address_errors),
		cmocka_unit_test(loopback_addresses),
		cmocka_unit_test(query_and_headers),
		cmocka_unit_test(response_headers),
		cmocka_unit_test(stream_with_backpressure),
		cmocka_unit_test(stream_by_room_never_passes_the_mark),
		cmocka_unit_test(client_leaves_mid_stream),
		cmocka_unit_test(stream_framing_by_version),
		cmocka_unit_test(stop_accepting_keeps_open_connections),
		cmocka_unit_test(server_free_with_open_connections),
		cmocka_unit_test(server_freed_from_its_handler),
		cmocka_unit_test(head_stream_then_pipelined),
		cmocka_unit_test(late_answer_after_client_left),
		cmocka_unit_test(finished_request_not_reused_under_caller),
		cmocka_unit_test(stalled_reader_dropped),
		cmocka_unit_test(limits_defaults),
		cmocka_unit_test(deadlines_not_extended_by_drip_feeding),
		cmocka_unit_test(body_min_rate_after_grace),
		cmocka_unit_test(idle_connections_evicted_at_cap),
		cmocka_unit_test(per_address_cap),
		cmocka_unit_test(half_closed_client_gets_its_answer),
		cmocka_unit_test(memory_connection_pipelined_then_error),
		cmocka_unit_test(memory_connection_reset_runs_close_callback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
