/* forkpoold's log lines, text or JSON; see dlog.h. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "dlog.h"

/* A line longer than this is cut, and says so. */
#define LINE_MAX_BYTES 8192
/* What start-up may hold back before it drops lines (and counts them). */
#define HELD_MAX_BYTES (256u * 1024u)

static const char *const level_names[] = {
	[FP_LOG_ERROR] = "error",
	[FP_LOG_WARN] = "warn",
	[FP_LOG_INFO] = "info",
	[FP_LOG_DEBUG] = "debug",
};

const char *fp_dlog_level_name(fp_log_level level)
{
	if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
		return level_names[level];
	return "info";
}

int fp_dlog_level_parse(const char *name, fp_log_level *out)
{
	size_t i;

	if (!name || !out)
		return -EINVAL;
	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcasecmp(name, level_names[i])) {
			*out = (fp_log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(name, "warning")) {
		*out = FP_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

int fp_dlog_format_parse(const char *name, enum fp_dlog_format *out)
{
	if (!name || !out)
		return -EINVAL;
	if (!strcasecmp(name, "text"))
		*out = FP_DLOG_TEXT;
	else if (!strcasecmp(name, "json"))
		*out = FP_DLOG_JSON;
	else
		return -EINVAL;
	return 0;
}

void fp_dlog_init(struct fp_dlog *l, int fd, fp_log_level level,
		  enum fp_dlog_format format)
{
	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->level = level;
	l->format = format;
}

/* --- the line buffer ----------------------------------------------------- */

struct line {
	char buf[LINE_MAX_BYTES];
	size_t len;
	bool cut;
};

/*
 * Room is kept for what closes a cut line: a string's quote, the cut marker,
 * the object's brace and the newline.
 */
#define LINE_ROOM (LINE_MAX_BYTES - 32)

/*
 * All or nothing: a piece that does not fit cuts the line there, and nothing
 * is added after it but what put_closing() adds. An escape sequence or a
 * field's `,"key":` is one piece, so a cut never splits one.
 */
static bool put(struct line *ln, const char *s, size_t n)
{
	if (ln->cut || ln->len + n > LINE_ROOM) {
		ln->cut = true;
		return false;
	}
	memcpy(ln->buf + ln->len, s, n);
	ln->len += n;
	return true;
}

static bool puts_(struct line *ln, const char *s)
{
	return put(ln, s, strlen(s));
}

/* From the room kept back: only for the few bytes that close a line. */
static void put_closing(struct line *ln, const char *s)
{
	size_t n = strlen(s);

	if (ln->len + n < LINE_MAX_BYTES) {
		memcpy(ln->buf + ln->len, s, n);
		ln->len += n;
	}
}

static bool putf(struct line *ln, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool putf(struct line *ln, const char *fmt, ...)
{
	char tmp[96];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return false;
	return put(ln, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), or 0.
 */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/*
 * Text that came from elsewhere. JSON: a string's inside, escaped as RFC
 * 8259 asks, bad UTF-8 replaced. Text: control bytes and bad UTF-8 as \xNN,
 * and when `quoted`, '"' and '\' escaped too.
 */
static void put_escaped(struct line *ln, bool json, bool quoted, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), i = 0, k;
	char esc[8];

	while (i < n && !ln->cut) {
		unsigned char c = s[i];

		if (c >= 0x80) {
			k = utf8_seq(s + i, n - i);
			if (k) {
				put(ln, (const char *)s + i, k);
				i += k;
				continue;
			}
			if (json)
				puts_(ln, "\\ufffd");
			else
				putf(ln, "\\x%02x", c);
			i++;
			continue;
		}
		if (c == '"' || c == '\\') {
			if (json || quoted) {
				esc[0] = '\\';
				esc[1] = (char)c;
				put(ln, esc, 2);
			} else {
				put(ln, (const char *)&c, 1);
			}
		} else if (c == '\n') {
			puts_(ln, "\\n");
		} else if (c == '\t') {
			puts_(ln, "\\t");
		} else if (c == '\r') {
			puts_(ln, "\\r");
		} else if (c < 0x20 || c == 0x7f) {
			if (json)
				snprintf(esc, sizeof(esc), "\\u%04x", c);
			else
				snprintf(esc, sizeof(esc), "\\x%02x", c);
			puts_(ln, esc);
		} else {
			put(ln, (const char *)&c, 1);
		}
		i++;
	}
}

static bool text_needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++)
		if (*s == ' ' || *s == '"' || *s == '=' || *s == '\\' ||
		    (unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static void put_timestamp(struct line *ln)
{
	struct timespec ts;
	struct tm tm;
	char tmp[40];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(tmp + n, sizeof(tmp) - n, ".%03ldZ", ts.tv_nsec / 1000000L);
	puts_(ln, tmp);
}

/*
 * ` key=value` or `,"key":value`. The key with what opens the value is one
 * piece; a string value cut short is still closed.
 */
static void put_field(struct line *ln, bool json, const struct fp_dlog_field *f)
{
	const char *s;
	bool q;

	switch (f->kind) {
	case FP_DLOG_STR:
		s = f->v.s ? f->v.s : "";
		q = json || text_needs_quotes(s);
		if (!putf(ln, json ? ",\"%s\":%s" : " %s=%s", f->key, q ? "\"" : ""))
			return;
		put_escaped(ln, json, q, s);
		if (q)
			put_closing(ln, "\"");
		break;
	case FP_DLOG_INT:
		putf(ln, json ? ",\"%s\":%lld" : " %s=%lld", f->key, (long long)f->v.i);
		break;
	case FP_DLOG_UINT:
		putf(ln, json ? ",\"%s\":%llu" : " %s=%llu", f->key,
		     (unsigned long long)f->v.u);
		break;
	case FP_DLOG_DOUBLE:
		if (isfinite(f->v.d))
			putf(ln, json ? ",\"%s\":%.3f" : " %s=%.3f", f->key, f->v.d);
		else
			putf(ln, json ? ",\"%s\":null" : " %s=nan", f->key);
		break;
	}
}

static void format_line(struct line *ln, enum fp_dlog_format format,
			fp_log_level level, const char *msg,
			const struct fp_dlog_field *fields, size_t n)
{
	bool json = format == FP_DLOG_JSON;
	size_t i;

	ln->len = 0;
	ln->cut = false;
	if (json) {
		puts_(ln, "{\"ts\":\"");
		put_timestamp(ln);
		puts_(ln, "\",\"level\":\"");
		puts_(ln, fp_dlog_level_name(level));
		puts_(ln, "\",\"msg\":\"");
		put_escaped(ln, true, true, msg);
		put_closing(ln, "\"");
	} else {
		put_timestamp(ln);
		puts_(ln, " ");
		puts_(ln, fp_dlog_level_name(level));
		puts_(ln, " ");
		put_escaped(ln, false, false, msg);
	}
	for (i = 0; i < n && !ln->cut; i++)
		put_field(ln, json, &fields[i]);
	if (ln->cut)
		put_closing(ln, json ? ",\"cut\":true" : " [cut]");
	if (json)
		put_closing(ln, "}");
	put_closing(ln, "\n");
}

/* --- output -------------------------------------------------------------- */

static void write_all(int fd, const char *s, size_t n)
{
	ssize_t w;

	while (n) {
		w = write(fd, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			/* Nowhere left to say it (EPIPE: SIGPIPE is ignored). */
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

static void hold(struct fp_dlog *l, const char *s, size_t n)
{
	size_t cap;
	char *p;

	if (l->held_len + n > HELD_MAX_BYTES) {
		l->held_dropped++;
		return;
	}
	if (l->held_len + n > l->held_cap) {
		cap = l->held_cap ? l->held_cap : 4096;
		while (cap < l->held_len + n)
			cap *= 2;
		p = realloc(l->held, cap);
		if (!p) {
			l->held_dropped++;
			return;
		}
		l->held = p;
		l->held_cap = cap;
	}
	memcpy(l->held + l->held_len, s, n);
	l->held_len += n;
}

static void emit(struct fp_dlog *l, const struct line *ln, unsigned flags)
{
	if (l->holding && !(flags & FP_DLOG_NOW))
		hold(l, ln->buf, ln->len);
	else
		write_all(l->fd, ln->buf, ln->len);
}

void fp_dlog_fields(struct fp_dlog *l, fp_log_level level, unsigned flags,
		    const char *msg, const struct fp_dlog_field *fields, size_t n)
{
	/* Static: 8 KiB is too much stack for a callback deep in the loop,
	 * and the log belongs to the loop's one thread. */
	static struct line ln;

	if (!(flags & FP_DLOG_FORCE) && !fp_dlog_enabled(l, level))
		return;
	format_line(&ln, l->format, level, msg ? msg : "", fields, n);
	emit(l, &ln, flags);
}

static void vlog(struct fp_dlog *l, fp_log_level level, unsigned flags,
		 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void vlog(struct fp_dlog *l, fp_log_level level, unsigned flags,
		 const char *fmt, va_list ap)
{
	char msg[2048];

	if (!(flags & FP_DLOG_FORCE) && !fp_dlog_enabled(l, level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fp_dlog_fields(l, level, flags, msg, NULL, 0);
}

void fp_dlog(struct fp_dlog *l, fp_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(l, level, 0, fmt, ap);
	va_end(ap);
}

void fp_dlog_flags(struct fp_dlog *l, fp_log_level level, unsigned flags,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(l, level, flags, fmt, ap);
	va_end(ap);
}

void fp_dlog_hold(struct fp_dlog *l)
{
	l->holding = true;
}

void fp_dlog_release(struct fp_dlog *l)
{
	size_t dropped = l->held_dropped;

	l->holding = false;
	if (l->held_len)
		write_all(l->fd, l->held, l->held_len);
	free(l->held);
	l->held = NULL;
	l->held_len = l->held_cap = 0;
	l->held_dropped = 0;
	if (dropped)
		fp_dlog_warn(l, "%zu log lines were dropped while starting", dropped);
}

void fp_dlog_deinit(struct fp_dlog *l)
{
	if (!l)
		return;
	if (l->holding || l->held)
		fp_dlog_release(l);
}

void fp_dlog_pool_fn(void *data, fp_log_level level, const char *msg)
{
	fp_dlog_fields(data, level, 0, msg, NULL, 0);
}
