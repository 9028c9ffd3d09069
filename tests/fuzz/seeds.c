/*
 * Writes the seeds of the targets whose inputs are binary, with the
 * project's own encoders: frames (pool/frame.h), what a worker sends
 * (frame-master/) and what the master sends (frame-worker/), one file per
 * conversation; journal files (server/journal_format.h) for fuzz-journal
 * (journal/, each after the byte that says "the file itself").
 * Usage: fuzz-seeds DIR   (DIR holds frame-master/, frame-worker/, journal/).
 * The files in tests/fuzz/corpus/ were made by it; run it again after a
 * change of either format.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forkpool.h"
#include "frame_reader.h"
#include "journal_format.h"
#include "journal_jobs.h"
#include "sbuf.h"

/* The salt of the journal seeds' records (journal_format.h): the recipes' own, as it happens. */
#define SEED_SALT 0x5a175a17u

struct out {
	char buf[8192];
	size_t len;
};

static void frame(struct out *o, enum fp_frame_type type, uint64_t id, uint32_t flags,
		  unsigned hop, const char *payload, size_t len)
{
	struct fp_frame_header h;

	/* 0 for a string: its length. */
	if (!len)
		len = strlen(payload);
	fp_frame_header_init(&h, type, id, (uint32_t)len, flags);
	h.hop = (uint8_t)hop;
	memcpy(o->buf + o->len, &h, sizeof(h));
	memcpy(o->buf + o->len + sizeof(h), payload, len);
	o->len += sizeof(h) + len;
}

/* A TASKS frame of n items of args[], a chain when hops > 0 (names NUL-separated). */
static void tasks(struct out *o, uint64_t id0, const char *names, uint32_t names_len,
		  unsigned hops, uint32_t flags, const char *const *args, uint32_t n)
{
	size_t total = 0;
	char *p;

	for (uint32_t i = 0; i < n; i++)
		total += strlen(args[i]);
	p = fp_frame_put_tasks(o->buf + o->len, id0, n, names, names_len,
			       (uint32_t)fp_frame_tasks_len(n, names_len, total), flags, hops);
	for (uint32_t i = 0; i < n; i++)
		p = fp_frame_put_tasks_item(p, args[i], (uint32_t)strlen(args[i]));
	o->len = (size_t)(p - o->buf);
}

static void results(struct out *o, uint64_t id0, unsigned hop, const uint32_t *flags,
		    const char *const *values, uint32_t n)
{
	size_t total = 0;
	char *p;

	for (uint32_t i = 0; i < n; i++)
		total += strlen(values[i]);
	p = fp_frame_put_results(o->buf + o->len, id0, n,
				 (uint32_t)fp_frame_results_len(n, total), 2048, hop);
	for (uint32_t i = 0; i < n; i++)
		p = fp_frame_put_results_item(p, flags[i], values[i], (uint32_t)strlen(values[i]));
	o->len = (size_t)(p - o->buf);
}

static void save(const char *dir, const char *sub, const char *name, struct out *o)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(o->buf, 1, o->len, f) != o->len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
	o->len = 0;
}

/* A journal of `n` records, each a few fields; the byte before it says "the file itself". */
static void journal(struct out *o, unsigned n)
{
	unsigned char hdr[FP_JOURNAL_HDR_LEN];
	struct sbuf b;
	size_t start;

	sbuf_init(&b);
	sbuf_add(&b, "\x01", 1);
	fp_journal_header_put(hdr, SEED_SALT);
	sbuf_add(&b, (const char *)hdr, sizeof(hdr));
	for (unsigned i = 0; i < n; i++) {
		start = fp_jrec_begin(&b);
		fp_jrec_put_u8(&b, (uint8_t)i);
		fp_jrec_put_u32(&b, 1000 + i);
		fp_jrec_put_u64(&b, 1ull << (32 + i));
		fp_jrec_put_bytes(&b, "0123456789abcdef0123456789abcdef", 32);
		fp_jrec_put_bytes(&b, "{\"task\":\"square\",\"args\":7}", 27);
		if (fp_jrec_end(&b, start, (uint16_t)(1 + i % 3), SEED_SALT) < 0 ||
		    b.len > sizeof(o->buf)) {
			fprintf(stderr, "journal seed too large\n");
			exit(1);
		}
	}
	memcpy(o->buf, b.data, b.len);
	o->len = b.len;
	sbuf_free(&b);
}

/*
 * The job store's records (journal_jobs.h), each framed by fp_jrec_end() in
 * `b` from `start`: an apply, a pipeline, outcomes with and without their
 * origin, and the four marks.
 */
