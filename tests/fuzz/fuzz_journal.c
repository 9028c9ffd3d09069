/*
 * fuzz-journal: a journal file read back as forkpoold replays it: the scan
 * (server/journal_read.c, the framing of journal_format.c) and each record
 * decoded as the job store's (server/journal_jobs.c). A journal is a torn
 * write, a disk error or a person away from garbage: outside input. Records
 * carry checksums that mutation alone does not get right, so an input is
 * one of two things, chosen by its first byte:
 *  - odd: the file itself, byte for byte (headers and checksums wrong in
 *    every way);
 *  - even: a recipe. Records are framed from it by the project's own
 *    encoder (fp_jrec_begin/end: right checksums) around payloads the input
 *    gives byte for byte, then a few bytes of the file are damaged and its
 *    tail perhaps cut, where the recipe says: torn tails, damage in the
 *    middle, records found again after it, and every decoder's field checks.
 * The file is scanned without and with recovery and the two scans held
 * against each other and against journal_read.h; a record that decodes is
 * encoded again and must decode to the same.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "journal_format.h"
#include "journal_jobs.h"
#include "journal_read.h"
#include "sbuf.h"

/*
 * The salt the recipes' records are framed with (journal_format.h): any
 * will do, the file's header says which; records encoded again for the
 * round trip use it too.
 */
#define SALT 0x5a175a17u

struct seen {
	size_t len;                    /* the file's */
	uint64_t records, next_off;
};

static bool inside(const void *p, size_t n, const struct fp_jrec *r)
{
	const unsigned char *s = p;

	return !s ? n == 0 : s >= r->payload && n <= r->len && s + n <= r->payload + r->len;
}

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (!an || !memcmp(a, b, an)) && (a == NULL) == (b == NULL);
}

static bool same_opts(const struct fp_jr_opts *a, const struct fp_jr_opts *b)
{
	return same_bytes(a->task, a->task_len, b->task, b->task_len) && a->timeout_ms == b->timeout_ms && a->retries == b->retries &&
	       a->retry_on == b->retry_on && a->chunksize == b->chunksize &&
	       a->workers == b->workers && a->buffer == b->buffer;
}

/* Frame what an encoder appended to b after `start` and parse it back. */
static void reparse(struct sbuf *b, size_t start, uint16_t type, struct fp_jrec *out)
{
	FUZZ_CHECK(fp_jrec_end(b, start, type, SALT) == 0);
	FUZZ_CHECK(fp_jrec_parse(b->data + start, b->len - start, SALT, out) == 0);
}

static void check_job(const struct fp_jrec *r)
{
	struct fp_jr_job a, z;
	struct fp_jrec again;
	struct sbuf b;
	size_t start, i;

	if (fp_jr_get_job(r, &a) < 0)
		return;
	FUZZ_CHECK(a.opts.task == NULL || inside(a.opts.task, a.opts.task_len, r));
	FUZZ_CHECK(inside(a.idem_key, a.idem_key_len, r) || (a.idem_key && !a.idem_key_len));
	for (i = 0; i < a.nstages; i++)
		FUZZ_CHECK(inside(a.stages[i].task, a.stages[i].task_len, r));
	for (i = 0; i < a.n; i++)
		FUZZ_CHECK(inside(a.items[i].text, a.items[i].len, r) ||
			   (a.items[i].text && !a.items[i].len));
	sbuf_init(&b);
	start = fp_jrec_begin(&b);
	FUZZ_CHECK(fp_jr_put_job(&b, &a) == 0);
	reparse(&b, start, FP_JR_JOB, &again);
	FUZZ_CHECK(fp_jr_get_job(&again, &z) == 0);
	FUZZ_CHECK(!memcmp(a.id, z.id, sizeof(a.id)) && a.kind == z.kind &&
		   a.created_at == z.created_at && a.body_hash == z.body_hash);
	FUZZ_CHECK(same_bytes(a.idem_key, a.idem_key_len, z.idem_key, z.idem_key_len));
	FUZZ_CHECK(a.nstages == z.nstages && a.n == z.n);
	if (a.nstages) {
		for (i = 0; i < a.nstages; i++)
			FUZZ_CHECK(same_opts(&a.stages[i], &z.stages[i]));
		FUZZ_CHECK(same_bytes(a.reduce, a.reduce_len, z.reduce, z.reduce_len));
		FUZZ_CHECK(a.reduce_batch == z.reduce_batch && a.ordered == z.ordered);
	} else {
		FUZZ_CHECK(same_opts(&a.opts, &z.opts));
	}
	for (i = 0; i < a.n; i++)
		FUZZ_CHECK(same_bytes(a.items[i].text, a.items[i].len, z.items[i].text,
				      z.items[i].len));
	fp_jr_job_clear(&z);
	fp_jr_job_clear(&a);
	sbuf_free(&b);
}

