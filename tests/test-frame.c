/* Frame encoding and stream reassembly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame_reader.h"

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

/*
 * A TASKS frame of `n` items of a chain of hops + 1 tasks (their names
 * name_len bytes at `name`), args args[i].
 */
static void put_chain(char *buf, size_t *off, uint64_t id0, const char *name, size_t name_len,
		      unsigned hops, const char *const *args, uint32_t n, uint32_t flags)
{
	size_t total = 0;
	uint32_t i;
	char *dst;

	for (i = 0; i < n; i++)
		total += strlen(args[i]);
	dst = fp_frame_put_tasks(buf + *off, id0, n, name, (uint32_t)name_len,
				 (uint32_t)fp_frame_tasks_len(n, name_len, total), flags, hops);
	for (i = 0; i < n; i++)
		dst = fp_frame_put_tasks_item(dst, args[i], (uint32_t)strlen(args[i]));
	*off = (size_t)(dst - buf);
}

/* A TASKS frame of `n` items of task `name`, args args[i]. */
static void put_tasks(char *buf, size_t *off, uint64_t id0, const char *name,
		      const char *const *args, uint32_t n, uint32_t flags)
{
	put_chain(buf, off, id0, name, strlen(name), 0, args, n, flags);
}

/* A RESULTS frame of `n` values, flags flags[i], from stage `hop` of their chains. */
static void put_results_hop(char *buf, size_t *off, uint64_t id0, const char *const *values,
			    const uint32_t *flags, uint32_t n, uint32_t rss_kib, unsigned hop)
{
	size_t total = 0;
	uint32_t i;
	char *dst;

	for (i = 0; i < n; i++)
		total += strlen(values[i]);
	dst = fp_frame_put_results(buf + *off, id0, n,
				   (uint32_t)fp_frame_results_len(n, total), rss_kib, hop);
	for (i = 0; i < n; i++)
		dst = fp_frame_put_results_item(dst, flags[i], values[i],
						(uint32_t)strlen(values[i]));
	*off = (size_t)(dst - buf);
}

static void put_results(char *buf, size_t *off, uint64_t id0, const char *const *values,
			const uint32_t *flags, uint32_t n, uint32_t rss_kib)
{
	put_results_hop(buf, off, id0, values, flags, n, rss_kib, 0);
}

/*
 * A TASKS frame comes out as TASK frames, ids counting up, the name aside,
 * STREAM on each and FLUSH only on the last; fed a byte at a time, so the
 * buffer moves under an open packed frame.
 */
static void tasks_frame_comes_out_item_by_item(void **state)
{
	static const char *const args[] = { "1", "", "[2,3]" };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[512];
	size_t off = 0, i;
	int got = 0;

	put_tasks(buf, &off, 40, "square", args, 3, FP_FRAME_STREAM | FP_FRAME_FLUSH);
	put_frame(buf, &off, FP_FRAME_TASK, 43, "echo\0" "4", 6, FP_FRAME_FLUSH);
	fp_frame_reader_init(&r, 1024);
	for (i = 0; i < off; i++) {
		assert_int_equal(fp_frame_reader_feed(&r, buf + i, 1), 0);
		while (fp_frame_reader_next(&r, &h, &p) == 1) {
			assert_int_equal(h.type, FP_FRAME_TASK);
			assert_true(h.id == 40u + (unsigned)got);
			if (got < 3) {
				assert_non_null(r.item_name);
				assert_string_equal(r.item_name, "square");
				assert_int_equal(h.len, strlen(args[got]));
				assert_string_equal(p, args[got]);
				assert_true(h.flags & FP_FRAME_STREAM);
				assert_int_equal(!!(h.flags & FP_FRAME_FLUSH), got == 2);
			} else {
				/* A whole frame again: the name is in its payload. */
				assert_null(r.item_name);
				assert_string_equal(p, "echo");
				assert_int_equal(h.flags, FP_FRAME_FLUSH);
			}
			got++;
		}
	}
	assert_int_equal(got, 4);
	assert_int_equal(fp_frame_reader_eof(&r), 0);
	fp_frame_reader_deinit(&r);
}

