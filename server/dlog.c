/* forkpoold's log lines, text or JSON; see dlog.h. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dlog.h"

/* A line longer than this is cut, and says so. */
#define LINE_MAX_BYTES 8192
/* What start-up may hold back before it drops lines (and counts them). */
#define HELD_MAX_BYTES (256u * 1024u)
/* A batch's mapping: its header and the lines; over a line's length. */
#define BATCH_MAP_BYTES (32u * 1024u)

/*
 * In a mapping of its own marked MADV_WIPEONFORK: a child forked while
 * lines wait sees an empty batch, and can never write the master's lines a
 * second time.
 */
struct fp_dlog_batch {
	size_t len;
	bool pending;               /* flush_soon() was called for these lines */
	char data[];
};
#define BATCH_ROOM (BATCH_MAP_BYTES - sizeof(struct fp_dlog_batch))
_Static_assert(LINE_MAX_BYTES < BATCH_MAP_BYTES - 64, "a line fits a batch");

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

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			/*
			 * A run of bytes that stand for themselves, in one copy;
			 * cut where byte by byte would have been cut.
			 */
			size_t run = 1, room = ln->len < LINE_ROOM ? LINE_ROOM - ln->len : 0;

			while (i + run < n && s[i + run] >= 0x20 && s[i + run] < 0x7f &&
			       s[i + run] != '"' && s[i + run] != '\\')
				run++;
			if (run > room) {
				put(ln, (const char *)s + i, room);
				ln->cut = true;
				return;
			}
			put(ln, (const char *)s + i, run);
			i += run;
			continue;
		}
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

/* The date and time are formatted once a second: a busy server logs thousands a second. */
static void put_timestamp(struct fp_dlog *l, struct line *ln)
{
	struct timespec ts;
	struct tm tm;
	char ms[5];
	unsigned v;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (!l->ts_text[0] || ts.tv_sec != l->ts_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		if (!strftime(l->ts_text, sizeof(l->ts_text), "%Y-%m-%dT%H:%M:%S", &tm))
			l->ts_text[0] = '\0';
		l->ts_sec = ts.tv_sec;
	}
	puts_(ln, l->ts_text);
	v = (unsigned)(ts.tv_nsec / 1000000L);
	ms[0] = '.';
	ms[1] = (char)('0' + v / 100);
	ms[2] = (char)('0' + v / 10 % 10);
	ms[3] = (char)('0' + v % 10);
	ms[4] = 'Z';
	put(ln, ms, sizeof(ms));
}

/* v in decimal at d (room for 20 digits); returns the end. */
static char *put_digits(char *d, unsigned long long v)
{
	char tmp[20], *p = tmp + sizeof(tmp);
	size_t n;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	n = (size_t)(tmp + sizeof(tmp) - p);
	memcpy(d, p, n);
	return d + n;
}

/*
 * ` key=` or `,"key":` into d (room for the key and 4 bytes more), plus the
 * value's opening quote when `quote`; returns the end. The keys are the
 * daemon's own short ASCII names, longer ones are cut at 64 bytes.
 */
static char *put_key(char *d, bool json, const char *key, bool quote)
{
	size_t n = strnlen(key, 64);

	*d++ = json ? ',' : ' ';
	if (json)
		*d++ = '"';
	memcpy(d, key, n);
	d += n;
	if (json)
		*d++ = '"';
	*d++ = json ? ':' : '=';
	if (quote)
		*d++ = '"';
	return d;
}

/*
 * ` key=value` or `,"key":value`. The key with what opens the value is one
 * piece, and so is a number with its key; a string value cut short is still
 * closed. Numbers are written without printf: a line a request adds up.
 */
