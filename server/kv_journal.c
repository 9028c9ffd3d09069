/*
 * The shared values' records in the journal (kv_journal.h): written from
 * the pool's persister hook, read back at start-up, and snapshotted for the
 * job store's compaction.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_journal.h"

struct fp_kv_journal {
	fp_pool *pool;
	fp_journal *j;
	fp_jobs *jobs;
};

/* A write's reply, held by the pool until its record is safe. */
struct kv_wait {
	struct fp_journal_wait w;
	fp_kv_done_fn done;
	void *token;
};

bool fp_kv_journal_owns(uint16_t type)
{
	return type == FP_JR_KV_SET || type == FP_JR_KV_DEL;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One change's payload: key; for a value, the value and its expiry. */
static void put_change(struct sbuf *b, const struct fp_kv_change *c)
{
	fp_jrec_put_bytes(b, c->key, c->key_len);
	if (c->value) {
		fp_jrec_put_bytes(b, c->value, c->value_len);
		fp_jrec_put_u64(b, c->expires_ms);
	}
}

int fp_kv_journal_replay(fp_pool *pool, const struct fp_jrec *rec, uint64_t off, char *err,
			 size_t errlen)
{
	struct fp_kv_change c = { 0 };
	struct fp_jcur cur;
	int rc;

	fp_jcur_init(&cur, rec);
	c.key = fp_jcur_bytes(&cur, &c.key_len);
	if (rec->type == FP_JR_KV_SET) {
		c.value = fp_jcur_bytes(&cur, &c.value_len);
		c.expires_ms = fp_jcur_u64(&cur);
	}
	if (fp_jcur_done(&cur) < 0 || !c.key || (rec->type == FP_JR_KV_SET && !c.value)) {
		snprintf(err, errlen, "a %s record at offset %llu cannot be read",
			 rec->type == FP_JR_KV_SET ? "KV_SET" : "KV_DEL",
			 (unsigned long long)off);
		return -EBADMSG;
	}
	rc = fp_pool_kv_restore(pool, &c);
	if (rc < 0) {
		snprintf(err, errlen, "the shared value '%.*s' at offset %llu cannot be restored:"
			 " %s", (int)(c.key_len < 256 ? c.key_len : 256), c.key,
			 (unsigned long long)off, fp_kv_strerror(rc));
		return rc;
	}
	return 0;
}

static void waited(struct fp_journal_wait *w, int status)
{
	struct kv_wait *kw = w->data;

	kw->done(kw->token, status);
	free(kw);
}

static int persist(void *data, const struct fp_kv_change *c, fp_kv_done_fn done, void *token)
{
	fp_kv_journal *kj = data;
	struct kv_wait *kw = malloc(sizeof(*kw));
	size_t start;
	int rc;

	if (!kw)
		return -ENOMEM;
	memset(&kw->w, 0, sizeof(kw->w));
	kw->w.cb = waited;
	kw->w.data = kw;
	kw->done = done;
	kw->token = token;
	start = fp_journal_begin(kj->j);
	put_change(fp_journal_buf(kj->j), c);
	rc = fp_journal_end(kj->j, start, c->value ? FP_JR_KV_SET : FP_JR_KV_DEL, &kw->w);
	if (rc < 0) {
		free(kw);
		return rc;
	}
	fp_jobs_journal_appended(kj->jobs);
	return 0;
}

static uint64_t live(void *data)
{
	fp_kv_journal *kj = data;
	size_t keys, bytes;

	/* Each entry's 64 bytes of overhead stand for its record's 32 of framing. */
	fp_pool_kv_usage(kj->pool, &keys, &bytes);
	return bytes;
}

struct snap {
	struct sbuf *b;
	uint32_t salt;
	uint64_t wall;
	int err;
};

static void snap_list(fp_pool *pool, int err, const struct fp_kv_entry *e, size_t n, int more,
		      void *data)
{
	struct snap *s = data;

	(void)pool;
	(void)more;
	s->err = err;
	for (size_t i = 0; i < n && s->err == 0; i++) {
		struct fp_kv_change c = { e[i].key, e[i].key_len, e[i].value, e[i].value_len,
					  e[i].ttl_ms ? s->wall + e[i].ttl_ms : 0 };
		size_t start = fp_jrec_begin(s->b);

		put_change(s->b, &c);
		s->err = fp_jrec_end(s->b, start, FP_JR_KV_SET, s->salt);
	}
}

/*
 * Every live key at once: the store is in memory and a KV_SET is its
 * bytes and 32 more, so this slice is as large as the store (64 MiB at
 * most) and built in one loop turn.
 */
static int snapshot(void *data, struct sbuf *b, uint32_t salt)
{
	fp_kv_journal *kj = data;
	struct snap s = { b, salt, wall_ms(), 0 };
	int rc = fp_pool_kv_list(kj->pool, "", 0, SIZE_MAX, snap_list, &s);

	return rc < 0 ? rc : s.err;
}

int fp_kv_journal_new(fp_kv_journal **out, fp_pool *pool, fp_journal *j, fp_jobs *jobs)
{
	fp_kv_journal *kj = calloc(1, sizeof(*kj));
	struct fp_jobs_journal_guest g = { live, snapshot, NULL };

	if (!kj)
		return -ENOMEM;
	kj->pool = pool;
	kj->j = j;
	kj->jobs = jobs;
	g.data = kj;
	fp_jobs_journal_guest(jobs, &g);
	fp_pool_kv_persist(pool, persist, kj);
	*out = kj;
	return 0;
}

void fp_kv_journal_free(fp_kv_journal *kj)
{
	if (!kj)
		return;
	fp_pool_kv_persist(kj->pool, NULL, NULL);
	fp_jobs_journal_guest(kj->jobs, NULL);
	free(kj);
}
