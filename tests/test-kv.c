/* The shared values' store (pool/kv.c): operations, expiry, caps, order. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv.h"

#define S(s) s, strlen(s)

static void assert_value(fp_kv *kv, const char *key, uint64_t now, const char *want)
{
	const char *v;
	size_t n;

	assert_int_equal(fp__kv_get(kv, S(key), now, &v, &n), 0);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(v, want, n);
	assert_int_equal(v[n], '\0');
}

static void set_get_delete(void **state)
{
	fp_kv *kv = fp__kv_new(NULL);
	const char *v;
	size_t n;

	(void)state;
	assert_non_null(kv);
	assert_int_equal(fp__kv_get(kv, S("a"), 0, &v, &n), -ENOENT);
	assert_int_equal(fp__kv_set(kv, S("a"), S("{\"x\":1}"), 0, 0), 0);
	assert_value(kv, "a", 0, "{\"x\":1}");
	assert_int_equal(fp__kv_set(kv, S("a"), S("[]"), 0, 0), 0);
	assert_value(kv, "a", 0, "[]");
	assert_int_equal(fp__kv_del(kv, S("a"), 0), 0);
	assert_int_equal(fp__kv_del(kv, S("a"), 0), -ENOENT);
	assert_int_equal(fp__kv_get(kv, S("a"), 0, &v, &n), -ENOENT);
	fp__kv_free(kv);
}

static void expiry_on_read_and_by_sweep(void **state)
{
	fp_kv *kv = fp__kv_new(NULL);
	struct fp_kv_stats st;
	const char *v;
	size_t n;

	(void)state;
	assert_int_equal(fp__kv_set(kv, S("t"), S("1"), 100, 1000), 0);
	assert_int_equal(fp__kv_set(kv, S("forever"), S("2"), 0, 1000), 0);
	assert_value(kv, "t", 1099, "1");
	assert_int_equal(fp__kv_get(kv, S("t"), 1100, &v, &n), -ENOENT);
	fp__kv_stats(kv, &st);
	assert_int_equal(st.keys, 1);
	assert_int_equal(st.expired, 1);

	/* Nobody reads these again: the sweep takes them, a bucket budget at a time. */
	for (int i = 0; i < 500; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(fp__kv_set(kv, S(key), S("0"), 10, 2000), 0);
	}
	size_t dropped = 0, calls = 0;
	while (dropped < 500 && calls < 10000) {
		dropped += fp__kv_sweep(kv, 5000, 16);
		calls++;
	}
	assert_int_equal(dropped, 500);
	assert_true(calls > 1);
	fp__kv_stats(kv, &st);
	assert_int_equal(st.keys, 1);
	assert_value(kv, "forever", 5000, "2");
	fp__kv_free(kv);
}

/* What a persisted change records: the deadline a key has, kept by incr, none when set without. */
static void expiry_is_told_and_kept_by_incr(void **state)
{
	fp_kv *kv = fp__kv_new(NULL);
	uint64_t exp = 1;
	int64_t n;

	(void)state;
	assert_int_equal(fp__kv_set(kv, S("c"), S("1"), 500, 1000), 0);
	assert_int_equal(fp__kv_expiry(kv, S("c"), 1200, &exp), 0);
	assert_int_equal(exp, 1500);
	assert_int_equal(fp__kv_incr(kv, S("c"), 2, 1300, &n), 0);
	assert_int_equal(fp__kv_expiry(kv, S("c"), 1300, &exp), 0);
	assert_int_equal(exp, 1500);
	assert_int_equal(fp__kv_set(kv, S("c"), S("7"), 0, 1400), 0);
	assert_int_equal(fp__kv_expiry(kv, S("c"), 1400, &exp), 0);
	assert_int_equal(exp, 0);
	assert_int_equal(fp__kv_set(kv, S("d"), S("1"), 10, 1400), 0);
	assert_int_equal(fp__kv_expiry(kv, S("d"), 1410, &exp), -ENOENT);
	assert_int_equal(fp__kv_expiry(kv, S("none"), 1410, &exp), -ENOENT);
	fp__kv_free(kv);
}

