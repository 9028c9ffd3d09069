/*
 * The job store: one pool call per job, every item's outcome kept after the
 * call ends, jobs found by a random id, forgotten after a TTL, past max_jobs
 * or for room under max_results_bytes (jobs.h, "Results memory").
 *
 * Memory, so that a million-item map stays cheap: a job is one struct, one
 * array of 16-byte item records, one array of completion indices, and the
 * text of values and messages in pages (jobs_record.c). Ids and the table
 * by id are jobs_table.c, watchers jobs_watch.c.
 *
 * Lifetime against the pool: the pool calls back only from its loop, and
 * always ends a call with its done callback, also after fp_pool_cancel() and
 * in fp_pool_free()'s shutdown. So a job whose call is still in the pool is
 * never freed outright: when it is forgotten (or the store freed) its call is
 * cancelled, its items and text are released, and the bare struct stays as a
 * tombstone - `forgotten`, on the store's orphan list, or with `jobs` NULL
 * once the store is gone - until the done callback frees it. Late item
 * callbacks see the tombstone and keep nothing.
 *
 * Callbacks into watchers may unwatch anything and forget anything: a job
 * that is being called back (`busy`) is unlinked by fp_jobs_forget() at once
 * but freed by the callback that is running, when it returns. Readers hold a
 * job the same way (fp_job_ref()). So a forgotten job is freed by whoever is
 * last of the three, the pool's done callback, a callback running and the
 * readers (fp__job_settle()); until then it waits on the orphan list, where
 * fp_jobs_free() finds it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs_impl.h"
#include "journal_jobs.h"

#define TABLE_MIN 64

/* The longest the TTL timer sleeps: a longer TTL is reached by re-arming. */
#define TTL_TIMER_MAX_MS ((uint64_t)24 * 3600 * 1000)

/* --- names --------------------------------------------------------------- */

static const char *const state_names[] = {
	[FP_JOB_QUEUED] = "queued",
	[FP_JOB_RUNNING] = "running",
	[FP_JOB_DONE] = "done",
	[FP_JOB_FAILED] = "failed",
	[FP_JOB_CANCELLED] = "cancelled",
};

const char *fp_job_kind_name(enum fp_job_kind kind)
{
	return kind == FP_JOB_APPLY ? "apply" : kind == FP_JOB_MAP ? "map" :
	       kind == FP_JOB_PIPELINE ? "pipeline" : "unknown";
}

const char *fp_job_state_name(enum fp_job_state state)
{
	if ((unsigned)state < sizeof(state_names) / sizeof(state_names[0]))
		return state_names[state];
	return "unknown";
}