static void put_field(struct line *ln, bool json, const struct fp_dlog_field *f)
{
	char tmp[96], *d;
	const char *s;
	bool q;

	switch (f->kind) {
	case FP_DLOG_STR:
		s = f->v.s ? f->v.s : "";
		q = json || text_needs_quotes(s);
		d = put_key(tmp, json, f->key, q);
		if (!put(ln, tmp, (size_t)(d - tmp)))
			return;
		put_escaped(ln, json, q, s);
		if (q)
			put_closing(ln, "\"");
		break;
	case FP_DLOG_INT:
		d = put_key(tmp, json, f->key, false);
		if (f->v.i < 0) {
			*d++ = '-';
			d = put_digits(d, 0ull - (unsigned long long)f->v.i);
		} else {
			d = put_digits(d, (unsigned long long)f->v.i);
		}
		put(ln, tmp, (size_t)(d - tmp));
		break;
	case FP_DLOG_UINT:
		d = put_key(tmp, json, f->key, false);
		d = put_digits(d, (unsigned long long)f->v.u);
		put(ln, tmp, (size_t)(d - tmp));
		break;
	case FP_DLOG_MILLI:
		/*
		 * As "%.3f" of v.u / 1000.0: that double is within half an
		 * ulp of the exact quotient, far less than 0.0005 for any
		 * count below 2^50, so it rounds to these same digits.
		 */
		d = put_key(tmp, json, f->key, false);
		d = put_digits(d, (unsigned long long)f->v.u / 1000);
		*d++ = '.';
		d[0] = (char)('0' + f->v.u % 1000 / 100);
		d[1] = (char)('0' + f->v.u % 100 / 10);
		d[2] = (char)('0' + f->v.u % 10);
		d += 3;
		put(ln, tmp, (size_t)(d - tmp));
		break;
	case FP_DLOG_DOUBLE:
		if (isfinite(f->v.d))
			putf(ln, json ? ",\"%s\":%.3f" : " %s=%.3f", f->key, f->v.d);
		else
			putf(ln, json ? ",\"%s\":null" : " %s=nan", f->key);
		break;
	}
}

static void format_line(struct fp_dlog *l, struct line *ln, fp_log_level level,
			const char *msg, const struct fp_dlog_field *fields, size_t n)
{
	bool json = l->format == FP_DLOG_JSON;
	size_t i;

	ln->len = 0;
	ln->cut = false;
	if (json) {
		puts_(ln, "{\"ts\":\"");
		put_timestamp(l, ln);
		puts_(ln, "\",\"level\":\"");
		puts_(ln, fp_dlog_level_name(level));
		puts_(ln, "\",\"msg\":\"");
		put_escaped(ln, true, true, msg);
		put_closing(ln, "\"");
	} else {
		put_timestamp(l, ln);
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

static void batch_add(struct fp_dlog *l, const char *s, size_t n)
{
	struct fp_dlog_batch *b = l->batch;

	if (b->len + n > BATCH_ROOM)
		fp_dlog_flush(l);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	if (!b->pending) {
		b->pending = true;
		l->flush_soon(l->flush_data);
	}
}

static void emit(struct fp_dlog *l, fp_log_level level, const struct line *ln,
		 unsigned flags)
{
	if (l->holding && !(flags & FP_DLOG_NOW)) {
		hold(l, ln->buf, ln->len);
	} else if (l->batch && level >= FP_LOG_INFO && !(flags & FP_DLOG_NOW)) {
		batch_add(l, ln->buf, ln->len);
	} else {
		fp_dlog_flush(l);
		write_all(l->fd, ln->buf, ln->len);
	}
}

void fp_dlog_flush(struct fp_dlog *l)
{
	struct fp_dlog_batch *b = l->batch;

	if (!b)
		return;
	if (b->len)
		write_all(l->fd, b->data, b->len);
	b->len = 0;
	b->pending = false;
}

int fp_dlog_batch(struct fp_dlog *l, void (*flush_soon)(void *data), void *data)
{
	void *p;

	if (!flush_soon) {
		fp_dlog_flush(l);
		if (l->batch)
			munmap(l->batch, BATCH_MAP_BYTES);
		l->batch = NULL;
		l->flush_soon = NULL;
		l->flush_data = NULL;
		return 0;
	}
	if (!l->batch) {
		p = mmap(NULL, BATCH_MAP_BYTES, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -errno;
		if (madvise(p, BATCH_MAP_BYTES, MADV_WIPEONFORK) < 0) {
			int err = -errno;

			munmap(p, BATCH_MAP_BYTES);
			return err;
		}
		l->batch = p;
	}
	l->flush_soon = flush_soon;
	l->flush_data = data;
	return 0;
}

void fp_dlog_fields(struct fp_dlog *l, fp_log_level level, unsigned flags,
		    const char *msg, const struct fp_dlog_field *fields, size_t n)
{
	/* Static: 8 KiB is too much stack for a callback deep in the loop,
	 * and the log belongs to the loop's one thread. */
	static struct line ln;

	if (!(flags & FP_DLOG_FORCE) && !fp_dlog_enabled(l, level))
		return;
	format_line(l, &ln, level, msg ? msg : "", fields, n);
	emit(l, level, &ln, flags);
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
	fp_dlog_batch(l, NULL, NULL);
}

void fp_dlog_pool_fn(void *data, fp_log_level level, const char *msg)
{
	fp_dlog_fields(data, level, 0, msg, NULL, 0);
}