static void job_records(struct sbuf *b, void (*done)(struct sbuf *, size_t, uint16_t))
{
	static const uint8_t id[FP_JR_ID_BYTES] = { 0xfa, 0xce, 0xb0, 0x0c, 1, 2, 3, 4,
						    5, 6, 7, 8, 9, 10, 11, 12 };
	struct fp_jr_item one[] = { { "7", 1 } }, two[] = { { "\"a b\"", 5 }, { "\"c\"", 3 } };
	struct fp_jr_opts stages[] = {
		{ .task = "words", .task_len = 5, .timeout_ms = -1 },
		{ .task = "lower", .task_len = 5, .timeout_ms = 500, .retries = 2, .retry_on = 3,
		  .workers = 1, .buffer = 100 },
	};
	struct fp_jr_job apply = {
		.kind = 0, .created_at = 1765000000000ull, .body_hash = 0x1234,
		.opts = { .task = "square", .task_len = 6, .timeout_ms = -1, .retries = 1,
			  .retry_on = 3 },
		.n = 1, .items = one,
	};
	struct fp_jr_job pipeline = {
		.kind = 2, .created_at = 1765000000001ull, .idem_key = "key-1", .idem_key_len = 5,
		.nstages = 2, .stages = stages, .reduce = "count", .reduce_len = 5,
		.reduce_batch = 256, .ordered = true, .n = 2, .items = two,
	};
	struct fp_jr_outcome ok = { .pos = 0, .status = 0, .attempts = 1, .text = "49", .len = 2 };
	struct fp_jr_outcome bad = { .pos = 1, .status = 2, .attempts = 3, .index = 1, .stage = 1,
				     .text = "killed by SIGKILL", .len = 17 };
	struct fp_jr_mark mark = { .value = 3, .when = 1765000000002ull };
	struct fp_jr_outcomes o;
	size_t start;

	memcpy(apply.id, id, sizeof(id));
	memcpy(pipeline.id, id, sizeof(id));
	pipeline.id[0] = 0xab;
	memcpy(mark.id, id, sizeof(id));
	start = fp_jrec_begin(b);
	fp_jr_put_job(b, &apply);
	done(b, start, FP_JR_JOB);
	start = fp_jrec_begin(b);
	fp_jr_put_job(b, &pipeline);
	done(b, start, FP_JR_JOB);
	start = fp_jrec_begin(b);
	fp_jr_put_mark(b, &mark);
	done(b, start, FP_JR_STARTED);
	start = fp_jrec_begin(b);
	fp_jr_outcomes_begin(&o, b, id, false);
	fp_jr_outcomes_put(&o, &ok);
	fp_jr_outcomes_put(&o, &bad);
	fp_jr_outcomes_end(&o);
	done(b, start, fp_jr_outcomes_type(&o));
	/* The fixed layout of older builds, which replay still reads. */
	start = fp_jrec_begin(b);
	fp_jr_outcomes_begin_as(&o, b, pipeline.id, true, FP_JR_OUTCOMES);
	fp_jr_outcomes_put(&o, &bad);
	fp_jr_outcomes_end(&o);
	done(b, start, fp_jr_outcomes_type(&o));
	start = fp_jrec_begin(b);
	fp_jr_put_mark(b, &mark);
	done(b, start, FP_JR_END);
	start = fp_jrec_begin(b);
	fp_jr_put_mark(b, &mark);
	done(b, start, FP_JR_CANCEL);
	start = fp_jrec_begin(b);
	fp_jr_put_mark(b, &mark);
	done(b, start, FP_JR_FORGET);
}

/* In a journal file: framed by the real encoder. */
static void frame_record(struct sbuf *b, size_t start, uint16_t type)
{
	if (fp_jrec_end(b, start, type, SEED_SALT) < 0) {
		fprintf(stderr, "journal seed: cannot frame a record\n");
		exit(1);
	}
}

/*
 * In a recipe for fuzz-journal: the header fp_jrec_begin() reserved becomes
 * the recipe's type byte and u16 length, the payload stays.
 */
static void recipe_record(struct sbuf *b, size_t start, uint16_t type)
{
	size_t len = b->len - start - FP_JREC_HDR_LEN;
	char *p = b->data + start;

	if (len > 0xffff) {
		fprintf(stderr, "journal seed: a record too long for a recipe\n");
		exit(1);
	}
	p[0] = (char)type;
	p[1] = (char)(len & 0xff);
	p[2] = (char)(len >> 8);
	memmove(p + 3, p + FP_JREC_HDR_LEN, len);
	b->len = start + 3 + len;
}

