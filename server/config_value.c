/*
 * forkpoold's configuration: single values checked and stored (numbers,
 * sizes, addresses, strings), and the error message every check writes.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config_impl.h"

int fp__config_fail(struct fp__config_ctx *x, const char *where, const char *fmt, ...)
{
	size_t n;
	va_list ap;

	if (!x->errbuf || !x->errlen)
		return -EINVAL;
	snprintf(x->errbuf, x->errlen, "%s: ", where);
	n = strlen(x->errbuf);
	va_start(ap, fmt);
	vsnprintf(x->errbuf + n, x->errlen - n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *fp__config_quote(const char *v, char *buf, size_t len)
{
	size_t i, n = strlen(v), max = len - 4;

	for (i = 0; i < n && i < max; i++)
		buf[i] = iscntrl((unsigned char)v[i]) ? '?' : v[i];
	if (n > max) {
		memcpy(buf + max, "...", 4);
		return buf;
	}
	buf[i] = '\0';
	return buf;
}

int fp__config_parse_u64(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	*end = p;
	return 0;
}

int fp__config_set_uint(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v)
{
	uint64_t n, *field = (uint64_t *)((char *)x->c + s->off);
	const char *end;
	char q[80];
	int r = fp__config_parse_u64(v, &n, &end);

	if (r == 0 && *end)
		r = -EINVAL;
	if (r == 0 && (n < s->min || n > s->max))
		r = -ERANGE;
	if (r == -EINVAL)
		return fp__config_fail(x, where, "expected a %s integer, got \"%s\"",
			    s->min ? "positive" : "non-negative", fp__config_quote(v, q, sizeof(q)));
	if (r < 0)
		return fp__config_fail(x, where, "expected an integer from %" PRIu64 " to %" PRIu64
			    ", got \"%s\"", s->min, s->max, fp__config_quote(v, q, sizeof(q)));
	*field = n;
	return 0;
}

int fp__config_set_size(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v)
{
	uint64_t n, mult = 1, *field = (uint64_t *)((char *)x->c + s->off);
	const char *end;
	char q[80];
	int r = fp__config_parse_u64(v, &n, &end);

	if (r == 0) {
		switch (*end) {
		case 'k': case 'K': mult = 1ull << 10; end++; break;
		case 'm': case 'M': mult = 1ull << 20; end++; break;
		case 'g': case 'G': mult = 1ull << 30; end++; break;
		default: break;
		}
		/* "64m", "64MB", "64MiB" and "65536b" all mean what they say. */
		if (mult > 1 && (*end == 'i' || *end == 'I') && (end[1] == 'b' || end[1] == 'B'))
			end += 2;
		else if (*end == 'b' || *end == 'B')
			end++;
		if (*end)
			r = -EINVAL;
	}
	if (r == 0 && n > UINT64_MAX / mult)
		r = -ERANGE;
	if (r == 0) {
		n *= mult;
		if (n < s->min || n > s->max)
			r = -ERANGE;
	}
	if (r == -EINVAL)
		return fp__config_fail(x, where, "expected a size in bytes such as 65536, 512k, 64m or 1g,"
			    " got \"%s\"", fp__config_quote(v, q, sizeof(q)));
	if (r < 0)
		return fp__config_fail(x, where, "expected a size from %" PRIu64 " bytes to %" PRIu64
			    " GiB, got \"%s\"", s->min, s->max >> 30, fp__config_quote(v, q, sizeof(q)));
	*field = n;
	return 0;
}

int fp__config_check_listen(struct fp__config_ctx *x, const char *where, const char *v)
{
	static const char expected[] =
		"expected HOST:PORT, [IPV6]:PORT or unix:/path";
	struct in6_addr a6;
	const char *colon, *port, *end;
	char q[80], host[INET6_ADDRSTRLEN + 1];
	uint64_t p;
	size_t hl;

	if (!strncmp(v, "unix:", 5)) {
		if (!v[5])
			return fp__config_fail(x, where, "%s, got \"%s\" (no path)", expected,
				    fp__config_quote(v, q, sizeof(q)));
		if (strlen(v + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return fp__config_fail(x, where, "the socket path is longer than %zu bytes: \"%s\"",
				    sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
				    fp__config_quote(v, q, sizeof(q)));
		return 0;
	}
	if (v[0] == '[') {
		colon = strchr(v, ']');
		if (!colon || colon[1] != ':')
			return fp__config_fail(x, where, "%s, got \"%s\"", expected, fp__config_quote(v, q, sizeof(q)));
		hl = (size_t)(colon - v - 1);
		if (hl == 0 || hl >= sizeof(host))
			return fp__config_fail(x, where, "%s, got \"%s\"", expected, fp__config_quote(v, q, sizeof(q)));
		memcpy(host, v + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return fp__config_fail(x, where, "\"%s\" is not an IPv6 address",
				    fp__config_quote(host, q, sizeof(q)));
		port = colon + 2;
	} else {
		colon = strrchr(v, ':');
		if (!colon || colon == v)
			return fp__config_fail(x, where, "%s, got \"%s\"", expected, fp__config_quote(v, q, sizeof(q)));
		if (memchr(v, ':', (size_t)(colon - v)))
			return fp__config_fail(x, where, "an IPv6 address goes in brackets, as [::1]:8080;"
				    " got \"%s\"", fp__config_quote(v, q, sizeof(q)));
		port = colon + 1;
	}
	if (fp__config_parse_u64(port, &p, &end) < 0 || *end || p > 65535)
		return fp__config_fail(x, where, "expected a port from 0 to 65535 after the colon, got \"%s\"",
			    fp__config_quote(v, q, sizeof(q)));
	return 0;
}

int fp__config_set_string(struct fp__config_ctx *x, const struct fp__config_setting *s,
			  const char *where, const char *v)
{
	char **field = (char **)((char *)x->c + s->off);
	char *copy;

	if (!*v)
		return fp__config_fail(x, where, "expected a path, got an empty value");
	copy = strdup(v);
	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}
