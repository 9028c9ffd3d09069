/*
 * The journal (server/journal*.c): CRC32C, the record format, replay with
 * its torn tails and damage, the data directory's lock and errors, and the
 * writer's group commit and fsync policies, under whichever loop backend
 * FORKPOOL_LOOP names (meson runs this once per backend).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "journal.h"
#include "journal_crc.h"
#include "journal_format.h"
#include "journal_impl.h"
#include "journal_jobs.h"
#include "journal_read.h"
#include "forkpool/loop.h"

#define WATCHDOG_MS 10000
/* The salt of the journals the tests build by hand (journal_format.h). */
#define TEST_SALT 0x5a17c0deu

/* --- helpers ------------------------------------------------------------- */

/* A fresh directory under TMPDIR; rm_tree() removes it and its files. */
static void tmp_dir(char *out, size_t n)
{
	const char *t = getenv("TMPDIR");

	snprintf(out, n, "%s/fp-test-journal-XXXXXX", t && *t ? t : "/tmp");
	assert_non_null(mkdtemp(out));
}

static void rm_tree(const char *dir)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void file_path(char *out, size_t n, const char *dir, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static char *read_file(const char *path, size_t *len)
{
	struct stat st;
	char *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	p[st.st_size] = '\0';
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static void write_file(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
}

/* Record i of the test journals: type 1 + i % 3, fields (i, "item-i", i * 7). */
static void put_test_record_salted(struct sbuf *b, unsigned i, uint32_t salt)
{
	char s[32];
	size_t start = fp_jrec_begin(b);
	int n = snprintf(s, sizeof(s), "item-%u", i);

	fp_jrec_put_u32(b, i);
	fp_jrec_put_bytes(b, s, (size_t)n);
	fp_jrec_put_u64(b, (uint64_t)i * 7);
	assert_int_equal(fp_jrec_end(b, start, (uint16_t)(1 + i % 3), salt), 0);
}

static void put_test_record(struct sbuf *b, unsigned i)
{
	put_test_record_salted(b, i, TEST_SALT);
}

static void check_test_record(const struct fp_jrec *r, unsigned i)
{
	struct fp_jcur c;
	char s[32];
	const char *p;
	size_t n;

	snprintf(s, sizeof(s), "item-%u", i);
	assert_int_equal(r->type, 1 + i % 3);
	fp_jcur_init(&c, r);
	assert_int_equal(fp_jcur_u32(&c), i);
	p = fp_jcur_bytes(&c, &n);
	assert_int_equal(n, strlen(s));
	assert_memory_equal(p, s, n);
	assert_int_equal(fp_jcur_u64(&c), (uint64_t)i * 7);
	assert_int_equal(fp_jcur_done(&c), 0);
}

/* A journal of n test records, in memory; offs[i] where record i starts. */
static void build_journal(struct sbuf *b, unsigned n, size_t *offs)
{
	unsigned char h[FP_JOURNAL_HDR_LEN];
	unsigned i;

	sbuf_init(b);
	fp_journal_header_put(h, TEST_SALT);
	sbuf_add(b, (const char *)h, sizeof(h));
	for (i = 0; i < n; i++) {
		if (offs)
			offs[i] = b->len;
		put_test_record(b, i);
	}
	assert_false(b->oom);
}

/* Collects replayed records and checks they are 0, 1, 2, ... */
struct seen {
	unsigned n;
	unsigned skip_from;        /* a record number the damage removed, or -1 */
	uint64_t offs[64];
};

static int seen_cb(void *data, const struct fp_jrec *r, uint64_t off)
{
	struct seen *s = data;
	unsigned i = s->n;

	if (s->skip_from != (unsigned)-1 && i >= s->skip_from)
		i++;
	check_test_record(r, i);
	if (s->n < 64)
		s->offs[s->n] = off;
	s->n++;
	return 0;
}

static int replay_cb(void *data, const struct fp_jrec *r, uint64_t off,
		     char *err, size_t errlen)
{
	return seen_cb(data, r, off);
}

/* --- CRC32C -------------------------------------------------------------- */

/* RFC 3720 (iSCSI) B.4's vectors, and "123456789". */
static void crc32c_known_vectors(void **state)
{
	unsigned char b[32];
	int i;

	assert_int_equal(fp_crc32c(0, "123456789", 9), 0xe3069283u);
	assert_int_equal(fp__crc32c_table(0, "123456789", 9), 0xe3069283u);
	memset(b, 0, sizeof(b));
	assert_int_equal(fp_crc32c(0, b, 32), 0x8a9136aau);
	memset(b, 0xff, sizeof(b));
	assert_int_equal(fp_crc32c(0, b, 32), 0x62a8ab43u);
	for (i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	assert_int_equal(fp_crc32c(0, b, 32), 0x46dd794eu);
	for (i = 0; i < 32; i++)
		b[i] = (unsigned char)(31 - i);
	assert_int_equal(fp_crc32c(0, b, 32), 0x113fdb5cu);
	/* Continued in two parts, the same as in one. */
	assert_int_equal(fp_crc32c(fp_crc32c(0, b, 13), b + 13, 19), 0x113fdb5cu);
	assert_int_equal(fp_crc32c(0, b, 0), 0);
}

/* The instruction and the table agree at every length and alignment. */
static void crc32c_hw_matches_table(void **state)
{
	unsigned char buf[600];
	size_t off, len;
	unsigned i;

	if (!fp__crc32c_hw_available()) {
		print_message("no CRC32C instruction here: the table alone is used\n");
		return;
	}
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);
	for (off = 0; off < 16; off++)
		for (len = 0; len + off <= sizeof(buf); len += 1 + len / 7)
			assert_int_equal(fp__crc32c_hw(0x1234, buf + off, len),
					 fp__crc32c_table(0x1234, buf + off, len));
}

/* --- the format ---------------------------------------------------------- */

static void header_checked(void **state)
{
	unsigned char h[FP_JOURNAL_HDR_LEN];
	uint32_t v = 0, salt = 0;

	fp_journal_header_put(h, TEST_SALT);
	assert_int_equal(fp_journal_header_check(h, sizeof(h), &v, &salt), 0);
	assert_int_equal(v, FP_JOURNAL_VERSION);
	assert_int_equal(salt, TEST_SALT);
	assert_int_equal(fp_journal_header_check(h, sizeof(h) - 1, &v, &salt), -ENODATA);
	h[8] = 99;
	assert_int_equal(fp_journal_header_check(h, sizeof(h), &v, &salt), -EBADMSG);
	/* A version this build does not know, with its checksum right. */
	{
		uint32_t crc = fp_crc32c(0, h, 20);

		h[20] = (unsigned char)crc;
		h[21] = (unsigned char)(crc >> 8);
		h[22] = (unsigned char)(crc >> 16);
		h[23] = (unsigned char)(crc >> 24);
	}
	assert_int_equal(fp_journal_header_check(h, sizeof(h), &v, &salt), -ENOTSUP);
	assert_int_equal(v, 99);
	memcpy(h, "NOTAJRNL", 8);
	assert_int_equal(fp_journal_header_check(h, sizeof(h), &v, &salt), -EBADMSG);
}

static void record_round_trip(void **state)
{
	struct sbuf b;
	struct fp_jrec r;
	struct fp_jcur c;
	size_t start, n;

	sbuf_init(&b);
	put_test_record(&b, 5);
	assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
	assert_int_equal(r.size, b.len);
	check_test_record(&r, 5);

	/* Reading past the payload is an error, never a read out of bounds. */
	fp_jcur_init(&c, &r);
	fp_jcur_u32(&c);
	fp_jcur_bytes(&c, &n);
	fp_jcur_u64(&c);
	assert_int_equal(fp_jcur_u8(&c), 0);
	assert_int_equal(c.err, -EBADMSG);
	assert_int_equal(fp_jcur_done(&c), -EBADMSG);
	/* Fields left over are an error too. */
	fp_jcur_init(&c, &r);
	fp_jcur_u32(&c);
	assert_int_equal(fp_jcur_done(&c), -EBADMSG);

	/* An empty payload is a record. */
	sbuf_reset(&b);
	start = fp_jrec_begin(&b);
	assert_int_equal(fp_jrec_end(&b, start, 9, TEST_SALT), 0);
	assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
	assert_int_equal(r.type, 9);
	assert_int_equal(r.len, 0);
	sbuf_free(&b);
}

/* Every byte of a record matters; a short one says it is short. */
static void record_damage_detected(void **state)
{
	struct sbuf b;
	struct fp_jrec r;
	size_t i;

	sbuf_init(&b);
	put_test_record(&b, 3);
	for (i = 0; i < b.len; i++) {
		b.data[i] ^= 0x10;
		assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r),
				 i < FP_JREC_HDR_LEN ? -EBADMSG : -EILSEQ);
		b.data[i] ^= 0x10;
	}
	assert_int_equal(fp_jrec_parse(b.data, b.len - 1, TEST_SALT, &r), -EMSGSIZE);
	assert_int_equal(fp_jrec_parse(b.data, FP_JREC_HDR_LEN - 1, TEST_SALT, &r), -ENODATA);
	assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
	sbuf_free(&b);
}