int fp_job_state_parse(const char *name, enum fp_job_state *out)
{
	for (unsigned i = 0; name && i < sizeof(state_names) / sizeof(state_names[0]); i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum fp_job_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

void fp_jobs_options_init(struct fp_jobs_options *o)
{
	o->ttl_ms = 10 * 60 * 1000;
	o->max_queue = 1000000;
	o->max_jobs = 10000;
	o->max_results_bytes = (uint64_t)1 << 30;
	o->max_outputs = 10000000;
	o->journal_compact_min = (uint64_t)64 << 20;
}

static const char *const gone_names[FP_JOB_GONE_COUNT] = {
	[FP_JOB_GONE_TTL] = "ttl",
	[FP_JOB_GONE_MAX_JOBS] = "max_jobs",
	[FP_JOB_GONE_MEMORY] = "memory",
	[FP_JOB_GONE_DELETED] = "deleted",
};

const char *fp_job_gone_name(enum fp_job_gone why)
{
	return (unsigned)why < FP_JOB_GONE_COUNT ? gone_names[why] : "unknown";
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- lists and states ---------------------------------------------------- */

static void set_state(fp_job *job, enum fp_job_state s)
{
	if (job->jobs && !job->forgotten) {
		job->jobs->stats.by_state[job->state]--;
		job->jobs->stats.by_state[s]++;
	}
	job->state = s;
}

static void finished_unlink(fp_jobs *jobs, fp_job *job)
{
	if (job->fprev)
		job->fprev->fnext = job->fnext;
	else
		jobs->fin_head = job->fnext;
	if (job->fnext)
		job->fnext->fprev = job->fprev;
	else
		jobs->fin_tail = job->fprev;
	job->fprev = job->fnext = NULL;
	jobs->nfinished--;
	jobs->fin_bytes -= job->held;
	if (job->refs)
		jobs->fin_held_bytes -= job->held;
}

static void orphan_link(fp_jobs *jobs, fp_job *job)
{
	job->fprev = NULL;
	job->fnext = jobs->orphans;
	if (jobs->orphans)
		jobs->orphans->fprev = job;
	jobs->orphans = job;
	job->orphan = true;
}

static void orphan_unlink(fp_jobs *jobs, fp_job *job)
{
	if (job->fprev)
		job->fprev->fnext = job->fnext;
	else
		jobs->orphans = job->fnext;
	if (job->fnext)
		job->fnext->fprev = job->fprev;
	job->fprev = job->fnext = NULL;
	job->orphan = false;
}

/*
 * Free a forgotten job once the pool, the callbacks running and its readers
 * are all done with it; whoever is last calls this. With the store gone
 * (`jobs` NULL) its orphan list went with it.
 */
void fp__job_settle(fp_job *job)
{
	if (!job->forgotten || !job->pool_done || job->busy || job->refs)
		return;
	if (job->orphan && job->jobs)
		orphan_unlink(job->jobs, job);
	fp__job_free(job);
}

static void ttl_cb(fp_timer *t);

/*
 * One timer for every finished job: the TTL is the same for all, so the
 * oldest finished job always expires first and the timer follows the head.
 */
static void ttl_arm(fp_jobs *jobs)
{
	uint64_t now, due, delay;

	if (!jobs->fin_head) {
		fp_timer_stop(&jobs->ttl);
		return;
	}
	due = jobs->fin_head->expire_ms;
	if (fp_timer_active(&jobs->ttl) && jobs->ttl.due_ms <= due)
		return;
	now = fp_now_ms();
	delay = due > now ? due - now : 0;
	if (delay > TTL_TIMER_MAX_MS)
		delay = TTL_TIMER_MAX_MS;
	/* Should the backend refuse, the next job to finish tries again. */
	fp_timer_start(jobs->loop, &jobs->ttl, delay, ttl_cb);
}

static void ttl_cb(fp_timer *t)
{
	fp_jobs *jobs = t->data;
	uint64_t now = fp_now_ms();

	while (jobs->fin_head && jobs->fin_head->expire_ms <= now)
		fp__jobs_forget_why(jobs, jobs->fin_head, FP_JOB_GONE_TTL);
	ttl_arm(jobs);
}

/* --- the pool's callbacks ------------------------------------------------ */

/*
 * The pool handed the job's first item to a worker: it is running from now,
 * whatever its items have answered (none, the pool tells this first).
 */
void fp__job_started(fp_pool *pool, uint64_t call_id, void *data)
{
	fp_job *job = data;

	if (job->forgotten || job->finished)
		return;
	/* A recovered job keeps the start it had before the restart. */
	if (job->started_at)
		return;
	job->started_at = wall_ms();
	if (job->started_at < job->created_at)
		job->started_at = job->created_at;
	if (job->state == FP_JOB_QUEUED)
		set_state(job, FP_JOB_RUNNING);
	fp__jobs_journal_mark(job->jobs, job, FP_JR_STARTED, 0, job->started_at);
}

void fp__job_label(const fp_job *job, char *buf)
{
	memcpy(buf, "job ", 4);
	memcpy(buf + 4, job->hex, ID_HEX + 1);
}

/*
 * An item (or a pipeline's output) at `pos` has its answer recorded: count
 * it, and tell the job's watchers. An item that ends without running (too
 * large, cancelled while queued) leaves the job queued.
 */
static void item_counted(fp_job *job, const struct job_item *it, size_t pos)
{
	fp_jobs *jobs = job->jobs;

	if (it->status == FP_ITEM_OK) {
		job->ndone++;
		jobs->stats.items_ok++;
	} else {
		job->nfailed++;
		jobs->stats.items_failed++;
	}
	fp__job_watchers_item(job, pos);
}

/*
 * A pipeline's output (or error) as it is delivered: appended, so that
 * readers see outputs in delivery order. Its inputs leave the queue count
 * when the call ends: only then is it known that an input owes nothing more.
 */
static void output_append(fp_job *job, const struct fp_result *r)
{
	fp_jobs *jobs = job->jobs;
	size_t pos = job->total;
	struct fp_result instead;
	struct job_item *it;

	if (jobs->opts.max_outputs && pos >= jobs->opts.max_outputs && !job->overflowed) {
		/* Memory is bounded: stop the pipeline rather than keep everything it makes. */
		job->overflowed = true;
		fp_jobs_cancel(jobs, job);
	}
	if (!job->overflowed &&
	    !fp__jobs_results_room(jobs, sizeof(struct job_item) + sizeof(struct job_origin))) {
		/*
		 * Past the results limit not even the output's record is made: a
		 * pipeline may make many more outputs than it had inputs. Lost, as
		 * below, and counted as dropped for the limit.
		 */
		jobs->stats.results_dropped++;
		job->nlost++;
		jobs->stats.items_failed++;
		return;
	}
	if (job->overflowed || (pos == job->cap && fp__job_outputs_grow(job) < 0)) {
		/* Counted, so the document says outputs are missing. */
		job->nlost++;
		jobs->stats.items_failed++;
		return;
	}
	it = &job->items[pos];
	fp__job_record(job, it, fp__job_result_to_keep(job, r, &instead));
	job->origins[pos] = (struct job_origin){ (uint32_t)r->index, r->stage };
	job->total++;
	fp__jobs_journal_dirty(jobs, job);
	item_counted(job, it, pos);
}

void fp__job_outcome(fp_job *job, size_t pos, const struct fp_result *r)
{
	fp_jobs *jobs = job->jobs;
	struct fp_result instead;
	struct job_item *it;

	if (pos >= job->total || job->items[pos].finished)
		return;
	it = &job->items[pos];
	fp__job_record(job, it, fp__job_result_to_keep(job, r, &instead));
	job->order[job->ndone + job->nfailed] = (uint32_t)pos;
	jobs->stats.items_pending--;
	fp__jobs_journal_dirty(jobs, job);
	item_counted(job, it, pos);
}

void fp__job_item_cb(fp_pool *pool, uint64_t call_id, const struct fp_result *r,
		     void *data)
{
	fp_job *job = data;
	fp_jobs *jobs = job->jobs;
	struct fp_result resumed;

	if (job->forgotten) {
		/* A tombstone keeps nothing; its items still leave the queue count. */
		if (jobs) {
			if (job->kind != FP_JOB_PIPELINE)
				jobs->stats.items_pending--;
			if (r->status == FP_ITEM_OK)
				jobs->stats.items_ok++;
			else
				jobs->stats.items_failed++;
		}
		return;
	}
	if (job->kind == FP_JOB_PIPELINE) {
		output_append(job, r);
		return;
	}
	if (job->resume_map) {
		/* A recovered job runs only its items without an outcome. */
		if (r->index >= job->resume_n)
			return;
		resumed = *r;
		resumed.index = job->resume_map[r->index];
		resumed.attempts += job->resume_attempts;
		r = &resumed;
	}
	fp__job_outcome(job, r->index, r);
}

/*
 * A run of OK answers of a map, kept at once: room asked for the whole run,
 * the values written one after the other into one piece of a text page, the
 * counters and the journal told once; the watchers still hear each item.
 * False, with nothing done, when the run must go item by item: an error in
 * it, no room for all of it under max_results_bytes (the per-item path keeps
 * what fits), no memory.
 */
static bool outcomes_ok_run(fp_job *job, const struct fp_result *r, size_t n)
{
	fp_jobs *jobs = job->jobs;
	size_t k, need = 0, at = job->ndone + job->nfailed;
	char *d;

	for (k = 0; k < n; k++) {
		if (r[k].status != FP_ITEM_OK || r[k].index >= job->total ||
		    job->items[r[k].index].finished || r[k].value_len > UINT32_MAX)
			return false;
		need += r[k].value_len + 1;
	}
	if (jobs->opts.max_results_bytes && !fp__jobs_results_room(jobs, need))
		return false;
	d = fp__job_text_room(job, need);
	if (!d)
		return false;
	for (k = 0; k < n; k++) {
		struct job_item *it = &job->items[r[k].index];
		size_t len = r[k].value_len;

		if (len)
			memcpy(d, r[k].value, len);
		d[len] = '\0';
		it->text = d;
		it->len = (uint32_t)len;
		it->status = FP_ITEM_OK;
		it->attempts = r[k].attempts > UINT16_MAX ? UINT16_MAX : (uint16_t)r[k].attempts;
		it->finished = 1;
		job->order[at + k] = (uint32_t)r[k].index;
		d += len + 1;
	}
	job->ndone += n;
	jobs->stats.items_ok += n;
	jobs->stats.items_pending -= n;
	fp__jobs_journal_dirty(jobs, job);
	/* A watcher may forget the job: the rest of the run then tells nobody. */
	for (k = 0; k < n && !job->forgotten; k++)
		fp__job_watchers_item(job, r[k].index);
	return true;
}

/*
 * The job struct outlives every callback of its call (a forgotten one stays
 * a tombstone until the done callback), so a run that cannot be kept at
 * once is walked item by item whatever the callbacks into watchers do.
 */
void fp__job_items_cb(fp_pool *pool, uint64_t call_id, const struct fp_result *r, size_t n,
		      void *data)
{
	fp_job *job = data;

	if (n > 1 && !job->forgotten && job->kind == FP_JOB_MAP && !job->resume_map &&
	    outcomes_ok_run(job, r, n))
		return;
	for (size_t i = 0; i < n; i++)
		fp__job_item_cb(pool, call_id, &r[i], data);
}

void fp__job_lent_free(fp_job *job)
{
	fp_mem_free(job->lent);
	fp_mem_free(job->lent_text);
	job->lent = NULL;
	job->lent_text = NULL;
}

void fp__job_done_cb(fp_pool *pool, const struct fp_call_summary *s, void *data)
{
	fp_job *job = data;
	fp_jobs *jobs = job->jobs;

	/* The call is over: nothing reads its items any more. */
	fp__job_lent_free(job);
	if (job->kind == FP_JOB_PIPELINE && jobs)
		jobs->stats.items_pending -= job->inputs;
	job->pool_done = true;
	if (job->forgotten) {
		/* The last word from the pool: the tombstone can go, unless held. */
		fp__job_settle(job);
		return;
	}
	free(job->resume_map);
	job->resume_map = NULL;
	fp__job_finish(job, s->cancelled ? FP_JOB_CANCELLED :
		       job->nfailed ? FP_JOB_FAILED : FP_JOB_DONE, wall_ms());
}

void fp__job_finish(fp_job *job, enum fp_job_state state, uint64_t finished_at)
{
	fp_jobs *jobs = job->jobs;
	uint64_t now, age, wall = wall_ms();

	job->finished = true;
	/* Durations are finished_at - created_at: a clock stepped back gives 0, not 2^64. */
	job->finished_at = finished_at < job->created_at ? job->created_at : finished_at;
	set_state(job, state);
	jobs->unfinished--;
	/* Its outcomes go before its END, so a replay finds them all. */
	fp__jobs_journal_outcomes(jobs, job);
	fp__jobs_journal_mark(jobs, job, FP_JR_END, (uint8_t)state, job->finished_at);

	/* The TTL runs from finished_at: a recovered job does not start afresh. */
	now = fp_now_ms();
	age = wall > job->finished_at ? wall - job->finished_at : 0;
	age = age > jobs->opts.ttl_ms ? jobs->opts.ttl_ms : age;
	job->expire_ms = jobs->opts.ttl_ms - age > UINT64_MAX - now ? UINT64_MAX
			 : now + (jobs->opts.ttl_ms - age);
	job->fprev = jobs->fin_tail;
	if (jobs->fin_tail)
		jobs->fin_tail->fnext = job;
	else
		jobs->fin_head = job;
	jobs->fin_tail = job;
	jobs->nfinished++;
	jobs->fin_bytes += job->held;
	if (job->refs)
		jobs->fin_held_bytes += job->held;

	fp__job_watchers_end(job);
	/* Forgotten by a watcher: fp_jobs_forget() left the freeing to us. */
	fp__job_settle(job);
	while (jobs->nfinished > jobs->opts.max_jobs)
		fp__jobs_forget_why(jobs, jobs->fin_head, FP_JOB_GONE_MAX_JOBS);
	ttl_arm(jobs);
}

/* --- the store ----------------------------------------------------------- */

int fp_jobs_new(fp_jobs **out, fp_pool *pool, const struct fp_jobs_options *o)
{
	fp_jobs *jobs;

	*out = NULL;
	if (!pool)
		return -EINVAL;
	jobs = calloc(1, sizeof(*jobs));
	if (!jobs)
		return -ENOMEM;
	jobs->buckets = calloc(TABLE_MIN, sizeof(*jobs->buckets));
	jobs->ikeys = calloc(TABLE_MIN, sizeof(*jobs->ikeys));
	if (!jobs->buckets || !jobs->ikeys) {
		free(jobs->buckets);
		free(jobs->ikeys);
		free(jobs);
		return -ENOMEM;
	}
	jobs->nbuckets = TABLE_MIN;
	jobs->pool = pool;
	jobs->loop = fp_pool_loop(pool);
	if (o)
		jobs->opts = *o;
	else
		fp_jobs_options_init(&jobs->opts);
	jobs->ttl.data = jobs;
	jobs->jr_flush.data = jobs;
	*out = jobs;
	return 0;
}

void fp_jobs_free(fp_jobs *jobs)
{
	fp_job *job;

	if (!jobs)
		return;
	fp_timer_stop(&jobs->ttl);
	/* Unfinished jobs stay unfinished in the journal: they resume at the next start. */
	fp_jobs_detach_journal(jobs);
	while ((job = jobs->all)) {
		struct fp_job_watch *w;

		jobs->all = job->next;
		fp__jobs_journal_drop(jobs, job);
		/* No callbacks from here: watches are only unlinked. */
		while ((w = job->watchers))
			fp_job_unwatch(w);
		if (job->finished && !job->refs) {
			fp__job_free(job);
			continue;
		}
		/*
		 * In the pool still: a tombstone until its done callback. Or held
		 * by a reader, records and all, until fp_job_unref().
		 */
		if (!job->finished) {
			fp_pool_cancel(jobs->pool, job->call_id);
			fp__job_release(job);
		}
		job->forgotten = true;
		job->ended = true;
		job->jobs = NULL;
		job->prev = job->next = job->hnext = job->fprev = job->fnext = NULL;
		job->orphan = false;
	}
	for (job = jobs->orphans; job; job = job->fnext)
		job->jobs = NULL;
	fp__jobs_gone_free(jobs);
	free(jobs->buckets);
	free(jobs->ikeys);
	free(jobs);
}

int fp__job_start_apply_map(fp_pool *pool, fp_job *job, const void *arg, fp_item_cb on_item,
			   fp_done_cb on_done, uint64_t *call_id)
{
	static const fp_call_options defaults = FP_CALL_OPTIONS_DEFAULT;
	const struct fp__job_start *s = arg;
	fp_call_options o = s->opts ? *s->opts : defaults;
	char label[FP__JOB_LABEL_LEN];

	fp__job_label(job, label);
	o.on_start = fp__job_started;
	o.label = label;
	if (s->kind == FP_JOB_APPLY)
		return fp_pool_apply_async(pool, s->name, s->items[0].base, s->items[0].len,
					   &o, on_item, on_done, job, call_id);
	/* Items the job keeps are lent, and their outcomes come a run at a time. */
	if (job->lent)
		return fp_pool_map_borrow_async(pool, s->name, job->lent, s->n, &o,
						fp__job_items_cb, on_done, job, call_id);
	return fp_pool_map_async(pool, s->name, s->items, s->n, &o, on_item, on_done,
				 job, call_id);
}

int fp_jobs_submit(fp_jobs *jobs, enum fp_job_kind kind, const char *task,
		   const struct fp_buf *items, size_t n, const fp_call_options *opts,
		   fp_job **out)
{
	return fp_jobs_submit_idem(jobs, kind, task, items, n, opts, NULL, out);
}

int fp_jobs_submit_idem(fp_jobs *jobs, enum fp_job_kind kind, const char *task,
			const struct fp_buf *items, size_t n, const fp_call_options *opts,
			const struct fp_job_idem *idem, fp_job **out)
{
	struct fp__job_start s = {
		.kind = kind, .name = task, .n = n, .items = items, .opts = opts,
		.start = fp__job_start_apply_map, .idem = idem,
	};

	s.arg = &s;
	if (out)
		*out = NULL;
	if (!task || (n && !items) || (kind == FP_JOB_APPLY && n != 1) ||
	    (kind != FP_JOB_APPLY && kind != FP_JOB_MAP))
		return -EINVAL;
	return fp__jobs_submit(jobs, &s, out);
}

int fp_jobs_submit_map_taking(fp_jobs *jobs, const char *task, struct fp_buf *items,
			      size_t n, void *text, const fp_call_options *opts,
			      const struct fp_job_idem *idem, fp_job **out)
{
	struct fp__job_start s = {
		.kind = FP_JOB_MAP, .name = task, .n = n, .items = items, .opts = opts,
		.start = fp__job_start_apply_map, .idem = idem, .lent = items,
		.lent_text = text,
	};

	s.arg = &s;
	if (out)
		*out = NULL;
	if (!task || (n && !items)) {
		fp_mem_free(items);
		fp_mem_free(text);
		return -EINVAL;
	}
	return fp__jobs_submit(jobs, &s, out);
}

static int submit(fp_jobs *jobs, const struct fp__job_start *s, bool *took, fp_job **out);

/* Lent items and the ext are the job's from here, whatever the outcome (jobs_impl.h). */
int fp__jobs_submit(fp_jobs *jobs, const struct fp__job_start *s, fp_job **out)
{
	bool took = false;
	int err = submit(jobs, s, &took, out);

	if (!took) {
		fp_mem_free(s->lent);
		fp_mem_free(s->lent_text);
		if (s->ext && s->ext_free)
			s->ext_free(s->ext);
	}
	return err;
}

/*
 * *took: the job holds s's lent items and ext (its call started); else
 * they are still s's.
 */
static int submit(fp_jobs *jobs, const struct fp__job_start *s, bool *took, fp_job **out)
{
	const struct fp_job_idem *idem = s->idem && s->idem->key ? s->idem : NULL;
	bool pipeline = s->kind == FP_JOB_PIPELINE;
	size_t n = s->n;
	uint64_t room, need;
	fp_job *job;
	int err;

	if (out)
		*out = NULL;
	if (!jobs || !s->name || !s->start)
		return -EINVAL;
	if (jobs->closed)
		return FP_ESTOPPED;
	if (idem && fp_idem_key_check(idem->key, idem->len) < 0)
		return -EINVAL;
	/* The key's holder answers for it: the API replays or refuses before this. */
	if (idem && fp_jobs_idem_find(jobs, idem->key, idem->len))
		return -EEXIST;
	/* Completion indices are 32-bit, as the pool's own item numbers are. */
	if (n > UINT32_MAX)
		return -E2BIG;
	room = jobs->stats.items_pending >= jobs->opts.max_queue ? 0 :
	       jobs->opts.max_queue - jobs->stats.items_pending;
	if (n > room) {
		jobs->stats.rejected++;
		return -EBUSY;
	}
	need = jobs->opts.max_results_bytes ? fp__job_estimate(s) : 0;
	if (need && !fp__jobs_results_room(jobs, need)) {
		jobs->stats.rejected_memory++;
		jobs->stats.refused_need = need;
		jobs->stats.refused_held = jobs->stats.results_bytes -
					   (jobs->fin_bytes - jobs->fin_held_bytes);
		return -ENOSPC;
	}
	/* A pipeline's records are made as its outputs come. */
	job = fp__job_alloc(s->name, pipeline ? 0 : n);
	if (!job)
		return -ENOMEM;
	err = fp__jobs_table_reserve(jobs);
	if (err)
		goto err_job;
	err = fp__job_id_generate(jobs, job);
	if (err)
		goto err_job;
	/* Set before the pool is asked: whatever records the job sees its key. */
	if (idem && (err = fp__job_idem_set(job, idem)) < 0)
		goto err_job;
	job->jobs = jobs;
	job->kind = s->kind;
	job->inputs = n;
	job->state = FP_JOB_QUEUED;
	job->created_at = wall_ms();
	/* The start function may reach the ext; the job owns it only once started. */
	job->ext = s->ext;
	job->lent = s->lent;
	job->lent_text = s->lent_text;
	err = s->start(jobs->pool, job, s->arg, fp__job_item_cb, fp__job_done_cb, &job->call_id);
	if (err) {
		/* The call failed up front: the items go back to fp__jobs_submit(). */
		job->lent = NULL;
		job->lent_text = NULL;
		goto err_job;
	}

	/*
	 * The pool calls back from its loop only: linking after it is safe.
	 * The call's callbacks read the ext (and lent items) until its done
	 * callback, so from here they are the job's, even if the journal
	 * refuses the job below.
	 */
	job->ext_free = s->ext_free;
	*took = true;
	fp__jobs_link(jobs, job, n);
	jobs->stats.submitted++;
	/*
	 * Written after the call started, as only a started call is a job;
	 * the pool's callbacks come from the loop, so its outcomes follow.
	 */
	err = fp__jobs_journal_job(jobs, job, s);
	if (err) {
		jobs->stats.submitted--;
		/* Cancels the call: a tombstone, freed (ext and all) at its done callback. */
		fp__jobs_unlink_quiet(jobs, job);
		return err;
	}
	if (out)
		*out = job;
	return 0;

err_job:
	fp__job_free(job);
	return err;
}

void fp__jobs_link(fp_jobs *jobs, fp_job *job, size_t n)
{
	fp__job_count(job);
	fp__jobs_table_insert(jobs, job);
	fp__jobs_idem_link(jobs, job);
	job->seq = ++jobs->last_seq;
	job->next = jobs->all;
	if (jobs->all)
		jobs->all->prev = job;
	jobs->all = job;
	jobs->stats.jobs++;
	jobs->stats.by_state[job->state]++;
	jobs->stats.items_pending += n;
	jobs->unfinished++;
}

int fp_jobs_cancel(fp_jobs *jobs, fp_job *job)
{
	int err;

	if (job->finished || job->forgotten)
		return -EALREADY;
	err = fp_pool_cancel(jobs->pool, job->call_id);
	/* The pool refuses a second cancel of the same call; to us it is done. */
	if (err == -ENOENT && job->cancel_requested)
		err = 0;
	if (err == 0 && !job->cancel_requested)
		fp__jobs_journal_mark(jobs, job, FP_JR_CANCEL, 0, 0);
	if (err == 0)
		job->cancel_requested = true;
	return err;
}

static void forget(fp_jobs *jobs, fp_job *job);

void fp_jobs_forget(fp_jobs *jobs, fp_job *job)
{
	fp__jobs_forget_why(jobs, job, FP_JOB_GONE_DELETED);
}

void fp__jobs_forget_why(fp_jobs *jobs, fp_job *job, enum fp_job_gone why)
{
	if (!jobs || !job || job->forgotten)
		return;
	fp__jobs_gone_add(jobs, job->id, why);
	jobs->stats.forgotten[why]++;
	fp__jobs_journal_mark(jobs, job, FP_JR_FORGET, (uint8_t)why, wall_ms());
	forget(jobs, job);
}

void fp__jobs_unlink_quiet(fp_jobs *jobs, fp_job *job)
{
	if (!job->forgotten)
		forget(jobs, job);
}

static void forget(fp_jobs *jobs, fp_job *job)
{
	fp__jobs_journal_drop(jobs, job);
	fp__jobs_table_remove(jobs, job);
	fp__jobs_idem_unlink(jobs, job);
	if (job->prev)
		job->prev->next = job->next;
	else
		jobs->all = job->next;
	if (job->next)
		job->next->prev = job->prev;
	job->prev = job->next = NULL;
	jobs->stats.jobs--;
	jobs->stats.by_state[job->state]--;
	job->forgotten = true;

	if (job->finished) {
		finished_unlink(jobs, job);
		if (!jobs->fin_head)
			fp_timer_stop(&jobs->ttl);
		orphan_link(jobs, job);
		/* Only fp_job_watch_forget() watchers are left; `forgotten` keeps new ones out. */
		fp__job_watchers_end(job);
		fp__job_settle(job);
		return;
	}

	jobs->unfinished--;
	if (job->pool_done) {
		/* Recovered and not started again: no callback will count its items. */
		jobs->stats.items_pending -= job->inputs - job->ndone - job->nfailed;
		orphan_link(jobs, job);
		fp__job_watchers_end(job);
		fp__job_release(job);
		fp__job_settle(job);
		return;
	}
	/* Still in the pool: cancel it, tell the watchers, keep a tombstone. */
	fp_pool_cancel(jobs->pool, job->call_id);
	orphan_link(jobs, job);
	fp__job_watchers_end(job);
	fp__job_release(job);
}

void fp_jobs_withdraw(fp_jobs *jobs, fp_job *job)
{
	if (jobs && job)
		fp__jobs_unlink_quiet(jobs, job);
}

size_t fp_jobs_list(fp_jobs *jobs, const enum fp_job_state *state, uint64_t before,
		    fp_job **out, size_t max)
{
	fp_job *job = jobs->all;
	size_t n = 0;

	/*
	 * `all` is in seq order, as jobs are linked at its head when their seq
	 * is drawn: skip to the cursor (a walk, one pointer a job: a page deep
	 * in 100,000 jobs costs well under a millisecond).
	 */
	while (before && job && job->seq >= before)
		job = job->next;
	for (; job && n < max; job = job->next)
		if (!state || job->state == *state)
			out[n++] = job;
	return n;
}

void fp_jobs_stats(const fp_jobs *jobs, struct fp_jobs_stats *out)
{
	*out = jobs->stats;
}

const struct fp_jobs_options *fp_jobs_get_options(const fp_jobs *jobs)
{
	return &jobs->opts;
}

void fp_jobs_close(fp_jobs *jobs)
{
	jobs->closed = true;
}

size_t fp_jobs_unfinished(const fp_jobs *jobs)
{
	return jobs->unfinished;
}

/* --- one job ------------------------------------------------------------- */

const char *fp_job_id(const fp_job *job) { return job->hex; }
uint64_t fp_job_seq(const fp_job *job) { return job->seq; }
enum fp_job_kind fp_job_kind(const fp_job *job) { return job->kind; }
const char *fp_job_task(const fp_job *job) { return job->task; }
enum fp_job_state fp_job_state(const fp_job *job) { return job->state; }
bool fp_job_finished(const fp_job *job) { return job->finished; }
size_t fp_job_total(const fp_job *job) { return job->total; }
size_t fp_job_done(const fp_job *job) { return job->ndone; }
size_t fp_job_failed(const fp_job *job) { return job->nfailed; }
size_t fp_job_inputs(const fp_job *job) { return job->inputs; }
size_t fp_job_lost(const fp_job *job) { return job->nlost; }
bool fp_job_overflowed(const fp_job *job) { return job->overflowed; }
void *fp__job_ext(const fp_job *job) { return job->ext; }
bool fp__job_forgotten(const fp_job *job) { return job->forgotten; }
uint64_t fp__job_call_id(const fp_job *job) { return job->call_id; }
fp_pool *fp__jobs_pool(const fp_jobs *jobs) { return jobs->pool; }
uint64_t fp_job_created_at(const fp_job *job) { return job->created_at; }
uint64_t fp_job_started_at(const fp_job *job) { return job->started_at; }
uint64_t fp_job_finished_at(const fp_job *job) { return job->finished_at; }