static void incr_counts_and_refuses(void **state)
{
	fp_kv *kv = fp__kv_new(NULL);
	int64_t out = 0;
	char big[32];

	(void)state;
	assert_int_equal(fp__kv_incr(kv, S("c"), 1, 0, &out), 0);
	assert_int_equal(out, 1);
	assert_int_equal(fp__kv_incr(kv, S("c"), 41, 0, &out), 0);
	assert_int_equal(out, 42);
	assert_int_equal(fp__kv_incr(kv, S("c"), -50, 0, &out), 0);
	assert_int_equal(out, -8);
	assert_value(kv, "c", 0, "-8");

	assert_int_equal(fp__kv_set(kv, S("s"), S("\"text\""), 0, 0), 0);
	assert_int_equal(fp__kv_incr(kv, S("s"), 1, 0, &out), -EDOM);
	assert_int_equal(fp__kv_set(kv, S("f"), S("1.5"), 0, 0), 0);
	assert_int_equal(fp__kv_incr(kv, S("f"), 1, 0, &out), -EDOM);
	assert_int_equal(fp__kv_set(kv, S("z"), S("007"), 0, 0), 0);
	assert_int_equal(fp__kv_incr(kv, S("z"), 1, 0, &out), -EDOM);
	assert_int_equal(fp__kv_set(kv, S("sp"), S(" 5\n"), 0, 0), 0);
	assert_int_equal(fp__kv_incr(kv, S("sp"), 1, 0, &out), 0);
	assert_int_equal(out, 6);

	snprintf(big, sizeof(big), "%lld", (long long)INT64_MAX);
	assert_int_equal(fp__kv_set(kv, S("max"), S(big), 0, 0), 0);
	assert_int_equal(fp__kv_incr(kv, S("max"), 1, 0, &out), -ERANGE);
	assert_value(kv, "max", 0, big);
	assert_int_equal(fp__kv_set(kv, S("huge"), S("99999999999999999999"), 0, 0), 0);
	assert_int_equal(fp__kv_incr(kv, S("huge"), 1, 0, &out), -ERANGE);

	/* A counter with a time to live keeps it when incremented. */
	assert_int_equal(fp__kv_set(kv, S("ttl"), S("1"), 100, 0), 0);
	assert_int_equal(fp__kv_incr(kv, S("ttl"), 1, 50, &out), 0);
	assert_int_equal(out, 2);
	assert_int_equal(fp__kv_incr(kv, S("ttl"), 1, 100, &out), 0);
	assert_int_equal(out, 1);
	fp__kv_free(kv);
}

/* The integer text incr stores is printf's, at both ends of int64_t too. */
static void int_text_is_decimal(void **state)
{
	const int64_t v[] = { 0, 1, -1, 9, 10, -10, 1234567890, INT64_MAX, INT64_MIN, INT64_MIN + 1 };
	char got[FP_KV_INT_TEXT], want[32];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = fp__kv_int_text(v[i], got);
		snprintf(want, sizeof(want), "%lld", (long long)v[i]);
		assert_int_equal(n, strlen(want));
		assert_memory_equal(got, want, n);
	}
}

static void cas_sets_only_on_match(void **state)
{
	fp_kv *kv = fp__kv_new(NULL);

	(void)state;
	/* expect NULL: only when absent. */
	assert_int_equal(fp__kv_cas(kv, S("k"), NULL, 0, S("1"), 0, 0), 1);
	assert_int_equal(fp__kv_cas(kv, S("k"), NULL, 0, S("2"), 0, 0), 0);
	assert_value(kv, "k", 0, "1");
	assert_int_equal(fp__kv_cas(kv, S("k"), S("2"), S("3"), 0, 0), 0);
	assert_value(kv, "k", 0, "1");
	assert_int_equal(fp__kv_cas(kv, S("k"), S("1"), S("3"), 0, 0), 1);
	assert_value(kv, "k", 0, "3");
	assert_int_equal(fp__kv_cas(kv, S("gone"), S("1"), S("3"), 0, 0), 0);
	fp__kv_free(kv);
}

static void caps_are_named(void **state)
{
	struct fp_kv_limits lim = { .max_key = 8, .max_value = 16,
				    .max_bytes = 3 * (FP_KV_ENTRY_OVERHEAD + 2 + 16) };
	fp_kv *kv = fp__kv_new(&lim);
	char val[17];
	struct fp_kv_stats st;

	(void)state;
	memset(val, 'x', sizeof(val));
	assert_int_equal(fp__kv_set(kv, S("123456789"), S("1"), 0, 0), -ENAMETOOLONG);
	assert_int_equal(fp__kv_set(kv, "", 0, S("1"), 0, 0), -ENAMETOOLONG);
	assert_int_equal(fp__kv_set(kv, S("k1"), val, 17, 0, 0), -E2BIG);
	assert_int_equal(fp__kv_set(kv, S("k1"), val, 16, 0, 0), 0);
	assert_int_equal(fp__kv_set(kv, S("k2"), val, 16, 0, 0), 0);
	assert_int_equal(fp__kv_set(kv, S("k3"), val, 16, 0, 0), 0);
	assert_int_equal(fp__kv_set(kv, S("k4"), S("1"), 0, 0), -ENOSPC);
	/* Replacing a value counts the old one out first. */
	assert_int_equal(fp__kv_set(kv, S("k3"), val, 16, 0, 0), 0);
	assert_int_equal(fp__kv_del(kv, S("k1"), 0), 0);
	assert_int_equal(fp__kv_set(kv, S("k4"), S("1"), 0, 0), 0);
	fp__kv_stats(kv, &st);
	assert_int_equal(st.keys, 3);
	assert_int_equal(st.bytes, 2 * (FP_KV_ENTRY_OVERHEAD + 2 + 16) + FP_KV_ENTRY_OVERHEAD + 3);
	fp__kv_free(kv);
}

