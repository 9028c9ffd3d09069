/*
 * The job store's side of the journal (jobs.h, "the journal"): what the
 * store's hooks write (a submission's JOB, STARTED, OUTCOMES once per job
 * and loop turn, END, CANCEL, FORGET) and how replay and resume build the
 * store again from those records. The records' bytes are journal_jobs.c's;
 * this file translates between them and fp_job.
 *
 * Pipelines too: their JOB record has the stages, the reduce and the order,
 * their outputs are OUTCOMES entries with their origin and place, and the
 * inputs the pool says are done (jr_inputs) INPUTS entries, appended after
 * the OUTCOMES of the same turn. At replay a pipeline's outputs are kept
 * aside (in its jr_resume) until its END: a finished pipeline gets them
 * then; an unfinished one keeps those of its done inputs, drops the rest,
 * and runs again only the inputs not done, after a RERUN record that voids
 * the earlier outputs in the file and is followed by the kept ones in
 * their new places and the done inputs (journal_jobs.h).
 *
 * Compaction: once the journal is at least journal_compact_min and more
 * than twice what the kept jobs' records take (jr_live), it is rewritten
 * from them (journal.h, fp_journal_compact()): each job's JOB, STARTED,
 * CANCEL, OUTCOMES and END, a slice of jobs per loop turn. A finished job's
 * items are not needed again, so its JOB carries empty ones; an unfinished
 * one's are, so its JOB record's payload is kept in memory until it ends.
 * Forgotten (expired, deleted) jobs are left out, which is what bounds the
 * file by the live jobs rather than by history. A guest's records (the
 * shared values', fp_jobs_journal_guest) lead the snapshot and count as live.
 *
 * Outcomes are appended at the end of the loop turn they came in: the pool
 * delivers a chunk's answers in one turn, and a record per item would cost
 * a header and two checksums for each of a million items. Positions are not
 * kept apart: an apply's or a map's `order` lists its outcomes in the order
 * they came, so the first jr_done of them are in the journal and the rest
 * are pending.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs_impl.h"
#include "journal.h"
#include "journal_jobs.h"

/* A pipeline's OUTCOMES record read back, kept until its END says whether they count. */
struct jr_stash {
	unsigned char *payload;
	size_t len;
	uint16_t type;             /* OUTCOMES, packed or not */
};

/*
 * A recovered job's items as received, until they are given to the pool. A
 * pipeline's are read again from its JOB record (jr_job) when it reruns;
 * what it keeps here is its outputs read so far.
 */
struct jr_resume {
	int64_t timeout_ms;
	uint32_t retries, retry_on;
	uint64_t chunksize;
	uint32_t concurrency;
	size_t n;
	size_t *off;               /* n + 1 offsets into text */
	char *text;
	struct jr_stash *outs;
	size_t nouts, capouts;
};

/*
 * A pipeline's done inputs: a bit each (read back at replay, then kept
 * while it runs, for a compaction), and those not yet appended.
 */
struct jr_inputs {
	uint8_t *done;
	size_t ndone;
	uint32_t *pend;
	size_t npend, cap;
};

static void inputs_free(fp_job *job)
{
	if (!job->jr_in)
		return;
	free(job->jr_in->done);
	free(job->jr_in->pend);
	free(job->jr_in);
	job->jr_in = NULL;
}

/* The job's set, made on first use; NULL without memory (a rerun then, not a loss). */
static struct jr_inputs *inputs_of(fp_job *job)
{
	struct jr_inputs *in = job->jr_in;

	if (in)
		return in;
	in = calloc(1, sizeof(*in));
	if (!in || !(in->done = calloc(job->inputs / 8 + 1, 1))) {
		free(in);
		return NULL;
	}
	job->jr_in = in;
	return in;
}

static bool input_done(const struct jr_inputs *in, size_t i)
{
	return in && (in->done[i / 8] >> (i % 8)) & 1;
}

/* Mark input i done; 1 if it was not. */
static int input_set(struct jr_inputs *in, size_t i)
{
	if (input_done(in, i))
		return 0;
	in->done[i / 8] |= (uint8_t)(1u << (i % 8));
	in->ndone++;
	return 1;
}

