/* ndjson: NDJSON bodies cut into items, and the hand check of plain values against jansson. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "ndjson.h"

static bool jansson_accepts(const char *s, size_t len)
{
	json_error_t err;
	json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &err);

	json_decref(j);
	return j != NULL;
}

static void plain_values_are_recognised(void **state)
{
	static const char *const plain[] = {
		"0", "-0", "7", "-7", "123456789012345678", "-123456789012345678", "0.5",
		"-0.25", "3.14159", "true", "false", "null", "\"\"", "\"abc\"",
		"\"with spaces and ~!@#$%^&*()_+{}[]:;'<>,.?/\"",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		assert_true(fp_json_plain_scalar(plain[i], strlen(plain[i])));
		assert_true(jansson_accepts(plain[i], strlen(plain[i])));
	}
}

/* Not plain: either not JSON at all, or JSON that jansson must judge. */
static void everything_else_is_left_to_jansson(void **state)
{
	static const char *const other[] = {
		"", "-", "01", "-01", "+1", "1.", ".5", "1.5e3", "1e3", "1E3",
		"1234567890123456789", "99999999999999999999", "0.1234567890123456789012345",
		"0x10", "1 2", "tru", "truee", "nul", "False", "\"", "\"abc", "abc\"",
		"\"a\\nb\"", "\"a\\\"b\"", "\"\t\"", "\"\xc3\xa9\"", "\"\x7f\"", "[1]", "{}",
		"NaN", "Infinity", "--1", "1-", "0.5.5",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		assert_false(fp_json_plain_scalar(other[i], strlen(other[i])));
	/* Bytes after a string's closing quote, and a NUL inside one. */
	assert_false(fp_json_plain_scalar("\"a\"b\"", 5));
	assert_false(fp_json_plain_scalar("\"a\0b\"", 5));
}

/*
 * Random short texts over JSON's alphabet: whatever the hand check calls
 * plain, jansson must accept, or a body jansson refuses would get through.
 */
static void plain_is_never_wider_than_jansson(void **state)
{
	static const char alphabet[] = "0123456789-+.eE\"a \\tfnrul\x01\x7f";
	char s[24];
	unsigned seed = 12345, plain = 0;

	(void)state;
	for (int k = 0; k < 200000; k++) {
		size_t len = 1 + (seed = seed * 1103515245u + 12345u) % 12;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			s[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		if (fp_json_plain_scalar(s, len)) {
			plain++;
			if (!jansson_accepts(s, len))
				fail_msg("plain but not JSON to jansson: '%.*s'", (int)len, s);
		}
	}
	/* The alphabet does make plain values often enough to test something. */
	assert_true(plain > 1000);
}

static void lines_become_items(void **state)
{
	static const char body[] = "1\n  \"two\"\t\r\n\n[3, 4]\r\n\t\n{\"five\":5}\nnull";
	struct fp_ndjson_error err;
	struct fp_buf *items;
	size_t n;

	(void)state;
	assert_int_equal(fp_ndjson_split(body, sizeof(body) - 1, &items, &n, &err), 0);
	assert_int_equal(n, 5);
	assert_true(items[0].len == 1 && memcmp(items[0].base, "1", 1) == 0);
	assert_true(items[1].len == 5 && memcmp(items[1].base, "\"two\"", 5) == 0);
	assert_true(items[2].len == 6 && memcmp(items[2].base, "[3, 4]", 6) == 0);
	assert_true(items[3].len == 10 && memcmp(items[3].base, "{\"five\":5}", 10) == 0);
	assert_true(items[4].len == 4 && memcmp(items[4].base, "null", 4) == 0);
	/* They point into the body: nothing is copied. */
	assert_ptr_equal(items[0].base, body);
	fp_ndjson_free(items);

	assert_int_equal(fp_ndjson_split("", 0, &items, &n, &err), 0);
	assert_int_equal(n, 0);
	fp_ndjson_free(items);
	assert_int_equal(fp_ndjson_split("\n\n \n", 4, &items, &n, &err), 0);
	assert_int_equal(n, 0);
	fp_ndjson_free(items);
}

static void a_bad_line_is_named(void **state)
{
	static const char *const bodies[] = {
		"1\n2\n01\n4\n",          /* not plain, and jansson refuses it too */
		"1\n2\n{\"a\":}\n4\n",
		"1\n2\n99999999999999999999999\n",   /* jansson: too big an integer */
		"1\n2\n1e999\n",          /* jansson: real number overflow */
	};
	struct fp_ndjson_error err;
	struct fp_buf *items = (struct fp_buf *)1;
	size_t n = 7;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(fp_ndjson_split(bodies[i], strlen(bodies[i]), &items, &n, &err),
				 -EINVAL);
		assert_null(items);
		assert_int_equal(n, 0);
		assert_int_equal(err.line, 3);
		assert_true(err.text[0] != '\0');
	}
}

/*
 * What a body splits into, cut and checked line by line as fp_ndjson_split()
 * did before its one-pass way for integers: that way must not change a thing.
 */
static int reference_split(const char *body, size_t len, struct fp_buf *items, size_t *nout,
			   size_t *bad_line)
{
	const char *p = body, *end = body + len;
	size_t n = 0, line = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end, *s = p;

		line++;
		p = nl ? nl + 1 : end;
		while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			e--;
		if (s == e)
			continue;
		if (!fp_json_plain_scalar(s, (size_t)(e - s)) && !jansson_accepts(s, (size_t)(e - s))) {
			*bad_line = line;
			return -EINVAL;
		}
		items[n++] = (struct fp_buf){ s, (size_t)(e - s) };
	}
	*nout = n;
	return 0;
}

