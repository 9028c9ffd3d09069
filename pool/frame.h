/*
 * Frames: what the master and a worker say to each other over their
 * socketpair. A frame is a 24-byte header in host byte order (both ends are
 * the same machine and the same binary) followed by `len` payload bytes.
 *
 *   master -> worker   TASK     id = item id; payload = task name, NUL, args
 *   worker -> master   READY    worker_init succeeded; payload empty
 *                      INITFAIL worker_init failed; payload = message
 *                      RESULT   id = item id; payload = JSON value
 *                      ERROR    id = item id; flags low byte = fp_item_status,
 *                               payload = message
 *
 * RESULT and ERROR carry FP_FRAME_RETIRE when this was the worker's last task
 * (its task budget is spent or its RSS is over the limit): the worker exits
 * right after sending it. They also carry the task's run time (below).
 *
 * To stop a worker the master does not send a frame: it sets `quit` in the
 * worker's shared page (see worker.h), which the worker checks before each
 * task, and shuts down its side of the socket so an idle worker wakes up.
 * A worker writes several results in one send when tasks are quick; the
 * shared page, not the frame stream, tells the master which item is running.
 */
#ifndef FP_FRAME_H
#define FP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FP_FRAME_MAGIC 0x4650u    /* "FP" */
#define FP_FRAME_HEADER_SIZE 24u

enum fp_frame_type {
	FP_FRAME_TASK = 1,
	FP_FRAME_READY,
	FP_FRAME_INITFAIL,
	FP_FRAME_RESULT,
	FP_FRAME_ERROR,
	FP_FRAME_TYPE_MAX_,
};

#define FP_FRAME_RETIRE 0x100u    /* in flags: last task of this worker */
/*
 * RESULT/ERROR flags, bits 12-31: how long the task ran in µs, as the worker
 * measured it, saturating at FP_FRAME_US_MAX (about a second). The master
 * learns from it which tasks are quick enough to share a chunk.
 */
#define FP_FRAME_US_SHIFT 12
#define FP_FRAME_US_MAX ((1u << 20) - 1)
_Static_assert((FP_FRAME_RETIRE | 0xffu) < (1u << FP_FRAME_US_SHIFT),
	       "run time bits clear of the status byte and RETIRE");

struct fp_frame_header {
	uint16_t magic;
	uint8_t type;
	uint8_t reserved;
	uint32_t len;       /* payload bytes */
	uint32_t flags;     /* low byte: fp_item_status for ERROR */
	uint32_t rss_kib;   /* RESULT/ERROR: worker's RSS after the task */
	uint64_t id;
} __attribute__((packed));

_Static_assert(sizeof(struct fp_frame_header) == FP_FRAME_HEADER_SIZE,
	       "frame header layout");

/* Fill a header; `len` is the payload size. */
void fp_frame_header_init(struct fp_frame_header *h, enum fp_frame_type type,
			  uint64_t id, uint32_t len, uint32_t flags);

/*
 * Check a received header: -EPROTO for a bad magic or type, -EMSGSIZE for a
 * payload over max_payload.
 */
int fp_frame_header_check(const struct fp_frame_header *h, size_t max_payload);

/*
 * Reassembles frames from a byte stream. Payloads are NUL-terminated in the
 * reader's buffer (the NUL is not counted) and stay valid until the next
 * call to fp_frame_reader_feed() or _next().
 */
struct fp_frame_reader {
	char *buf;
	size_t len;          /* bytes held */
	size_t cap;
	size_t pos;          /* start of the first unconsumed frame */
	size_t max_payload;
	size_t saved_at;     /* where the terminating NUL of the last payload went */
	unsigned char saved; /* the byte it replaced */
	unsigned char has_saved;
};

void fp_frame_reader_init(struct fp_frame_reader *r, size_t max_payload);
void fp_frame_reader_deinit(struct fp_frame_reader *r);
/* Append received bytes; -ENOMEM. */
int fp_frame_reader_feed(struct fp_frame_reader *r, const void *data, size_t n);
/*
 * The next whole frame: 1 with *h and *payload set, 0 when more bytes are
 * needed, or -EPROTO / -EMSGSIZE for a bad header (the stream is then dead).
 */
int fp_frame_reader_next(struct fp_frame_reader *r, struct fp_frame_header *h,
			 const char **payload);
/* At end of stream: 0 if it ended between frames, -EPROTO if inside one. */
int fp_frame_reader_eof(const struct fp_frame_reader *r);

#endif
