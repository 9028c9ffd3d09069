/*
 * --cluster's URL: redis://HOST[:PORT][/DB] or unix:/PATH[?db=DB], checked
 * whole, each fault named. Nothing here connects or resolves.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

#define SHAPE "expected redis://HOST[:PORT][/DB] or unix:/PATH[?db=DB]"

/* Decimal digits only, within [min, max]. */
static int number(const char *s, size_t len, unsigned long min, unsigned long max,
		  unsigned *out)
{
	unsigned long v = 0;
	size_t i;

	if (!len || len > 10)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int fail(char *err, size_t errlen, const char *url, const char *what)
{
	snprintf(err, errlen, "--cluster %s: %s", url, what);
	return -EINVAL;
}

static int parse_unix(const char *url, const char *rest, struct fp_redis_addr *out,
		      char *err, size_t errlen)
{
	const char *q = strchr(rest, '?');
	size_t len = q ? (size_t)(q - rest) : strlen(rest);

	/* unix:///path is the same path written the URL way. */
	if (!strncmp(rest, "//", 2)) {
		rest += 2;
		len -= 2;
	}
	if (!len || rest[0] != '/')
		return fail(err, errlen, url, "the socket path must be absolute (unix:/PATH)");
	if (len >= sizeof(out->path))
		return fail(err, errlen, url, "the socket path is too long for a unix socket"
			    " (107 bytes at most)");
	memcpy(out->path, rest, len);
	out->path[len] = '\0';
	if (q) {
		if (strncmp(q + 1, "db=", 3) ||
		    number(q + 4, strlen(q + 4), 0, 1u << 20, &out->db) < 0)
			return fail(err, errlen, url, "after '?' only db=N (a database number)"
				    " is understood");
	}
	return 0;
}

static int parse_tcp(const char *url, const char *rest, struct fp_redis_addr *out,
		     char *err, size_t errlen)
{
	const char *slash = strchr(rest, '/');
	const char *hend = slash ? slash : rest + strlen(rest);
	const char *host = rest, *port = NULL, *p;
	size_t hlen;

	for (p = rest; p < hend; p++)
		if (*p == '@')
			return fail(err, errlen, url, "a user or password in the URL is not"
				    " accepted: put the password in --cluster-auth-file");
	if (*host == '[') {
		p = memchr(host, ']', (size_t)(hend - host));
		if (!p)
			return fail(err, errlen, url, "an IPv6 address needs its closing ']'");
		hlen = (size_t)(p - host - 1);
		host++;
		if (p + 1 < hend) {
			if (p[1] != ':')
				return fail(err, errlen, url, "after ']' only :PORT may follow");
			port = p + 2;
		}
	} else {
		p = memchr(host, ':', (size_t)(hend - host));
		hlen = (size_t)((p ? p : hend) - host);
		if (p)
			port = p + 1;
	}
	if (!hlen)
		return fail(err, errlen, url, "no host; " SHAPE);
	if (hlen >= sizeof(out->host))
		return fail(err, errlen, url, "the host name is too long");
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	if (port && number(port, (size_t)(hend - port), 1, 65535, &out->port) < 0)
		return fail(err, errlen, url, "the port must be a number from 1 to 65535");
	if (slash && slash[1] &&
	    number(slash + 1, strlen(slash + 1), 0, 1u << 20, &out->db) < 0)
		return fail(err, errlen, url, "the path must be a database number (/0, /1, ...)");
	return 0;
}

int fp_redis_addr_parse(const char *url, struct fp_redis_addr *out, char *err,
			size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (errlen)
		err[0] = '\0';
	if (!url || !*url)
		return fail(err, errlen, "\"\"", SHAPE);
	if (!strncmp(url, "redis://", 8))
		return parse_tcp(url, url + 8, out, err, errlen);
	if (!strncmp(url, "unix:", 5))
		return parse_unix(url, url + 5, out, err, errlen);
	if (!strncmp(url, "rediss://", 9))
		return fail(err, errlen, url, "TLS (rediss://) is not supported; use redis://"
			    " on a trusted network, or a unix: socket");
	return fail(err, errlen, url, SHAPE);
}
