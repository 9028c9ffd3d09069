/*
 * Round trips over HTTP for scripts/bench: one client, one request at a time,
 * each timed, reduced to p50/p99 by nearest rank (bench-stats.h) as every
 * other round trip in the benchmarks. The same program measures forkpoold and
 * the WSGI peers, so the client's own cost is the same for all of them.
 *
 *   http-rtt HOST PORT PATH N
 *
 * Request i (0 <= i < N) is
 *   POST PATH HTTP/1.1  {"task":"square","args":i}
 * on a kept-alive connection; the answer must be 200 with a body holding
 * "result":i*i. A response saying Connection: close (gunicorn's sync workers
 * say it every time) or an HTTP/1.0 one without keep-alive ends the
 * connection, and the next request opens a new one: its connect is part of
 * its round trip, as it is for a real client of that server. One request
 * before the clock starts opens the first connection and checks the answer.
 *
 * Prints one line on stdout, e.g.
 *   result name=http-rtt items=2000 seconds=0.31 rate=6400.0 p50_us=150.1 p99_us=210.4 connections=1 ok=2000 failed=0
 * Exits 1 on the first wrong, failed or slow (10 s) answer, naming it on stderr; 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench-stats.h"

#define IO_TIMEOUT_S 10
#define RESP_MAX 65536

struct conn {
	struct sockaddr_in addr;
	const char *host, *path;
	unsigned port;
	int fd;
	size_t opened;          /* connections opened, the first included */
	char buf[RESP_MAX + 1];
	char err[256];
};

static int fail(struct conn *c, const char *what)
{
	if (!c->err[0])
		snprintf(c->err, sizeof(c->err), "%s", what);
	return -1;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static int conn_open(struct conn *c)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(c->err, sizeof(c->err), "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr)) < 0) {
		snprintf(c->err, sizeof(c->err), "connect %s:%u: %s", c->host, c->port,
			 strerror(errno));
		conn_close(c);
		return -1;
	}
	c->opened++;
	return 0;
}

static int send_all(struct conn *c, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(c->err, sizeof(c->err), "send: %s", n < 0 ? strerror(errno) : "closed");
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads more into buf at *len; 0 at end of stream, -1 on error or timeout. */
static ssize_t recv_more(struct conn *c, size_t *len)
{
	ssize_t n;

	if (*len >= RESP_MAX)
		return fail(c, "response larger than 64 KiB");
	do
		n = recv(c->fd, c->buf + *len, RESP_MAX - *len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(c->err, sizeof(c->err), "recv: %s",
			 errno == EAGAIN ? "no answer within 10 s" : strerror(errno));
		return -1;
	}
	*len += (size_t)n;
	c->buf[*len] = '\0';
	return n;
}

/* The value of header name in [head, end), or NULL; *vlen its length. */
static const char *header(const char *head, const char *end, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *line = strstr(head, "\r\n");

	while (line && line + 2 < end) {
		const char *p = line + 2, *eol = strstr(p, "\r\n");

		if (!eol || eol > end)
			break;
		if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			p += nlen + 1;
			while (p < eol && (*p == ' ' || *p == '\t'))
				p++;
			*vlen = (size_t)(eol - p);
			return p;
		}
		line = eol;
	}
	return NULL;
}

/* The body holds "result":want (JSON, optional blanks after the colon). */
static bool result_is(const char *body, unsigned long long want)
{
	const char *p = strstr(body, "\"result\":");
	char *end;
	unsigned long long v;

	if (!p)
		return false;
	p += 9;
	while (*p == ' ')
		p++;
	errno = 0;
	v = strtoull(p, &end, 10);
	return !errno && end != p && v == want && *end != '.' && *end != 'e' && *end != 'E';
}

