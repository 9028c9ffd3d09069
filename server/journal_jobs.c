/*
 * The job store's journal records: encoding and decoding (journal_jobs.h
 * lists them). Decoding checks every field against the payload's length
 * and every count against what is left, so a record that passed its CRC
 * but was written by a buggy build is refused, never read out of bounds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "journal_jobs.h"

/* The least bytes one encoded item, stage or outcome takes. */
enum { ITEM_MIN = 4, STAGE_MIN = 4 + 8 + 4 + 4 + 4 + 8, OUTCOME_MIN = 4 + 1 + 4 + 4,
       PACKED_MIN = 4, PACKED_MAX = 5 * 7 };

const char *fp_jr_type_name(uint16_t type)
{
	switch (type) {
	case FP_JR_JOB:
		return "JOB";
	case FP_JR_STARTED:
		return "STARTED";
	case FP_JR_OUTCOMES:
		return "OUTCOMES";
	case FP_JR_END:
		return "END";
	case FP_JR_CANCEL:
		return "CANCEL";
	case FP_JR_FORGET:
		return "FORGET";
	case FP_JR_RERUN:
		return "RERUN";
	case FP_JR_INPUTS:
		return "INPUTS";
	case FP_JR_OUTCOMES_PACKED:
		return "OUTCOMES";
	}
	return "unknown";
}

static void put_id(struct sbuf *b, const uint8_t id[FP_JR_ID_BYTES])
{
	sbuf_add(b, (const char *)id, FP_JR_ID_BYTES);
}

static void get_id(struct fp_jcur *c, uint8_t id[FP_JR_ID_BYTES])
{
	if (c->err || (size_t)(c->end - c->p) < FP_JR_ID_BYTES) {
		c->err = -EBADMSG;
		memset(id, 0, FP_JR_ID_BYTES);
		return;
	}
	memcpy(id, c->p, FP_JR_ID_BYTES);
	c->p += FP_JR_ID_BYTES;
}

/* A byte string that may be absent: its length + 1, so 0 is "none". */
static void put_opt_bytes(struct sbuf *b, const char *p, size_t n)
{
	fp_jrec_put_u32(b, p ? (uint32_t)n + 1 : 0);
	if (p && n)
		sbuf_add(b, p, n);
}

static const char *get_opt_bytes(struct fp_jcur *c, size_t *n)
{
	uint32_t len = fp_jcur_u32(c);
	const char *s;

	*n = 0;
	if (c->err || len == 0)
		return NULL;
	if ((size_t)(c->end - c->p) < len - 1) {
		c->err = -EBADMSG;
		return NULL;
	}
	s = (const char *)c->p;
	c->p += len - 1;
	*n = len - 1;
	return s;
}

static void put_opts(struct sbuf *b, const struct fp_jr_opts *o, bool stage)
{
	fp_jrec_put_bytes(b, o->task, o->task_len);
	fp_jrec_put_u64(b, (uint64_t)o->timeout_ms);
	fp_jrec_put_u32(b, o->retries);
	fp_jrec_put_u32(b, o->retry_on);
	if (stage) {
		fp_jrec_put_u32(b, o->workers);
		fp_jrec_put_u64(b, o->buffer);
	} else {
		fp_jrec_put_u64(b, o->chunksize);
	}
}

static void get_opts(struct fp_jcur *c, struct fp_jr_opts *o, bool stage)
{
	memset(o, 0, sizeof(*o));
	o->task = fp_jcur_bytes(c, &o->task_len);
	o->timeout_ms = (int64_t)fp_jcur_u64(c);
	o->retries = fp_jcur_u32(c);
	o->retry_on = fp_jcur_u32(c);
	if (stage) {
		o->workers = fp_jcur_u32(c);
		o->buffer = fp_jcur_u64(c);
	} else {
		o->chunksize = fp_jcur_u64(c);
	}
	if (!c->err && !o->task_len)
		c->err = -EBADMSG;     /* every call names its task */
}

/* --- JOB ----------------------------------------------------------------- */