/* --- replay -------------------------------------------------------------- */

static void scan_init(struct fp_journal_scan *s, struct seen *seen, bool recover)
{
	memset(s, 0, sizeof(*s));
	memset(seen, 0, sizeof(*seen));
	seen->skip_from = (unsigned)-1;
	s->recover = recover;
	s->record = seen_cb;
	s->data = seen;
}

/* A cut-off last record, garbage or zeros after the last good one: a torn tail. */
static void scan_cuts_torn_tails(void **state)
{
	struct fp_journal_scan s;
	struct seen seen;
	struct sbuf b;
	size_t offs[5];
	char *z;

	build_journal(&b, 5, offs);
	/* The last record half written. */
	assert_int_equal(fp_journal_scan_mem(b.data, b.len - 7, "J", (scan_init(&s, &seen, false), &s)), 0);
	assert_int_equal(seen.n, 4);
	assert_true(s.torn);
	assert_int_equal(s.end, offs[4]);
	/* Only part of its header. */
	scan_init(&s, &seen, false);
	assert_int_equal(fp_journal_scan_mem(b.data, offs[4] + 5, "J", &s), 0);
	assert_int_equal(seen.n, 4);
	assert_true(s.torn);
	assert_int_equal(s.end, offs[4]);
	/* Whole, but its payload garbled (a power loss after the length). */
	b.data[b.len - 2] ^= 1;
	scan_init(&s, &seen, false);
	assert_int_equal(fp_journal_scan_mem(b.data, b.len, "J", &s), 0);
	assert_int_equal(seen.n, 4);
	assert_true(s.torn);
	b.data[b.len - 2] ^= 1;
	/* Nothing torn. */
	scan_init(&s, &seen, false);
	assert_int_equal(fp_journal_scan_mem(b.data, b.len, "J", &s), 0);
	assert_int_equal(seen.n, 5);
	assert_false(s.torn);
	assert_int_equal(s.end, b.len);
	/* Zeros after the last record (space the filesystem had allocated). */
	z = sbuf_reserve(&b, 4096);
	memset(z, 0, 4096);
	sbuf_commit(&b, 4096);
	scan_init(&s, &seen, false);
	assert_int_equal(fp_journal_scan_mem(b.data, b.len, "J", &s), 0);
	assert_int_equal(seen.n, 5);
	assert_true(s.torn);
	assert_int_equal(s.end, b.len - 4096);
	/* A header alone is an empty journal; less is one never finished. */
	scan_init(&s, &seen, false);
	assert_int_equal(fp_journal_scan_mem(b.data, FP_JOURNAL_HDR_LEN, "J", &s), 0);
	assert_int_equal(seen.n, 0);
	assert_false(s.torn);
	assert_false(s.empty);
	scan_init(&s, &seen, false);
	assert_int_equal(fp_journal_scan_mem(b.data, 3, "J", &s), 0);
	assert_true(s.empty);
	sbuf_free(&b);
}

/*
 * Damage with valid records after it is refused, naming the file and the
 * offset; with recover, skipped and counted, and the rest delivered.
 */
static void scan_refuses_damage_in_the_middle(void **state)
{
	struct fp_journal_scan s;
	struct seen seen;
	struct sbuf b;
	size_t offs[6];
	char want[64];
	int pass;

	for (pass = 0; pass < 2; pass++) {
		/* Pass 0: record 2's payload; pass 1: its header (its length). */
		size_t at = pass ? offs[2] + 1 : offs[2] + FP_JREC_HDR_LEN + 2;

		build_journal(&b, 6, offs);
		at = pass ? offs[2] + 1 : offs[2] + FP_JREC_HDR_LEN + 2;
		b.data[at] ^= 0x40;
		scan_init(&s, &seen, false);
		assert_int_equal(fp_journal_scan_mem(b.data, b.len, "/d/journal", &s), -EBADMSG);
		snprintf(want, sizeof(want), "byte offset %zu,", offs[2]);
		assert_non_null(strstr(s.err, "/d/journal"));
		assert_non_null(strstr(s.err, want));
		assert_non_null(strstr(s.err, "--journal-recover"));
		assert_non_null(strstr(s.err, pass ? "bad record header" : "bad payload checksum"));
		assert_int_equal(seen.n, 2);

		scan_init(&s, &seen, true);
		seen.skip_from = 2;
		assert_int_equal(fp_journal_scan_mem(b.data, b.len, "/d/journal", &s), 0);
		assert_int_equal(seen.n, 5);
		assert_int_equal(s.skipped, 1);
		assert_int_equal(s.skipped_bytes, offs[3] - offs[2]);
		assert_int_equal(s.first_skip.off, offs[2]);
		assert_false(s.torn);
		assert_int_equal(s.end, b.len);
		sbuf_free(&b);
	}
}

/*
 * A record's bytes inside an item cannot pass for a record: a client does
 * not know the file's salt. The last record, torn, holds a forged record
 * in its payload; without the salt it reads as garbage and the tail is cut.
 * Forged with the file's own salt (what the salt prevents), it would make
 * the torn tail look like damage in the middle and stop the start.
 */
static void forged_record_in_a_payload_is_not_a_record(void **state)
{
	struct fp_journal_scan s;
	struct seen seen;
	struct sbuf b, forged;
	size_t offs[3], start, cut;
	uint32_t salts[2] = { 0, TEST_SALT };
	int k;

	for (k = 0; k < 2; k++) {
		build_journal(&b, 3, offs);
		sbuf_init(&forged);
		put_test_record_salted(&forged, 2, salts[k]);
		/* Record 3: an item holding the forged record, then more bytes. */
		start = fp_jrec_begin(&b);
		fp_jrec_put_u32(&b, 3);
		fp_jrec_put_bytes(&b, forged.data, forged.len);
		fp_jrec_put_bytes(&b, "more of the item, never written", 31);
		assert_int_equal(fp_jrec_end(&b, start, 1, TEST_SALT), 0);
		/* Torn after the forged bytes, before the record's end. */
		cut = start + FP_JREC_HDR_LEN + 4 + 4 + forged.len + 10;
		scan_init(&s, &seen, false);
		if (k == 0) {
			assert_int_equal(fp_journal_scan_mem(b.data, cut, "J", &s), 0);
			assert_true(s.torn);
			assert_int_equal(s.end, start);
			assert_int_equal(seen.n, 3);
		} else {
			assert_int_equal(fp_journal_scan_mem(b.data, cut, "J", &s), -EBADMSG);
		}
		sbuf_free(&forged);
		sbuf_free(&b);
	}
}

static void scan_refuses_other_versions_and_files(void **state)
{
	struct fp_journal_scan s;
	struct seen seen;
	struct sbuf b;
	uint32_t crc;

	build_journal(&b, 2, NULL);
	b.data[8] = 7;
	crc = fp_crc32c(0, b.data, 20);
	memcpy(b.data + 20, &crc, 4);      /* little-endian hosts only */
	scan_init(&s, &seen, true);
	assert_int_equal(fp_journal_scan_mem(b.data, b.len, "/d/journal", &s), -ENOTSUP);
	assert_non_null(strstr(s.err, "/d/journal has journal format version 7"));
	assert_non_null(strstr(s.err, "reads version 1"));
	assert_int_equal(seen.n, 0);

	scan_init(&s, &seen, true);
	assert_int_equal(fp_journal_scan_mem("hello, world\nthis is text", 25,
					     "/d/journal", &s), -EBADMSG);
	assert_non_null(strstr(s.err, "/d/journal is not a forkpool journal"));
	sbuf_free(&b);
}

