/*
 * fuzz-journal: a journal file read back (server/journal_read.c and the
 * record format of journal_format.c): a torn write, a disk error or a
 * person away from garbage, so outside input. Records carry checksums that
 * mutation alone does not get right, so an input is one of two things,
 * chosen by its first byte:
 *  - odd: the file itself, byte for byte (headers and checksums wrong in
 *    every way);
 *  - even: a recipe. Records are built from it with the project's own
 *    encoders (fp_jrec_*, right checksums), then a few bytes of the file
 *    are damaged and its tail perhaps cut, where the recipe says: torn
 *    tails, damage in the middle, and records found again after it.
 * The file is scanned as forkpoold replays it, without and with recovery,
 * each valid record's payload read as fields (fp_jcur_*), and the two
 * scans held against each other and against what journal_read.h promises.
 */
#include <errno.h>
#include <string.h>

#include "fuzz_util.h"
#include "journal_format.h"
#include "journal_read.h"
#include "sbuf.h"

struct seen {
	size_t len;                    /* the file's */
	uint64_t records, next_off;
};

/* Every field the cursor gives is inside the payload; an overrun is an error, not a read. */
static int record(void *data, const struct fp_jrec *r, uint64_t off)
{
	struct seen *s = data;
	struct fp_jcur c;
	size_t n;
	const unsigned char *b;
	unsigned k = 0;

	FUZZ_CHECK(off >= s->next_off);
	FUZZ_CHECK(r->size == FP_JREC_HDR_LEN + (size_t)r->len);
	FUZZ_CHECK(off + r->size <= s->len);
	s->next_off = off + r->size;
	s->records++;
	fp_jcur_init(&c, r);
	/* Fields in an order the record's type picks, until the payload runs out. */
	while (!c.err && c.p < c.end) {
		switch ((r->type + k++) % 4) {
		case 0:
			fp_jcur_u8(&c);
			break;
		case 1:
			fp_jcur_u32(&c);
			break;
		case 2:
			fp_jcur_u64(&c);
			break;
		default:
			b = fp_jcur_bytes(&c, &n);
			FUZZ_CHECK((b == NULL) == (c.err != 0));
			FUZZ_CHECK(!b || (b >= r->payload && b + n <= r->payload + r->len));
			break;
		}
	}
	FUZZ_CHECK(c.p <= c.end);
	FUZZ_CHECK((fp_jcur_done(&c) == 0) == (c.err == 0 && c.p == c.end));
	return 0;
}

/*
 * The recipe: per record a type byte, a length byte and that many payload
 * bytes (put as u8, u32, u64 and strings in turn); then, after a 0xff, the
 * damage: a count, that many (offset, xor) pairs, and a cut.
 */
static void build(const uint8_t *data, size_t size, struct sbuf *b)
{
	unsigned char hdr[FP_JOURNAL_HDR_LEN];
	size_t i = 0, n, start, at, damage;
	uint16_t type;

	fp_journal_header_put(hdr);
	sbuf_add(b, (const char *)hdr, sizeof(hdr));
	while (i + 2 <= size && data[i] != 0xff) {
		type = data[i];
		n = data[i + 1];
		i += 2;
		if (n > size - i)
			n = size - i;
		start = fp_jrec_begin(b);
		for (size_t k = 0, f = 0; k < n; f++) {
			size_t take = (size_t[]){ 1, 4, 8, 3 }[f % 4];

			if (take > n - k)
				take = n - k;
			if (f % 4 == 3) {
				fp_jrec_put_bytes(b, data + i + k, take);
			} else {
				uint64_t v = 0;

				memcpy(&v, data + i + k, take);
				if (take == 1)
					fp_jrec_put_u8(b, (uint8_t)v);
				else if (take == 4)
					fp_jrec_put_u32(b, (uint32_t)v);
				else
					fp_jrec_put_u64(b, v);
			}
			k += take;
		}
		FUZZ_CHECK(fp_jrec_end(b, start, type) == 0);
		i += n;
	}
	if (i >= size || b->oom)
		return;
	i++;
	damage = i < size ? data[i++] % 8 : 0;
	for (; damage && i + 2 <= size; damage--, i += 2) {
		at = ((size_t)data[i] << 4) % b->len;
		b->data[at] ^= (char)(data[i + 1] ? data[i + 1] : 1);
	}
	if (i < size && data[i] && b->len > 1)
		b->len -= data[i] % b->len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fp_journal_scan strict = { .recover = false }, lax = { .recover = true };
	struct seen a = { 0 }, z = { 0 };
	struct sbuf b;
	int rs, rl;

	if (!size)
		return 0;
	sbuf_init(&b);
	if (data[0] & 1)
		sbuf_add(&b, (const char *)data + 1, size - 1);
	else
		build(data + 1, size - 1, &b);
	FUZZ_CHECK(!b.oom);
	a.len = z.len = b.len;
	strict.record = record;
	strict.data = &a;
	lax.record = record;
	lax.data = &z;
	rs = fp_journal_scan_mem(b.len ? b.data : "", b.len, "fuzz.journal", &strict);
	rl = fp_journal_scan_mem(b.len ? b.data : "", b.len, "fuzz.journal", &lax);

	FUZZ_CHECK(rs == 0 || rs == -EBADMSG || rs == -ENOTSUP);
	/* A refusal names the file and what is wrong with it. */
	FUZZ_CHECK(rs == 0 || strstr(strict.err, "fuzz.journal"));
	FUZZ_CHECK(rl == 0 || strstr(lax.err, "fuzz.journal"));
	FUZZ_CHECK(strict.records == a.records && lax.records == z.records);
	if (rs == 0) {
		/* Nothing skipped without recovery; recovery then finds the same. */
		FUZZ_CHECK(strict.skipped == 0);
		FUZZ_CHECK(rl == 0 && lax.skipped == 0 && lax.records == strict.records);
		FUZZ_CHECK(lax.end == strict.end && lax.torn == strict.torn);
		FUZZ_CHECK(strict.end <= b.len && strict.size == b.len);
		/* A torn tail is what follows the last valid record; nothing else is. */
		FUZZ_CHECK(strict.torn == (strict.end < b.len) || strict.empty);
		if (!strict.empty)
			FUZZ_CHECK(strict.end >= FP_JOURNAL_HDR_LEN);
	} else if (rs == -EBADMSG && rl == 0) {
		/* Damage in the middle: recovery skips it and delivers at least as much. */
		FUZZ_CHECK(lax.skipped > 0 && lax.skipped_bytes > 0);
		FUZZ_CHECK(lax.records >= strict.records);
		FUZZ_CHECK(lax.first_skip.off >= FP_JOURNAL_HDR_LEN &&
			   lax.first_skip.off + lax.first_skip.len <= b.len);
	} else {
		/* Not a journal, or another version: recovery cannot change that. */
		FUZZ_CHECK(rl == rs);
	}
	sbuf_free(&b);
	return 0;
}
