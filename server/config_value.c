/*
 * forkpoold's configuration: single values checked and stored (numbers,
 * durations, sizes, modes, switches, addresses, module paths, strings), and
 * the error message every check writes.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* A duration's unit, as the messages and --help spell it. */
static const char *unit_name(uint64_t unit_ms)
{
	return unit_ms == 1000 ? "s" : "ms";
}

static const char *unit_words(uint64_t unit_ms)
{
	return unit_ms == 1000 ? "seconds" : "milliseconds";
}

/*
 * Digits and an optional unit (ms, s, m, h; a bare number is in unit_ms) as
 * milliseconds. Lower case only: "M" could as well be a month or a mega.
 */
static int parse_duration_ms(const char *v, uint64_t unit_ms, uint64_t *ms)
{
	static const struct { const char *suffix; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
	};
	const char *end;
	uint64_t n, mult = 0;
	int r = fp__config_parse_u64(v, &n, &end);

	if (r < 0)
		return r;
	if (!*end)
		mult = unit_ms;
	for (size_t i = 0; !mult && i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].suffix))
			mult = units[i].ms;
	if (!mult)
		return -EINVAL;
	if (n > UINT64_MAX / mult)
		return -ERANGE;
	*ms = n * mult;
	return 0;
}

int fp__config_number(struct fp__config_ctx *x, const struct fp__config_setting *s,
		      const char *where, const char *v, const char *shown, uint64_t *out)
{
	uint64_t n, ms;
	const char *end;
	char q[80];
	int r;

	if (!s->unit_ms) {
		r = fp__config_parse_u64(v, &n, &end);
		if (r == 0 && *end)
			r = -EINVAL;
	} else {
		r = parse_duration_ms(v, s->unit_ms, &ms);
		if (r == 0 && ms % s->unit_ms)
			return fp__config_fail(x, where, "\"%s\" is not a whole number of %s",
					       fp__config_quote(shown, q, sizeof(q)),
					       unit_words(s->unit_ms));
		n = r == 0 ? ms / s->unit_ms : 0;
	}
	if (r == 0 && (n < s->min || n > s->max))
		r = -ERANGE;
	if (r == -EINVAL && s->unit_ms)
		return fp__config_fail(x, where, "expected a duration such as 500ms, 30s, 10m or 1h"
			    " (ms, s, m or h; a bare number is %s), got \"%s\"",
			    unit_words(s->unit_ms), fp__config_quote(shown, q, sizeof(q)));
	if (r == -EINVAL && s->kind == K_EXEC_UINT)
		return fp__config_fail(x, where, "expected %s or NAME=%s with %s a %s integer, got \"%s\"",
			    s->metavar, s->metavar, s->metavar, s->min ? "positive" : "non-negative",
			    fp__config_quote(shown, q, sizeof(q)));
	if (r == -EINVAL)
		return fp__config_fail(x, where, "expected a %s integer, got \"%s\"",
			    s->min ? "positive" : "non-negative", fp__config_quote(shown, q, sizeof(q)));
	if (r < 0 && s->unit_ms)
		return fp__config_fail(x, where, "expected a duration from %" PRIu64 "%s to %" PRIu64
			    "%s, got \"%s\"", s->min, unit_name(s->unit_ms), s->max,
			    unit_name(s->unit_ms), fp__config_quote(shown, q, sizeof(q)));
	if (r < 0)
		return fp__config_fail(x, where, "expected an integer from %" PRIu64 " to %" PRIu64
			    ", got \"%s\"", s->min, s->max, fp__config_quote(shown, q, sizeof(q)));
	*out = n;
	return 0;
}

int fp__config_set_uint(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v)
{
	uint64_t *field = (uint64_t *)((char *)x->c + s->off);

	return fp__config_number(x, s, where, v, v, field);
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

int fp__config_set_mode(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v)
{
	uint64_t *field = (uint64_t *)((char *)x->c + s->off), mode = 0;
	const char *p = v;
	char q[80];

	/* Octal always, as chmod reads it: "660" is 0660. */
	for (; *p >= '0' && *p <= '7' && mode <= 0777; p++)
		mode = mode * 8 + (uint64_t)(*p - '0');
	if (p == v || *p || mode > 0777)
		return fp__config_fail(x, where, "expected an octal mode from 0 to 0777 such as 0660,"
				       " got \"%s\"", fp__config_quote(v, q, sizeof(q)));
	*field = mode;
	return 0;
}

int fp__config_set_bool(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };
	bool *field = (bool *)((char *)x->c + s->off);
	char q[80];

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
			*field = !strcasecmp(v, yes[i]);
			return 0;
		}
	}
	return fp__config_fail(x, where, "expected true or false (also 1/0, yes/no, on/off),"
			       " got \"%s\"", fp__config_quote(v, q, sizeof(q)));
}

int fp__config_check_module(struct fp__config_ctx *x, const char *where, const char *v)
{
	char q[80];

	/*
	 * dlopen() looks a name without a '/' up in the library path, never in
	 * the working directory, and a reload (SIGHUP) reads the file by the
	 * name as given: refused here, with what to write instead.
	 */
	if (strchr(v, '/'))
		return 0;
	fp__config_quote(v, q, sizeof(q));
	return fp__config_fail(x, where, "\"%s\" is not a path: write ./%s for the file in the"
			       " working directory (a name without a '/' would be looked up in"
			       " the system's library path)", q, q);
}
