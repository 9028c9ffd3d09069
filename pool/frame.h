/*
 * Frames: what the master and a worker say to each other over their
 * socketpair. A frame is a 24-byte header in host byte order (both ends are
 * the same machine and the same binary) followed by `len` payload bytes.
 *
 *   master -> worker   TASK     id = item id; payload = task name, NUL, args;
 *                               flags: FP_FRAME_STREAM for a pipeline stage,
 *                               FP_FRAME_FLUSH on the last of a chunk
 *   worker -> master   READY    worker_init succeeded; payload empty
 *                      INITFAIL worker_init failed; payload = message
 *                      EMIT     id = item id; payload = one output (JSON);
 *                               only for a STREAM task, before its end frame
 *                      RESULT   id = item id; payload = JSON value; ends the item
 *                      ERROR    id = item id; flags low byte = fp_item_status,
 *                               payload = message, and for a task error
 *                               optionally a NUL and its traceback (an exec
 *                               program's, e.g. Python's); ends the item
 *
 * Every TASK is answered by exactly one end frame (RESULT or ERROR), in the
 * order the tasks were sent.
 *
 * Packed frames (TASKS, RESULTS: many items to a frame) are frame_pack.h's,
 * and reassembling frames from a byte stream frame_reader.h's.
 *
 * Outputs. Without FP_FRAME_STREAM (map, apply) the worker gathers a
 * generator's outputs into one JSON array, the RESULT's value. With it (a
 * pipeline stage) each output goes out as an EMIT frame as soon as the task
 * emits it, and the RESULT that ends the item carries one more output, its
 * value, unless it has FP_FRAME_NOVALUE (then its payload is empty): a plain
 * task answers with one RESULT and no EMIT, a generator with n EMITs and a
 * NOVALUE RESULT. An ERROR after EMITs fails the item; the outputs already
 * sent stay sent. Anything that speaks for a worker (such as a shim in front
 * of an external program printing NDJSON lines) sends an EMIT per line and a
 * NOVALUE RESULT at the end.
 *
 * Chains (pipeline stage fusion). A TASKS frame whose `hop` is H > 0 runs
 * each of its items through H + 1 tasks in turn, the value one returns
 * being the next one's args: its name is their H + 1 names, each ended by a
 * NUL but the last (name_len counts them all). The master sends one for a
 * run of consecutive plain stages (pipeline.c says which), so that an item
 * crosses them in one round trip. A worker's EMIT, RESULT and ERROR frames
 * carry in `hop` the place in the chain of the task they come from (0
 * outside chains): the chain ends early at a task that fails or emits, and
 * the master counts the item as ended at that stage. Items of a RESULTS
 * frame have its hop. The shared page's `hop` says which task of its chain
 * the running item is in.
 *
 * The master may stop reading a worker's socket while the stage after its
 * item is full; the worker then blocks in its send until the master reads
 * again. That is the pipeline's back-pressure on a task that emits a lot.
 *
 * RESULT and ERROR carry FP_FRAME_RETIRE when this was the worker's last task
 * (its task budget is spent or its RSS is over the limit): the worker exits
 * right after sending it. They also carry the task's run time (below).
 *
 * To stop a worker the master does not send a frame: it sets `quit` in the
 * worker's shared page (see worker_main.h), which the worker checks before each
 * task, and shuts down its side of the socket so an idle worker wakes up.
 * A worker writes several results in one send when tasks are quick; the
 * shared page, not the frame stream, tells the master which item is running.
 * The master may send a worker its next chunk before the one it runs is
 * answered; the last TASK of each chunk carries FP_FRAME_FLUSH, so that the
 * worker sends what it gathered at the chunk's end rather than waiting for
 * its socket to run dry (the next chunk's items would hold back the answers
 * the master waits for to send more). A worker may ignore it: the master
 * then only learns of the answers later.
 */
#ifndef FP_FRAME_H
#define FP_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FP_FRAME_MAGIC 0x4650u    /* "FP" */
/* A chain's tasks after its first, at most (see "Chains"). */
#define FP_FRAME_HOPS_MAX 15u
#define FP_FRAME_HEADER_SIZE 24u

enum fp_frame_type {
	FP_FRAME_TASK = 1,
	FP_FRAME_READY,
	FP_FRAME_INITFAIL,
	FP_FRAME_RESULT,
	FP_FRAME_ERROR,
	FP_FRAME_EMIT,
	FP_FRAME_TASKS,
	FP_FRAME_RESULTS,
	FP_FRAME_KV,        /* worker -> master: a task's shared-value call (kv_wire.h) */
	FP_FRAME_KV_REPLY,  /* master -> worker: its answer, picked out of the stream */
	FP_FRAME_TYPE_MAX_,
};

#define FP_FRAME_RETIRE 0x100u    /* RESULT/ERROR: last task of this worker */
#define FP_FRAME_STREAM 0x200u    /* TASK: send each output as an EMIT frame */
#define FP_FRAME_NOVALUE 0x400u   /* RESULT of a STREAM task: no value, only the end */
#define FP_FRAME_FLUSH 0x800u     /* TASK: the last of its chunk; send the answers after it */
/*
 * RESULT/ERROR flags, bits 12-31: how long the task ran in µs, as the worker
 * measured it, saturating at FP_FRAME_US_MAX (about a second). The master
 * learns from it which tasks are quick enough to share a chunk.
 */
#define FP_FRAME_US_SHIFT 12
#define FP_FRAME_US_MAX ((1u << 20) - 1)
_Static_assert((FP_FRAME_RETIRE | FP_FRAME_STREAM | FP_FRAME_NOVALUE | FP_FRAME_FLUSH | 0xffu) <
	       (1u << FP_FRAME_US_SHIFT),
	       "run time bits clear of the status byte and the flags");

struct fp_frame_header {
	uint16_t magic;
	uint8_t type;
	uint8_t hop;        /* stage fusion: see "Chains" above */
	uint32_t len;       /* payload bytes */
	uint32_t flags;     /* low byte: fp_item_status for ERROR */
	uint32_t rss_kib;   /* RESULT/ERROR: worker's RSS after the task */
	uint64_t id;
} __attribute__((packed));

_Static_assert(sizeof(struct fp_frame_header) == FP_FRAME_HEADER_SIZE,
	       "frame header layout");

/*
 * Fill a header; `len` is the payload size. Inline: the reader makes one
 * for every item of a packed frame, on both sides.
 */
static inline void fp_frame_header_init(struct fp_frame_header *h, enum fp_frame_type type,
					uint64_t id, uint32_t len, uint32_t flags)
{
	*h = (struct fp_frame_header){
		.magic = FP_FRAME_MAGIC,
		.type = (uint8_t)type,
		.len = len,
		.flags = flags,
		.id = id,
	};
}

/*
 * Check a received header: -EPROTO for a bad magic or type, -EMSGSIZE for a
 * payload over max_payload.
 */
int fp_frame_header_check(const struct fp_frame_header *h, size_t max_payload);

#endif