/* The items as byte strings, in one reservation when they fit a record. */
static void put_items(struct sbuf *b, const struct fp_jr_item *items, size_t n)
{
	unsigned char *p, *start;
	size_t i, bytes = 0;

	for (i = 0; i < n && bytes <= FP_JREC_MAX; i++)
		bytes += 4 + items[i].len;
	if (bytes > FP_JREC_MAX || !(start = (unsigned char *)sbuf_reserve(b, bytes))) {
		/* Too big for a record (fp_jrec_end says so) or no memory: as it comes. */
		for (i = 0; i < n && !b->oom; i++)
			fp_jrec_put_bytes(b, items[i].text, items[i].len);
		return;
	}
	p = start;
	for (i = 0; i < n; i++) {
		p = fp_jrec_w32(p, (uint32_t)items[i].len);
		/* A finished job's compaction writes empty items, with no text. */
		if (items[i].len)
			memcpy(p, items[i].text, items[i].len);
		p += items[i].len;
	}
	sbuf_commit(b, (size_t)(p - start));
}

int fp_jr_put_job(struct sbuf *b, const struct fp_jr_job *job)
{
	size_t i;

	put_id(b, job->id);
	fp_jrec_put_u8(b, job->kind);
	fp_jrec_put_u64(b, job->created_at);
	put_opt_bytes(b, job->idem_key, job->idem_key_len);
	fp_jrec_put_u64(b, job->body_hash);
	fp_jrec_put_u32(b, (uint32_t)job->nstages);
	if (job->nstages) {
		for (i = 0; i < job->nstages; i++)
			put_opts(b, &job->stages[i], true);
		put_opt_bytes(b, job->reduce, job->reduce_len);
		fp_jrec_put_u64(b, job->reduce_batch);
		fp_jrec_put_u8(b, job->ordered);
	} else {
		put_opts(b, &job->opts, false);
	}
	fp_jrec_put_u64(b, job->n);
	put_items(b, job->items, job->n);
	if (!job->nstages && job->opts.concurrency)
		fp_jrec_put_u32(b, job->opts.concurrency);
	return b->oom ? -ENOMEM : 0;
}

void fp_jr_job_clear(struct fp_jr_job *job)
{
	free(job->stages);
	free(job->items);
	job->stages = NULL;
	job->items = NULL;
}

int fp_jr_get_job(const struct fp_jrec *r, struct fp_jr_job *out)
{
	struct fp_jcur c;
	uint64_t n;
	size_t i;

	memset(out, 0, sizeof(*out));
	fp_jcur_init(&c, r);
	get_id(&c, out->id);
	out->kind = fp_jcur_u8(&c);
	out->created_at = fp_jcur_u64(&c);
	out->idem_key = get_opt_bytes(&c, &out->idem_key_len);
	out->body_hash = fp_jcur_u64(&c);
	out->nstages = fp_jcur_u32(&c);
	if (c.err || out->nstages > (size_t)(c.end - c.p) / STAGE_MIN)
		return -EBADMSG;
	if (out->nstages) {
		out->stages = calloc(out->nstages, sizeof(*out->stages));
		if (!out->stages)
			return -ENOMEM;
		for (i = 0; i < out->nstages; i++)
			get_opts(&c, &out->stages[i], true);
		out->reduce = get_opt_bytes(&c, &out->reduce_len);
		out->reduce_batch = fp_jcur_u64(&c);
		out->ordered = fp_jcur_u8(&c) != 0;
	} else {
		get_opts(&c, &out->opts, false);
	}
	n = fp_jcur_u64(&c);
	if (c.err || n > (uint64_t)(c.end - c.p) / ITEM_MIN)
		goto bad;
	out->n = (size_t)n;
	out->items = calloc(n ? n : 1, sizeof(*out->items));
	if (!out->items) {
		fp_jr_job_clear(out);
		return -ENOMEM;
	}
	for (i = 0; i < out->n; i++)
		out->items[i].text = fp_jcur_bytes(&c, &out->items[i].len);
	/* Written only when set: a record without it has none. */
	if (!c.err && !out->nstages && c.p < c.end)
		out->opts.concurrency = fp_jcur_u32(&c);
	if (fp_jcur_done(&c) < 0)
		goto bad;
	return 0;
bad:
	fp_jr_job_clear(out);
	return -EBADMSG;
}

/* --- OUTCOMES ------------------------------------------------------------ */

size_t fp_jr_outcomes_begin(struct fp_jr_outcomes *o, struct sbuf *b,
			    const uint8_t id[FP_JR_ID_BYTES], bool origin)
{
	return fp_jr_outcomes_begin_as(o, b, id, origin, FP_JR_OUTCOMES_PACKED);
}