/* A RESULTS frame: each item's own flags, the RSS on the last only. */
static void results_frame_comes_out_item_by_item(void **state)
{
	static const char *const values[] = { "49", "\"x\"", "" };
	static const uint32_t flags[] = { 5u << FP_FRAME_US_SHIFT, 0,
					  FP_FRAME_NOVALUE | FP_FRAME_RETIRE };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[512];
	size_t off = 0;
	int i;

	put_results(buf, &off, 7, values, flags, 3, 1234);
	put_frame(buf, &off, FP_FRAME_ERROR, 10, "boom", 4, 2);
	fp_frame_reader_init(&r, 1024);
	/* In two pieces, cut inside the second item. */
	assert_int_equal(fp_frame_reader_feed(&r, buf, 50), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 0);
	assert_int_equal(fp_frame_reader_feed(&r, buf + 50, off - 50), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
		assert_int_equal(h.type, FP_FRAME_RESULT);
		assert_true(h.id == 7u + (unsigned)i);
		assert_int_equal(h.flags, flags[i]);
		assert_int_equal(h.rss_kib, i == 2 ? 1234 : 0);
		assert_string_equal(p, values[i]);
		assert_null(r.item_name);
	}
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_int_equal(h.type, FP_FRAME_ERROR);
	assert_string_equal(p, "boom");
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 0);
	assert_int_equal(fp_frame_reader_eof(&r), 0);
	fp_frame_reader_deinit(&r);
}

/*
 * The master's answer path takes a RESULTS frame's items in runs of at most
 * `max`: each run's values come NUL-terminated by the walk, the run that
 * ends the frame carries its rss_kib, the byte after a run is back for the
 * next one, and what follows the frame comes out as before.
 */
static void results_frame_comes_out_in_runs(void **state)
{
	static const char *const values[] = { "49", "\"x\"", "", "1234567", "5" };
	static const uint32_t flags[] = { 5u << FP_FRAME_US_SHIFT, 0, FP_FRAME_NOVALUE, 0,
					  FP_FRAME_RETIRE };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	struct fp_frame_results_walk k;
	uint32_t count, f, len;
	char *p;
	const char *v;
	char buf[512];
	size_t off = 0;
	int i = 0;

	put_results(buf, &off, 7, values, flags, 5, 1234);
	put_frame(buf, &off, FP_FRAME_ERROR, 12, "boom", 4, 2);
	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, off), 0);
	/* Runs of 2, 2, 1: each walked whole before the next is asked for. */
	for (uint32_t run = 0; run < 3; run++) {
		assert_int_equal(fp_frame_reader_next_run(&r, &h, &p, 2, &count), 1);
		assert_int_equal(h.type, FP_FRAME_RESULTS);
		assert_int_equal(count, run < 2 ? 2 : 1);
		assert_true(h.id == 7u + (unsigned)i);
		assert_int_equal(h.rss_kib, run == 2 ? 1234 : 0);
		fp_frame_results_walk_init(&k, p, count);
		for (uint32_t j = 0; j < count; j++, i++) {
			v = fp_frame_results_walk_next(&k, &f, &len);
			assert_int_equal(f, flags[i]);
			assert_int_equal(len, strlen(values[i]));
			assert_string_equal(v, values[i]);
		}
	}
	assert_int_equal(i, 5);
	/* Asked for one at a time, a frame comes as fp_frame_reader_next() gives it. */
	assert_int_equal(fp_frame_reader_next_run(&r, &h, &p, 1, &count), 1);
	assert_int_equal(count, 1);
	assert_int_equal(h.type, FP_FRAME_ERROR);
	assert_string_equal(p, "boom");
	assert_int_equal(fp_frame_reader_next_run(&r, &h, &p, 2, &count), 0);
	assert_int_equal(fp_frame_reader_eof(&r), 0);
	fp_frame_reader_deinit(&r);
}

