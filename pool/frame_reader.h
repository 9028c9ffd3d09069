/*
 * Frames from a byte stream: the reader that reassembles them, and hands
 * a packed frame's items out one by one or in runs (frame_reader.c).
 */
#ifndef FP_FRAME_READER_H
#define FP_FRAME_READER_H

#include <stddef.h>
#include <stdint.h>

#include "frame_pack.h"

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

/* At end of stream: 0 if it ended between frames, -EPROTO if inside one. */
int fp_frame_reader_eof(const struct fp_frame_reader *r);

#endif