static void save_sbuf(const char *dir, const char *name, struct sbuf *b, struct out *o)
{
	if (b->oom || b->len > sizeof(o->buf)) {
		fprintf(stderr, "journal seed %s: too large\n", name);
		exit(1);
	}
	memcpy(o->buf, b->data, b->len);
	o->len = b->len;
	save(dir, "journal", name, o);
	sbuf_reset(b);
}

int main(int argc, char **argv)
{
	static const char *const three[] = { "1", "\"two\"", "[3]" };
	static const uint32_t rflags[] = { 0, 5u << FP_FRAME_US_SHIFT, FP_FRAME_RETIRE };
	static const char task[] = "square\0" "7";
	static const char chain[] = "words\0lower\0count";
	struct out o = { .len = 0 };
	const char *dir;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];

	/* What a worker sends the master. */
	frame(&o, FP_FRAME_READY, 0, 0, 0, "", 0);
	frame(&o, FP_FRAME_RESULT, 1, 12u << FP_FRAME_US_SHIFT, 0, "49", 0);
	frame(&o, FP_FRAME_ERROR, 2, FP_ITEM_TASK_ERROR | FP_FRAME_RETIRE, 0, "it failed", 0);
	save(dir, "frame-master", "ready-result-error", &o);
	frame(&o, FP_FRAME_INITFAIL, 0, 0, 0, "worker_init: -5 (Input/output error)", 0);
	save(dir, "frame-master", "initfail", &o);
	frame(&o, FP_FRAME_READY, 0, 0, 0, "[\"echo\",{\"name\":\"gen\",\"generator\":true}]", 0);
	results(&o, 10, 0, rflags, three, 3);
	save(dir, "frame-master", "ready-tasks-results", &o);
	frame(&o, FP_FRAME_EMIT, 20, 0, 1, "\"a\"", 0);
	frame(&o, FP_FRAME_EMIT, 20, 0, 1, "\"b\"", 0);
	frame(&o, FP_FRAME_RESULT, 20, FP_FRAME_NOVALUE, 1, "", 0);
	results(&o, 21, 2, rflags, three, 2);
	save(dir, "frame-master", "emits-chain", &o);

	/* What the master sends a worker. */
	frame(&o, FP_FRAME_TASK, 1, FP_FRAME_FLUSH, 0, task, sizeof(task) - 1);
	save(dir, "frame-worker", "task", &o);
	tasks(&o, 5, "square", 6, 0, 0, three, 3);
	tasks(&o, 8, "echo", 4, 0, FP_FRAME_FLUSH, three, 1);
	save(dir, "frame-worker", "tasks-two-segments", &o);
	tasks(&o, 40, chain, sizeof(chain) - 1, 2, FP_FRAME_STREAM | FP_FRAME_FLUSH, three, 3);
	save(dir, "frame-worker", "tasks-chain", &o);
	frame(&o, FP_FRAME_TASK, 50, FP_FRAME_STREAM, 0, task, sizeof(task) - 1);
	tasks(&o, 51, "words", 5, 0, FP_FRAME_STREAM | FP_FRAME_FLUSH, three, 2);
	save(dir, "frame-worker", "stream-task-then-tasks", &o);

	/* Journal files, whole; the torn and damaged ones are the recipes' work. */
	journal(&o, 0);
	save(dir, "journal", "header-only", &o);
	journal(&o, 3);
	save(dir, "journal", "three-records", &o);
	journal(&o, 3);
	o.len -= 10;
	save(dir, "journal", "torn-tail", &o);
	journal(&o, 3);
	o.buf[1 + FP_JOURNAL_HDR_LEN + 20] ^= 0x40;
	save(dir, "journal", "damaged-first-record", &o);

	/* The job store's records: a journal of them, and recipes of them (then damaged). */
	{
		unsigned char hdr[FP_JOURNAL_HDR_LEN];
		struct sbuf b;

		sbuf_init(&b);
		sbuf_add(&b, "\x01", 1);
		fp_journal_header_put(hdr, SEED_SALT);
		sbuf_add(&b, (const char *)hdr, sizeof(hdr));
		job_records(&b, frame_record);
		save_sbuf(dir, "jobs", &b, &o);
		sbuf_add(&b, "\x00", 1);
		job_records(&b, recipe_record);
		save_sbuf(dir, "recipe-jobs", &b, &o);
		sbuf_add(&b, "\x00", 1);
		job_records(&b, recipe_record);
		/* Damage: two bytes flipped in the second record and third, no cut. */
		sbuf_add(&b, "\xff\x02\x06\x20\x0c\x01\x00", 7);
		save_sbuf(dir, "recipe-jobs-damaged", &b, &o);
		sbuf_free(&b);
	}
	return 0;
}
