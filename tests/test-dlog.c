/* forkpoold's log lines: text and JSON shapes, escaping, holding, cutting. */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "dlog.h"

struct fx {
	int fds[2];
	struct fp_dlog log;
	char out[65536];
};

static int fx_setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	assert_int_equal(pipe2(x->fds, O_NONBLOCK), 0);
	/* Room for the long-line cases without a reader. */
	fcntl(x->fds[1], F_SETPIPE_SZ, 1 << 20);
	*state = x;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *x = *state;

	fp_dlog_deinit(&x->log);
	close(x->fds[0]);
	close(x->fds[1]);
	free(x);
	return 0;
}

/* Everything written so far. */
static const char *drain(struct fx *x)
{
	ssize_t n = read(x->fds[0], x->out, sizeof(x->out) - 1);

	x->out[n > 0 ? n : 0] = '\0';
	return x->out;
}

static void assert_matches(const char *s, const char *re)
{
	regex_t r;

	assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&r, s, 0, NULL, 0) != 0)
		fail_msg("\"%s\" does not match /%s/", s, re);
	regfree(&r);
}

static void text_line_has_time_level_message_fields(void **state)
{
	struct fx *x = *state;
	const struct fp_dlog_field f[] = {
		FP_DLOG_FUINT("bytes", 57), FP_DLOG_FDBL("duration_ms", 0.25),
		FP_DLOG_FSTR("peer", "127.0.0.1:5555"), FP_DLOG_FSTR("who", "a b"),
	};

	fp_dlog_init(&x->log, x->fds[1], FP_LOG_INFO, FP_DLOG_TEXT);
	fp_dlog_info(&x->log, "listening on %s", "127.0.0.1:41234");
	fp_dlog_fields(&x->log, FP_LOG_INFO, 0, "GET /v1/health 200", f, 4);
	assert_matches(drain(x),
		       "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
		       "info listening on 127\\.0\\.0\\.1:41234\n"
		       "[^ ]+ info GET /v1/health 200 bytes=57 duration_ms=0\\.250 "
		       "peer=127\\.0\\.0\\.1:5555 who=\"a b\"\n$");
}

static void levels_filter_unless_forced(void **state)
{
	struct fx *x = *state;

	fp_dlog_init(&x->log, x->fds[1], FP_LOG_WARN, FP_DLOG_TEXT);
	fp_dlog_info(&x->log, "dropped");
	fp_dlog_debug(&x->log, "dropped");
	fp_dlog_error(&x->log, "kept");
	fp_dlog_flags(&x->log, FP_LOG_INFO, FP_DLOG_FORCE, "forced");
	assert_matches(drain(x), "^[^ ]+ error kept\n[^ ]+ info forced\n$");
}

static void text_escapes_control_bytes_and_bad_utf8(void **state)
{
	struct fx *x = *state;

	fp_dlog_init(&x->log, x->fds[1], FP_LOG_INFO, FP_DLOG_TEXT);
	fp_dlog_info(&x->log, "GET /a\nforged\x01 caf\xc3\xa9 \xff");
	assert_matches(drain(x), "^[^ ]+ info GET /a\\\\nforged\\\\x01 café \\\\xff\n$");
}

static void json_line_is_one_valid_object(void **state)
{
	struct fx *x = *state;
	const struct fp_dlog_field f[] = {
		FP_DLOG_FSTR("target", "/x?\"q\"=\\\n\t\x7f\xc3"),
		FP_DLOG_FINT("status", -1), FP_DLOG_FUINT("bytes", 12345678901ull),
		FP_DLOG_FDBL("duration_ms", 1.5),
	};
	json_error_t e;
	json_t *o;
	const char *out;

	fp_dlog_init(&x->log, x->fds[1], FP_LOG_INFO, FP_DLOG_JSON);
	fp_dlog_fields(&x->log, FP_LOG_WARN, 0, "m\"sg\x02", f, 4);
	out = drain(x);
	assert_non_null(strchr(out, '\n'));
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	o = json_loads(out, 0, &e);
	if (!o)
		fail_msg("not JSON: %s (%s)", out, e.text);
	assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(o, "msg")), "m\"sg\x02");
	assert_string_equal(json_string_value(json_object_get(o, "target")),
			    "/x?\"q\"=\\\n\t\x7f\xef\xbf\xbd");
	assert_int_equal(json_integer_value(json_object_get(o, "status")), -1);
	assert_true(json_real_value(json_object_get(o, "duration_ms")) == 1.5);
	assert_matches(json_string_value(json_object_get(o, "ts")),
		       "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z$");
	json_decref(o);
}