/*
 * Random damage, many times over: flipped bytes, zeroed runs, cuts. The
 * scan never reads outside the bytes it is given (each try scans an exact
 * heap copy, so ASan sees an overread), and every record it delivers, with
 * or without recover, is one of the journal's own records, whole, in
 * order: damage is cut, refused or skipped, never read as a record.
 */
struct orig {
	const struct sbuf *b;
	const size_t *offs;
	unsigned n;
	unsigned next;             /* the least record number still allowed */
	unsigned delivered;
};

static int orig_cb(void *data, const struct fp_jrec *r, uint64_t off)
{
	struct orig *o = data;
	struct fp_jcur c;
	unsigned i;

	fp_jcur_init(&c, r);
	i = fp_jcur_u32(&c);
	assert_true(i < o->n);
	assert_true(i >= o->next);
	check_test_record(r, i);
	o->next = i + 1;
	o->delivered++;
	return 0;
}

static void scan_survives_random_damage(void **state)
{
	enum { N = 40, TRIES = 3000 };
	struct fp_journal_scan s;
	size_t offs[N], len, k, at, n;
	struct orig o;
	struct sbuf b;
	unsigned char *copy;
	unsigned seed = 14, t;
	int r, recover;

	build_journal(&b, N, offs);
	for (t = 0; t < TRIES; t++) {
		len = b.len;
		copy = malloc(len);
		assert_non_null(copy);
		memcpy(copy, b.data, len);
		n = 1 + rand_r(&seed) % 4;
		for (k = 0; k < n && len > FP_JOURNAL_HDR_LEN; k++) {
			at = FP_JOURNAL_HDR_LEN + rand_r(&seed) % (len - FP_JOURNAL_HDR_LEN);
			switch (rand_r(&seed) % 3) {
			case 0:
				copy[at] ^= (unsigned char)(1 + rand_r(&seed) % 255);
				break;
			case 1:
				memset(copy + at, 0, (len - at) < 37 ? len - at : 37);
				break;
			case 2:
				len = at;
				break;
			}
		}
		for (recover = 0; recover < 2; recover++) {
			unsigned char *exact = malloc(len ? len : 1);

			assert_non_null(exact);
			memcpy(exact, copy, len);
			memset(&o, 0, sizeof(o));
			o.b = &b;
			o.offs = offs;
			o.n = N;
			memset(&s, 0, sizeof(s));
			s.recover = recover;
			s.record = orig_cb;
			s.data = &o;
			r = fp_journal_scan_mem(exact, len, "J", &s);
			assert_true(r == 0 || (r == -EBADMSG && !recover));
			if (r == 0)
				assert_true(s.end <= len);
			free(exact);
		}
		free(copy);
	}
	sbuf_free(&b);
}

/* --- the loop ------------------------------------------------------------ */

struct t {
	fp_loop *loop;
	fp_timer wd;
	int wd_fired;
	int pending;               /* callbacks still awaited */
};

static void wd_cb(fp_timer *tm)
{
	struct t *t = tm->data;

	t->wd_fired = 1;
	fp_loop_stop(t->loop);
}

static void t_init(struct t *t)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(fp_loop_new(&t->loop, FP_LOOP_AUTO), 0);
	t->wd.data = t;
}

/* Run until `pending` callbacks came (each calls t_done), bounded. */
static void t_run(struct t *t, int pending)
{
	t->pending = pending;
	assert_int_equal(fp_timer_start(t->loop, &t->wd, WATCHDOG_MS, wd_cb), 0);
	while (t->pending > 0 && !t->wd_fired)
		assert_int_equal(fp_loop_run(t->loop), 0);
	fp_timer_stop(&t->wd);
	assert_false(t->wd_fired);
}

/* Run until cond(data) holds, checked every 2 ms, bounded by the watchdog. */
struct poll {
	fp_timer tm;
	struct t *t;
	int (*cond)(void *);
	void *data;
};

static void poll_cb(fp_timer *tm)
{
	struct poll *p = tm->data;

	if (p->cond(p->data))
		fp_loop_stop(p->t->loop);
	else
		assert_int_equal(fp_timer_start(p->t->loop, tm, 2, poll_cb), 0);
}

static void t_run_until(struct t *t, int (*cond)(void *), void *data)
{
	struct poll p = { .t = t, .cond = cond, .data = data };

	p.tm.data = &p;
	assert_int_equal(fp_timer_start(t->loop, &t->wd, WATCHDOG_MS, wd_cb), 0);
	assert_int_equal(fp_timer_start(t->loop, &p.tm, 2, poll_cb), 0);
	while (!cond(data) && !t->wd_fired)
		assert_int_equal(fp_loop_run(t->loop), 0);
	fp_timer_stop(&p.tm);
	fp_timer_stop(&t->wd);
	assert_false(t->wd_fired);
}

static void t_done(struct t *t)
{
	if (--t->pending == 0)
		fp_loop_stop(t->loop);
}

static void t_free(struct t *t)
{
	fp_loop_free(t->loop);
}

/* A waiter that notes its status and the fsyncs done when it was called. */
struct w {
	struct fp_journal_wait jw;
	struct t *t;
	fp_journal *j;
	int calls;
	int status;
	uint64_t fsyncs_at_cb;
	int order;
	int *counter;
};

static void w_cb(struct fp_journal_wait *jw, int status)
{
	struct w *w = jw->data;
	struct fp_journal_stats st;

	w->calls++;
	w->status = status;
	if (w->j) {
		fp_journal_stats_get(w->j, &st);
		w->fsyncs_at_cb = st.fsyncs;
	}
	if (w->counter)
		w->order = (*w->counter)++;
	t_done(w->t);
}

static void w_init(struct w *w, struct t *t, fp_journal *j, int *counter)
{
	memset(w, 0, sizeof(*w));
	w->jw.cb = w_cb;
	w->jw.data = w;
	w->t = t;
	w->j = j;
	w->counter = counter;
}

static int append(fp_journal *j, unsigned i, struct w *w)
{
	struct sbuf *b = fp_journal_buf(j);
	char s[32];
	size_t start = fp_journal_begin(j);
	int n = snprintf(s, sizeof(s), "item-%u", i);

	fp_jrec_put_u32(b, i);
	fp_jrec_put_bytes(b, s, (size_t)n);
	fp_jrec_put_u64(b, (uint64_t)i * 7);
	return fp_journal_end(j, start, (uint16_t)(1 + i % 3), w ? &w->jw : NULL);
}

static void closed_cb(void *data)
{
	t_done(data);
}

static void close_journal(struct t *t, fp_journal *j)
{
	fp_journal_close(j, closed_cb, t);
	t_run(t, 1);
}

static void opts_init(struct fp_journal_options *o, const char *dir,
		      enum fp_fsync_policy p, struct seen *seen)
{
	memset(o, 0, sizeof(*o));
	o->dir = dir;
	o->fsync = p;
	o->replay = replay_cb;
	o->data = seen;
	if (seen) {
		memset(seen, 0, sizeof(*seen));
		seen->skip_from = (unsigned)-1;
	}
}

/* --- the data directory and the writer ----------------------------------- */

/*
 * A new directory is made, records appended under each policy come back
 * in order after a reopen, and appends continue after them.
 */
