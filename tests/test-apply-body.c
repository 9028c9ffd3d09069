/* POST /v1/apply's usual body read by hand, against jansson's reading of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "server/apply_body.h"

/*
 * When the hand reading takes a body, jansson reads the same: an object of
 * "task" (the same string) and maybe "args", whose json_dumps() is the text
 * the hand reading points at ("null" without it). Returns whether it took it.
 */
static bool check_body(const char *body, size_t len)
{
	struct fp_apply_body ab;
	json_error_t err;
	json_t *j, *task, *args;
	char *dump;

	if (!fp_apply_body_plain(body, len, &ab))
		return false;
	j = json_loadb(body, len, 0, &err);
	if (!j)
		fail_msg("taken by hand, refused by jansson: %.*s (%s)", (int)len, body, err.text);
	assert_true(json_is_object(j));
	task = json_object_get(j, "task");
	args = json_object_get(j, "args");
	assert_int_equal(json_object_size(j), 1 + (args != NULL));
	assert_true(json_is_string(task));
	assert_string_equal(json_string_value(task), ab.task);
	assert_int_equal(strlen(ab.task), json_string_length(task));
	dump = args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
	assert_non_null(dump);
	if (strlen(dump) != ab.args_len || memcmp(dump, ab.args, ab.args_len) != 0)
		fail_msg("args %.*s, jansson dumps %s, in %.*s", (int)ab.args_len, ab.args, dump,
			 (int)len, body);
	free(dump);
	json_decref(j);
	return true;
}

static void usual_bodies_are_taken(void **state)
{
	static const char *const taken[] = {
		"{\"task\":\"square\",\"args\":7}",
		"{\"args\":7,\"task\":\"square\"}",
		" {\r\n\t\"task\" : \"square\" , \"args\" : -12 } \n",
		"{\"task\":\"echo\",\"args\":\"a string / with {} and [,]\"}",
		"{\"task\":\"echo\",\"args\":true}",
		"{\"task\":\"echo\",\"args\":null}",
		"{\"task\":\"noargs\"}",
		"{\"task\":\"square\",\"args\":999999999999999999}",
	};
	static const char *const left[] = {
		"", "{}", "[]", "{\"task\":\"square\",\"args\":7",
		"{\"task\":\"square\",\"args\":7}x",
		"{\"task\":\"square\",\"args\":7,}",
		"{\"task\":\"square\",\"task\":\"echo\"}",
		"{\"task\":\"square\",\"args\":7,\"args\":8}",
		"{\"task\":\"square\",\"args\":1.50}",
		"{\"task\":\"square\",\"args\":-0}",
		"{\"task\":\"square\",\"args\":1e3}",
		"{\"task\":\"square\",\"args\":[1,2]}",
		"{\"task\":\"square\",\"args\":{\"a\":1}}",
		"{\"task\":\"square\",\"args\":\"esc\\\"aped\"}",
		"{\"task\":\"squ\\u0061re\",\"args\":7}",
		"{\"task\":7}",
		"{\"task\":\"square\",\"timeout_ms\":5}",
		"{\"task\":\"square\",\"args\":1234567890123456789}",
		"{\"task\":\"square\",\"args\":07}",
		"{\"task\":\"square\",\"args\":7 8}",
		"{\"task\":\"caf\xc3\xa9\"}",
		"{'task':'square'}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
		if (!check_body(taken[i], strlen(taken[i])))
			fail_msg("not taken: %s", taken[i]);
	for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++)
		if (check_body(left[i], strlen(left[i])))
			fail_msg("taken: %s", left[i]);
}

/* Bodies put together from the pieces of JSON and of near-JSON. */
static void random_bodies_agree_with_jansson(void **state)
{
	static const char *const pieces[] = {
		"{", "}", "\"task\"", "\"args\"", "\"other\"", ":", ",", " ", "\n", "\t",
		"\"square\"", "\"\"", "7", "-3", "0", "-0", "1.5", "1e2", "true", "false",
		"null", "nul", "[", "]", "\"a\\\"b\"", "\"\\u0041\"", "\"x", "123456789012345678",
		"1234567890123456789", "\x01", "\xc3\xa9", "{\"task\":\"square\",\"args\":7}",
		"{\"task\":\"echo\"", "\"args\":", ",\"args\":5}",
	};
	enum { N = 300000, MAXP = 12 };
	unsigned long long seed = 0x9e3779b97f4a7c15ull;
	size_t taken = 0;
	char body[1024];

	(void)state;
	for (int i = 0; i < N; i++) {
		size_t len = 0, n;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		n = seed % MAXP + 1;
		for (size_t k = 0; k < n; k++) {
			const char *p;

			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			p = pieces[seed % (sizeof(pieces) / sizeof(pieces[0]))];
			memcpy(body + len, p, strlen(p));
			len += strlen(p);
		}
		/* Often the usual frame around a random value. */
		if (i % 3 == 0) {
			char v[512];

			memcpy(v, body, len);
			len = (size_t)snprintf(body, sizeof(body), "{\"task\":\"square\",\"args\":%.*s}",
					       (int)len, v);
		}
		taken += check_body(body, len);
	}
	/* Not vacuous: the generator does make bodies of the subset. */
	assert_true(taken > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(usual_bodies_are_taken),
		cmocka_unit_test(random_bodies_agree_with_jansson),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
