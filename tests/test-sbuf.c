/* sbuf: the response builder's appends, printf and RFC 3339 times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "sbuf.h"

static void printf_grows_and_keeps_every_byte(void **state)
{
	struct sbuf b;
	char want[8192];
	size_t wlen = 0;

	sbuf_init(&b);
	/* Lengths that end just before, at and after each doubling of the buffer. */
	for (int i = 0; i < 400; i++) {
		char piece[64];
		int n = snprintf(piece, sizeof(piece), "%d:%.*s;", i, i % 23, "abcdefghijklmnopqrstuvw");

		sbuf_printf(&b, "%d:%.*s;", i, i % 23, "abcdefghijklmnopqrstuvw");
		assert_true(wlen + (size_t)n < sizeof(want));
		memcpy(want + wlen, piece, (size_t)n);
		wlen += (size_t)n;
		assert_int_equal(b.len, wlen);
		assert_int_equal(b.data[b.len], '\0');
	}
	assert_false(b.oom);
	assert_memory_equal(b.data, want, wlen);
	/* One piece bigger than the whole buffer so far. */
	sbuf_printf(&b, "%5000s", "x");
	assert_int_equal(b.len, wlen + 5000);
	assert_int_equal(b.data[b.len - 1], 'x');
	assert_int_equal(b.data[wlen], ' ');
	assert_int_equal(b.data[b.len], '\0');
	sbuf_free(&b);
}

/* Lines written in place grow the buffer like appends, and numbers match printf. */
static void reserve_and_commit_write_in_place(void **state)
{
	static const unsigned long long nums[] = {
		0, 1, 9, 10, 99, 100, 12345, 4294967295ull, 4294967296ull,
		999999999999999999ull, 18446744073709551615ull,
	};
	struct sbuf b;
	char want[64];

	(void)state;
	sbuf_init(&b);
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
			size_t before = b.len;
			char *d = sbuf_reserve(&b, 20), *end;
			int n = snprintf(want, sizeof(want), "%llu", nums[i]);

			assert_non_null(d);
			assert_ptr_equal(d, b.data + b.len);
			end = sbuf_put_uint(d, nums[i]);
			assert_int_equal(end - d, n);
			sbuf_commit(&b, (size_t)(end - d));
			assert_int_equal(b.len, before + (size_t)n);
			assert_memory_equal(b.data + before, want, (size_t)n);
			assert_int_equal(b.data[b.len], '\0');
		}
	}
	assert_false(b.oom);
	sbuf_free(&b);
	/* sbuf_add_uint() is the same at the end, growing the buffer as it goes. */
	sbuf_init(&b);
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
			size_t before = b.len;
			int n = snprintf(want, sizeof(want), "%llu", nums[i]);

			sbuf_add_uint(&b, nums[i]);
			assert_int_equal(b.len, before + (size_t)n);
			assert_memory_equal(b.data + before, want, (size_t)n);
			assert_int_equal(b.data[b.len], '\0');
		}
	}
	assert_false(b.oom);
	sbuf_free(&b);
}

static void json_time(unsigned long long ms, char *out, size_t len)
{
	struct sbuf b;

	sbuf_init(&b);
	sbuf_json_time(&b, ms);
	assert_non_null(b.data);
	snprintf(out, len, "%s", b.data);
	sbuf_free(&b);
}

/* What strftime() and printf make of it: the form the API has always printed. */
static void json_time_reference(unsigned long long ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char buf[40];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "\"%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03lluZ\"", buf, ms % 1000);
}

static void json_times_match_strftime(void **state)
{
	static const unsigned long long fixed[] = {
		1, 999, 1000, 59999, 86399999, 86400000,
		951782400000ull,            /* 2000-02-29, a leap day */
		978307199999ull,            /* the last ms of 2000 */
		1700000000123ull,
		4102444800000ull,           /* 2100-01-01, not a leap year */
		253402300799999ull,         /* 9999-12-31T23:59:59.999 */
		253402300800000ull,         /* year 10000: five digits, as %Y */
	};
	char got[96], want[96];
	unsigned long long ms = 1;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		json_time(fixed[i], got, sizeof(got));
		json_time_reference(fixed[i], want, sizeof(want));
		assert_string_equal(got, want);
	}
	/* Steps that are not round in any unit, from 1970 to past 2400. */
	while (ms < 14000000000000ull) {
		json_time(ms, got, sizeof(got));
		json_time_reference(ms, want, sizeof(want));
		if (strcmp(got, want) != 0)
			fail_msg("%llu ms: %s, want %s", ms, got, want);
		ms = ms * 3 + 7919;
	}
	/*
	 * Every day to 2517 (each leap rule, every month's end), then every
	 * 37th to the end of 9999, at a time of day that moves.
	 */
	for (unsigned long long day = 0; day <= 2932896; day += day < 200000 ? 1 : 37) {
		ms = day * 86400000ull + (day * 7919ull) % 86400000ull;
		if (!ms)
			continue;
		json_time(ms, got, sizeof(got));
		json_time_reference(ms, want, sizeof(want));
		if (strcmp(got, want) != 0)
			fail_msg("day %llu, %llu ms: %s, want %s", day, ms, got, want);
	}
	json_time(1700000000123ull, got, sizeof(got));
	assert_string_equal(got, "\"2023-11-14T22:13:20.123Z\"");
	json_time(0, got, sizeof(got));
	assert_string_equal(got, "null");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(printf_grows_and_keeps_every_byte),
		cmocka_unit_test(json_times_match_strftime),
		cmocka_unit_test(reserve_and_commit_write_in_place),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