static void open_append_reopen(void **state)
{
	const enum fp_fsync_policy pol[] = { FP_FSYNC_ALWAYS, FP_FSYNC_INTERVAL,
					     FP_FSYNC_NEVER };
	struct fp_journal_options o;
	struct fp_journal_report rep;
	char dir[4096], sub[4200], err[320];
	struct seen seen;
	struct w w[10];
	fp_journal *j;
	unsigned k, i, n = 0;
	struct t t;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	file_path(sub, sizeof(sub), dir, "data");
	for (k = 0; k < 3; k++) {
		opts_init(&o, sub, pol[k], &seen);
		assert_int_equal(fp_journal_open(&j, t.loop, &o, &rep, err, sizeof(err)), 0);
		assert_int_equal(rep.created, k == 0);
		assert_int_equal(rep.records, n);
		assert_int_equal(seen.n, n);
		assert_false(rep.torn);
		for (i = 0; i < 10; i++) {
			w_init(&w[i], &t, j, NULL);
			assert_int_equal(append(j, n + i, &w[i]), 0);
		}
		t_run(&t, 10);
		for (i = 0; i < 10; i++) {
			assert_int_equal(w[i].calls, 1);
			assert_int_equal(w[i].status, 0);
		}
		n += 10;
		close_journal(&t, j);
	}
	opts_init(&o, sub, FP_FSYNC_NEVER, &seen);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, &rep, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 30);
	close_journal(&t, j);
	rm_tree(dir);
	t_free(&t);
}

/*
 * always: every waiter is called after an fsync that covers it, and one
 * fsync serves many: 200 records appended in one go need a few, not 200.
 */
static void always_group_commits(void **state)
{
	enum { N = 200 };
	struct fp_journal_options o;
	struct fp_journal_stats st;
	char dir[4096], err[320];
	struct w *w = calloc(N, sizeof(*w));
	fp_journal *j;
	int i, counter = 0;
	struct t t;

	assert_non_null(w);
	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	opts_init(&o, dir, FP_FSYNC_ALWAYS, NULL);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	for (i = 0; i < N; i++) {
		w_init(&w[i], &t, j, &counter);
		assert_int_equal(append(j, (unsigned)i, &w[i]), 0);
	}
	assert_int_equal(counter, 0);
	t_run(&t, N);
	for (i = 0; i < N; i++) {
		assert_int_equal(w[i].calls, 1);
		assert_int_equal(w[i].status, 0);
		assert_true(w[i].fsyncs_at_cb >= 1);
		/* In the order appended. */
		assert_int_equal(w[i].order, i);
	}
	fp_journal_stats_get(j, &st);
	assert_int_equal(st.records, N);
	assert_true(st.fsyncs <= 4);
	assert_true(st.writes <= 4);
	print_message("always: %d records, %llu writes, %llu fsyncs\n", N,
		      (unsigned long long)st.writes, (unsigned long long)st.fsyncs);
	close_journal(&t, j);
	rm_tree(dir);
	t_free(&t);
	free(w);
}

static int has_fsynced(void *data)
{
	struct fp_journal_stats st;

	fp_journal_stats_get(data, &st);
	return st.fsyncs > 0;
}

/*
 * interval: a waiter is called once written, before any fsync, and the
 * interval's fsync follows by itself; never: no fsync until close.
 */
static void interval_and_never_policies(void **state)
{
	struct fp_journal_options o;
	struct fp_journal_stats st;
	char dir[4096], err[320];
	struct w w, fl;
	fp_journal *j;
	struct t t;
	int k;

	t_init(&t);
	for (k = 0; k < 2; k++) {
		tmp_dir(dir, sizeof(dir));
		opts_init(&o, dir, k ? FP_FSYNC_NEVER : FP_FSYNC_INTERVAL, NULL);
		o.fsync_interval_ms = 20;
		assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
		w_init(&w, &t, j, NULL);
		assert_int_equal(append(j, 0, &w), 0);
		t_run(&t, 1);
		assert_int_equal(w.status, 0);
		assert_int_equal(w.fsyncs_at_cb, 0);
		if (!k) {
			/* The interval's own fsync follows without anyone asking. */
			t_run_until(&t, has_fsynced, j);
		} else {
			fp_journal_stats_get(j, &st);
			assert_int_equal(st.fsyncs, 0);
		}
		/* A flush asks for one whatever the policy. */
		w_init(&fl, &t, j, NULL);
		assert_int_equal(append(j, 1, NULL), 0);
		fp_journal_flush(j, &fl.jw);
		t_run(&t, 1);
		assert_int_equal(fl.status, 0);
		assert_true(fl.fsyncs_at_cb >= 1);
		close_journal(&t, j);
		rm_tree(dir);
	}
	t_free(&t);
}

/* A big record's buffer is let go once written: the master does not keep it. */
static void big_batch_leaves_no_big_buffer(void **state)
{
	struct fp_journal_options o;
	char dir[4096], err[320];
	size_t big = 6u << 20, start;
	char *data = malloc(big);
	struct w w;
	fp_journal *j;
	struct t t;

	assert_non_null(data);
	memset(data, 'x', big);
	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	opts_init(&o, dir, FP_FSYNC_NEVER, NULL);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	w_init(&w, &t, j, NULL);
	start = fp_journal_begin(j);
	fp_jrec_put_bytes(fp_journal_buf(j), data, big);
	assert_int_equal(fp_journal_end(j, start, 1, &w.jw), 0);
	t_run(&t, 1);
	assert_int_equal(w.status, 0);
	assert_true(j->pend.cap < (1u << 20));
	assert_true(j->flight.cap < (1u << 20));
	close_journal(&t, j);
	rm_tree(dir);
	t_free(&t);
	free(data);
}

/* A cancelled waiter is never called; the record is still written. */
static void cancelled_waiter_is_not_called(void **state)
{
	struct fp_journal_options o;
	char dir[4096], err[320];
	struct seen seen;
	struct w w[2];
	fp_journal *j;
	struct t t;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	opts_init(&o, dir, FP_FSYNC_ALWAYS, NULL);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	w_init(&w[0], &t, j, NULL);
	w_init(&w[1], &t, j, NULL);
	assert_int_equal(append(j, 0, &w[0]), 0);
	assert_int_equal(append(j, 1, &w[1]), 0);
	fp_journal_wait_cancel(&w[0].jw);
	t_run(&t, 1);
	assert_int_equal(w[0].calls, 0);
	assert_int_equal(w[1].calls, 1);
	close_journal(&t, j);
	opts_init(&o, dir, FP_FSYNC_ALWAYS, &seen);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 2);
	close_journal(&t, j);
	rm_tree(dir);
	t_free(&t);
}

/*
 * A write that fails (a full disk: here RLIMIT_FSIZE's EFBIG) fails its
 * waiters, leaves no part of its records in the file, and later appends
 * succeed once there is room again: the journal replays exactly the
 * records whose waiters were told 0.
 */
static void failed_write_is_cut_and_later_appends_work(void **state)
{
	struct fp_journal_options o;
	struct fp_journal_stats st;
	struct rlimit old, lim;
	char dir[4096], path[4200], err[320];
	void (*oldsig)(int);
	struct seen seen;
	struct w w[3];
	struct stat sb;
	fp_journal *j;
	struct t t;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	file_path(path, sizeof(path), dir, "journal");
	opts_init(&o, dir, FP_FSYNC_ALWAYS, NULL);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	w_init(&w[0], &t, j, NULL);
	assert_int_equal(append(j, 0, &w[0]), 0);
	t_run(&t, 1);
	assert_int_equal(w[0].status, 0);
	assert_int_equal(stat(path, &sb), 0);

	/* Room for part of the next record only. */
	oldsig = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)sb.st_size + 20;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	w_init(&w[1], &t, j, NULL);
	assert_int_equal(append(j, 1, &w[1]), 0);
	t_run(&t, 1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	assert_int_equal(w[1].status, -EFBIG);
	fp_journal_stats_get(j, &st);
	assert_int_equal(st.write_errors, 1);
	assert_int_equal(st.last_error, -EFBIG);
	assert_int_equal(st.broken, 0);

	/* Room again: the next record goes where the failed one was. */
	w_init(&w[2], &t, j, NULL);
	assert_int_equal(append(j, 2, &w[2]), 0);
	t_run(&t, 1);
	assert_int_equal(w[2].status, 0);
	close_journal(&t, j);

	opts_init(&o, dir, FP_FSYNC_ALWAYS, &seen);
	seen.skip_from = 1;         /* records 0 and 2, as the waiters were told */
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 2);
	close_journal(&t, j);
	rm_tree(dir);
	t_free(&t);
}

/*
 * A failed fsync breaks the journal: the waiter hears the error and every
 * later append is refused with it. (/dev/null takes writes and refuses
 * fdatasync with EINVAL.)
 */
