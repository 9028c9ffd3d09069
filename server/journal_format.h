/*
 * The journal's bytes on disk, and nothing about what the records mean
 * (journal_jobs.c) or how they are written (journal.c) and read back
 * (journal_read.c).
 *
 * A journal file is a header and then records, back to back:
 *
 *   header   "FPJOURNL"  u32 version  u32 salt  u32 0
 *            u32 crc32c(the 20 bytes before)
 *   record   u32 len  u16 type  u16 flags(0)  u32 crc32c(salt; payload)
 *            u32 crc32c(salt; the 12 bytes before)  payload[len]
 *
 * All integers little-endian. A record's checksums start from the file's
 * salt, a random number drawn when the file is made, instead of 0: a
 * payload holds bytes that clients sent (items), and without the salt a
 * client could send bytes that read as a valid record, which the search
 * for the next record after damage (journal_read.h) would then take for
 * one. The salt is never shown outside the file. The record header has a checksum of its own
 * so that a reader can tell a damaged length (no way to find the next
 * record but a search) from a damaged payload (the next record is right
 * after it), and so that the search in recovery tests 12 bytes, not a
 * whole claimed payload, at each offset.
 *
 * A payload is a sequence of fields written and read in the same order:
 * u8, u32, u64 and byte strings (u32 length, then the bytes). A reader's
 * cursor stops at the first field that would run past the end and says
 * so, so a short or wrong payload is an error, never a read out of bounds.
 */
#ifndef FP_SERVER_JOURNAL_FORMAT_H
#define FP_SERVER_JOURNAL_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

#define FP_JOURNAL_MAGIC "FPJOURNL"

enum {
	FP_JOURNAL_VERSION = 1,
	FP_JOURNAL_HDR_LEN = 24,
	FP_JREC_HDR_LEN = 16,
	/* A payload larger than this is refused when written and, when a
	 * header claims it, taken for damage when read. */
	FP_JREC_MAX = 1u << 30,
};

/* The file header for FP_JOURNAL_VERSION with this salt. */
void fp_journal_header_put(unsigned char out[FP_JOURNAL_HDR_LEN], uint32_t salt);

/*
 * Check a file header: 0 with *version and *salt, or -EBADMSG (not a
 * journal: the magic or the checksum is wrong), -ENOTSUP (a version this
 * build does not read; *version says which), -ENODATA (shorter than a
 * header).
 */
int fp_journal_header_check(const void *p, size_t n, uint32_t *version,
			    uint32_t *salt);

/* One record as read: the payload points into the caller's bytes. */
struct fp_jrec {
	uint16_t type;
	uint32_t len;
	const unsigned char *payload;
	size_t size;                    /* header and payload */
};

/*
 * The record at p[0..avail): 0 and *out, or
 *   -ENODATA   fewer than FP_JREC_HDR_LEN bytes;
 *   -EBADMSG   the header's checksum (or flags, or a length over
 *              FP_JREC_MAX) is wrong: its length cannot be trusted;
 *   -EMSGSIZE  a good header whose payload runs past avail;
 *   -EILSEQ    a good header whose payload's checksum is wrong
 *              (out->size is still set: the next record follows it).
 */
int fp_jrec_parse(const void *p, size_t avail, uint32_t salt,
		  struct fp_jrec *out);

/*
 * Building a record in an sbuf: begin reserves the header and returns its
 * offset, the puts append fields, end fills the header in. end returns
 * -E2BIG for a payload over FP_JREC_MAX, -ENOMEM when the sbuf ran out of
 * memory; either way the record is taken out of the sbuf again.
 */
size_t fp_jrec_begin(struct sbuf *b);
void fp_jrec_put_u8(struct sbuf *b, uint8_t v);
void fp_jrec_put_u32(struct sbuf *b, uint32_t v);
void fp_jrec_put_u64(struct sbuf *b, uint64_t v);
void fp_jrec_put_bytes(struct sbuf *b, const void *p, size_t n);
int fp_jrec_end(struct sbuf *b, size_t start, uint16_t type, uint32_t salt);

/*
 * Many small fields at once (a record's entries: a million of them in a
 * map's): room for them taken with sbuf_reserve(), each written with
 * fp_jrec_w8/w32 (which return where the next goes), then sbuf_commit().
 * A field at a time through sbuf_add() was most of what the journal cost
 * a map (a call, a check of the room and a memcpy for each 4 bytes).
 */
static inline unsigned char *fp_jrec_w8(unsigned char *p, uint8_t v)
{
	*p = v;
	return p + 1;
}

/*
 * A varint: 7 bits a byte, low first, the high bit saying more follow (at
 * most 5 bytes for 32 bits, 10 for 64).
 */
static inline unsigned char *fp_jrec_wvar(unsigned char *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	*p++ = (unsigned char)v;
	return p;
}

static inline unsigned char *fp_jrec_w32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
	return p + 4;
}

/* Reading a payload's fields. err is set (-EBADMSG) by the first overrun. */
struct fp_jcur {
	const unsigned char *p, *end;
	int err;
};

static inline void fp_jcur_init(struct fp_jcur *c, const struct fp_jrec *r)
{
	c->p = r->payload;
	c->end = r->payload + r->len;
	c->err = 0;
}

uint8_t fp_jcur_u8(struct fp_jcur *c);
uint32_t fp_jcur_u32(struct fp_jcur *c);
uint64_t fp_jcur_u64(struct fp_jcur *c);
/* A varint (fp_jrec_wvar's) of at most 32 / 64 bits; a longer or wider one is an error. */
uint32_t fp_jcur_var(struct fp_jcur *c);
uint64_t fp_jcur_var64(struct fp_jcur *c);
/* The bytes of a string field, in place; NULL and *n = 0 on overrun. */
const void *fp_jcur_bytes(struct fp_jcur *c, size_t *n);
/* 0 when every field was there and nothing is left over; else -EBADMSG. */
int fp_jcur_done(const struct fp_jcur *c);

#endif
