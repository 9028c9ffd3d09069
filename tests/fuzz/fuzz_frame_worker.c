/*
 * fuzz-frame-worker: what the master sends a worker, through the worker's
 * frame reader (pool/frame.c), each frame looked at as fp_worker_main()
 * (pool/worker.c) does: only TASK frames (one, or a TASKS frame's items), a
 * chain only from a TASKS frame, and the task names found as its
 * item_tasks_of() finds them: a TASKS frame's hop + 1 names one after the
 * other in the reader's name, or a lone TASK's name before a NUL in its
 * payload.
 */
#include <string.h>

#include "fuzz_frames.h"

/*
 * The pool's max_payload is 64 MiB, and the reader makes room for a frame
 * as soon as its header is in: with ASan that is a millisecond for each
 * input whose header claims a large payload. The limit's only part in the
 * reader is the -EMSGSIZE check, as well tried with 64 KiB.
 */
#define MAX_PAYLOAD (64u << 10)

static int worker_frame(const struct fp_frame_reader *r, const struct fp_frame_header *h,
			const char *payload)
{
	const char *name;
	size_t len;

	if (h->type != FP_FRAME_TASK || (h->hop && !r->item_name))
		return 1;
	if (r->item_name) {
		/* The names the worker walks with strlen() are all inside the reader's. */
		FUZZ_CHECK(r->item_name == r->name);
		name = r->item_name;
		for (unsigned k = 0; k <= h->hop; k++) {
			len = strnlen(name, r->name_cap - (size_t)(name - r->name));
			FUZZ_CHECK(len > 0);
			FUZZ_CHECK(name + len < r->name + r->name_cap);
			name += len + 1;
		}
		return 0;
	}
	/* A lone TASK: its name, a NUL, its args; without the NUL the item fails. */
	len = strnlen(payload, h->len);
	FUZZ_CHECK(len <= h->len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_frames_read(data, size, MAX_PAYLOAD, worker_frame);
	return 0;
}
