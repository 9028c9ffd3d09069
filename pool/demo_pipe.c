/*
 * The demo module's pipeline tasks: two generators (range, words), a map
 * (lower) and two associative folds (sum, count) fit for a pipeline's reduce
 * stage. Like the rest of demo, they reach the host only through
 * fp_task_ctx.
 *
 * range and words emit once per output, and a pipeline stage runs them a
 * million times: they write their outputs' JSON by hand instead of building
 * a jansson value per output.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "module.h"

/* How much of a bad argument an error message quotes. */
#define QUOTE_MAX 64
/* range's upper bound: enough for any test or benchmark, and a typo's guard. */
#define RANGE_MAX 1000000000LL

/* Fail the item with "<task>: expected <what>, got <args>". */
static int expected(fp_task_ctx *ctx, const char *task, const char *what,
		    const char *args, size_t len)
{
	char msg[QUOTE_MAX + 160];

	if (len == 0)
		snprintf(msg, sizeof(msg), "%s: expected %s, got nothing", task, what);
	else
		snprintf(msg, sizeof(msg), "%s: expected %s, got %.*s%s", task, what,
			 (int)(len > QUOTE_MAX ? QUOTE_MAX : len), args,
			 len > QUOTE_MAX ? "..." : "");
	return fp_task_error(ctx, msg);
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int fp__demo_range(fp_task_ctx *ctx, const char *args, size_t len)
{
	const char *p = args, *end = args + len;
	long long n = 0, i;
	size_t digits = 0;
	char buf[24];

	/* A plain whole number: no sign, fraction or exponent. */
	while (p < end && is_space((unsigned char)*p))
		p++;
	for (; p < end && *p >= '0' && *p <= '9' && n <= RANGE_MAX; p++, digits++)
		n = n * 10 + (*p - '0');
	while (p < end && is_space((unsigned char)*p))
		p++;
	if (!digits || p != end || n > RANGE_MAX)
		return expected(ctx, "range", "a whole number from 0 to 1000000000", args, len);
	for (i = 0; i < n; i++) {
		int l = snprintf(buf, sizeof(buf), "%lld", i);

		if (fp_emit(ctx, buf, (size_t)l) < 0)
			return 0;    /* the item has failed already; the host says why */
	}
	return 0;
}

/* Append `s` (n bytes of UTF-8) as a JSON string to buf, which has room. */
static size_t json_quote(char *buf, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	buf[o++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20) {
			memcpy(buf + o, "\\u00", 4);
			buf[o + 4] = hex[c >> 4];
			buf[o + 5] = hex[c & 15];
			o += 6;
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	return o;
}

/* The string argument of words/lower, decoded; NULL after failing the item. */
static json_t *string_arg(fp_task_ctx *ctx, const char *task, const char *args, size_t len)
{
	json_error_t jerr;
	json_t *v = json_loadb(args, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

	if (!v || !json_is_string(v)) {
		json_decref(v);
		expected(ctx, task, "a string", args, len);
		return NULL;
	}
	return v;
}

int fp__demo_words(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_t *v = string_arg(ctx, "words", args, len);
	const char *s;
	size_t n, i = 0, start;
	char *buf;

	if (!v)
		return 0;
	s = json_string_value(v);
	n = json_string_length(v);
	/* A word quoted takes at most 6 bytes per byte, plus the quotes. */
	buf = malloc(n * 6 + 2);
	if (!buf) {
		json_decref(v);
		return -ENOMEM;
	}
	while (i < n) {
		while (i < n && is_space((unsigned char)s[i]))
			i++;
		start = i;
		while (i < n && !is_space((unsigned char)s[i]))
			i++;
		if (i > start && fp_emit(ctx, buf, json_quote(buf, s + start, i - start)) < 0)
			break;
	}
	free(buf);
	json_decref(v);
	return 0;
}

int fp__demo_lower(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_t *v = string_arg(ctx, "lower", args, len);
	const char *s;
	size_t n, i;
	char *low, *buf;
	int rc = -ENOMEM;

	if (!v)
		return 0;
	s = json_string_value(v);
	n = json_string_length(v);
	low = malloc(n + 1);
	buf = malloc(n * 6 + 2);
	if (low && buf) {
		/* ASCII only: lower-casing the rest of Unicode needs tables demo has not. */
		for (i = 0; i < n; i++)
			low[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
		rc = fp_task_return(ctx, buf, json_quote(buf, low, n));
	}
	free(low);
	free(buf);
	json_decref(v);
	return rc;
}

/* The shortest "%.*g" that reads back as the same double. */
static int format_double(char *buf, size_t len, double d)
{
	int prec, n = 0;

	for (prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, len, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return n;
}

int fp__demo_sum(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_error_t jerr;
	json_t *v = json_loadb(args, len, JSON_DECODE_ANY, &jerr), *e;
	long long isum = 0;
	double dsum = 0;
	int all_int = 1;
	size_t i;
	char buf[64];
	int n;

	if (!v || !json_is_array(v)) {
		json_decref(v);
		return expected(ctx, "sum", "an array of numbers", args, len);
	}
	json_array_foreach(v, i, e) {
		if (!json_is_number(e)) {
			json_decref(v);
			return expected(ctx, "sum", "an array of numbers, but an element is not",
					args, len);
		}
		dsum += json_number_value(e);
		/* Integers stay integers until the sum leaves int64_t. */
		if (all_int && (!json_is_integer(e) ||
				__builtin_add_overflow(isum, (long long)json_integer_value(e), &isum)))
			all_int = 0;
	}
	json_decref(v);
	if (all_int) {
		n = snprintf(buf, sizeof(buf), "%lld", isum);
	} else {
		if (!isfinite(dsum))
			return fp_task_error(ctx, "sum: the result is too large for a double");
		n = format_double(buf, sizeof(buf), dsum);
	}
	return fp_task_return(ctx, buf, (size_t)n);
}

/* Add `by` to counts[word]. */
static int count_add(json_t *counts, const char *word, json_int_t by)
{
	json_t *c = json_object_get(counts, word);

	if (c)
		return json_integer_set(c, json_integer_value(c) + by);
	return json_object_set_new(counts, word, json_integer(by));
}

int fp__demo_count(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_error_t jerr;
	json_t *v = json_loadb(args, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	json_t *counts = NULL, *e, *c;
	const char *key;
	char *out = NULL;
	char msg[128];
	size_t i;
	int rc = 0;

	if (!v || !json_is_array(v)) {
		json_decref(v);
		return expected(ctx, "count", "an array of strings and {word: count} objects",
				args, len);
	}
	counts = json_object();
	if (!counts) {
		rc = -ENOMEM;
		goto out;
	}
	json_array_foreach(v, i, e) {
		if (json_is_string(e)) {
			if (count_add(counts, json_string_value(e), 1) < 0)
				rc = -ENOMEM;
		} else if (json_is_object(e)) {
			json_object_foreach(e, key, c) {
				if (!json_is_integer(c)) {
					snprintf(msg, sizeof(msg),
						 "count: element %zu: the count of \"%.32s\" is not an integer",
						 i, key);
					rc = fp_task_error(ctx, msg);
					goto out;
				}
				if (count_add(counts, key, json_integer_value(c)) < 0)
					rc = -ENOMEM;
			}
		} else {
			snprintf(msg, sizeof(msg),
				 "count: element %zu is neither a string nor a {word: count} object", i);
			rc = fp_task_error(ctx, msg);
			goto out;
		}
		if (rc < 0)
			goto out;
	}
	out = json_dumps(counts, JSON_COMPACT | JSON_SORT_KEYS);
	if (!out) {
		rc = -ENOMEM;
		goto out;
	}
	rc = fp_task_return(ctx, out, strlen(out));
out:
	free(out);
	json_decref(counts);
	json_decref(v);
	return rc;
}
