#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sbuf.h"

void sbuf_init(struct sbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void sbuf_free(struct sbuf *b)
{
	free(b->data);
	sbuf_init(b);
}

void sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	b->oom = false;
}

static bool reserve(struct sbuf *b, size_t extra)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + extra + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

char *sbuf_reserve(struct sbuf *b, size_t n)
{
	return reserve(b, n) ? b->data + b->len : NULL;
}

void sbuf_commit(struct sbuf *b, size_t n)
{
	b->len += n;
	b->data[b->len] = '\0';
}

/* "00" to "99": two digits a step, half the divisions of one at a time. */
static const char digit_pairs[] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

static const unsigned long long powers_of_10[] = {
	1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
	100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
	10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
	100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull,
};

/*
 * Written from the end, once the number of digits is known: the stream
 * writes an index per line, and this was a fifth of its time as a digit a
 * division into a buffer copied after (docs/PROFILE-http-pipeline.md).
 */
char *sbuf_put_uint(char *d, unsigned long long v)
{
	size_t len = 1;
	char *end, *p;

	while (len < sizeof(powers_of_10) / sizeof(powers_of_10[0]) && v >= powers_of_10[len])
		len++;
	end = p = d + len;
	while (v >= 100) {
		unsigned r = (unsigned)(v % 100);

		v /= 100;
		p -= 2;
		memcpy(p, digit_pairs + 2 * r, 2);
	}
	if (v >= 10)
		memcpy(p - 2, digit_pairs + 2 * v, 2);
	else
		p[-1] = (char)('0' + v);
	return end;
}

void sbuf_add_uint(struct sbuf *b, unsigned long long v)
{
	char *d = sbuf_reserve(b, 20);

	if (d)
		sbuf_commit(b, (size_t)(sbuf_put_uint(d, v) - d));
}

void sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

/*
 * Straight into the free space, and again only when it did not fit: most
 * calls format once (a response is several of them per request).
 */
void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	if (!reserve(b, 0))
		return;
	room = b->cap - b->len;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= room && reserve(b, (size_t)n)) {
		va_start(ap, fmt);
		n = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	} else if (n >= 0 && (size_t)n >= room) {
		n = -1;
	}
	if (n < 0) {
		/* Nothing appended: take back what a cut-off attempt wrote. */
		b->data[b->len] = '\0';
		return;
	}
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong three-byte forms, surrogates, and code points past U+10FFFF. */
	if (c == 0xe0 && s[1] < 0xa0)
		return 0;
	if (c == 0xed && s[1] >= 0xa0)
		return 0;
	if (c == 0xf0 && s[1] < 0x90)
		return 0;
	if (c == 0xf4 && s[1] >= 0x90)
		return 0;
	return len;
}

void sbuf_json_string(struct sbuf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0;

	sbuf_add(b, "\"", 1);
	while (i < n) {
		unsigned c = p[i];
		size_t ul;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			run++;
			i++;
			continue;
		}
		sbuf_add(b, s + i - run, run);
		run = 0;
		if (c >= 0x80) {
			ul = utf8_len(p + i, n - i);
			if (ul) {
				sbuf_add(b, s + i, ul);
				i += ul;
			} else {
				sbuf_add(b, "\\ufffd", 6);
				i++;
			}
			continue;
		}
		switch (c) {
		case '"': sbuf_add(b, "\\\"", 2); break;
		case '\\': sbuf_add(b, "\\\\", 2); break;
		case '\n': sbuf_add(b, "\\n", 2); break;
		case '\r': sbuf_add(b, "\\r", 2); break;
		case '\t': sbuf_add(b, "\\t", 2); break;
		default: sbuf_printf(b, "\\u%04x", c); break;
		}
		i++;
	}
	sbuf_add(b, s + i - run, run);
	sbuf_add(b, "\"", 1);
}

/* `v` in `width` decimal digits, zero-padded, at `d`. */
static char *put_digits(char *d, unsigned long long v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		d[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return d + width;
}

/*
 * Digits by hand rather than strftime() and printf: two of these go into
 * every job document, one per HTTP apply (docs/PROFILE-http-apply.md).
 */
/*
 * The UTC calendar date of a day count since 1970-01-01, by arithmetic: the
 * proleptic Gregorian calendar in 400-year eras of 146,097 days, each year
 * counted from March so that the leap day falls last. gmtime_r() took a
 * lock and the time zone's state for the same answer, three times a
 * document.
 */
static void civil_date(unsigned long long days, struct tm *tm)
{
	unsigned long long z = days + 719468, era = z / 146097, doe = z - era * 146097;
	unsigned long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned long long mp = (5 * doy + 2) / 153;
	unsigned mon = (unsigned)(mp < 10 ? mp + 3 : mp - 9);

	tm->tm_year = (int)(yoe + era * 400 + (mon <= 2) - 1900);
	tm->tm_mon = (int)mon - 1;
	tm->tm_mday = (int)(doy - (153 * mp + 2) / 5 + 1);
}

/* Up to the end of year 9999 by civil_date(); past it, gmtime_r() as before. */
#define CIVIL_MS_MAX 253402300799999ull

void sbuf_json_time(struct sbuf *b, unsigned long long ms)
{
	struct tm tm;
	time_t t = (time_t)(ms / 1000);
	unsigned long long year, sod;
	char buf[48], *d = buf;

	if (!ms) {
		sbuf_adds(b, "null");
		return;
	}
	if (ms <= CIVIL_MS_MAX) {
		sod = (ms / 1000) % 86400;
		civil_date(ms / 1000 / 86400, &tm);
		tm.tm_hour = (int)(sod / 3600);
		tm.tm_min = (int)(sod / 60 % 60);
		tm.tm_sec = (int)(sod % 60);
	} else if (!gmtime_r(&t, &tm)) {
		sbuf_adds(b, "null");
		return;
	}
	*d++ = '"';
	/* As %Y: the whole year, 1970 at least (ms is unsigned), so 4 digits or more. */
	year = (unsigned long long)tm.tm_year + 1900;
	d = put_digits(d, year, year > 9999 ? (int)snprintf(NULL, 0, "%llu", year) : 4);
	*d++ = '-';
	d = put_digits(d, (unsigned long long)tm.tm_mon + 1, 2);
	*d++ = '-';
	d = put_digits(d, (unsigned long long)tm.tm_mday, 2);
	*d++ = 'T';
	d = put_digits(d, (unsigned long long)tm.tm_hour, 2);
	*d++ = ':';
	d = put_digits(d, (unsigned long long)tm.tm_min, 2);
	*d++ = ':';
	d = put_digits(d, (unsigned long long)tm.tm_sec, 2);
	*d++ = '.';
	d = put_digits(d, ms % 1000, 3);
	*d++ = 'Z';
	*d++ = '"';
	sbuf_add(b, buf, (size_t)(d - buf));
}