static void failed_fsync_breaks_the_journal(void **state)
{
	struct fp_journal_stats st;
	struct w w;
	fp_journal *j;
	struct t t;
	int fd;

	t_init(&t);
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fp__journal_new(&j, t.loop, fd, 0, TEST_SALT, FP_FSYNC_ALWAYS, 0), 0);
	w_init(&w, &t, j, NULL);
	assert_int_equal(append(j, 0, &w), 0);
	t_run(&t, 1);
	assert_int_equal(w.status, -EINVAL);
	fp_journal_stats_get(j, &st);
	assert_int_equal(st.broken, -EINVAL);
	assert_int_equal(append(j, 1, NULL), -EINVAL);
	close_journal(&t, j);
	t_free(&t);
}

/* One forkpoold per directory: the second is told who holds it. */
static void locked_directory_refused(void **state)
{
	struct fp_journal_options o;
	char dir[4096], err[320], want[64];
	fp_journal *j, *j2;
	struct t t;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	opts_init(&o, dir, FP_FSYNC_INTERVAL, NULL);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	assert_int_equal(fp_journal_open(&j2, t.loop, &o, NULL, err, sizeof(err)), -EBUSY);
	assert_null(j2);
	assert_non_null(strstr(err, dir));
	snprintf(want, sizeof(want), "in use by another forkpoold (pid %ld)", (long)getpid());
	assert_non_null(strstr(err, want));
	close_journal(&t, j);
	/* Released with the journal. */
	assert_int_equal(fp_journal_open(&j2, t.loop, &o, NULL, err, sizeof(err)), 0);
	close_journal(&t, j2);
	rm_tree(dir);
	t_free(&t);
}

/*
 * A directory we may not write to is refused at once, naming it. Root may
 * write anywhere, so a child that is not root (nobody) tries.
 */
static void unwritable_directory_refused(void **state)
{
	struct fp_journal_options o;
	char dir[4096], sub[4200], err[320];
	fp_journal *j;
	int status, r;
	pid_t pid;

	/* Under /tmp, which nobody may search whatever TMPDIR says. */
	snprintf(dir, sizeof(dir), "/tmp/fp-test-journal-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	file_path(sub, sizeof(sub), dir, "ro");
	assert_int_equal(mkdir(sub, 0555), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fp_loop *loop;

		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(10);
		if (fp_loop_new(&loop, FP_LOOP_AUTO) < 0)
			_exit(11);
		opts_init(&o, sub, FP_FSYNC_INTERVAL, NULL);
		r = fp_journal_open(&j, loop, &o, NULL, err, sizeof(err));
		if (r != -EACCES)
			_exit(12);
		if (!strstr(err, "data directory") || !strstr(err, sub) ||
		    !strstr(err, "is not writable: Permission denied"))
			_exit(13);
		/* A directory that cannot be made. */
		snprintf(sub + strlen(sub), sizeof(sub) - strlen(sub), "/new");
		r = fp_journal_open(&j, loop, &o, NULL, err, sizeof(err));
		if (r != -EACCES || !strstr(err, "cannot create data directory"))
			_exit(14);
		fp_loop_free(loop);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	rm_tree(dir);
}

/* Opening cuts a torn tail, says where in the log, and appends after it. */
static void open_cuts_torn_tail_and_warns(void **state)
{
	struct fp_journal_options o;
	struct fp_journal_report rep;
	char dir[4096], path[4200], err[320], want[96], logtext[4096];
	struct fp_dlog log;
	struct seen seen;
	struct sbuf b;
	struct w w;
	size_t offs[4], len;
	fp_journal *j;
	struct t t;
	int mfd;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	file_path(path, sizeof(path), dir, "journal");
	build_journal(&b, 4, offs);
	write_file(path, b.data, b.len - 3);
	mfd = memfd_create("log", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	fp_dlog_init(&log, mfd, FP_LOG_INFO, FP_DLOG_TEXT);

	opts_init(&o, dir, FP_FSYNC_ALWAYS, &seen);
	o.log = &log;
	assert_int_equal(fp_journal_open(&j, t.loop, &o, &rep, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 3);
	assert_true(rep.torn);
	assert_int_equal(rep.torn_at, offs[3]);
	assert_int_equal(rep.torn_bytes, b.len - 3 - offs[3]);
	free(read_file(path, &len));
	assert_int_equal(len, offs[3]);
	memset(logtext, 0, sizeof(logtext));
	assert_true(pread(mfd, logtext, sizeof(logtext) - 1, 0) > 0);
	snprintf(want, sizeof(want), "cut a torn last record at byte offset %zu", offs[3]);
	assert_non_null(strstr(logtext, want));
	assert_non_null(strstr(logtext, " warn "));
	assert_non_null(strstr(logtext, path));

	w_init(&w, &t, j, NULL);
	assert_int_equal(append(j, 3, &w), 0);
	t_run(&t, 1);
	close_journal(&t, j);
	opts_init(&o, dir, FP_FSYNC_ALWAYS, &seen);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, &rep, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 4);
	assert_false(rep.torn);
	close_journal(&t, j);

	fp_dlog_deinit(&log);
	close(mfd);
	sbuf_free(&b);
	rm_tree(dir);
	t_free(&t);
}

/*
 * Damage in the middle stops the start, naming the file and offset; with
 * recover the valid records are replayed, the damaged file is kept aside
 * and the journal rewritten, so the next start is clean without recover.
 */
static void open_damaged_refused_then_recovered(void **state)
{
	struct fp_journal_options o;
	struct fp_journal_report rep;
	char dir[4096], path[4200], err[320], want[64], cmd[4400];
	struct seen seen;
	struct sbuf b;
	size_t offs[5];
	fp_journal *j;
	struct t t;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	file_path(path, sizeof(path), dir, "journal");
	build_journal(&b, 5, offs);
	b.data[offs[1] + FP_JREC_HDR_LEN + 1] ^= 1;
	write_file(path, b.data, b.len);

	opts_init(&o, dir, FP_FSYNC_ALWAYS, &seen);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, &rep, err, sizeof(err)), -EBADMSG);
	assert_null(j);
	assert_non_null(strstr(err, path));
	snprintf(want, sizeof(want), "at byte offset %zu,", offs[1]);
	assert_non_null(strstr(err, want));
	/* Refused, the directory is not left locked. */
	opts_init(&o, dir, FP_FSYNC_ALWAYS, &seen);
	o.recover = true;
	seen.skip_from = 1;
	assert_int_equal(fp_journal_open(&j, t.loop, &o, &rep, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 4);
	assert_int_equal(rep.skipped, 1);
	assert_int_equal(rep.skipped_bytes, offs[2] - offs[1]);
	assert_int_equal(rep.first_skip_at, offs[1]);
	assert_int_equal(append(j, 5, NULL), 0);
	close_journal(&t, j);
	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -q '^journal.damaged-'", dir);
	assert_int_equal(system(cmd), 0);

	opts_init(&o, dir, FP_FSYNC_ALWAYS, &seen);
	seen.skip_from = 1;
	assert_int_equal(fp_journal_open(&j, t.loop, &o, &rep, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 5);
	assert_int_equal(rep.skipped, 0);
	close_journal(&t, j);
	sbuf_free(&b);
	rm_tree(dir);
	t_free(&t);
}

static void open_refuses_wrong_version(void **state)
{
	struct fp_journal_options o;
	char dir[4096], path[4200], err[320];
	struct sbuf b;
	fp_journal *j;
	uint32_t crc;
	struct t t;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	file_path(path, sizeof(path), dir, "journal");
	build_journal(&b, 1, NULL);
	b.data[8] = 2;
	crc = fp_crc32c(0, b.data, 20);
	memcpy(b.data + 20, &crc, 4);
	write_file(path, b.data, b.len);
	opts_init(&o, dir, FP_FSYNC_ALWAYS, NULL);
	o.recover = true;          /* no help for a format it cannot read */
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "journal format version 2"));
	assert_non_null(strstr(err, path));
	sbuf_free(&b);
	rm_tree(dir);
	t_free(&t);
}

/* The replay callback can refuse a record, and says why. */
static int refuse_cb(void *data, const struct fp_jrec *r, uint64_t off,
		     char *err, size_t errlen)
{
	snprintf(err, errlen, "record at %llu: no", (unsigned long long)off);
	return -EPROTO;
}

static void open_fails_when_replay_refuses(void **state)
{
	struct fp_journal_options o;
	char dir[4096], path[4200], err[320];
	struct sbuf b;
	size_t offs[1];
	fp_journal *j;
	struct t t;

	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	file_path(path, sizeof(path), dir, "journal");
	build_journal(&b, 1, offs);
	write_file(path, b.data, b.len);
	opts_init(&o, dir, FP_FSYNC_ALWAYS, NULL);
	o.replay = refuse_cb;
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), -EPROTO);
	assert_string_equal(err, "record at 24: no");
	sbuf_free(&b);
	rm_tree(dir);
	t_free(&t);
}