/* One request with args i, its answer read and checked. */
static int round_trip(struct conn *c, unsigned long long i)
{
	char req[512], body[64];
	const char *hend, *v;
	size_t len = 0, vlen, clen = 0, total;
	bool has_len = false, close_after;
	int blen, rlen;
	ssize_t n;

	blen = snprintf(body, sizeof(body), "{\"task\":\"square\",\"args\":%llu}", i);
	rlen = snprintf(req, sizeof(req),
			"POST %s HTTP/1.1\r\nHost: %s:%u\r\nContent-Type: application/json\r\n"
			"Content-Length: %d\r\n\r\n%s", c->path, c->host, c->port, blen, body);
	if (rlen < 0 || (size_t)rlen >= sizeof(req))
		return fail(c, "request too long");
	if (c->fd < 0 && conn_open(c) < 0)
		return -1;
	if (send_all(c, req, (size_t)rlen) < 0)
		return -1;
	while (!(hend = strstr(c->buf, "\r\n\r\n"))) {
		n = recv_more(c, &len);
		if (n <= 0)
			return n == 0 ? fail(c, "connection closed before a response") : -1;
	}
	if (strncmp(c->buf, "HTTP/1.", 7) != 0 || strncmp(c->buf + 8, " 200 ", 5) != 0) {
		snprintf(c->err, sizeof(c->err), "request %llu: status line '%.*s'", i,
			 (int)strcspn(c->buf, "\r\n"), c->buf);
		return -1;
	}
	hend += 2; /* headers end at the CRLF of the last header line */
	if (header(c->buf, hend, "Transfer-Encoding", &vlen))
		return fail(c, "a chunked response: this client reads Content-Length bodies only");
	if ((v = header(c->buf, hend, "Content-Length", &vlen))) {
		has_len = true;
		clen = strtoul(v, NULL, 10);
	}
	v = header(c->buf, hend, "Connection", &vlen);
	if (c->buf[7] == '0')
		close_after = !(v && vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0);
	else
		close_after = v && vlen == 5 && strncasecmp(v, "close", 5) == 0;
	hend += 2;
	total = (size_t)(hend - c->buf) + clen;
	if (has_len) {
		while (len < total)
			if ((n = recv_more(c, &len)) <= 0)
				return n == 0 ? fail(c, "connection closed inside a body") : -1;
		if (len > total)
			return fail(c, "bytes after the response, which was not asked for");
	} else {
		if (!close_after)
			return fail(c, "a kept-alive response without Content-Length");
		while ((n = recv_more(c, &len)) > 0)
			;
		if (n < 0)
			return -1;
	}
	if (!result_is(hend, i * i)) {
		snprintf(c->err, sizeof(c->err), "request %llu: body '%.120s' has no \"result\":%llu",
			 i, hend, i * i);
		return -1;
	}
	c->buf[0] = '\0';
	if (close_after)
		conn_close(c);
	return 0;
}

int main(int argc, char **argv)
{
	static struct conn c = { .fd = -1 };
	size_t port, n, ok = 0;
	double *lat, t0, t1, start, secs;
	int rc = 1;

	if (argc != 5 || bench_parse_size(argv[2], &port) < 0 || port == 0 || port > 65535 ||
	    argv[3][0] != '/' || bench_parse_size(argv[4], &n) < 0 || n == 0) {
		fprintf(stderr, "usage: http-rtt HOST PORT PATH N\n");
		return 2;
	}
	c.host = argv[1];
	c.port = (unsigned)port;
	c.path = argv[3];
	c.addr.sin_family = AF_INET;
	c.addr.sin_port = htons((in_port_t)port);
	if (inet_pton(AF_INET, c.host, &c.addr.sin_addr) != 1) {
		fprintf(stderr, "http-rtt: %s is not an IPv4 address\n", c.host);
		return 2;
	}
	lat = malloc(n * sizeof(*lat));
	if (!lat) {
		fprintf(stderr, "http-rtt: out of memory\n");
		return 1;
	}
	if (round_trip(&c, 7) < 0) {
		fprintf(stderr, "http-rtt: warm-up: %s\n", c.err);
		goto out;
	}
	start = bench_now_s();
	for (size_t i = 0; i < n; i++) {
		t0 = bench_now_s();
		if (round_trip(&c, i) < 0) {
			fprintf(stderr, "http-rtt: request %zu: %s\n", i, c.err);
			goto out;
		}
		t1 = bench_now_s();
		lat[ok++] = (t1 - t0) * 1e6;
	}
	secs = bench_now_s() - start;
	qsort(lat, ok, sizeof(*lat), bench_cmp_double);
	printf("result name=http-rtt items=%zu seconds=%.6f rate=%.1f p50_us=%.1f p99_us=%.1f "
	       "connections=%zu ok=%zu failed=0\n", n, secs, (double)ok / secs,
	       bench_percentile(lat, ok, 0.50), bench_percentile(lat, ok, 0.99), c.opened, ok);
	rc = 0;
out:
	conn_close(&c);
	free(lat);
	return rc;
}
