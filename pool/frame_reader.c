/*
 * The reassembly of frames from a byte stream (frame_reader.h): bytes fed
 * in, whole frames out, packed frames checked whole and handed out by item
 * or by run.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "frame_reader.h"

void fp_frame_reader_init(struct fp_frame_reader *r, size_t max_payload)
{
	memset(r, 0, sizeof(*r));
	r->max_payload = max_payload;
}

void fp_frame_reader_deinit(struct fp_frame_reader *r)
{
	free(r->buf);
	free(r->name);
	memset(r, 0, sizeof(*r));
}

static int reader_reserve(struct fp_frame_reader *r, size_t need)
{
	size_t cap;
	char *buf;

	if (need <= r->cap)
		return 0;
	cap = r->cap ? r->cap : 4096;
	while (cap < need)
		cap *= 2;
	buf = realloc(r->buf, cap);
	if (!buf)
		return -ENOMEM;
	r->buf = buf;
	r->cap = cap;
	return 0;
}

static void reader_restore(struct fp_frame_reader *r)
{
	if (r->has_saved) {
		r->buf[r->saved_at] = (char)r->saved;
		r->has_saved = 0;
	}
}

int fp_frame_reader_feed(struct fp_frame_reader *r, const void *data, size_t n)
{
	int err;

	reader_restore(r);
	/*
	 * Drop consumed frames first, so the buffer only ever holds one
	 * partial frame plus what just arrived.
	 */
	if (r->pos) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
	/* +1 keeps room for the NUL that terminates a payload in place. */
	err = reader_reserve(r, r->len + n + 1);
	if (err)
		return err;
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	return 0;
}

/*
 * Whether a TASKS frame's name is hops + 1 names, none empty, with a NUL
 * between each two and none elsewhere.
 */
static bool chain_names_ok(const char *name, size_t len, unsigned hops)
{
	unsigned nuls = 0;

	if (!len || name[0] == '\0' || name[len - 1] == '\0')
		return false;
	for (size_t i = 1; i < len; i++) {
		if (name[i] != '\0')
			continue;
		if (name[i - 1] == '\0')
			return false;
		nuls++;
	}
	return nuls == hops;
}

/*
 * Check a whole packed frame: its items' lengths must add up to its payload
 * exactly, so that no item is handed out of a frame that turns out bad.
 */
static int pack_check(const struct fp_frame_header *h, const char *payload,
		      struct fp_frame_pack *k)
{
	size_t entry = h->type == FP_FRAME_TASKS ? FP_FRAME_TASKS_ENTRY : FP_FRAME_RESULTS_ENTRY;
	size_t left = h->len, at;
	uint32_t i, len;

	if (left < sizeof(*k))
		return -EPROTO;
	memcpy(k, payload, sizeof(*k));
	left -= sizeof(*k);
	if (k->n == 0 || k->name_len > left ||
	    (h->type == FP_FRAME_TASKS) != (k->name_len > 0) ||
	    (h->type == FP_FRAME_TASKS && !chain_names_ok(payload + sizeof(*k), k->name_len, h->hop)))
		return -EPROTO;
	left -= k->name_len;
	at = sizeof(*k) + k->name_len;
	for (i = 0; i < k->n; i++) {
		if (left < entry)
			return -EPROTO;
		memcpy(&len, payload + at + entry - sizeof(len), sizeof(len));
		left -= entry;
		if (len > left)
			return -EPROTO;
		left -= len;
		at += entry + len;
	}
	return left == 0 ? 0 : -EPROTO;
}

/* Open a packed frame at pos (whole in the buffer): its items come next. */
static int pack_open(struct fp_frame_reader *r, const struct fp_frame_header *h)
{
	const char *payload = r->buf + r->pos + FP_FRAME_HEADER_SIZE;
	struct fp_frame_pack k;
	int err;

	err = pack_check(h, payload, &k);
	if (err)
		return err;
	if (h->type == FP_FRAME_TASKS) {
		if (k.name_len + 1 > r->name_cap) {
			char *name = realloc(r->name, k.name_len + 1);
			if (!name)
				return -ENOMEM;
			r->name = name;
			r->name_cap = k.name_len + 1;
		}
		memcpy(r->name, payload + sizeof(k), k.name_len);
		r->name[k.name_len] = '\0';
		r->pack_seq++;
	}
	r->pack_type = h->type;
	r->pack_left = k.n;
	r->pack_flags = h->flags;
	r->pack_rss = h->rss_kib;
	r->pack_hop = h->hop;
	r->pack_id = h->id;
	r->pos += FP_FRAME_HEADER_SIZE + sizeof(k) + k.name_len;
	return 0;
}