/* --- the job store's records --------------------------------------------- */

/* Every prefix of a record's payload is refused, never read past. */
static void check_prefixes_refused(const struct sbuf *b, size_t start,
				   int (*get)(const struct fp_jrec *r))
{
	struct fp_jrec r;
	size_t cut;

	assert_int_equal(fp_jrec_parse(b->data + start, b->len - start, TEST_SALT, &r), 0);
	for (cut = 0; cut < r.len; cut++) {
		struct fp_jrec t = r;
		unsigned char *copy = malloc(cut ? cut : 1);

		/* A copy of just `cut` bytes, so ASan sees any overread. */
		assert_non_null(copy);
		memcpy(copy, r.payload, cut);
		t.payload = copy;
		t.len = (uint32_t)cut;
		assert_int_equal(get(&t), -EBADMSG);
		free(copy);
	}
}

static int get_job_only(const struct fp_jrec *r)
{
	struct fp_jr_job j;
	int e = fp_jr_get_job(r, &j);

	if (e == 0)
		fp_jr_job_clear(&j);
	return e;
}

static int get_outcomes_all(const struct fp_jrec *r)
{
	struct fp_jr_outcomes o;
	struct fp_jr_outcome e;
	uint8_t id[FP_JR_ID_BYTES];
	int k;

	if ((k = fp_jr_outcomes_get_begin(&o, r, id)) < 0)
		return k;
	while ((k = fp_jr_outcomes_get_next(&o, &e)) == 1)
		;
	return k;
}

static int get_mark_only(const struct fp_jrec *r)
{
	struct fp_jr_mark m;

	return fp_jr_get_mark(r, &m);
}

static void job_records_round_trip(void **state)
{
	struct fp_jr_item items[3] = { { "1", 1 }, { "", 0 }, { "{\"a\":[1,2]}", 11 } };
	struct fp_jr_opts stages[2] = {
		{ .task = "square", .task_len = 6, .timeout_ms = -1, .retries = 2,
		  .retry_on = 5, .workers = 3, .buffer = 100 },
		{ .task = "ex.upper", .task_len = 8, .timeout_ms = 2500 },
	};
	struct fp_jr_job in, out;
	struct fp_jrec r;
	struct sbuf b;
	size_t start;
	int k;

	sbuf_init(&b);
	for (k = 0; k < 2; k++) {
		memset(&in, 0, sizeof(in));
		memset(in.id, 0xa0 + k, sizeof(in.id));
		in.kind = (uint8_t)(k ? 2 : 1);
		in.created_at = 1765000000123ull;
		in.body_hash = 0x1122334455667788ull;
		in.n = 3;
		in.items = items;
		if (k) {
			in.nstages = 2;
			in.stages = stages;
			in.reduce = "sum";
			in.reduce_len = 3;
			in.reduce_batch = 256;
			in.ordered = true;
		} else {
			in.idem_key = "key-1";
			in.idem_key_len = 5;
			in.opts = (struct fp_jr_opts){ .task = "square", .task_len = 6,
				.timeout_ms = 60000, .retries = 3, .retry_on = 7, .chunksize = 64 };
		}
		sbuf_reset(&b);
		start = fp_jrec_begin(&b);
		assert_int_equal(fp_jr_put_job(&b, &in), 0);
		assert_int_equal(fp_jrec_end(&b, start, FP_JR_JOB, TEST_SALT), 0);
		assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
		assert_int_equal(r.type, FP_JR_JOB);
		assert_int_equal(fp_jr_get_job(&r, &out), 0);
		assert_memory_equal(out.id, in.id, FP_JR_ID_BYTES);
		assert_int_equal(out.kind, in.kind);
		assert_int_equal(out.created_at, in.created_at);
		assert_int_equal(out.body_hash, in.body_hash);
		assert_int_equal(out.n, 3);
		assert_int_equal(out.items[0].len, 1);
		assert_memory_equal(out.items[0].text, "1", 1);
		assert_int_equal(out.items[1].len, 0);
		assert_int_equal(out.items[2].len, 11);
		assert_memory_equal(out.items[2].text, items[2].text, 11);
		if (k) {
			assert_null(out.idem_key);
			assert_int_equal(out.nstages, 2);
			assert_int_equal(out.stages[0].task_len, 6);
			assert_memory_equal(out.stages[0].task, "square", 6);
			assert_int_equal(out.stages[0].timeout_ms, -1);
			assert_int_equal(out.stages[0].retries, 2);
			assert_int_equal(out.stages[0].retry_on, 5);
			assert_int_equal(out.stages[0].workers, 3);
			assert_int_equal(out.stages[0].buffer, 100);
			assert_memory_equal(out.stages[1].task, "ex.upper", 8);
			assert_int_equal(out.stages[1].timeout_ms, 2500);
			assert_int_equal(out.reduce_len, 3);
			assert_memory_equal(out.reduce, "sum", 3);
			assert_int_equal(out.reduce_batch, 256);
			assert_true(out.ordered);
		} else {
			assert_int_equal(out.idem_key_len, 5);
			assert_memory_equal(out.idem_key, "key-1", 5);
			assert_int_equal(out.nstages, 0);
			assert_memory_equal(out.opts.task, "square", 6);
			assert_int_equal(out.opts.timeout_ms, 60000);
			assert_int_equal(out.opts.retries, 3);
			assert_int_equal(out.opts.retry_on, 7);
			assert_int_equal(out.opts.chunksize, 64);
			assert_null(out.reduce);
		}
		fp_jr_job_clear(&out);
		check_prefixes_refused(&b, 0, get_job_only);
	}
	sbuf_free(&b);
}

/*
 * A job's own concurrency follows its items, only when set: a record
 * without it (all those written before it was kept) reads as 0, and one
 * cut inside it is refused.
 */
static void job_record_keeps_its_concurrency(void **state)
{
	struct fp_jr_item items[2] = { { "1", 1 }, { "2", 1 } };
	struct fp_jr_job in, out;
	struct fp_jrec r;
	struct sbuf b;
	size_t start;

	(void)state;
	sbuf_init(&b);
	for (uint32_t conc = 0; conc < 8; conc += 7) {
		memset(&in, 0, sizeof(in));
		in.kind = 1;
		in.n = 2;
		in.items = items;
		in.opts = (struct fp_jr_opts){ .task = "square", .task_len = 6, .concurrency = conc };
		sbuf_reset(&b);
		start = fp_jrec_begin(&b);
		assert_int_equal(fp_jr_put_job(&b, &in), 0);
		assert_int_equal(fp_jrec_end(&b, start, FP_JR_JOB, TEST_SALT), 0);
		assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
		assert_int_equal(fp_jr_get_job(&r, &out), 0);
		assert_int_equal(out.opts.concurrency, conc);
		assert_int_equal(out.n, 2);
		fp_jr_job_clear(&out);
		if (conc) {
			/* Cut inside the u32: refused, not read as a smaller number. */
			for (size_t cut = 1; cut < 4; cut++) {
				struct fp_jrec t = r;

				t.len -= (uint32_t)cut;
				assert_int_equal(fp_jr_get_job(&t, &out), -EBADMSG);
			}
		}
	}
	sbuf_free(&b);
}