/* Random bodies of mostly integers, signs, zeros, blanks and odd bytes, split both ways. */
static void integer_lines_split_as_line_by_line(void **state)
{
	static const char alphabet[] = "01234567890123456789000--\n\n\n\n\n\n\n \r\t.x";
	char body[64];
	struct fp_buf want[64];
	unsigned seed = 777, ok = 0;

	(void)state;
	for (int k = 0; k < 200000; k++) {
		size_t len = (seed = seed * 1103515245u + 12345u) % 40, n, wn = 0, bad = 0;
		struct fp_ndjson_error err;
		struct fp_buf *items;
		int rc, wrc;

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			body[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		/* Sometimes a long run of digits, around the 18-digit limit. */
		if (k % 7 == 0 && len > 25)
			memset(body + (seed >> 8) % 4, '7', 17 + (seed >> 12) % 4);
		wrc = reference_split(body, len, want, &wn, &bad);
		rc = fp_ndjson_split(body, len, &items, &n, &err);
		if (rc != wrc)
			fail_msg("'%.*s': %d, line by line %d", (int)len, body, rc, wrc);
		if (rc) {
			assert_int_equal(err.line, bad);
			continue;
		}
		ok++;
		assert_int_equal(n, wn);
		for (size_t i = 0; i < n; i++) {
			assert_ptr_equal(items[i].base, want[i].base);
			assert_int_equal(items[i].len, want[i].len);
		}
		fp_ndjson_free(items);
	}
	/* Both outcomes come up often enough to test something. */
	assert_true(ok > 10000 && ok < 190000);
}

/* A big body: every line an item, in order. */
static void a_million_lines(void **state)
{
	size_t count = 1000000, len = 0, n, i;
	char *body = malloc(count * 8);
	struct fp_ndjson_error err;
	struct fp_buf *items;

	(void)state;
	assert_non_null(body);
	for (i = 0; i < count; i++)
		len += (size_t)sprintf(body + len, "%zu\n", i % 1000);
	assert_int_equal(fp_ndjson_split(body, len, &items, &n, &err), 0);
	assert_int_equal(n, count);
	for (i = 0; i < count; i += 9973) {
		char want[8];
		int w = snprintf(want, sizeof(want), "%zu", i % 1000);
		assert_int_equal(items[i].len, (size_t)w);
		assert_memory_equal(items[i].base, want, (size_t)w);
	}
	fp_ndjson_free(items);
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_values_are_recognised),
		cmocka_unit_test(everything_else_is_left_to_jansson),
		cmocka_unit_test(plain_is_never_wider_than_jansson),
		cmocka_unit_test(lines_become_items),
		cmocka_unit_test(a_bad_line_is_named),
		cmocka_unit_test(integer_lines_split_as_line_by_line),
		cmocka_unit_test(a_million_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