static int input_pend(struct jr_inputs *in, size_t i)
{
	if (in->npend == in->cap) {
		size_t cap = in->cap ? 2 * in->cap : 64;
		uint32_t *p = realloc(in->pend, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		in->pend = p;
		in->cap = cap;
	}
	in->pend[in->npend++] = (uint32_t)i;
	return 0;
}

static void stash_clear(struct jr_resume *rs)
{
	for (size_t i = 0; i < rs->nouts; i++)
		free(rs->outs[i].payload);
	free(rs->outs);
	rs->outs = NULL;
	rs->nouts = rs->capouts = 0;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void resume_free(struct jr_resume *rs)
{
	if (!rs)
		return;
	stash_clear(rs);
	free(rs->off);
	free(rs->text);
	free(rs);
}

/* --- writing ------------------------------------------------------------- */

static void append_failed(fp_jobs *jobs, int err)
{
	jobs->journal_err = err;
}

/* End a record begun at `start` for `job`, counting its bytes as live. */
static int end_record(fp_jobs *jobs, fp_job *job, size_t start, uint16_t type)
{
	size_t bytes = fp_journal_buf(jobs->journal)->len - start;
	int err = fp_journal_end(jobs->journal, start, type, NULL);

	if (err) {
		append_failed(jobs, err);
		return err;
	}
	job->jr_bytes += bytes;
	jobs->jr_live += bytes;
	return 0;
}

static void maybe_compact(fp_jobs *jobs);

int fp__jobs_journal_job(fp_jobs *jobs, fp_job *job, const struct fp__job_start *s)
{
	static const fp_call_options defaults = FP_CALL_OPTIONS_DEFAULT;
	const fp_call_options *o = s->opts ? s->opts : &defaults;
	fp_journal *j = jobs->journal;
	struct fp_jr_opts *stages = NULL;
	struct fp_jr_item one, *items;
	struct fp_job_idem idem;
	struct fp_jr_job r;
	size_t start, i;
	int err;

	if (!j)
		return 0;
	items = s->n == 1 ? &one : malloc((s->n ? s->n : 1) * sizeof(*items));
	if (s->kind == FP_JOB_PIPELINE)
		stages = calloc(s->nstages ? s->nstages : 1, sizeof(*stages));
	if (!items || (s->kind == FP_JOB_PIPELINE && !stages)) {
		if (items != &one)
			free(items);
		free(stages);
		append_failed(jobs, -ENOMEM);
		return -EIO;
	}
	for (i = 0; i < s->n; i++)
		items[i] = (struct fp_jr_item){ s->items[i].base, s->items[i].len };
	memset(&r, 0, sizeof(r));
	memcpy(r.id, job->id, FP_JR_ID_BYTES);
	r.kind = (uint8_t)s->kind;
	r.created_at = job->created_at;
	r.opts.task = s->name;
	r.opts.task_len = strlen(s->name);
	r.opts.timeout_ms = o->timeout_ms;
	r.opts.retries = o->retries;
	r.opts.retry_on = o->retry_on;
	r.opts.chunksize = o->chunksize;
	r.opts.concurrency = o->concurrency;
	if (stages) {
		static const fp_pipeline_options pdefaults = FP_PIPELINE_OPTIONS_DEFAULT;
		const fp_pipeline_options *po = s->popts ? s->popts : &pdefaults;

		for (i = 0; i < s->nstages; i++) {
			const fp_stage *st = &s->stages[i];

			stages[i] = (struct fp_jr_opts){
				.task = st->task, .task_len = strlen(st->task),
				.timeout_ms = st->timeout_ms, .retries = st->retries,
				.retry_on = st->retry_on, .workers = st->workers,
				.buffer = st->buffer,
			};
		}
		r.nstages = s->nstages;
		r.stages = stages;
		r.reduce = po->reduce;
		r.reduce_len = po->reduce ? strlen(po->reduce) : 0;
		r.reduce_batch = po->reduce_batch;
		r.ordered = po->ordered != 0;
	}
	/* The key and the request's hash: a retry after a restart is still answered by this job. */
	if (fp_job_idem(job, &idem)) {
		r.idem_key = idem.key;
		r.idem_key_len = idem.len;
		r.body_hash = idem.hash;
	}
	r.n = s->n;
	r.items = items;
	start = fp_journal_begin(j);
	err = fp_jr_put_job(fp_journal_buf(j), &r);
	if (items != &one)
		free(items);
	free(stages);
	if (err) {
		fp_journal_drop(j, start);
		append_failed(jobs, err);
		return -EIO;
	}
	/* Kept for a compaction while the job runs (a copy: ending may swap the buffer). */
	job->jr_job_len = fp_journal_buf(j)->len - start - FP_JREC_HDR_LEN;
	job->jr_job = malloc(job->jr_job_len ? job->jr_job_len : 1);
	if (job->jr_job)
		memcpy(job->jr_job, fp_journal_buf(j)->data + start + FP_JREC_HDR_LEN,
		       job->jr_job_len);
	if (end_record(jobs, job, start, FP_JR_JOB) < 0) {
		free(job->jr_job);
		job->jr_job = NULL;
		return -EIO;
	}
	job->journaled = true;
	return 0;
}

void fp__jobs_journal_mark(fp_jobs *jobs, fp_job *job, uint16_t type, uint8_t value,
			   uint64_t when)
{
	fp_journal *j = jobs ? jobs->journal : NULL;
	struct fp_jr_mark m;
	size_t start;

	if (!j || !job->journaled)
		return;
	memcpy(m.id, job->id, FP_JR_ID_BYTES);
	m.value = value;
	m.when = when;
	start = fp_journal_begin(j);
	fp_jr_put_mark(fp_journal_buf(j), &m);
	end_record(jobs, job, start, type);
	if (type == FP_JR_END) {
		free(job->jr_job);
		job->jr_job = NULL;
		inputs_free(job);
	}
	if (type == FP_JR_FORGET)
		maybe_compact(jobs);
}

static void dirty_unlink(fp_jobs *jobs, fp_job *job)
{
	fp_job **p;

	if (!job->jr_dirty)
		return;
	/* The list holds the jobs that had outcomes this turn: a few. */
	for (p = &jobs->jr_dirty; *p; p = &(*p)->jr_next) {
		if (*p == job) {
			*p = job->jr_next;
			break;
		}
	}
	job->jr_next = NULL;
	job->jr_dirty = false;
}

/*
 * The k-th outcome in the order they came: an apply's or a map's item by
 * `order`; a pipeline's output is at its place, k, with its origin.
 */
static void put_outcome(struct fp_jr_outcomes *o, const fp_job *job, size_t k)
{
	bool pipeline = job->kind == FP_JOB_PIPELINE;
	uint32_t pos = pipeline ? (uint32_t)k : job->order[k];
	const struct job_item *it = &job->items[pos];
	struct fp_jr_outcome e = {
		.pos = pos, .status = it->status, .attempts = it->attempts,
		.text = it->text,
		.len = it->status == FP_ITEM_OK ? it->len : strlen(it->text),
	};

	if (pipeline) {
		e.index = job->origins[pos].index;
		e.stage = job->origins[pos].stage;
	}
	fp_jr_outcomes_put(o, &e);
}

/* Outcomes so far: a pipeline's outputs are appended, so they are its first `total`. */
static size_t outcomes_count(const fp_job *job)
{
	return job->kind == FP_JOB_PIPELINE ? job->total : job->ndone + job->nfailed;
}

void fp__jobs_journal_outcomes(fp_jobs *jobs, fp_job *job)
{
	fp_journal *j = jobs->journal;
	size_t count = outcomes_count(job), start;
	struct jr_inputs *in = job->jr_in;
	struct fp_jr_outcomes o;
	int err = 0;

	dirty_unlink(jobs, job);
	if (!j || !job->journaled)
		return;
	if (job->jr_done < count) {
		start = fp_journal_begin(j);
		fp_jr_outcomes_begin(&o, fp_journal_buf(j), job->id,
				     job->kind == FP_JOB_PIPELINE);
		for (size_t k = job->jr_done; k < count; k++)
			put_outcome(&o, job, k);
		fp_jr_outcomes_end(&o);
		err = end_record(jobs, job, start, fp_jr_outcomes_type(&o));
		/* Failed or not, they are not tried again: a restart reruns them. */
		job->jr_done = count;
	}
	/*
	 * After the outputs they made, never without them: an input said done
	 * whose outputs failed to go in would be kept without them. Not for a
	 * job that ends now: its END says more.
	 */
	if (in && in->npend) {
		if (!err && !job->finished) {
			start = fp_journal_begin(j);
			fp_jr_put_inputs(fp_journal_buf(j), job->id, in->pend, in->npend);
			end_record(jobs, job, start, FP_JR_INPUTS);
		}
		in->npend = 0;
	}
}

void fp__jobs_journal_input_done(fp_jobs *jobs, fp_job *job, size_t input)
{
	struct jr_inputs *in;

	if (!jobs->journal || !job->journaled || job->finished || input >= job->inputs)
		return;
	in = inputs_of(job);
	/* Without memory it is not written: the input runs again after a restart. */
	if (!in || !input_set(in, input) || input_pend(in, input) < 0)
		return;
	fp__jobs_journal_dirty(jobs, job);
}

static void flush_cb(fp_timer *t)
{
	fp_jobs *jobs = t->data;

	while (jobs->jr_dirty)
		fp__jobs_journal_outcomes(jobs, jobs->jr_dirty);
	maybe_compact(jobs);
}

void fp__jobs_journal_dirty(fp_jobs *jobs, fp_job *job)
{
	if (!jobs->journal || !job->journaled || job->jr_dirty)
		return;
	job->jr_dirty = true;
	job->jr_next = jobs->jr_dirty;
	jobs->jr_dirty = job;
	/* Due at once: it runs after the completions this turn brought. */
	if (!fp_timer_active(&jobs->jr_flush))
		fp_timer_start(jobs->loop, &jobs->jr_flush, 0, flush_cb);
}

void fp__jobs_journal_drop(fp_jobs *jobs, fp_job *job)
{
	dirty_unlink(jobs, job);
	inputs_free(job);
	resume_free(job->resume);
	job->resume = NULL;
	free(job->jr_job);
	job->jr_job = NULL;
	jobs->jr_live -= job->jr_bytes < jobs->jr_live ? job->jr_bytes : jobs->jr_live;
	job->jr_bytes = 0;
}

void fp_jobs_attach_journal(fp_jobs *jobs, struct fp_journal *j)
{
	jobs->journal = j;
}

static void snap_release(fp_jobs *jobs);

void fp_jobs_detach_journal(fp_jobs *jobs)
{
	if (!jobs->journal)
		return;
	flush_cb(&jobs->jr_flush);
	fp_timer_stop(&jobs->jr_flush);
	/* A compaction still running finds no store: it gives up (closing the journal ends it). */
	snap_release(jobs);
	jobs->journal = NULL;
}

struct fp_journal *fp_jobs_journal(const fp_jobs *jobs)
{
	return jobs->journal;
}

int fp_jobs_journal_error(const fp_jobs *jobs)
{
	return jobs->journal_err;
}

/* --- replay -------------------------------------------------------------- */

static fp_job *find(fp_jobs *jobs, const uint8_t id[FP_JR_ID_BYTES])
{
	return fp__jobs_table_find(jobs, id);
}

static struct jr_resume *resume_new(const struct fp_jr_job *r)
{
	struct jr_resume *rs = calloc(1, sizeof(*rs));
	size_t i, bytes = 0;

	if (!rs)
		return NULL;
	for (i = 0; i < r->n; i++)
		bytes += r->items[i].len;
	rs->off = malloc((r->n + 1) * sizeof(*rs->off));
	rs->text = malloc(bytes ? bytes : 1);
	if (!rs->off || !rs->text) {
		resume_free(rs);
		return NULL;
	}
	rs->n = r->n;
	rs->off[0] = 0;
	for (i = 0; i < r->n; i++) {
		memcpy(rs->text + rs->off[i], r->items[i].text, r->items[i].len);
		rs->off[i + 1] = rs->off[i] + r->items[i].len;
	}
	rs->timeout_ms = r->opts.timeout_ms;
	rs->retries = r->opts.retries;
	rs->retry_on = r->opts.retry_on;
	rs->chunksize = r->opts.chunksize;
	rs->concurrency = r->opts.concurrency;
	return rs;
}

/* Part k of a job's name: its task, a stage's, or the reduce's. */
static void name_part(const struct fp_jr_job *r, size_t k, const char **t, size_t *len)
{
	const struct fp_jr_opts *o = !r->nstages ? &r->opts :
				     k < r->nstages ? &r->stages[k] : NULL;

	*t = o ? o->task : r->reduce;
	*len = o ? o->task_len : r->reduce_len;
}

/*
 * The job's task name, NUL-terminated and allocated: an apply's or a map's
 * task, or a pipeline's stages and reduce joined by '|' as at submission.
 */
static char *job_name(const struct fp_jr_job *r)
{
	size_t len = 0, tl, k, parts = r->nstages ? r->nstages + (r->reduce != NULL) : 1;
	const char *t;
	char *buf;

	for (k = 0; k < parts; k++) {
		name_part(r, k, &t, &tl);
		len += (k > 0) + tl;
	}
	buf = malloc(len + 1);
	if (!buf)
		return NULL;
	len = 0;
	for (k = 0; k < parts; k++) {
		name_part(r, k, &t, &tl);
		if (k)
			buf[len++] = '|';
		memcpy(buf + len, t, tl);
		len += tl;
	}
	buf[len] = '\0';
	return buf;
}

/* A recovered pipeline's own state (jobs_pipeline.c's): its stages' names. */
static int pipeline_ext(fp_job *job, fp_jobs *jobs, const struct fp_jr_job *r)
{
	void *x = fp__pipeline_ext_new(jobs, r->nstages, r->reduce != NULL, r->ordered,
					true);
	size_t k;

	if (!x)
		return -ENOMEM;
	for (k = 0; k < r->nstages; k++)
		if (fp__pipeline_ext_name(x, k, r->stages[k].task, r->stages[k].task_len) < 0)
			goto fail;
	if (r->reduce && fp__pipeline_ext_name(x, k, r->reduce, r->reduce_len) < 0)
		goto fail;
	job->ext = x;
	job->ext_free = fp__pipeline_ext_free;
	return 0;
fail:
	fp__pipeline_ext_free(x);
	return -ENOMEM;
}

static int replay_job(fp_jobs *jobs, const struct fp_jrec *rec, uint64_t off, char *err,
		      size_t errlen)
{
	static const char hexdigits[] = "0123456789abcdef";
	struct fp_jr_job r;
	char *task;
	fp_job *job = NULL;
	bool pipeline;
	int e;

	e = fp_jr_get_job(rec, &r);
	if (e < 0) {
		snprintf(err, errlen, "a JOB record at offset %llu cannot be read: %s",
			 (unsigned long long)off, e == -ENOMEM ? "out of memory" : "bad fields");
		return e;
	}
	pipeline = r.kind == FP_JOB_PIPELINE;
	if ((pipeline ? !r.nstages : r.nstages != 0) ||
	    (r.kind != FP_JOB_APPLY && r.kind != FP_JOB_MAP && !pipeline) ||
	    (r.kind == FP_JOB_APPLY && r.n != 1) || r.n > UINT32_MAX) {
		jobs->recovery.skipped++;
		goto out;
	}
	/* A second JOB for a known id (a compaction's overlap) changes nothing. */
	if (find(jobs, r.id))
		goto out;
	e = -ENOMEM;
	task = job_name(&r);
	if (!task)
		goto fail;
	/* A pipeline's records are made as its outputs come, as at submission. */
	job = fp__job_alloc(task, pipeline ? 0 : r.n);
	free(task);
	if (!job || fp__jobs_table_reserve(jobs) < 0)
		goto fail;
	if (pipeline) {
		job->resume = calloc(1, sizeof(*job->resume));
		if (!job->resume || pipeline_ext(job, jobs, &r) < 0)
			goto fail;
	} else if (!(job->resume = resume_new(&r))) {
		goto fail;
	}
	memcpy(job->id, r.id, ID_BYTES);
	for (size_t i = 0; i < ID_BYTES; i++) {
		job->hex[2 * i] = hexdigits[job->id[i] >> 4];
		job->hex[2 * i + 1] = hexdigits[job->id[i] & 15];
	}
	job->hex[ID_HEX] = '\0';
	job->jobs = jobs;
	job->kind = (enum fp_job_kind)r.kind;
	job->inputs = r.n;
	job->state = FP_JOB_QUEUED;
	job->created_at = r.created_at;
	/* Not in the pool: nothing will call back until fp_jobs_resume(). */
	job->pool_done = true;
	job->journaled = true;
	/* Kept for a compaction until it ends (ending frees it). */
	job->jr_job = malloc(rec->len ? rec->len : 1);
	if (job->jr_job) {
		memcpy(job->jr_job, rec->payload, rec->len);
		job->jr_job_len = rec->len;
	}
	job->jr_bytes = rec->size;
	jobs->jr_live += rec->size;
	fp__jobs_link(jobs, job, r.n);
	if (r.idem_key) {
		struct fp_job_idem idem = { r.idem_key, r.idem_key_len, r.body_hash };

		/* -EEXIST cannot be: a key's holder is forgotten before another takes it. */
		if (fp_jobs_idem_attach(jobs, job, &idem) == -ENOMEM) {
			e = -ENOMEM;
			snprintf(err, errlen, "out of memory replaying the job at offset %llu",
				 (unsigned long long)off);
			fp_jr_job_clear(&r);
			return e;
		}
	}
	jobs->recovery.jobs++;
out:
	fp_jr_job_clear(&r);
	return 0;
fail:
	if (job) {
		resume_free(job->resume);
		job->resume = NULL;
		fp__job_free(job);
	}
	fp_jr_job_clear(&r);
	snprintf(err, errlen, "out of memory replaying the job at offset %llu",
		 (unsigned long long)off);
	return e;
}

static int stash_add(struct jr_resume *rs, const struct fp_jrec *rec)
{
	struct jr_stash *outs = rs->outs;

	if (rs->nouts == rs->capouts) {
		size_t cap = rs->capouts ? 2 * rs->capouts : 16;

		outs = realloc(rs->outs, cap * sizeof(*outs));
		if (!outs)
			return -ENOMEM;
		rs->outs = outs;
		rs->capouts = cap;
	}
	outs[rs->nouts].payload = malloc(rec->len ? rec->len : 1);
	if (!outs[rs->nouts].payload)
		return -ENOMEM;
	memcpy(outs[rs->nouts].payload, rec->payload, rec->len);
	outs[rs->nouts].type = rec->type;
	outs[rs->nouts++].len = rec->len;
	return 0;
}

/*
 * A pipeline's outputs kept aside are its own now, each once (an output at
 * a place already passed is said again: places only grow, but a compaction
 * may write some twice): all of them when it finished before the restart,
 * or, with `only`, those of the inputs done.
 */
static int stash_apply(fp_job *job, const struct jr_inputs *only)
{
	struct jr_resume *rs = job->resume;
	uint8_t id[FP_JR_ID_BYTES];
	struct fp_jr_outcomes o;
	struct fp_jr_outcome e;
	char small[512], *msg;
	uint64_t next_pos = 0;
	int r;

	for (size_t i = 0; rs && i < rs->nouts; i++) {
		struct fp_jrec rec = { rs->outs[i].type, (uint32_t)rs->outs[i].len,
				       rs->outs[i].payload, 0 };

		if (fp_jr_outcomes_get_begin(&o, &rec, id) < 0)
			return -EBADMSG;
		while ((r = fp_jr_outcomes_get_next(&o, &e)) > 0) {
			struct fp_result res = { .index = e.index, .stage = e.stage,
						 .status = (fp_item_status)e.status,
						 .attempts = e.attempts };

			if (e.pos < next_pos)
				continue;
			next_pos = (uint64_t)e.pos + 1;
			if (only && (e.index >= job->inputs || !input_done(only, e.index)))
				continue;
			msg = NULL;
			if (e.status == FP_ITEM_OK) {
				res.value = e.text;
				res.value_len = e.len;
			} else {
				msg = e.len < sizeof(small) ? small : malloc(e.len + 1);
				if (!msg)
					return -ENOMEM;
				memcpy(msg, e.text, e.len);
				msg[e.len] = '\0';
				res.message = msg;
			}
			fp__job_pipeline_output(job, &res);
			if (msg != small)
				free(msg);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int replay_outcomes(fp_jobs *jobs, const struct fp_jrec *rec, uint64_t off,
			   char *err, size_t errlen)
{
	uint8_t id[FP_JR_ID_BYTES];
	struct fp_jr_outcomes o;
	struct fp_jr_outcome e;
	char small[512], *msg = NULL;
	fp_job *job;
	int r;

	if (fp_jr_outcomes_get_begin(&o, rec, id) < 0)
		goto bad;
	job = find(jobs, id);
	if (!job || job->finished)
		return 0;
	job->jr_bytes += rec->size;
	jobs->jr_live += rec->size;
	if (job->kind == FP_JOB_PIPELINE) {
		if (stash_add(job->resume, rec) < 0) {
			snprintf(err, errlen, "out of memory replaying offset %llu",
				 (unsigned long long)off);
			return -ENOMEM;
		}
		/* Read now, so that a bad record is named where it is. */
		while ((r = fp_jr_outcomes_get_next(&o, &e)) > 0)
			;
		if (r == 0)
			return 0;
		goto bad;
	}
	while ((r = fp_jr_outcomes_get_next(&o, &e)) > 0) {
		struct fp_result res = { .index = e.pos, .status = (fp_item_status)e.status,
					 .attempts = e.attempts };

		if (e.status == FP_ITEM_OK) {
			res.value = e.text;
			res.value_len = e.len;
		} else {
			/* fp__job_record() takes a message as a C string. */
			msg = e.len < sizeof(small) ? small : malloc(e.len + 1);
			if (!msg) {
				snprintf(err, errlen, "out of memory replaying offset %llu",
					 (unsigned long long)off);
				return -ENOMEM;
			}
			memcpy(msg, e.text, e.len);
			msg[e.len] = '\0';
			res.message = msg;
		}
		fp__job_outcome(job, e.pos, &res);
		if (msg != small)
			free(msg);
		msg = NULL;
	}
	if (r == 0)
		return 0;
bad:
	snprintf(err, errlen, "an OUTCOMES record at offset %llu cannot be read",
		 (unsigned long long)off);
	return -EBADMSG;
}

static int replay_inputs(fp_jobs *jobs, const struct fp_jrec *rec, uint64_t off,
			 char *err, size_t errlen)
{
	uint8_t id[FP_JR_ID_BYTES];
	struct jr_inputs *in;
	uint32_t *idx;
	size_t n;
	fp_job *job;
	int e = fp_jr_get_inputs(rec, id, &idx, &n);

	if (e < 0) {
		snprintf(err, errlen, "%s reading an INPUTS record at offset %llu",
			 e == -ENOMEM ? "out of memory" : "bad fields",
			 (unsigned long long)off);
		return e;
	}
	job = find(jobs, id);
	if (!job || job->finished || job->kind != FP_JOB_PIPELINE) {
		free(idx);
		return 0;
	}
	job->jr_bytes += rec->size;
	jobs->jr_live += rec->size;
	/* Without memory the inputs are not known done: they run again. */
	in = inputs_of(job);
	for (size_t i = 0; in && i < n; i++)
		if (idx[i] < job->inputs)
			input_set(in, idx[i]);
	free(idx);
	return 0;
}

int fp_jobs_replay(void *data, const struct fp_jrec *rec, uint64_t off, char *err,
		   size_t errlen)
{
	fp_jobs *jobs = data;
	struct fp_jr_mark m;
	fp_job *job;

	switch (rec->type) {
	case FP_JR_JOB:
		return replay_job(jobs, rec, off, err, errlen);
	case FP_JR_OUTCOMES:
	case FP_JR_OUTCOMES_PACKED:
		return replay_outcomes(jobs, rec, off, err, errlen);
	case FP_JR_INPUTS:
		return replay_inputs(jobs, rec, off, err, errlen);
	case FP_JR_STARTED:
	case FP_JR_END:
	case FP_JR_CANCEL:
	case FP_JR_FORGET:
	case FP_JR_RERUN:
		break;
	default:
		/* A newer build's record: its version would have said so. */
		snprintf(err, errlen, "a record of unknown type %u at offset %llu",
			 (unsigned)rec->type, (unsigned long long)off);
		return -EBADMSG;
	}
	if (fp_jr_get_mark(rec, &m) < 0) {
		snprintf(err, errlen, "a %s record at offset %llu cannot be read",
			 fp_jr_type_name(rec->type), (unsigned long long)off);
		return -EBADMSG;
	}
	job = find(jobs, m.id);
	if (rec->type == FP_JR_FORGET) {
		if (job) {
			jobs->recovery.jobs--;
			jobs->recovery.finished -= job->finished;
			fp__jobs_forget_why(jobs, job, m.value < FP_JOB_GONE_COUNT ?
					    (enum fp_job_gone)m.value : FP_JOB_GONE_DELETED);
		}
		return 0;
	}
	if (!job || job->finished)
		return 0;
	if (rec->type == FP_JR_STARTED) {
		job->jr_started = true;
		if (!job->started_at)
			job->started_at = m.when;
		if (job->state == FP_JOB_QUEUED) {
			jobs->stats.by_state[FP_JOB_QUEUED]--;
			jobs->stats.by_state[FP_JOB_RUNNING]++;
			job->state = FP_JOB_RUNNING;
		}
	} else if (rec->type == FP_JR_CANCEL) {
		job->cancel_requested = true;
	} else if (rec->type == FP_JR_RERUN) {
		/* The outputs before it were made again, or written again, after it. */
		if (job->resume)
			stash_clear(job->resume);
		inputs_free(job);
	} else {
		enum fp_job_state st = m.value >= FP_JOB_DONE && m.value <= FP_JOB_CANCELLED ?
				       (enum fp_job_state)m.value : FP_JOB_FAILED;

		if (job->kind == FP_JOB_PIPELINE) {
			int e = stash_apply(job, NULL);

			if (e < 0) {
				snprintf(err, errlen, "%s replaying the END record at offset %llu",
					 e == -ENOMEM ? "out of memory" : "a bad OUTCOMES record",
					 (unsigned long long)off);
				return e;
			}
			/* Its call is over: its inputs owe nothing (as its done callback says). */
			jobs->stats.items_pending -= job->inputs;
			job->jr_done = job->total;
		}
		resume_free(job->resume);
		job->resume = NULL;
		free(job->jr_job);
		job->jr_job = NULL;
		inputs_free(job);
		job->jr_bytes += rec->size;
		jobs->jr_live += rec->size;
		jobs->recovery.finished++;
		fp__job_finish(job, st, m.when);
	}
	return 0;
}

/* --- resume -------------------------------------------------------------- */

/* The pool would not take it: its items left end with why, and so does the job. */
static void resume_refused(fp_job *job, int err)
{
	char msg[256];
	struct fp_result res = { .status = FP_ITEM_START_FAILURE, .message = msg };

	snprintf(msg, sizeof(msg), "not run again after the restart: %s", fp_strerror(err));
	for (size_t i = 0; i < job->total; i++) {
		if (job->items[i].finished)
			continue;
		res.index = i;
		fp__job_outcome(job, i, &res);
	}
	fp__job_finish(job, FP_JOB_FAILED, wall_ms());
}

/*
 * A pipeline left unfinished runs again from its inputs that were not done,
 * read from its JOB record; the outputs of the done ones are kept, those of
 * the others dropped (partial: they are made again). The file says the same
 * for a second restart: a RERUN record voids every earlier output and done
 * input, then the kept outputs are written again in their new places and
 * the done inputs after them. (A crash between the two reruns it whole.)
 */
static void resume_pipeline(fp_jobs *jobs, fp_job *job)
{
	struct fp_jrec rec = { FP_JR_JOB, (uint32_t)job->jr_job_len, job->jr_job, 0 };
	fp_pipeline_options po = FP_PIPELINE_OPTIONS_DEFAULT;
	struct jr_inputs *in = job->jr_in;
	fp_stage *stages = NULL;
	struct fp_buf *bufs = NULL;
	uint32_t *map = NULL;
	size_t kept = 0, k = 0;
	struct fp_jr_job r;
	char msg[256];
	struct fp_result res = { .status = FP_ITEM_START_FAILURE, .message = msg };
	int err = -ENOMEM;

	memset(&r, 0, sizeof(r));
	fp__jobs_journal_mark(jobs, job, FP_JR_RERUN, 0, wall_ms());
	if (in && in->ndone && (err = stash_apply(job, in)) < 0) {
		stash_clear(job->resume);
		goto refused;
	}
	stash_clear(job->resume);
	kept = in ? in->ndone : 0;
	/* The kept outputs in their new places, then their inputs, done. */
	for (size_t i = 0; in && i < job->inputs; i++)
		if (input_done(in, i) && input_pend(in, i) < 0)
			break;
	fp__jobs_journal_outcomes(jobs, job);
	if (kept == job->inputs) {
		/* Every input was done; only its END was lost. */
		jobs->stats.items_pending -= job->inputs;
		jobs->recovery.items_kept += kept;
		fp__job_finish(job, job->cancel_requested ? FP_JOB_CANCELLED :
			       job->nfailed ? FP_JOB_FAILED : FP_JOB_DONE, wall_ms());
		return;
	}
	if (!job->jr_job || (err = fp_jr_get_job(&rec, &r)) < 0)
		goto refused;
	err = -ENOMEM;
	stages = calloc(r.nstages, sizeof(*stages));
	bufs = calloc(r.n ? r.n : 1, sizeof(*bufs));
	if (kept && !(map = malloc((r.n - kept) * sizeof(*map))))
		goto refused;
	if (!stages || !bufs)
		goto refused;
	for (size_t i = 0; i < r.nstages; i++) {
		/* The names kept in the job are NUL-terminated; the record's are not. */
		stages[i] = (fp_stage){
			.task = fp_job_stage_task(job, i), .workers = r.stages[i].workers,
			.buffer = (size_t)r.stages[i].buffer,
			.timeout_ms = r.stages[i].timeout_ms, .retries = r.stages[i].retries,
			.retry_on = r.stages[i].retry_on,
		};
	}
	for (size_t i = 0; i < r.n; i++) {
		if (input_done(in, i))
			continue;
		if (map)
			map[k] = (uint32_t)i;
		bufs[k++] = (struct fp_buf){ r.items[i].text, r.items[i].len };
	}
	po.reduce = r.reduce ? fp_job_stage_task(job, r.nstages) : NULL;
	po.reduce_batch = (size_t)r.reduce_batch;
	po.ordered = r.ordered;
	job->pool_done = false;
	err = fp__job_pipeline_restart(job, stages, r.nstages, bufs, k, &po, map);
	map = NULL;     /* the job's now, whatever came of it */
	if (err)
		goto refused;
	free(stages);
	free(bufs);
	fp_jr_job_clear(&r);
	if (job->cancel_requested)
		fp_pool_cancel(jobs->pool, job->call_id);
	jobs->recovery.resumed++;
	jobs->recovery.items_kept += kept;
	jobs->recovery.items_rerun += k;
	return;

refused:
	free(map);
	free(stages);
	free(bufs);
	fp_jr_job_clear(&r);
	job->pool_done = true;
	/* Its inputs leave the queue count; one error output says why it ends. */
	jobs->stats.items_pending -= job->inputs;
	snprintf(msg, sizeof(msg), "not run again after the restart: %s", fp_strerror(err));
	fp__job_pipeline_output(job, &res);
	fp__job_finish(job, FP_JOB_FAILED, wall_ms());
}

static int resume_one(fp_jobs *jobs, fp_job *job)
{
	struct jr_resume *rs = job->resume;
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	struct fp_buf *bufs;
	uint32_t *map;
	size_t k = 0, left = job->total - job->ndone - job->nfailed;
	struct fp__job_start s;
	int err;

	jobs->recovery.items_kept += job->ndone + job->nfailed;
	/*
	 * Its recovered outcomes came from the journal: they are the first of
	 * `order`, and appending them again would write a resumed map's
	 * million outcomes twice.
	 */
	job->jr_done = job->ndone + job->nfailed;
	if (!left) {
		/* Every item answered before the crash; only its END was lost. */
		fp__job_finish(job, job->cancel_requested ? FP_JOB_CANCELLED :
			       job->nfailed ? FP_JOB_FAILED : FP_JOB_DONE, wall_ms());
		return 0;
	}
	bufs = malloc(left * sizeof(*bufs));
	map = malloc(left * sizeof(*map));
	if (!bufs || !map) {
		free(bufs);
		free(map);
		resume_refused(job, -ENOMEM);
		return 0;
	}
	for (size_t i = 0; i < job->total; i++) {
		if (job->items[i].finished)
			continue;
		bufs[k] = (struct fp_buf){ rs->text + rs->off[i], rs->off[i + 1] - rs->off[i] };
		map[k++] = (uint32_t)i;
	}
	co.timeout_ms = rs->timeout_ms;
	co.retries = rs->retries;
	co.retry_on = rs->retry_on;
	co.chunksize = (size_t)rs->chunksize;
	co.concurrency = rs->concurrency;
	memset(&s, 0, sizeof(s));
	s.kind = job->kind;
	s.name = job->task;
	s.n = k;
	s.items = bufs;
	s.opts = &co;
	job->resume_map = map;
	job->resume_n = k;
	/*
	 * The pool cannot say which items were running when the master died:
	 * every item of a job that had started and has no outcome counts the
	 * lost run as an attempt (README, "Durability").
	 */
	job->resume_attempts = job->jr_started ? 1 : 0;
	job->pool_done = false;
	err = fp__job_start_apply_map(jobs->pool, job, &s, fp__job_item_cb, fp__job_done_cb,
				      &job->call_id);
	free(bufs);
	if (err) {
		job->pool_done = true;
		job->resume_map = NULL;
		job->resume_n = 0;
		free(map);
		resume_refused(job, err);
		return 0;
	}
	if (job->cancel_requested)
		fp_pool_cancel(jobs->pool, job->call_id);
	jobs->recovery.resumed++;
	jobs->recovery.items_rerun += k;
	return 0;
}

int fp_jobs_resume(fp_jobs *jobs, struct fp_jobs_recovery *out)
{
	fp_job *job, **list;
	size_t n = 0, i;

	/*
	 * Collected first: ending one (all its items had answered) may evict
	 * finished jobs for max_jobs, and the list walk must not meet that.
	 */
	for (job = jobs->all; job; job = job->next)
		n += job->resume != NULL;
	list = malloc((n ? n : 1) * sizeof(*list));
	if (!list)
		return -ENOMEM;
	n = 0;
	for (job = jobs->all; job; job = job->next)
		if (job->resume)
			list[n++] = job;
	/* Oldest first, so that they queue in the order they were submitted. */
	for (i = n; i-- > 0; ) {
		if (list[i]->kind == FP_JOB_PIPELINE)
			resume_pipeline(jobs, list[i]);
		else
			resume_one(jobs, list[i]);
		resume_free(list[i]->resume);
		list[i]->resume = NULL;
	}
	free(list);
	if (out)
		*out = jobs->recovery;
	return 0;
}

/* --- compaction ---------------------------------------------------------- */

/* Jobs per slice at most, and the bytes a slice stops after. */
#define SNAP_JOBS 1024
#define SNAP_BYTES ((size_t)4 << 20)

/*
 * What the journal calls back: a struct of its own, so that a store freed
 * while a compaction runs leaves it `jobs` NULL rather than a dangling one.
 */
struct jr_compaction {
	fp_jobs *jobs;
	bool guest_done;           /* the guest's records are in the snapshot */
	fp_job **list;             /* the kept jobs when it began, oldest first, each held */
	size_t n, next;
};

static void snap_release(fp_jobs *jobs)
{
	struct jr_compaction *c = jobs->jr_cmp;

	if (!c)
		return;
	while (c->next < c->n)
		fp_job_unref(c->list[c->next++]);
	free(c->list);
	c->list = NULL;
	c->n = c->next = 0;
	c->jobs = NULL;
	jobs->jr_cmp = NULL;
}

static int snap_mark(struct sbuf *b, uint32_t salt, const fp_job *job, uint16_t type,
		     uint8_t value, uint64_t when)
{
	struct fp_jr_mark m;
	size_t start = fp_jrec_begin(b);

	memcpy(m.id, job->id, FP_JR_ID_BYTES);
	m.value = value;
	m.when = when;
	fp_jr_put_mark(b, &m);
	return fp_jrec_end(b, start, type, salt);
}

/*
 * A finished pipeline's stages for its JOB record: their tasks (the stage
 * options matter only to a call that runs, and it will not run again), the
 * reduce and the order.
 */
static int snap_stages(const fp_job *job, struct fp_jr_job *r)
{
	size_t n = fp_job_stages(job) - fp_job_has_reduce(job);

	if (job->kind != FP_JOB_PIPELINE)
		return 0;
	r->stages = calloc(n ? n : 1, sizeof(*r->stages));
	if (!r->stages)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		r->stages[i].task = fp_job_stage_task(job, i);
		r->stages[i].task_len = strlen(r->stages[i].task);
	}
	r->nstages = n;
	if (fp_job_has_reduce(job)) {
		r->reduce = fp_job_stage_task(job, n);
		r->reduce_len = strlen(r->reduce);
	}
	r->ordered = fp_job_ordered(job);
	return 0;
}

/* An unfinished pipeline's done inputs: one INPUTS record with all of them. */
static int snap_inputs(struct sbuf *b, uint32_t salt, const fp_job *job)
{
	const struct jr_inputs *in = job->jr_in;
	uint32_t *idx = malloc(in->ndone * sizeof(*idx));
	size_t n = 0, start;

	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < job->inputs && n < in->ndone; i++)
		if (input_done(in, i))
			idx[n++] = (uint32_t)i;
	start = fp_jrec_begin(b);
	fp_jr_put_inputs(b, job->id, idx, n);
	free(idx);
	return fp_jrec_end(b, start, FP_JR_INPUTS, salt);
}

/* One job's records, as replay would rebuild it. */
static int snap_job(struct sbuf *b, uint32_t salt, const fp_job *job)
{
	size_t count = outcomes_count(job), start;
	struct fp_jr_outcomes o;
	int err;

	start = fp_jrec_begin(b);
	if (job->finished) {
		struct fp_job_idem idem;
		struct fp_jr_job r;

		/* Its items will not run again: empty ones keep their count. */
		memset(&r, 0, sizeof(r));
		if (fp_job_idem(job, &idem)) {
			r.idem_key = idem.key;
			r.idem_key_len = idem.len;
			r.body_hash = idem.hash;
		}
		memcpy(r.id, job->id, FP_JR_ID_BYTES);
		r.kind = (uint8_t)job->kind;
		r.created_at = job->created_at;
		r.opts.task = job->task;
		r.opts.task_len = strlen(job->task);
		r.n = job->kind == FP_JOB_PIPELINE ? job->inputs : job->total;
		r.items = calloc(r.n ? r.n : 1, sizeof(*r.items));
		if (!r.items || (err = snap_stages(job, &r)) < 0) {
			free(r.items);
			return -ENOMEM;
		}
		err = fp_jr_put_job(b, &r);
		free(r.items);
		free(r.stages);
		if (err)
			return err;
	} else if (job->jr_job) {
		sbuf_add(b, job->jr_job, job->jr_job_len);
	} else {
		/* Its items could not be kept: this compaction cannot say it. */
		b->len = start;
		return -ENOMEM;
	}
	if ((err = fp_jrec_end(b, start, FP_JR_JOB, salt)) < 0)
		return err;
	if (job->started_at &&
	    (err = snap_mark(b, salt, job, FP_JR_STARTED, 0, job->started_at)) < 0)
		return err;
	if (job->cancel_requested && !job->finished &&
	    (err = snap_mark(b, salt, job, FP_JR_CANCEL, 0, 0)) < 0)
		return err;
	if (count) {
		start = fp_jrec_begin(b);
		fp_jr_outcomes_begin(&o, b, job->id, job->kind == FP_JOB_PIPELINE);
		for (size_t k = 0; k < count; k++)
			put_outcome(&o, job, k);
		fp_jr_outcomes_end(&o);
		if ((err = fp_jrec_end(b, start, fp_jr_outcomes_type(&o), salt)) < 0)
			return err;
	}
	if (!job->finished && job->jr_in && job->jr_in->ndone &&
	    (err = snap_inputs(b, salt, job)) < 0)
		return err;
	if (job->finished)
		return snap_mark(b, salt, job, FP_JR_END, (uint8_t)job->state, job->finished_at);
	return 0;
}

static int snapshot_cb(void *data, struct sbuf *b)
{
	struct jr_compaction *c = data;
	fp_jobs *jobs = c->jobs;
	size_t slice = 0;
	uint32_t salt;
	int err;

	if (!jobs || !jobs->journal)
		return -ECANCELED;
	salt = fp_journal_salt(jobs->journal);
	if (!c->guest_done) {
		c->guest_done = true;
		if (jobs->jr_guest.snapshot &&
		    (err = jobs->jr_guest.snapshot(jobs->jr_guest.data, b, salt)) < 0)
			return err;
	}
	while (c->next < c->n && slice < SNAP_JOBS && b->len < SNAP_BYTES) {
		fp_job *job = c->list[c->next++];

		/* One forgotten since has its FORGET in what follows the snapshot. */
		err = job->forgotten ? 0 : snap_job(b, salt, job);
		fp_job_unref(job);
		if (err)
			return err;
		slice++;
	}
	return c->next < c->n ? 1 : 0;
}

static void compacted_cb(void *data, int status)
{
	struct jr_compaction *c = data;
	fp_jobs *jobs = c->jobs;
	struct fp_journal_stats st;

	if (jobs) {
		jobs->jr_compact_err = status;
		snap_release(jobs);
		if (status < 0 && jobs->journal) {
			/* Not again before it has grown by half the threshold. */
			fp_journal_stats_get(jobs->journal, &st);
			jobs->jr_retry_at = st.size + jobs->opts.journal_compact_min / 2;
		}
	}
	free(c);
}

static uint64_t guest_live(fp_jobs *jobs)
{
	return jobs->jr_guest.live ? jobs->jr_guest.live(jobs->jr_guest.data) : 0;
}

static void maybe_compact(fp_jobs *jobs)
{
	fp_journal *j = jobs->journal;
	struct jr_compaction *c;
	struct fp_journal_stats st;
	fp_job *job, *last = NULL;
	size_t n = 0;

	if (!j || jobs->jr_cmp || fp_journal_compacting(j) || !jobs->opts.journal_compact_min)
		return;
	fp_journal_stats_get(j, &st);
	if (st.size < jobs->opts.journal_compact_min || st.size < jobs->jr_retry_at ||
	    st.size / 2 <= jobs->jr_live + guest_live(jobs))
		return;
	c = calloc(1, sizeof(*c));
	for (job = jobs->all; job; job = job->next) {
		n += job->journaled;
		last = job;
	}
	if (!c || !(c->list = malloc((n ? n : 1) * sizeof(*c->list)))) {
		free(c);
		return;
	}
	/* `all` is newest first: oldest first keeps the order replay saw. */
	for (job = last; job; job = job->prev) {
		if (!job->journaled)
			continue;
		fp_job_ref(job);
		c->list[c->n++] = job;
	}
	c->jobs = jobs;
	jobs->jr_cmp = c;
	if (fp_journal_compact(j, snapshot_cb, compacted_cb, c) < 0) {
		snap_release(jobs);
		free(c);
	}
}

void fp_jobs_journal_guest(fp_jobs *jobs, const struct fp_jobs_journal_guest *g)
{
	if (g)
		jobs->jr_guest = *g;
	else
		memset(&jobs->jr_guest, 0, sizeof(jobs->jr_guest));
}

void fp_jobs_journal_appended(fp_jobs *jobs)
{
	maybe_compact(jobs);
}

int fp_jobs_journal_compact_error(const fp_jobs *jobs)
{
	return jobs->jr_compact_err;
}