/* Keys whose time passed, never read again, do not keep a write out. */
static void expired_keys_do_not_fill_the_store(void **state)
{
	struct fp_kv_limits lim = { .max_bytes = 200 * (FP_KV_ENTRY_OVERHEAD + 8) };
	fp_kv *kv = fp__kv_new(&lim);
	char key[16];
	int64_t out;
	int n = 0;

	(void)state;
	for (;; n++) {
		snprintf(key, sizeof(key), "t%05d", n);
		int rc = fp__kv_set(kv, S(key), S("1"), 10, 0);
		if (rc == -ENOSPC)
			break;
		assert_int_equal(rc, 0);
	}
	assert_true(n > 100);
	assert_int_equal(fp__kv_set(kv, S("late"), S("1"), 0, 5), -ENOSPC);
	assert_int_equal(fp__kv_set(kv, S("late"), S("1"), 0, 10), 0);
	assert_int_equal(fp__kv_incr(kv, S("n"), 1, 10, &out), 0);
	assert_int_equal(fp__kv_cas(kv, S("c"), NULL, 0, S("1"), 0, 10), 1);
	fp__kv_free(kv);
}

struct seen {
	char keys[8][16];
	int n, stop_at;     /* returns 7 at the stop_at-th key; 0: never */
};

static int collect(void *arg, const char *key, size_t klen, const char *val, size_t vlen,
		   uint64_t expires_ms)
{
	struct seen *s = arg;

	(void)val;
	(void)vlen;
	(void)expires_ms;
	assert_true(s->n < 8 && klen < 16);
	memcpy(s->keys[s->n], key, klen);
	s->keys[s->n][klen] = '\0';
	return ++s->n == s->stop_at ? 7 : 0;
}

static void each_by_prefix_in_order(void **state)
{
	fp_kv *kv = fp__kv_new(NULL);
	struct seen s = { .n = 0, .stop_at = 0 };

	(void)state;
	assert_int_equal(fp__kv_set(kv, S("job:b"), S("1"), 0, 0), 0);
	assert_int_equal(fp__kv_set(kv, S("job:a"), S("1"), 0, 0), 0);
	assert_int_equal(fp__kv_set(kv, S("other"), S("1"), 0, 0), 0);
	assert_int_equal(fp__kv_set(kv, S("job:"), S("1"), 0, 0), 0);
	assert_int_equal(fp__kv_set(kv, S("job:old"), S("1"), 5, 0), 0);
	assert_int_equal(fp__kv_each(kv, S("job:"), 10, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.keys[0], "job:");
	assert_string_equal(s.keys[1], "job:a");
	assert_string_equal(s.keys[2], "job:b");

	/* A non-zero return stops the walk and is returned. */
	s.n = 0;
	s.stop_at = 3;
	assert_int_equal(fp__kv_set(kv, S("job:c"), S("1"), 0, 0), 0);
	assert_int_equal(fp__kv_each(kv, "", 0, 10, collect, &s), 7);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.keys[2], "job:b");
	fp__kv_free(kv);
}

static void many_keys_survive_growth(void **state)
{
	fp_kv *kv = fp__kv_new(NULL);
	struct fp_kv_stats st;
	char key[32], val[32];

	(void)state;
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		snprintf(val, sizeof(val), "%d", i * 3);
		assert_int_equal(fp__kv_set(kv, S(key), S(val), 0, 0), 0);
	}
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		snprintf(val, sizeof(val), "%d", i * 3);
		assert_value(kv, key, 0, val);
	}
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		assert_int_equal(fp__kv_del(kv, S(key), 0), 0);
	}
	fp__kv_stats(kv, &st);
	assert_int_equal(st.keys, 0);
	assert_int_equal(st.bytes, 0);
	fp__kv_free(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(set_get_delete),
		cmocka_unit_test(expiry_on_read_and_by_sweep),
		cmocka_unit_test(expiry_is_told_and_kept_by_incr),
		cmocka_unit_test(incr_counts_and_refuses),
		cmocka_unit_test(int_text_is_decimal),
		cmocka_unit_test(cas_sets_only_on_match),
		cmocka_unit_test(caps_are_named),
		cmocka_unit_test(expired_keys_do_not_fill_the_store),
		cmocka_unit_test(each_by_prefix_in_order),
		cmocka_unit_test(many_keys_survive_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