/* A run may stop inside a frame and the rest come item by item, and the other way round. */
static void results_runs_and_items_mix(void **state)
{
	static const char *const values[] = { "1", "22", "333", "4444" };
	static const uint32_t flags[] = { 0, 0, 0, 0 };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	struct fp_frame_results_walk k;
	uint32_t count, f, len;
	char *p;
	const char *cp;
	char buf[256];
	size_t off = 0;

	put_results(buf, &off, 1, values, flags, 4, 9);
	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, off), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &cp), 1);
	assert_int_equal(h.type, FP_FRAME_RESULT);
	assert_string_equal(cp, "1");
	assert_int_equal(fp_frame_reader_next_run(&r, &h, &p, 2, &count), 1);
	assert_int_equal(count, 2);
	assert_true(h.id == 2);
	fp_frame_results_walk_init(&k, p, count);
	assert_string_equal(fp_frame_results_walk_next(&k, &f, &len), "22");
	assert_string_equal(fp_frame_results_walk_next(&k, &f, &len), "333");
	assert_int_equal(fp_frame_reader_next(&r, &h, &cp), 1);
	assert_int_equal(h.type, FP_FRAME_RESULT);
	assert_true(h.id == 4);
	assert_int_equal(h.rss_kib, 9);
	assert_string_equal(cp, "4444");
	assert_int_equal(fp_frame_reader_next(&r, &h, &cp), 0);
	fp_frame_reader_deinit(&r);
}

/*
 * A chain (stage fusion): the names come out one after the other and every
 * item has the frame's hop; answers carry theirs too.
 */
static void chain_frames_carry_their_names_and_hop(void **state)
{
	static const char names[] = "square\0pipe.inc\0echo";
	static const char *const args[] = { "1", "22" };
	static const uint32_t flags[] = { 0, FP_FRAME_NOVALUE };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[512];
	size_t off = 0;
	int i;

	put_chain(buf, &off, 5, names, sizeof(names) - 1, 2, args, 2, FP_FRAME_STREAM);
	put_results_hop(buf, &off, 5, args, flags, 2, 0, 1);
	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, off), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
		assert_int_equal(h.type, FP_FRAME_TASK);
		assert_int_equal(h.hop, 2);
		assert_memory_equal(r.item_name, names, sizeof(names));
		assert_string_equal(p, args[i]);
	}
	for (i = 0; i < 2; i++) {
		assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
		assert_int_equal(h.type, FP_FRAME_RESULT);
		assert_int_equal(h.hop, 1);
		assert_int_equal(h.flags, flags[i]);
	}
	assert_int_equal(fp_frame_reader_eof(&r), 0);
	fp_frame_reader_deinit(&r);
}

/* A chain whose names do not match its hop, or past the most hops, is refused whole. */
static void bad_chains_are_refused(void **state)
{
	static const struct {
		const char *names;
		size_t len;
		unsigned hops;
	} cases[] = {
		{ "a\0b", 3, 2 },          /* fewer names than the hop says */
		{ "a\0b\0c", 5, 1 },       /* more */
		{ "a\0b", 3, 0 },          /* a NUL in a plain name */
		{ "a\0\0c", 4, 2 },        /* an empty name */
		{ "\0b", 2, 1 },
		{ "a\0", 2, 1 },
		{ "a", 1, FP_FRAME_HOPS_MAX + 1 },
	};
	static const char *const args[] = { "1" };
	struct fp_frame_header h;
	const char *p;
	char buf[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fp_frame_reader r;
		size_t off = 0;

		put_chain(buf, &off, 1, cases[i].names, cases[i].len, cases[i].hops, args, 1, 0);
		fp_frame_reader_init(&r, 1024);
		assert_int_equal(fp_frame_reader_feed(&r, buf, off), 0);
		if (fp_frame_reader_next(&r, &h, &p) != -EPROTO)
			fail_msg("case %zu was not refused", i);
		fp_frame_reader_deinit(&r);
	}
}

