/*
 * NDJSON bodies: items cut in place, each checked to be JSON (ndjson.h).
 *
 * This was a json_loadb() per line (a tree built and freed for every item,
 * and a realloc'ed item array): with a million items, about a tenth of the
 * master's time in the pipeline benchmark (docs/PROFILE-http-pipeline.md).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "forkpool/loop.h"
#include "ndjson.h"

#define INT_DIGITS_MAX 18     /* 10^18 - 1 < 2^63: jansson's json_int_t holds it */
#define REAL_LEN_MAX 24       /* no exponent: far from strtod's overflow */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?, within the limits above. */
static bool plain_number(const char *s, size_t len)
{
	const char *p = s, *end = s + len, *int_start;

	if (p < end && *p == '-')
		p++;
	int_start = p;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && is_digit(*p))
			p++;
	else
		return false;
	if (p == end)
		return p - int_start <= INT_DIGITS_MAX;
	if (*p != '.' || len > REAL_LEN_MAX)
		return false;
	if (++p == end)
		return false;
	while (p < end && is_digit(*p))
		p++;
	return p == end;
}

bool fp_json_plain_scalar(const char *s, size_t len)
{
	if (len == 0)
		return false;
	if (s[0] == '"') {
		if (len < 2 || s[len - 1] != '"')
			return false;
		for (size_t i = 1; i < len - 1; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
				return false;
		}
		return true;
	}
	if (len == 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "null", 4) == 0))
		return true;
	if (len == 5 && memcmp(s, "false", 5) == 0)
		return true;
	return plain_number(s, len);
}

static bool is_trim(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

int fp_ndjson_split(const char *body, size_t len, struct fp_buf **out, size_t *nout,
		    struct fp_ndjson_error *err)
{
	const char *p = body, *end = body + len;
	size_t most = len / 2 + 1, n = 0, line = 0;
	struct fp_buf *items;

	*out = NULL;
	*nout = 0;
	/*
	 * One array, never grown and copied: an item is at least one byte and
	 * a newline (but the last), so there are at most len / 2 + 1. A big
	 * array is a mapping of its own, and the part never filled is never
	 * touched.
	 */
	if (most > SIZE_MAX / sizeof(*items))
		return -ENOMEM;
	items = fp_mem_alloc(most * sizeof(*items));
	if (!items)
		return -ENOMEM;
	while (p < end) {
		const char *nl, *e, *s = p;

		line++;
		/*
		 * The line a client mostly sends, an integer and its newline,
		 * in one pass: no search for the newline, no trim, no second
		 * look at the digits. Anything else takes the way below, which
		 * would cut and accept this line the same.
		 */
		if (*s == '-')
			s++;
		if (s < end && is_digit(*s)) {
			const char *digits = s;

			if (*s == '0')
				s++;
			else
				while (s < end && is_digit(*s))
					s++;
			if ((s == end || *s == '\n') && s - digits <= INT_DIGITS_MAX) {
				items[n++] = (struct fp_buf){ p, (size_t)(s - p) };
				p = s < end ? s + 1 : end;
				continue;
			}
		}
		s = p;
		nl = memchr(p, '\n', (size_t)(end - p));
		e = nl ? nl : end;
		p = nl ? nl + 1 : end;
		while (s < e && is_trim(*s))
			s++;
		while (e > s && is_trim(e[-1]))
			e--;
		if (s == e)
			continue;
		if (!fp_json_plain_scalar(s, (size_t)(e - s))) {
			json_error_t jerr;
			json_t *j = json_loadb(s, (size_t)(e - s), JSON_DECODE_ANY, &jerr);

			if (!j) {
				err->line = line;
				err->column = jerr.column;
				snprintf(err->text, sizeof(err->text), "%s", jerr.text);
				fp_mem_free(items);
				return -EINVAL;
			}
			json_decref(j);
		}
		items[n++] = (struct fp_buf){ s, (size_t)(e - s) };
	}
	*out = items;
	*nout = n;
	return 0;
}

void fp_ndjson_free(struct fp_buf *items)
{
	fp_mem_free(items);
}