uint16_t fp_jr_outcomes_type(const struct fp_jr_outcomes *o)
{
	return o->packed ? FP_JR_OUTCOMES_PACKED : FP_JR_OUTCOMES;
}

size_t fp_jr_outcomes_begin_as(struct fp_jr_outcomes *o, struct sbuf *b,
			       const uint8_t id[FP_JR_ID_BYTES], bool origin, uint16_t type)
{
	memset(o, 0, sizeof(*o));
	o->b = b;
	o->origin = origin;
	o->packed = type == FP_JR_OUTCOMES_PACKED;
	o->prev = -1;
	put_id(b, id);
	fp_jrec_put_u8(b, origin);
	o->count_at = b->len;
	fp_jrec_put_u32(b, 0);
	return o->count_at;
}

void fp_jr_outcomes_put(struct fp_jr_outcomes *o, const struct fp_jr_outcome *e)
{
	size_t need = (o->packed ? PACKED_MAX : OUTCOME_MIN + 12) + e->len;
	struct sbuf *b = o->b;
	unsigned char *p, *start;

	/*
	 * One reservation an entry, and no call at all while the buffer has
	 * room (it doubles when it has not: a turn's outcomes are one record);
	 * a field at a time, in the record's order, when too big.
	 */
	if (!b->oom && b->cap - b->len > need)
		start = (unsigned char *)b->data + b->len;
	else
		start = e->len <= FP_JREC_MAX ? (unsigned char *)sbuf_reserve(b, need) : NULL;
	if (start && o->packed) {
		/* Zigzag: a map's places go mostly up by one (0), at times back. */
		int64_t d = (int64_t)e->pos - o->prev - 1;

		p = fp_jrec_wvar(start, d >= 0 ? (uint64_t)(2 * d) : (uint64_t)(-2 * d - 1));
		o->prev = e->pos;
		p = fp_jrec_wvar(p, e->status);
		p = fp_jrec_wvar(p, e->attempts);
		if (o->origin) {
			p = fp_jrec_wvar(p, e->index);
			p = fp_jrec_wvar(p, e->stage);
		}
		p = fp_jrec_wvar(p, (uint32_t)e->len);
	} else if (start) {
		p = fp_jrec_w32(start, e->pos);
		p = fp_jrec_w8(p, e->status);
		p = fp_jrec_w32(p, e->attempts);
		if (o->origin) {
			p = fp_jrec_w32(p, e->index);
			p = fp_jrec_w32(p, e->stage);
		}
		p = fp_jrec_w32(p, (uint32_t)e->len);
	}
	if (start) {
		if (e->len)
			memcpy(p, e->text, e->len);
		/* sbuf_commit()'s work: the length, and the NUL an sbuf keeps after it. */
		b->len += (size_t)(p - start) + e->len;
		b->data[b->len] = '\0';
		o->count++;
		return;
	}
	if (o->b->oom)
		return;
	if (o->packed) {
		/* A text over a record's size: the record cannot be (fp_jrec_end says so). */
		fp_jrec_put_bytes(o->b, e->text, e->len);
		o->count++;
		return;
	}
	fp_jrec_put_u32(o->b, e->pos);
	fp_jrec_put_u8(o->b, e->status);
	fp_jrec_put_u32(o->b, e->attempts);
	if (o->origin) {
		fp_jrec_put_u32(o->b, e->index);
		fp_jrec_put_u32(o->b, e->stage);
	}
	fp_jrec_put_bytes(o->b, e->text, e->len);
	o->count++;
}

void fp_jr_outcomes_end(struct fp_jr_outcomes *o)
{
	unsigned char *d;

	if (o->b->oom || o->b->len < o->count_at + 4)
		return;
	d = (unsigned char *)o->b->data + o->count_at;
	d[0] = (unsigned char)o->count;
	d[1] = (unsigned char)(o->count >> 8);
	d[2] = (unsigned char)(o->count >> 16);
	d[3] = (unsigned char)(o->count >> 24);
}