static void long_lines_are_cut_and_stay_valid(void **state)
{
	struct fx *x = *state;
	size_t n = 20000, i;
	char *big = malloc(n + 1);
	json_t *o;

	assert_non_null(big);
	/* Escapes near every possible cut point. */
	for (i = 0; i < n; i++)
		big[i] = i % 3 == 0 ? '"' : i % 3 == 1 ? '\x01' : 'a';
	big[n] = '\0';
	for (int fmt = 0; fmt < 2; fmt++) {
		for (size_t shift = 0; shift < 7; shift++) {
			const struct fp_dlog_field f[] = {
				FP_DLOG_FSTR("a", big + shift), FP_DLOG_FUINT("after", 1),
			};

			fp_dlog_init(&x->log, x->fds[1], FP_LOG_INFO,
				     fmt ? FP_DLOG_JSON : FP_DLOG_TEXT);
			fp_dlog_fields(&x->log, FP_LOG_INFO, 0, big + 8000 + shift, f, 2);
			drain(x);
			assert_true(strlen(x->out) <= 8192);
			assert_int_equal(x->out[strlen(x->out) - 1], '\n');
			/* One line, however long the input. */
			assert_ptr_equal(strchr(x->out, '\n'), x->out + strlen(x->out) - 1);
			if (fmt) {
				o = json_loads(x->out, 0, NULL);
				if (!o)
					fail_msg("cut JSON line is not JSON: %s", x->out);
				assert_true(json_is_true(json_object_get(o, "cut")));
				json_decref(o);
			} else {
				assert_non_null(strstr(x->out, " [cut]\n"));
			}
		}
	}
	free(big);
}

static void held_lines_follow_the_ones_sent_now(void **state)
{
	struct fx *x = *state;

	fp_dlog_init(&x->log, x->fds[1], FP_LOG_INFO, FP_DLOG_TEXT);
	fp_dlog_hold(&x->log);
	fp_dlog_info(&x->log, "event loop backend: epoll");
	fp_dlog_debug(&x->log, "filtered while held too");
	assert_string_equal(drain(x), "");
	fp_dlog_flags(&x->log, FP_LOG_INFO, FP_DLOG_NOW, "listening on 127.0.0.1:1");
	fp_dlog_release(&x->log);
	fp_dlog_info(&x->log, "after");
	assert_matches(drain(x), "^[^ ]+ info listening on 127\\.0\\.0\\.1:1\n"
		       "[^ ]+ info event loop backend: epoll\n[^ ]+ info after\n$");
}

/* A count of thousandths prints as "%.3f" of the count / 1000.0 did. */
static void milli_field_prints_as_printf_did(void **state)
{
	struct fx *x = *state;
	unsigned long long v, seed = 88172645463325252ull;
	char want[64], *at;
	const char *out;
	int i;

	fp_dlog_init(&x->log, x->fds[1], FP_LOG_INFO, FP_DLOG_TEXT);
	for (i = 0; i < 3000; i++) {
		if (i < 2000) {
			v = (unsigned long long)i;
		} else {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			v = seed % (1ull << (i % 44 + 1));
		}
		struct fp_dlog_field f[] = { FP_DLOG_FMILLI("d", v), FP_DLOG_FINT("i", -(long long)v) };
		fp_dlog_fields(&x->log, FP_LOG_INFO, 0, "m", f, 2);
		out = drain(x);
		at = strstr(out, " d=");
		assert_non_null(at);
		snprintf(want, sizeof(want), " d=%.3f i=%lld\n", (double)v / 1000.0, -(long long)v);
		assert_string_equal(at, want);
	}
}

