/* Frame headers and the reassembly of frames from a byte stream. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

void fp_frame_header_init(struct fp_frame_header *h, enum fp_frame_type type,
			  uint64_t id, uint32_t len, uint32_t flags)
{
	memset(h, 0, sizeof(*h));
	h->magic = FP_FRAME_MAGIC;
	h->type = (uint8_t)type;
	h->len = len;
	h->flags = flags;
	h->id = id;
}

int fp_frame_header_check(const struct fp_frame_header *h, size_t max_payload)
{
	if (h->magic != FP_FRAME_MAGIC || h->type == 0 || h->type >= FP_FRAME_TYPE_MAX_)
		return -EPROTO;
	if (h->len > max_payload)
		return -EMSGSIZE;
	return 0;
}

void fp_frame_reader_init(struct fp_frame_reader *r, size_t max_payload)
{
	memset(r, 0, sizeof(*r));
	r->max_payload = max_payload;
}

void fp_frame_reader_deinit(struct fp_frame_reader *r)
{
	free(r->buf);
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

int fp_frame_reader_next(struct fp_frame_reader *r, struct fp_frame_header *h,
			 const char **payload)
{
	size_t avail = r->len - r->pos;
	size_t total;
	char *p;
	int err;

	reader_restore(r);
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
	p = r->buf + r->pos + FP_FRAME_HEADER_SIZE;
	r->pos += total;
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