static void check_outcomes(const struct fp_jrec *r)
{
	uint8_t id[FP_JR_ID_BYTES], id2[FP_JR_ID_BYTES];
	struct fp_jr_outcomes in, out, back;
	struct fp_jr_outcome e, f;
	struct fp_jrec again;
	struct sbuf b;
	size_t start;
	int rc;

	if (fp_jr_outcomes_get_begin(&in, r, id) < 0)
		return;
	sbuf_init(&b);
	start = fp_jrec_begin(&b);
	fp_jr_outcomes_begin_as(&out, &b, id, in.origin, r->type);
	while ((rc = fp_jr_outcomes_get_next(&in, &e)) == 1) {
		FUZZ_CHECK(inside(e.text, e.len, r) || (e.text && !e.len));
		fp_jr_outcomes_put(&out, &e);
	}
	FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0) {
		/* All of it decoded: written again, it reads the same. */
		fp_jr_outcomes_end(&out);
		reparse(&b, start, r->type, &again);
		FUZZ_CHECK(fp_jr_outcomes_get_begin(&back, &again, id2) == 0);
		FUZZ_CHECK(!memcmp(id, id2, sizeof(id)) && back.origin == in.origin);
		fp_jr_outcomes_get_begin(&in, r, id);
		while ((rc = fp_jr_outcomes_get_next(&in, &e)) == 1) {
			FUZZ_CHECK(fp_jr_outcomes_get_next(&back, &f) == 1);
			FUZZ_CHECK(e.pos == f.pos && e.status == f.status &&
				   e.attempts == f.attempts && e.index == f.index &&
				   e.stage == f.stage &&
				   same_bytes(e.text, e.len, f.text, f.len));
		}
		FUZZ_CHECK(rc == 0 && fp_jr_outcomes_get_next(&back, &f) == 0);
	}
	sbuf_free(&b);
}

static void check_mark(const struct fp_jrec *r)
{
	struct fp_jr_mark a, z;
	struct fp_jrec again;
	struct sbuf b;
	size_t start;

	if (fp_jr_get_mark(r, &a) < 0)
		return;
	sbuf_init(&b);
	start = fp_jrec_begin(&b);
	fp_jr_put_mark(&b, &a);
	reparse(&b, start, r->type, &again);
	FUZZ_CHECK(fp_jr_get_mark(&again, &z) == 0);
	FUZZ_CHECK(!memcmp(a.id, z.id, sizeof(a.id)) && a.value == z.value && a.when == z.when);
	sbuf_free(&b);
}

static void check_inputs(const struct fp_jrec *r)
{
	uint8_t id[FP_JR_ID_BYTES], id2[FP_JR_ID_BYTES];
	uint32_t *a, *z;
	size_t n, m, start;
	struct fp_jrec again;
	struct sbuf b;

	if (fp_jr_get_inputs(r, id, &a, &n) < 0)
		return;
	/* As many indices as the payload holds: never more than it could. */
	FUZZ_CHECK(n <= r->len / 4);
	sbuf_init(&b);
	start = fp_jrec_begin(&b);
	fp_jr_put_inputs(&b, id, a, n);
	reparse(&b, start, FP_JR_INPUTS, &again);
	FUZZ_CHECK(fp_jr_get_inputs(&again, id2, &z, &m) == 0);
	FUZZ_CHECK(!memcmp(id, id2, sizeof(id)) && m == n && (!n || !memcmp(a, z, n * 4)));
	free(a);
	free(z);
	sbuf_free(&b);
}

/* A record of no type the store knows: its payload read as fields, which never overrun. */
static void check_fields(const struct fp_jrec *r)
{
	struct fp_jcur c;
	const void *b;
	unsigned k = 0;
	size_t n;

	fp_jcur_init(&c, r);
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
			FUZZ_CHECK(!b || inside(b, n, r));
			break;
		}
	}
	FUZZ_CHECK(c.p <= c.end);
	FUZZ_CHECK((fp_jcur_done(&c) == 0) == (c.err == 0 && c.p == c.end));
}

static int record(void *data, const struct fp_jrec *r, uint64_t off)
{
	struct seen *s = data;

	FUZZ_CHECK(off >= s->next_off);
	FUZZ_CHECK(r->size == FP_JREC_HDR_LEN + (size_t)r->len);
	FUZZ_CHECK(off + r->size <= s->len);
	s->next_off = off + r->size;
	s->records++;
	switch (r->type) {
	case FP_JR_JOB:
		check_job(r);
		break;
	case FP_JR_OUTCOMES:
	case FP_JR_OUTCOMES_PACKED:
		check_outcomes(r);
		break;
	case FP_JR_STARTED:
	case FP_JR_END:
	case FP_JR_CANCEL:
	case FP_JR_FORGET:
	case FP_JR_RERUN:
		check_mark(r);
		break;
	case FP_JR_INPUTS:
		check_inputs(r);
		break;
	default:
		check_fields(r);
		break;
	}
	return 0;
}

/*
 * The recipe: per record a type byte, a u16 length (little-endian) and that
 * many payload bytes; then, after a type byte 0xff, the damage: a count,
 * that many (offset, xor) pairs, and a cut.
 */
static void build(const uint8_t *data, size_t size, struct sbuf *b)
{
	unsigned char hdr[FP_JOURNAL_HDR_LEN];
	size_t i = 0, n, start, at, damage;

	fp_journal_header_put(hdr, SALT);
	sbuf_add(b, (const char *)hdr, sizeof(hdr));
	while (i + 3 <= size && data[i] != 0xff) {
		n = data[i + 1] | (size_t)data[i + 2] << 8;
		if (n > size - i - 3)
			n = size - i - 3;
		start = fp_jrec_begin(b);
		sbuf_add(b, (const char *)data + i + 3, n);
		FUZZ_CHECK(fp_jrec_end(b, start, data[i], SALT) == 0);
		i += 3 + n;
	}
	if (i >= size || data[i] != 0xff)
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
