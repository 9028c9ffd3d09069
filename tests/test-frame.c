/* Frame encoding and stream reassembly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

/* Append one encoded frame to buf at *off. */
static void put_frame(char *buf, size_t *off, enum fp_frame_type type, uint64_t id,
		      const char *payload, size_t len, uint32_t flags)
{
	struct fp_frame_header h;

	fp_frame_header_init(&h, type, id, (uint32_t)len, flags);
	memcpy(buf + *off, &h, sizeof(h));
	*off += sizeof(h);
	memcpy(buf + *off, payload, len);
	*off += len;
}

static void header_round_trips(void **state)
{
	struct fp_frame_header h;

	fp_frame_header_init(&h, FP_FRAME_ERROR, 0x1122334455667788ull, 42,
			     FP_FRAME_RETIRE | 3);
	assert_int_equal(fp_frame_header_check(&h, 64), 0);
	assert_int_equal(h.type, FP_FRAME_ERROR);
	assert_int_equal(h.len, 42);
	assert_true(h.id == 0x1122334455667788ull);
	assert_int_equal(h.flags & 0xff, 3);
	assert_true(h.flags & FP_FRAME_RETIRE);
}

static void bad_magic_and_type_are_protocol_errors(void **state)
{
	struct fp_frame_header h;

	fp_frame_header_init(&h, FP_FRAME_TASK, 1, 0, 0);
	h.magic = 0xdead;
	assert_int_equal(fp_frame_header_check(&h, 64), -EPROTO);
	fp_frame_header_init(&h, FP_FRAME_TASK, 1, 0, 0);
	h.type = 0;
	assert_int_equal(fp_frame_header_check(&h, 64), -EPROTO);
	h.type = FP_FRAME_TYPE_MAX_;
	assert_int_equal(fp_frame_header_check(&h, 64), -EPROTO);
}

static void oversized_payload_is_refused(void **state)
{
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[64];
	size_t off = 0;

	fp_frame_reader_init(&r, 8);
	put_frame(buf, &off, FP_FRAME_RESULT, 7, "123456789", 9, 0);
	/* The header alone is enough to refuse it: no waiting for 9 bytes. */
	assert_int_equal(fp_frame_reader_feed(&r, buf, FP_FRAME_HEADER_SIZE), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), -EMSGSIZE);
	fp_frame_reader_deinit(&r);

	fp_frame_reader_init(&r, 9);
	assert_int_equal(fp_frame_reader_feed(&r, buf, off), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_int_equal(h.len, 9);
	fp_frame_reader_deinit(&r);
}

static void frames_split_byte_by_byte_reassemble(void **state)
{
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[256];
	size_t off = 0, i;
	int got = 0;

	put_frame(buf, &off, FP_FRAME_TASK, 1, "square\0" "7", 8, 0);
	put_frame(buf, &off, FP_FRAME_RESULT, 2, "49", 2, 0);
	put_frame(buf, &off, FP_FRAME_READY, 0, "", 0, 0);

	fp_frame_reader_init(&r, 1024);
	for (i = 0; i < off; i++) {
		assert_int_equal(fp_frame_reader_feed(&r, buf + i, 1), 0);
		while (fp_frame_reader_next(&r, &h, &p) == 1) {
			got++;
			if (got == 1) {
				assert_int_equal(h.type, FP_FRAME_TASK);
				assert_int_equal(h.len, 8);
				assert_string_equal(p, "square");
				assert_string_equal(p + 7, "7");
			} else if (got == 2) {
				assert_int_equal(h.type, FP_FRAME_RESULT);
				assert_true(h.id == 2);
				assert_string_equal(p, "49");
			} else {
				assert_int_equal(h.type, FP_FRAME_READY);
				assert_int_equal(h.len, 0);
				assert_string_equal(p, "");
			}
		}
	}
	assert_int_equal(got, 3);
	assert_int_equal(fp_frame_reader_eof(&r), 0);
	fp_frame_reader_deinit(&r);
}

/*
 * The reader NUL-terminates each payload in place, over the next frame's
 * first byte: that byte must be back before the next frame is read.
 */
static void nul_termination_does_not_corrupt_next_frame(void **state)
{
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[256];
	size_t off = 0;

	put_frame(buf, &off, FP_FRAME_RESULT, 10, "abc", 3, 0);
	put_frame(buf, &off, FP_FRAME_RESULT, 11, "def", 3, 0);
	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, off), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_string_equal(p, "abc");
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_true(h.id == 11);
	assert_string_equal(p, "def");
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 0);
	fp_frame_reader_deinit(&r);
}

static void truncated_stream_is_a_protocol_error_at_eof(void **state)
{
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[256];
	size_t off = 0;

	put_frame(buf, &off, FP_FRAME_RESULT, 1, "hello", 5, 0);

	/* Cut inside the header. */
	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, 10), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 0);
	assert_int_equal(fp_frame_reader_eof(&r), -EPROTO);
	fp_frame_reader_deinit(&r);

	/* Cut inside the payload. */
	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, off - 1), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 0);
	assert_int_equal(fp_frame_reader_eof(&r), -EPROTO);
	assert_int_equal(fp_frame_reader_feed(&r, buf + off - 1, 1), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_string_equal(p, "hello");
	assert_int_equal(fp_frame_reader_eof(&r), 0);
	fp_frame_reader_deinit(&r);
}

static void large_payload_in_uneven_pieces(void **state)
{
	const size_t n = 8u << 20;
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char *buf = malloc(n + FP_FRAME_HEADER_SIZE);
	size_t off = 0, i, step = 65521;

	assert_non_null(buf);
	fp_frame_header_init(&h, FP_FRAME_RESULT, 99, (uint32_t)n, 0);
	memcpy(buf, &h, sizeof(h));
	for (i = 0; i < n; i++)
		buf[FP_FRAME_HEADER_SIZE + i] = (char)('a' + i % 26);

	fp_frame_reader_init(&r, n);
	while (off < n + FP_FRAME_HEADER_SIZE) {
		size_t k = n + FP_FRAME_HEADER_SIZE - off;
		if (k > step)
			k = step;
		assert_int_equal(fp_frame_reader_feed(&r, buf + off, k), 0);
		off += k;
		if (off < n + FP_FRAME_HEADER_SIZE)
			assert_int_equal(fp_frame_reader_next(&r, &h, &p), 0);
	}
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_int_equal(h.len, n);
	assert_memory_equal(p, buf + FP_FRAME_HEADER_SIZE, n);
	assert_int_equal(p[n], '\0');
	fp_frame_reader_deinit(&r);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(header_round_trips),
		cmocka_unit_test(bad_magic_and_type_are_protocol_errors),
		cmocka_unit_test(oversized_payload_is_refused),
		cmocka_unit_test(frames_split_byte_by_byte_reassemble),
		cmocka_unit_test(nul_termination_does_not_corrupt_next_frame),
		cmocka_unit_test(truncated_stream_is_a_protocol_error_at_eof),
		cmocka_unit_test(large_payload_in_uneven_pieces),
	};
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
