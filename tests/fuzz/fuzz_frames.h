/*
 * The frame reader (pool/frame.c) over a fuzzed byte stream, for the two
 * targets of the worker protocol: what a worker sends the master and what
 * the master sends a worker. The bytes arrive in the pieces fuzz_cuts()
 * chooses, and every frame the reader hands out is checked against what
 * frame.h promises, then given to the side's own check.
 */
#ifndef FP_FUZZ_FRAMES_H
#define FP_FUZZ_FRAMES_H

#include <errno.h>
#include <string.h>

#include "frame_reader.h"
#include "fuzz_util.h"

/* The side's look at one frame; nonzero: that side stops reading (it would kill or exit). */
typedef int (*fuzz_frame_fn)(const struct fp_frame_reader *r,
			     const struct fp_frame_header *h, const char *payload);

static inline void fuzz_frames_read(const uint8_t *data, size_t size, size_t max_payload,
				    fuzz_frame_fn fn)
{
	struct fp_frame_reader r;
	struct fp_frame_header h;
	struct fuzz_cuts cuts;
	const char *payload;
	size_t n, at = 0;
	uint64_t next_id = 0;
	int rc = 0, in_pack = 0;
	/* Every payload byte is read, so that the sanitizer sees each one. */
	volatile unsigned sum = 0;

	fp_frame_reader_init(&r, max_payload);
	fuzz_cuts_init(&cuts, data, size);
	while (rc >= 0 && (n = fuzz_cuts_next(&cuts)) > 0) {
		FUZZ_CHECK(fp_frame_reader_feed(&r, data + at, n) == 0);
		at += n;
		while ((rc = fp_frame_reader_next(&r, &h, &payload)) == 1) {
			FUZZ_CHECK(h.magic == FP_FRAME_MAGIC);
			FUZZ_CHECK(h.type > 0 && h.type < FP_FRAME_TYPE_MAX_);
			/* A packed frame comes out as its items, never whole. */
			FUZZ_CHECK(h.type != FP_FRAME_TASKS && h.type != FP_FRAME_RESULTS);
			FUZZ_CHECK(h.hop <= FP_FRAME_HOPS_MAX);
			FUZZ_CHECK(h.len <= max_payload);
			/* The payload is whole and NUL-terminated in place. */
			FUZZ_CHECK(payload[h.len] == '\0');
			for (size_t i = 0; i < h.len; i++)
				sum += (unsigned char)payload[i];
			/* A packed frame's items count up from its id. */
			if (in_pack)
				FUZZ_CHECK(h.id == next_id);
			in_pack = r.pack_type != 0;
			next_id = h.id + 1;
			if (fn(&r, &h, payload))
				rc = -EPROTO;
			if (rc < 0)
				break;
		}
	}
	/* A stream that ends inside a frame is refused; one between frames is not. */
	if (rc == 0)
		FUZZ_CHECK(fp_frame_reader_eof(&r) == (r.len == r.pos ? 0 : -EPROTO));
	else
		FUZZ_CHECK(rc == -EPROTO || rc == -EMSGSIZE);
	fp_frame_reader_deinit(&r);
	(void)sum;
}

#endif
