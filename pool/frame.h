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
 * Packed frames. Quick items travel many to a frame, since the per-frame
 * work (a 24-byte header made, checked and dispatched per item each way) is
 * the master's largest cost on trivial tasks:
 *
 *   master -> worker   TASKS    id = first item's id; flags as a TASK's, FLUSH
 *                               meaning its last item ends the chunk; payload
 *                               = struct fp_frame_pack, the task name once
 *                               (name_len bytes, no NUL), then per item a
 *                               uint32_t args length and the args
 *   worker -> master   RESULTS  id = first item's id; rss_kib as a RESULT's;
 *                               payload = struct fp_frame_pack (name_len 0),
 *                               then per item a uint32_t flags (a RESULT's:
 *                               NOVALUE, RETIRE, run time bits), a uint32_t
 *                               length and the JSON value
 *
 * A TASKS frame covers one segment of a chunk (consecutive items of one
 * call); the master sends per-item TASK frames where it does not pack (one
 * item, args too big to copy, an exec pool: its shim speaks per-item frames).
 * A worker packs consecutive RESULTs it sends together; an EMIT or ERROR
 * goes out on its own and ends the pack. The reader (below) checks a packed
 * frame whole, refusing it with -EPROTO if its lengths do not add up exactly,
 * and then hands out its items as if each had come in a TASK or RESULT frame
 * of its own, with ids counting up from the packed frame's: so everything
 * after the reader sees the same frames either way.
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

/* What a packed frame's payload starts with. */
struct fp_frame_pack {
	uint32_t n;         /* items, at least 1 */
	uint32_t name_len;  /* TASKS: the task name's bytes that follow; RESULTS: 0 */
};

#define FP_FRAME_TASKS_ENTRY 4u     /* per item: uint32_t args length */
#define FP_FRAME_RESULTS_ENTRY 8u   /* per item: uint32_t flags, uint32_t length */

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

/*
 * Writing packed frames. The payload's size: a TASKS frame of n items of
 * args_total bytes in all, a RESULTS frame of n values of value_total bytes.
 */
static inline size_t fp_frame_tasks_len(uint32_t n, size_t name_len, size_t args_total)
{
	return sizeof(struct fp_frame_pack) + name_len + (size_t)n * FP_FRAME_TASKS_ENTRY +
	       args_total;
}

static inline size_t fp_frame_results_len(uint32_t n, size_t value_total)
{
	return sizeof(struct fp_frame_pack) + (size_t)n * FP_FRAME_RESULTS_ENTRY + value_total;
}

/*
 * Header and fp_frame_pack of a TASKS frame; returns where the first item
 * goes. `hops` > 0: a chain, `name` being its hops + 1 NUL-separated names.
 */
char *fp_frame_put_tasks(char *dst, uint64_t id0, uint32_t n, const char *name,
			 uint32_t name_len, uint32_t len, uint32_t flags, unsigned hops);
/* One item of a TASKS frame; returns where the next goes. */
char *fp_frame_put_tasks_item(char *dst, const void *args, uint32_t args_len);
/* Header and fp_frame_pack of a RESULTS frame (its items' hop); returns where the first item goes. */
char *fp_frame_put_results(char *dst, uint64_t id0, uint32_t n, uint32_t len,
			   uint32_t rss_kib, unsigned hop);
/* One item of a RESULTS frame; returns where the next goes. */
char *fp_frame_put_results_item(char *dst, uint32_t flags, const void *value, uint32_t len);

/*
 * Reassembles frames from a byte stream. Payloads are NUL-terminated in the
 * reader's buffer (the NUL is not counted) and stay valid until the next
 * call to fp_frame_reader_feed() or _next().
 *
 * A packed frame comes out item by item: a TASKS frame's as TASK frames
 * whose payload is the args alone, `item_name` then being the task name
 * (NUL-terminated, valid until the next call to _next(); a chain's hop + 1
 * names one after the other); a RESULTS frame's as RESULT frames, the
 * packed frame's rss_kib on its last. Each has the packed frame's hop. `item_name` is
 * NULL for a frame that came whole, whose payload is the name, NUL, args.
 */
struct fp_frame_reader {
	const char *item_name;
	char *name;          /* the open TASKS frame's task name */
	size_t name_cap;
	uint32_t pack_type;  /* 0, or FP_FRAME_TASKS / _RESULTS while one is open */
	uint32_t pack_left;  /* its items not yet handed out, from pos on */
	uint32_t pack_flags;
	uint32_t pack_rss;
	uint8_t pack_hop;
	uint64_t pack_id;    /* the id of its next item */
	uint64_t pack_seq;   /* TASKS frames opened so far: a new one, a new name */
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
/*
 * The same, but up to `max` items of a RESULTS frame come at once when
 * `max` >= 2 (the master's answer path: one pass over a run of answers
 * instead of a frame each): *h is then a RESULTS header whose id is the
 * first item's, len the bytes of their entries (as in the frame: flags,
 * length, value; walk them with struct fp_frame_results_walk), hop the
 * frame's, rss_kib the frame's when the run ends it; *count (may be NULL
 * when max < 2) the items handed out: 1 for any other frame. The payload is
 * the reader's buffer, which the walk writes NULs into.
 */
int fp_frame_reader_next_run(struct fp_frame_reader *r, struct fp_frame_header *h,
			     char **payload, uint32_t max, uint32_t *count);

/*
 * A walk over a run of RESULTS entries: each value comes NUL-terminated in
 * place. The NUL goes over the first byte of the entry after it, so the
 * walk reads each entry's header before it terminates the value before.
 */
struct fp_frame_results_walk {
	char *at;           /* the next entry's value */
	uint32_t left;      /* entries not handed out */
	uint32_t flags, len;   /* the next entry's */
};

static inline void fp_frame_results_walk_init(struct fp_frame_results_walk *k, char *payload,
					      uint32_t n)
{
	k->at = payload + FP_FRAME_RESULTS_ENTRY;
	k->left = n;
	k->flags = k->len = 0;
	if (n) {
		memcpy(&k->flags, payload, sizeof(k->flags));
		memcpy(&k->len, payload + sizeof(k->flags), sizeof(k->len));
	}
}

/* The next value (NUL-terminated), its flags and length; only while k->left. */
static inline const char *fp_frame_results_walk_next(struct fp_frame_results_walk *k,
						     uint32_t *flags, uint32_t *len)
{
	char *v = k->at;

	*flags = k->flags;
	*len = k->len;
	k->at = v + k->len + FP_FRAME_RESULTS_ENTRY;
	if (--k->left) {
		memcpy(&k->flags, v + *len, sizeof(k->flags));
		memcpy(&k->len, v + *len + sizeof(k->flags), sizeof(k->len));
	}
	v[*len] = '\0';
	return v;
}

/* At end of stream: 0 if it ended between frames, -EPROTO if inside one. */
int fp_frame_reader_eof(const struct fp_frame_reader *r);

#endif
