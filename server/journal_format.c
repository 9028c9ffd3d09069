/*
 * The journal's file header, record framing and payload fields
 * (journal_format.h has the layout and why).
 */
#include <errno.h>
#include <string.h>

#include "journal_crc.h"
#include "journal_format.h"

static void put32(unsigned char *d, uint32_t v)
{
	d[0] = (unsigned char)v;
	d[1] = (unsigned char)(v >> 8);
	d[2] = (unsigned char)(v >> 16);
	d[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *s)
{
	return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
	       (uint32_t)s[3] << 24;
}

static uint16_t get16(const unsigned char *s)
{
	return (uint16_t)(s[0] | s[1] << 8);
}

/* --- file header --------------------------------------------------------- */

void fp_journal_header_put(unsigned char out[FP_JOURNAL_HDR_LEN], uint32_t salt)
{
	memcpy(out, FP_JOURNAL_MAGIC, 8);
	put32(out + 8, FP_JOURNAL_VERSION);
	put32(out + 12, salt);
	put32(out + 16, 0);
	put32(out + 20, fp_crc32c(0, out, 20));
}

int fp_journal_header_check(const void *p, size_t n, uint32_t *version,
			    uint32_t *salt)
{
	const unsigned char *s = p;

	if (n < FP_JOURNAL_HDR_LEN)
		return -ENODATA;
	if (memcmp(s, FP_JOURNAL_MAGIC, 8) != 0 ||
	    get32(s + 20) != fp_crc32c(0, s, 20))
		return -EBADMSG;
	*version = get32(s + 8);
	*salt = get32(s + 12);
	return *version == FP_JOURNAL_VERSION ? 0 : -ENOTSUP;
}

/* --- records ------------------------------------------------------------- */

int fp_jrec_parse(const void *p, size_t avail, uint32_t salt,
		  struct fp_jrec *out)
{
	const unsigned char *s = p;
	uint32_t len;

	if (avail < FP_JREC_HDR_LEN)
		return -ENODATA;
	len = get32(s);
	if (get32(s + 12) != fp_crc32c(salt, s, 12) || get16(s + 6) != 0 ||
	    len > FP_JREC_MAX)
		return -EBADMSG;
	out->type = get16(s + 4);
	out->len = len;
	out->payload = s + FP_JREC_HDR_LEN;
	out->size = FP_JREC_HDR_LEN + (size_t)len;
	if (avail - FP_JREC_HDR_LEN < len)
		return -EMSGSIZE;
	if (get32(s + 8) != fp_crc32c(salt, out->payload, len))
		return -EILSEQ;
	return 0;
}

size_t fp_jrec_begin(struct sbuf *b)
{
	size_t start = b->len;

	/* Zeroes for now; end writes the header over them. */
	if (sbuf_reserve(b, FP_JREC_HDR_LEN)) {
		memset(b->data + b->len, 0, FP_JREC_HDR_LEN);
		sbuf_commit(b, FP_JREC_HDR_LEN);
	}
	return start;
}

void fp_jrec_put_u8(struct sbuf *b, uint8_t v)
{
	sbuf_add(b, (const char *)&v, 1);
}

void fp_jrec_put_u32(struct sbuf *b, uint32_t v)
{
	unsigned char d[4];

	put32(d, v);
	sbuf_add(b, (const char *)d, 4);
}

void fp_jrec_put_u64(struct sbuf *b, uint64_t v)
{
	unsigned char d[8];

	put32(d, (uint32_t)v);
	put32(d + 4, (uint32_t)(v >> 32));
	sbuf_add(b, (const char *)d, 8);
}

void fp_jrec_put_bytes(struct sbuf *b, const void *p, size_t n)
{
	/* A length that does not fit a u32 is caught by end's size check. */
	fp_jrec_put_u32(b, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
	if (n)
		sbuf_add(b, p, n);
}

int fp_jrec_end(struct sbuf *b, size_t start, uint16_t type, uint32_t salt)
{
	unsigned char *h;
	size_t len;

	if (b->oom || b->len < start + FP_JREC_HDR_LEN) {
		/* What came before the record is intact: keep it usable. */
		b->len = start < b->len ? start : b->len;
		b->oom = false;
		return -ENOMEM;
	}
	len = b->len - start - FP_JREC_HDR_LEN;
	if (len > FP_JREC_MAX) {
		b->len = start;
		return -E2BIG;
	}
	h = (unsigned char *)b->data + start;
	put32(h, (uint32_t)len);
	h[4] = (unsigned char)type;
	h[5] = (unsigned char)(type >> 8);
	h[6] = h[7] = 0;
	put32(h + 8, fp_crc32c(salt, h + FP_JREC_HDR_LEN, len));
	put32(h + 12, fp_crc32c(salt, h, 12));
	return 0;
}

/* --- payload fields ------------------------------------------------------ */

static const unsigned char *take(struct fp_jcur *c, size_t n)
{
	const unsigned char *s = c->p;

	if (c->err || (size_t)(c->end - c->p) < n) {
		c->err = -EBADMSG;
		return NULL;
	}
	c->p += n;
	return s;
}

uint8_t fp_jcur_u8(struct fp_jcur *c)
{
	const unsigned char *s = take(c, 1);

	return s ? s[0] : 0;
}

uint32_t fp_jcur_u32(struct fp_jcur *c)
{
	const unsigned char *s = take(c, 4);

	return s ? get32(s) : 0;
}

uint64_t fp_jcur_u64(struct fp_jcur *c)
{
	const unsigned char *s = take(c, 8);

	return s ? get32(s) | (uint64_t)get32(s + 4) << 32 : 0;
}

uint64_t fp_jcur_var64(struct fp_jcur *c)
{
	uint64_t v = 0;

	for (unsigned shift = 0; !c->err; shift += 7) {
		unsigned b;

		if (c->p == c->end || shift > 63) {
			c->err = -EBADMSG;
			break;
		}
		b = *c->p++;
		/* The tenth byte has room for one bit only. */
		if (shift == 63 && b > 1) {
			c->err = -EBADMSG;
			break;
		}
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	return 0;
}

uint32_t fp_jcur_var(struct fp_jcur *c)
{
	uint64_t v = fp_jcur_var64(c);

	if (v > UINT32_MAX) {
		c->err = -EBADMSG;
		return 0;
	}
	return (uint32_t)v;
}

const void *fp_jcur_bytes(struct fp_jcur *c, size_t *n)
{
	uint32_t len = fp_jcur_u32(c);
	const unsigned char *s = c->err ? NULL : take(c, len);

	*n = s ? len : 0;
	return s;
}

int fp_jcur_done(const struct fp_jcur *c)
{
	return c->err || c->p != c->end ? -EBADMSG : 0;
}