static void count_flush_soon(void *data)
{
	(*(int *)data)++;
}

/*
 * Batched info lines wait for fp_dlog_flush() (asked for once a batch); a
 * warning writes them first, then itself; a full batch goes out whole; a
 * child forked meanwhile has none of them to write again.
 */
static void batched_lines_keep_their_order(void **state)
{
	struct fx *x = *state;
	int asked = 0, i, status;
	const char *out;
	pid_t pid;

	fp_dlog_init(&x->log, x->fds[1], FP_LOG_INFO, FP_DLOG_TEXT);
	assert_int_equal(fp_dlog_batch(&x->log, count_flush_soon, &asked), 0);
	fp_dlog_info(&x->log, "one");
	fp_dlog_info(&x->log, "two");
	assert_int_equal(asked, 1);
	assert_string_equal(drain(x), "");

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fp_dlog_flush(&x->log);
		fp_dlog_warn(&x->log, "child");
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_matches(drain(x), "^[^ ]+ warn child\n$");

	fp_dlog_warn(&x->log, "three");
	assert_matches(drain(x), "^[^ ]+ info one\n[^ ]+ info two\n[^ ]+ warn three\n$");
	fp_dlog_info(&x->log, "four");
	assert_int_equal(asked, 2);
	fp_dlog_flush(&x->log);
	assert_matches(drain(x), "^[^ ]+ info four\n$");

	/* More than a batch holds: written when full, nothing lost or repeated. */
	for (i = 0; i < 1000; i++)
		fp_dlog_info(&x->log, "line %04d", i);
	out = drain(x);
	assert_true(strlen(out) > 0);
	fp_dlog_batch(&x->log, NULL, NULL);
	{
		char *all = strdup(out), *p;
		size_t n = 0;

		assert_non_null(all);
		all = realloc(all, strlen(all) + sizeof(x->out));
		assert_non_null(all);
		strcat(all, drain(x));
		for (p = all; (p = strstr(p, " info line ")); p++) {
			char want[16];

			snprintf(want, sizeof(want), "%04zu", n);
			assert_memory_equal(p + 11, want, 4);
			n++;
		}
		assert_int_equal(n, 1000);
		free(all);
	}
	/* Not batching any more: at once. */
	fp_dlog_info(&x->log, "five");
	assert_matches(drain(x), "^[^ ]+ info five\n$");
}

static void names_parse(void **state)
{
	fp_log_level l;
	enum fp_dlog_format f;

	assert_int_equal(fp_dlog_level_parse("warning", &l), 0);
	assert_int_equal(l, FP_LOG_WARN);
	assert_int_equal(fp_dlog_level_parse("DEBUG", &l), 0);
	assert_int_equal(l, FP_LOG_DEBUG);
	assert_int_equal(fp_dlog_level_parse("trace", &l), -EINVAL);
	assert_int_equal(fp_dlog_format_parse("json", &f), 0);
	assert_int_equal(f, FP_DLOG_JSON);
	assert_int_equal(fp_dlog_format_parse("logfmt", &f), -EINVAL);
	assert_string_equal(fp_dlog_level_name(FP_LOG_ERROR), "error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
		T(text_line_has_time_level_message_fields),
		T(levels_filter_unless_forced),
		T(text_escapes_control_bytes_and_bad_utf8),
		T(json_line_is_one_valid_object),
		T(long_lines_are_cut_and_stay_valid),
		T(held_lines_follow_the_ones_sent_now),
		T(batched_lines_keep_their_order),
		T(milli_field_prints_as_printf_did),
		T(names_parse),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