/* More bytes fed between two items of an open packed frame: both still right. */
static void feed_while_a_packed_frame_is_open(void **state)
{
	static const char *const values[] = { "1", "22", "333" };
	static const uint32_t flags[] = { 0, 0, 0 };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;
	char buf[512];
	size_t off = 0, first;

	put_results(buf, &off, 1, values, flags, 3, 0);
	first = off;
	put_frame(buf, &off, FP_FRAME_RESULT, 4, "4444", 4, 0);
	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, first), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_string_equal(p, "1");
	assert_int_equal(fp_frame_reader_feed(&r, buf + first, off - first), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_string_equal(p, "22");
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_string_equal(p, "333");
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 1);
	assert_true(h.id == 4);
	assert_string_equal(p, "4444");
	fp_frame_reader_deinit(&r);
}

/* Feed one packed frame whole: -EPROTO, and not one of its items handed out. */
static void assert_packed_refused(const char *buf, size_t len)
{
	struct fp_frame_reader r;
	struct fp_frame_header h;
	const char *p;

	fp_frame_reader_init(&r, 1024);
	assert_int_equal(fp_frame_reader_feed(&r, buf, len), 0);
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), -EPROTO);
	fp_frame_reader_deinit(&r);
}

/* Set the uint32_t at `at` in a frame's payload. */
static void poke(char *buf, size_t at, uint32_t v)
{
	memcpy(buf + FP_FRAME_HEADER_SIZE + at, &v, sizeof(v));
}

static void packed_frames_with_bad_lengths_are_refused(void **state)
{
	static const char *const args[] = { "1", "22" };
	static const uint32_t flags[] = { 0, 0 };
	const size_t pk = sizeof(struct fp_frame_pack);
	char buf[512];
	size_t off;

	/* An item's length past the frame's end. */
	off = 0;
	put_tasks(buf, &off, 1, "sq", args, 2, 0);
	poke(buf, pk + 2 + 4 + 1, 3);
	assert_packed_refused(buf, off);
	/* Lengths that leave bytes over. */
	off = 0;
	put_tasks(buf, &off, 1, "sq", args, 2, 0);
	poke(buf, pk + 2 + 4 + 1, 1);
	assert_packed_refused(buf, off);
	/* More items than there are bytes for, no items, a huge count. */
	off = 0;
	put_results(buf, &off, 1, args, flags, 2, 0);
	poke(buf, 0, 3);
	assert_packed_refused(buf, off);
	poke(buf, 0, 0);
	assert_packed_refused(buf, off);
	poke(buf, 0, UINT32_MAX);
	assert_packed_refused(buf, off);
	/* A RESULTS frame with a name; a TASKS frame without, or past its end. */
	off = 0;
	put_results(buf, &off, 1, args, flags, 2, 0);
	poke(buf, 4, 1);
	assert_packed_refused(buf, off);
	off = 0;
	put_tasks(buf, &off, 1, "sq", args, 2, 0);
	poke(buf, 4, 0);
	assert_packed_refused(buf, off);
	poke(buf, 4, 1000);
	assert_packed_refused(buf, off);
	/* A name with a NUL in it. */
	off = 0;
	put_tasks(buf, &off, 1, "s", args, 2, 0);
	buf[FP_FRAME_HEADER_SIZE + pk] = '\0';
	assert_packed_refused(buf, off);
	/* Too short for its own head. */
	off = 0;
	put_frame(buf, &off, FP_FRAME_RESULTS, 1, "\1\0\0", 3, 0);
	assert_packed_refused(buf, off);
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
		cmocka_unit_test(tasks_frame_comes_out_item_by_item),
		cmocka_unit_test(results_frame_comes_out_item_by_item),
		cmocka_unit_test(results_frame_comes_out_in_runs),
		cmocka_unit_test(results_runs_and_items_mix),
		cmocka_unit_test(feed_while_a_packed_frame_is_open),
		cmocka_unit_test(chain_frames_carry_their_names_and_hop),
		cmocka_unit_test(bad_chains_are_refused),
		cmocka_unit_test(packed_frames_with_bad_lengths_are_refused),
	};
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
