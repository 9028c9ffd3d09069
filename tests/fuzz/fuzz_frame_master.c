/*
 * fuzz-frame-master: what a worker sends the master. A worker runs any
 * module's code and an exec pool's worker speaks for any program, so its
 * bytes are outside input to the master: they go through the master's frame
 * reader (pool/frame.c), and each frame is looked at as the master's
 * handle_frame() (pool/dispatch.c) does before it consults its own state:
 * READY, INITFAIL, RESULT (one, or a RESULTS frame's items), ERROR and EMIT
 * are a worker's; anything else breaks the protocol.
 */
#include <stdio.h>

#include "fuzz_frames.h"

/*
 * The pool's max_payload is 64 MiB, and the reader makes room for a frame
 * as soon as its header is in: with ASan that is a millisecond for each
 * input whose header claims a large payload. The limit's only part in the
 * reader is the -EMSGSIZE check, as well tried with 64 KiB.
 */
#define MAX_PAYLOAD (64u << 10)

static int master_frame(const struct fp_frame_reader *r, const struct fp_frame_header *h,
			const char *payload)
{
	char initfail[256];

	switch (h->type) {
	case FP_FRAME_READY:
		return 0;
	case FP_FRAME_INITFAIL:
		/* As the master keeps the message. */
		snprintf(initfail, sizeof(initfail), "%.*s", (int)h->len, payload);
		return 0;
	case FP_FRAME_RESULT:
	case FP_FRAME_ERROR:
	case FP_FRAME_EMIT:
		FUZZ_CHECK(r->item_name == NULL);
		return 0;
	default:
		return 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_frames_read(data, size, MAX_PAYLOAD, master_frame);
	return 0;
}