int fp_jr_outcomes_get_begin(struct fp_jr_outcomes *o, const struct fp_jrec *r,
			     uint8_t id[FP_JR_ID_BYTES])
{
	memset(o, 0, sizeof(*o));
	if (r->type != FP_JR_OUTCOMES && r->type != FP_JR_OUTCOMES_PACKED)
		return -EBADMSG;
	o->packed = r->type == FP_JR_OUTCOMES_PACKED;
	o->prev = -1;
	fp_jcur_init(&o->cur, r);
	get_id(&o->cur, id);
	o->origin = fp_jcur_u8(&o->cur) != 0;
	o->left = fp_jcur_u32(&o->cur);
	if (o->cur.err ||
	    o->left > (size_t)(o->cur.end - o->cur.p) / (o->packed ? PACKED_MIN : OUTCOME_MIN))
		return -EBADMSG;
	return 0;
}

int fp_jr_outcomes_get_next(struct fp_jr_outcomes *o, struct fp_jr_outcome *e)
{
	struct fp_jcur *c = &o->cur;

	if (!o->left)
		return fp_jcur_done(c) < 0 ? -EBADMSG : 0;
	o->left--;
	memset(e, 0, sizeof(*e));
	if (o->packed) {
		/* 33 bits at most: a distance between two u32 places. */
		uint64_t z = fp_jcur_var64(c);
		int64_t pos = z >> 34 ? -1 :
			      o->prev + 1 + (z & 1 ? -(int64_t)(z >> 1) - 1 : (int64_t)(z >> 1));
		uint32_t len;
		uint32_t status;

		if (pos < 0 || pos > UINT32_MAX)
			c->err = -EBADMSG;
		e->pos = (uint32_t)pos;
		o->prev = pos;
		status = fp_jcur_var(c);
		if (status > UINT8_MAX)
			c->err = -EBADMSG;
		e->status = (uint8_t)status;
		e->attempts = fp_jcur_var(c);
		if (o->origin) {
			e->index = fp_jcur_var(c);
			e->stage = fp_jcur_var(c);
		}
		len = fp_jcur_var(c);
		if (!c->err && (size_t)(c->end - c->p) < len)
			c->err = -EBADMSG;
		if (c->err)
			return -EBADMSG;
		e->text = (const char *)c->p;
		e->len = len;
		c->p += len;
		return 1;
	}
	e->pos = fp_jcur_u32(c);
	e->status = fp_jcur_u8(c);
	e->attempts = fp_jcur_u32(c);
	if (o->origin) {
		e->index = fp_jcur_u32(c);
		e->stage = fp_jcur_u32(c);
	}
	e->text = fp_jcur_bytes(c, &e->len);
	return c->err ? -EBADMSG : 1;
}

/* --- the small ones ------------------------------------------------------ */

void fp_jr_put_mark(struct sbuf *b, const struct fp_jr_mark *m)
{
	put_id(b, m->id);
	fp_jrec_put_u8(b, m->value);
	fp_jrec_put_u64(b, m->when);
}

int fp_jr_get_mark(const struct fp_jrec *r, struct fp_jr_mark *out)
{
	struct fp_jcur c;

	fp_jcur_init(&c, r);
	get_id(&c, out->id);
	out->value = fp_jcur_u8(&c);
	out->when = fp_jcur_u64(&c);
	return fp_jcur_done(&c);
}

/* --- INPUTS -------------------------------------------------------------- */

void fp_jr_put_inputs(struct sbuf *b, const uint8_t id[FP_JR_ID_BYTES], const uint32_t *idx,
		      size_t n)
{
	put_id(b, id);
	fp_jrec_put_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		fp_jrec_put_u32(b, idx[i]);
}

int fp_jr_get_inputs(const struct fp_jrec *r, uint8_t id[FP_JR_ID_BYTES], uint32_t **idx,
		     size_t *n)
{
	struct fp_jcur c;
	uint32_t count;

	*idx = NULL;
	*n = 0;
	fp_jcur_init(&c, r);
	get_id(&c, id);
	count = fp_jcur_u32(&c);
	/* The count is checked against what is left before anything is allocated. */
	if (c.err || count != (size_t)(c.end - c.p) / 4 || (size_t)(c.end - c.p) % 4)
		return -EBADMSG;
	*idx = malloc((count ? count : 1) * sizeof(**idx));
	if (!*idx)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++)
		(*idx)[i] = fp_jcur_u32(&c);
	if (fp_jcur_done(&c) < 0) {
		free(*idx);
		*idx = NULL;
		return -EBADMSG;
	}
	*n = count;
	return 0;
}
