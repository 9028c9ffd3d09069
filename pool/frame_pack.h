/*
 * Packed frames (frame.h has the per-item ones). Quick items travel many
 * to a frame, since the per-frame work (a 24-byte header made, checked and
 * dispatched per item each way) is the master's largest cost on trivial
 * tasks:
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
 * goes out on its own and ends the pack. The reader (frame_reader.h) checks a packed
 * frame whole, refusing it with -EPROTO if its lengths do not add up exactly,
 * and then hands out its items as if each had come in a TASK or RESULT frame
 * of its own, with ids counting up from the packed frame's: so everything
 * after the reader sees the same frames either way.
 *
 * The results walk at the end reads a run of RESULTS entries in place
 * (fp_frame_reader_next_run(), frame_reader.h).
 */
#ifndef FP_FRAME_PACK_H
#define FP_FRAME_PACK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"

/* What a packed frame's payload starts with. */
struct fp_frame_pack {
	uint32_t n;         /* items, at least 1 */
	uint32_t name_len;  /* TASKS: the task name's bytes that follow; RESULTS: 0 */
};

#define FP_FRAME_TASKS_ENTRY 4u     /* per item: uint32_t args length */
#define FP_FRAME_RESULTS_ENTRY 8u   /* per item: uint32_t flags, uint32_t length */

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

#endif