static void outcome_and_mark_records_round_trip(void **state)
{
	struct fp_jr_outcome e[6] = {
		{ .pos = 0, .status = 0, .attempts = 1, .text = "42", .len = 2 },
		{ .pos = 7, .status = 3, .attempts = 4, .index = 9, .stage = 1,
		  .text = "worker killed by SIGKILL", .len = 24 },
		{ .pos = 8, .status = 0, .attempts = 1, .text = "", .len = 0 },
		/* Places going back, and far: a map's chunks end out of order. */
		{ .pos = 3, .status = 0, .attempts = 300, .text = "9", .len = 1 },
		{ .pos = 4000000000u, .status = 1, .attempts = 1, .index = 70000, .stage = 2,
		  .text = "x", .len = 1 },
		{ .pos = 0, .status = 0, .attempts = 1, .text = "0", .len = 1 },
	};
	static const uint16_t types[] = { FP_JR_OUTCOMES_PACKED, FP_JR_OUTCOMES };
	size_t sizes[2][2];
	int t;
	uint8_t id[FP_JR_ID_BYTES], got[FP_JR_ID_BYTES];
	struct fp_jr_outcomes o;
	struct fp_jr_outcome x;
	struct fp_jr_mark m, mo;
	struct fp_jrec r;
	struct sbuf b;
	size_t start;
	int origin, i;

	memset(id, 0x5c, sizeof(id));
	sbuf_init(&b);
	/* Both layouts: the packed one written now, the fixed one older builds wrote. */
	for (t = 0; t < 2; t++)
	for (origin = 0; origin < 2; origin++) {
		sbuf_reset(&b);
		start = fp_jrec_begin(&b);
		if (t == 0)
			fp_jr_outcomes_begin(&o, &b, id, origin);
		else
			fp_jr_outcomes_begin_as(&o, &b, id, origin, types[t]);
		for (i = 0; i < 6; i++)
			fp_jr_outcomes_put(&o, &e[i]);
		fp_jr_outcomes_end(&o);
		assert_int_equal(fp_jr_outcomes_type(&o), types[t]);
		assert_int_equal(fp_jrec_end(&b, start, types[t], TEST_SALT), 0);
		assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
		sizes[t][origin] = r.len;
		assert_int_equal(fp_jr_outcomes_get_begin(&o, &r, got), 0);
		assert_memory_equal(got, id, sizeof(id));
		for (i = 0; i < 6; i++) {
			assert_int_equal(fp_jr_outcomes_get_next(&o, &x), 1);
			assert_int_equal(x.pos, e[i].pos);
			assert_int_equal(x.status, e[i].status);
			assert_int_equal(x.attempts, e[i].attempts);
			assert_int_equal(x.index, origin ? e[i].index : 0);
			assert_int_equal(x.stage, origin ? e[i].stage : 0);
			assert_int_equal(x.len, e[i].len);
			assert_memory_equal(x.text, e[i].text, x.len);
		}
		assert_int_equal(fp_jr_outcomes_get_next(&o, &x), 0);
		check_prefixes_refused(&b, 0, get_outcomes_all);
	}
	/* Packed is smaller, and a record of another type is not outcomes. */
	assert_true(sizes[0][0] < sizes[1][0] && sizes[0][1] < sizes[1][1]);
	r.type = FP_JR_END;
	assert_int_equal(fp_jr_outcomes_get_begin(&o, &r, got), -EBADMSG);

	sbuf_reset(&b);
	memcpy(m.id, id, sizeof(id));
	m.value = 4;
	m.when = 1765000000999ull;
	start = fp_jrec_begin(&b);
	fp_jr_put_mark(&b, &m);
	assert_int_equal(fp_jrec_end(&b, start, FP_JR_END, TEST_SALT), 0);
	assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
	assert_int_equal(fp_jr_get_mark(&r, &mo), 0);
	assert_memory_equal(mo.id, id, sizeof(id));
	assert_int_equal(mo.value, 4);
	assert_int_equal(mo.when, m.when);
	check_prefixes_refused(&b, 0, get_mark_only);
	assert_string_equal(fp_jr_type_name(FP_JR_FORGET), "FORGET");
	assert_string_equal(fp_jr_type_name(FP_JR_RERUN), "RERUN");
	assert_string_equal(fp_jr_type_name(99), "unknown");
	sbuf_free(&b);
}


static int get_inputs_only(const struct fp_jrec *r)
{
	uint8_t id[FP_JR_ID_BYTES];
	uint32_t *idx;
	size_t n;
	int e = fp_jr_get_inputs(r, id, &idx, &n);

	free(idx);
	return e;
}

/* INPUTS: the done inputs' indices come back; a short or long record is refused. */
static void inputs_record_round_trip(void **state)
{
	static const uint8_t id[FP_JR_ID_BYTES] = { 9, 8, 7, 6, 5, 4, 3, 2, 1 };
	static const uint32_t in[] = { 0, 7, 3, 4000000000u };
	uint8_t got[FP_JR_ID_BYTES];
	uint32_t *idx;
	struct fp_jrec r;
	struct sbuf b;
	size_t start, n;

	(void)state;
	sbuf_init(&b);
	for (size_t count = 0; count <= 4; count += 4) {
		sbuf_reset(&b);
		start = fp_jrec_begin(&b);
		fp_jr_put_inputs(&b, id, in, count);
		assert_int_equal(fp_jrec_end(&b, start, FP_JR_INPUTS, TEST_SALT), 0);
		assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
		assert_int_equal(r.type, FP_JR_INPUTS);
		assert_int_equal(fp_jr_get_inputs(&r, got, &idx, &n), 0);
		assert_memory_equal(got, id, sizeof(id));
		assert_int_equal(n, count);
		if (count)
			assert_memory_equal(idx, in, sizeof(in));
		free(idx);
		check_prefixes_refused(&b, 0, get_inputs_only);
	}
	/* A byte too many is not an index. */
	sbuf_reset(&b);
	start = fp_jrec_begin(&b);
	fp_jr_put_inputs(&b, id, in, 2);
	fp_jrec_put_u8(&b, 1);
	assert_int_equal(fp_jrec_end(&b, start, FP_JR_INPUTS, TEST_SALT), 0);
	assert_int_equal(fp_jrec_parse(b.data, b.len, TEST_SALT, &r), 0);
	assert_int_equal(get_inputs_only(&r), -EBADMSG);
	assert_string_equal(fp_jr_type_name(FP_JR_INPUTS), "INPUTS");
	assert_string_equal(fp_jr_type_name(FP_JR_OUTCOMES_PACKED), "OUTCOMES");
	sbuf_free(&b);
}

/* --- compaction ---------------------------------------------------------- */

/* Replayed records' numbers (their first field), in order. */
struct nums {
	uint32_t v[8192];
	size_t n;
};

static int nums_cb(void *data, const struct fp_jrec *r, uint64_t off,
		   char *err, size_t errlen)
{
	struct nums *n = data;
	struct fp_jcur c;

	fp_jcur_init(&c, r);
	if (n->n < 8192)
		n->v[n->n++] = fp_jcur_u32(&c);
	return 0;
}

/*
 * The live state: records first..end-1, per_slice at a time, each slice
 * also appending one record to the journal itself (state changing while
 * the snapshot is taken); -EIO at call fail_at.
 */
struct snap {
	struct t *t;
	fp_journal *j;
	unsigned next, end, per_slice;
	int calls, fail_at;
	unsigned *load_next;
	int done_calls, done_status;
	bool done;
};

static int snap_cb(void *data, struct sbuf *b)
{
	struct snap *s = data;
	unsigned k;

	if (++s->calls == s->fail_at)
		return -EIO;
	assert_int_equal(append(s->j, (*s->load_next)++, NULL), 0);
	if (s->next < s->end) {
		for (k = 0; k < s->per_slice && s->next < s->end; k++)
			put_test_record_salted(b, s->next++, fp_journal_salt(s->j));
		return 1;
	}
	/*
	 * The last call gives an empty slice, so the final step begins at
	 * once: the write of the append above is in flight, and these two
	 * wait in pend, which the final step must take over (or give back,
	 * when it fails).
	 */
	assert_int_equal(append(s->j, (*s->load_next)++, NULL), 0);
	assert_int_equal(append(s->j, (*s->load_next)++, NULL), 0);
	return 0;
}

static void snap_done_cb(void *data, int status)
{
	struct snap *s = data;

	s->done_calls++;
	s->done_status = status;
	s->done = true;
	t_done(s->t);
}