/* The open packed frame's next item, as a frame of its own. */
static void pack_next(struct fp_frame_reader *r, struct fp_frame_header *h)
{
	uint32_t flags = 0, len;
	int last = --r->pack_left == 0;

	if (r->pack_type == FP_FRAME_TASKS) {
		memcpy(&len, r->buf + r->pos, sizeof(len));
		r->pos += FP_FRAME_TASKS_ENTRY;
		flags = r->pack_flags & (FP_FRAME_STREAM | (last ? FP_FRAME_FLUSH : 0));
		fp_frame_header_init(h, FP_FRAME_TASK, r->pack_id++, len, flags);
		r->item_name = r->name;
	} else {
		memcpy(&flags, r->buf + r->pos, sizeof(flags));
		memcpy(&len, r->buf + r->pos + sizeof(flags), sizeof(len));
		r->pos += FP_FRAME_RESULTS_ENTRY;
		fp_frame_header_init(h, FP_FRAME_RESULT, r->pack_id++, len, flags);
		h->rss_kib = last ? r->pack_rss : 0;
	}
	h->hop = r->pack_hop;
	if (last)
		r->pack_type = 0;
}

/*
 * Up to `max` (>= 2) items of the open RESULTS frame at once, from pos on:
 * their entries stay as they are in the frame, the caller walks them
 * (fp_frame_results_walk()); the byte after the last is kept aside like a
 * payload's NUL.
 */
static void pack_run(struct fp_frame_reader *r, struct fp_frame_header *h, uint32_t max,
		     uint32_t *count)
{
	uint32_t n = r->pack_left < max ? r->pack_left : max, len;
	size_t at = r->pos;

	/* pack_check() found every length in bounds. */
	for (uint32_t i = 0; i < n; i++) {
		memcpy(&len, r->buf + at + sizeof(uint32_t), sizeof(len));
		at += FP_FRAME_RESULTS_ENTRY + len;
	}
	fp_frame_header_init(h, FP_FRAME_RESULTS, r->pack_id, (uint32_t)(at - r->pos), 0);
	h->hop = r->pack_hop;
	r->pack_id += n;
	r->pack_left -= n;
	h->rss_kib = r->pack_left ? 0 : r->pack_rss;
	if (!r->pack_left)
		r->pack_type = 0;
	*count = n;
}

int fp_frame_reader_next(struct fp_frame_reader *r, struct fp_frame_header *h,
			 const char **payload)
{
	char *p;
	int rc = fp_frame_reader_next_run(r, h, &p, 1, NULL);

	*payload = p;
	return rc;
}

int fp_frame_reader_next_run(struct fp_frame_reader *r, struct fp_frame_header *h,
			     char **payload, uint32_t max, uint32_t *count)
{
	size_t avail = r->len - r->pos;
	size_t total;
	char *p;
	int err;

	reader_restore(r);
	r->item_name = NULL;
	/* An open packed frame was checked whole: its items are all here. */
	if (!r->pack_type) {
		if (avail < FP_FRAME_HEADER_SIZE)
			return 0;
		memcpy(h, r->buf + r->pos, FP_FRAME_HEADER_SIZE);
		err = fp_frame_header_check(h, r->max_payload);
		if (err)
			return err;
		total = FP_FRAME_HEADER_SIZE + (size_t)h->len;
		if (avail < total) {
			/*
			 * Grow to the whole frame now: one allocation for a 64 MiB
			 * payload instead of a doubling series as it trickles in.
			 */
			err = reader_reserve(r, r->pos + total + 1);
			return err ? err : 0;
		}
		if (h->type != FP_FRAME_TASKS && h->type != FP_FRAME_RESULTS) {
			p = r->buf + r->pos + FP_FRAME_HEADER_SIZE;
			r->pos += total;
			goto out;
		}
		err = pack_open(r, h);
		if (err)
			return err;
	}
	p = r->buf + r->pos;
	if (max >= 2 && r->pack_type == FP_FRAME_RESULTS) {
		pack_run(r, h, max, count);
		r->pos += h->len;
		/* The entries stay as sent: the caller terminates the values it walks. */
		r->saved = (unsigned char)r->buf[r->pos];
		r->saved_at = r->pos;
		r->has_saved = 1;
		*payload = p;
		return 1;
	}
	pack_next(r, h);
	p = r->buf + r->pos;
	r->pos += h->len;
out:
	if (count)
		*count = 1;
	/*
	 * Terminate the payload in place. The byte after it may be the next
	 * frame's first: keep it aside and put it back on the next call.
	 */
	r->saved = (unsigned char)r->buf[r->pos];
	r->saved_at = r->pos;
	r->has_saved = 1;
	p[h->len] = '\0';
	*payload = p;
	return 1;
}

int fp_frame_reader_eof(const struct fp_frame_reader *r)
{
	return r->len == r->pos ? 0 : -EPROTO;
}