/* A record appended every millisecond while the compaction runs. */
struct load {
	fp_timer tm;
	fp_journal *j;
	struct snap *s;
	unsigned *next;
	unsigned in_state[C_FINAL_DIRSYNC + 1];   /* appends made in each step */
};

static void load_cb(fp_timer *tm)
{
	struct load *l = tm->data;

	if (l->s->done)
		return;
	l->in_state[l->j->c.state]++;
	assert_int_equal(append(l->j, (*l->next)++, NULL), 0);
	assert_int_equal(fp_timer_start(l->j->loop, tm, 1, load_cb), 0);
}

static int all_written(void *data)
{
	fp_journal *j = data;

	return !j->pend.len && !fp_io_active(&j->wio);
}

static void compact_case(enum fp_fsync_policy pol, int fail_at, int fail_step,
			 bool close_early)
{
	struct fp_journal_options o;
	struct fp_journal_stats st;
	char dir[4096], path[4200], err[320];
	struct nums *nums = calloc(1, sizeof(*nums));
	unsigned i, next = 200, first_tail;
	struct snap s = { 0 };
	struct load l = { 0 };
	struct w w;
	fp_journal *j;
	struct t t;

	assert_non_null(nums);
	t_init(&t);
	tmp_dir(dir, sizeof(dir));
	file_path(path, sizeof(path), dir, "journal.new");
	opts_init(&o, dir, pol, NULL);
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	/* History: 200 records the live state no longer needs. */
	for (i = 0; i < 200; i++)
		assert_int_equal(append(j, i, NULL), 0);
	w_init(&w, &t, j, NULL);
	fp_journal_flush(j, &w.jw);
	t_run(&t, 1);

	s.t = &t;
	s.j = j;
	s.next = 1000;
	s.end = 1050;
	s.per_slice = 10;
	s.fail_at = fail_at;
	s.load_next = &next;
	first_tail = next;
	j->c.fail_step = fail_step;
	assert_int_equal(fp_journal_compact(j, snap_cb, snap_done_cb, &s), 0);
	assert_int_equal(fp_journal_compact(j, snap_cb, snap_done_cb, &s), -EBUSY);
	assert_true(fp_journal_compacting(j));
	/* Appended after it began, before its first slice. */
	assert_int_equal(append(j, next++, NULL), 0);
	l.tm.data = &l;
	l.j = j;
	l.s = &s;
	l.next = &next;
	assert_int_equal(fp_timer_start(t.loop, &l.tm, 1, load_cb), 0);
	if (close_early) {
		fp_timer_stop(&l.tm);
		fp_journal_close(j, closed_cb, &t);
		t_run(&t, 2);
		assert_int_equal(s.done_status, -ESHUTDOWN);
	} else {
		t_run(&t, 1);
		fp_timer_stop(&l.tm);
		/* After it, appends go on (to whichever file is the journal). */
		w_init(&w, &t, j, NULL);
		assert_int_equal(append(j, next++, &w), 0);
		t_run(&t, 1);
		assert_int_equal(w.status, 0);
		t_run_until(&t, all_written, j);
		fp_journal_stats_get(j, &st);
		assert_int_equal(st.compactions, fail_at || fail_step ? 0 : 1);
		if (!fail_at && !fail_step) {
			assert_int_equal(s.done_status, 0);
			assert_true(st.compacted_to < st.compacted_from);
		} else {
			assert_int_equal(s.done_status, -EIO);
		}
		/* The final step, when reached, found records waiting in pend. */
		if (!fail_at && fail_step != C_SNAP)
			assert_true(j->c.l_f > j->c.l_w);
		close_journal(&t, j);
	}
	assert_int_equal(s.done_calls, 1);
	assert_int_not_equal(access(path, F_OK), 0);

	/* What a restart sees. */
	opts_init(&o, dir, pol, NULL);
	o.replay = nums_cb;
	o.data = nums;
	assert_int_equal(fp_journal_open(&j, t.loop, &o, NULL, err, sizeof(err)), 0);
	i = 0;
	if (!fail_at && !fail_step && !close_early) {
		/* The snapshot, then everything appended since it began. */
		for (; i < 50; i++)
			assert_int_equal(nums->v[i], 1000 + i);
	} else {
		/* Given up: the history, then everything appended since. */
		for (; i < 200; i++)
			assert_int_equal(nums->v[i], i);
	}
	assert_int_equal(nums->n, i + (next - first_tail));
	for (; i < nums->n; i++)
		assert_int_equal(nums->v[i], first_tail + (i - (nums->n - (next - first_tail))));
	print_message("%s%s: %u records appended while compacting; by step: "
		      "snap %u, want_final %u, final %u/%u/%u\n",
		      fp_fsync_policy_name(pol), fail_at || fail_step ? " (failed)" :
		      close_early ? " (closed)" : "", next - first_tail,
		      l.in_state[C_SNAP], l.in_state[C_WANT_FINAL],
		      l.in_state[C_FINAL_WRITE], l.in_state[C_FINAL_SYNC],
		      l.in_state[C_FINAL_DIRSYNC]);
	close_journal(&t, j);
	rm_tree(dir);
	t_free(&t);
	free(nums);
}

/*
 * The journal is rewritten as the snapshot plus what was appended
 * meanwhile, each once and in order; under always and interval.
 */
static void compaction_rewrites_from_the_live_state(void **state)
{
	compact_case(FP_FSYNC_ALWAYS, 0, 0, false);
	compact_case(FP_FSYNC_INTERVAL, 0, 0, false);
}

/*
 * A snapshot that fails, a failed write or fsync of the new file, or a
 * close, leave the journal as it was plus what was appended meanwhile.
 */
static void compaction_given_up_loses_nothing(void **state)
{
	compact_case(FP_FSYNC_ALWAYS, 3, 0, false);
	compact_case(FP_FSYNC_ALWAYS, 0, C_SNAP, false);
	compact_case(FP_FSYNC_INTERVAL, 0, C_FINAL_WRITE, false);
	compact_case(FP_FSYNC_ALWAYS, 0, C_FINAL_SYNC, false);
	compact_case(FP_FSYNC_NEVER, 0, 0, true);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32c_known_vectors),
		cmocka_unit_test(crc32c_hw_matches_table),
		cmocka_unit_test(header_checked),
		cmocka_unit_test(record_round_trip),
		cmocka_unit_test(record_damage_detected),
		cmocka_unit_test(scan_cuts_torn_tails),
		cmocka_unit_test(scan_refuses_damage_in_the_middle),
		cmocka_unit_test(scan_refuses_other_versions_and_files),
		cmocka_unit_test(forged_record_in_a_payload_is_not_a_record),
		cmocka_unit_test(scan_survives_random_damage),
		cmocka_unit_test(open_append_reopen),
		cmocka_unit_test(always_group_commits),
		cmocka_unit_test(interval_and_never_policies),
		cmocka_unit_test(cancelled_waiter_is_not_called),
		cmocka_unit_test(big_batch_leaves_no_big_buffer),
		cmocka_unit_test(failed_write_is_cut_and_later_appends_work),
		cmocka_unit_test(failed_fsync_breaks_the_journal),
		cmocka_unit_test(locked_directory_refused),
		cmocka_unit_test(unwritable_directory_refused),
		cmocka_unit_test(open_cuts_torn_tail_and_warns),
		cmocka_unit_test(open_damaged_refused_then_recovered),
		cmocka_unit_test(open_refuses_wrong_version),
		cmocka_unit_test(open_fails_when_replay_refuses),
		cmocka_unit_test(job_records_round_trip),
		cmocka_unit_test(job_record_keeps_its_concurrency),
		cmocka_unit_test(outcome_and_mark_records_round_trip),
		cmocka_unit_test(inputs_record_round_trip),
		cmocka_unit_test(compaction_rewrites_from_the_live_state),
		cmocka_unit_test(compaction_given_up_loses_nothing),
	};
	fp_loop *loop;
	int r;

	r = fp_loop_new(&loop, FP_LOOP_AUTO);
	if (r < 0) {
		fprintf(stderr, "no loop (%s): skipping\n", strerror(-r));
		return 77;
	}
	fp_loop_free(loop);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
