/*
 * Pipeline jobs: one fp_pool_pipeline_async() call kept by the job store.
 *
 * The store keeps a pipeline's outputs as they are delivered (jobs.c); this
 * file starts the call and keeps what only a pipeline has: its stages' task
 * names, their counters, and which output is the reduced value. The pool
 * gives a pipeline's counters only while the call is alive: a reader gets
 * them from the pool while it lasts, and they are copied once at the end, so
 * a finished job shows them as they were when it ended. (They were copied at
 * every delivery, a million copies for a million outputs.)
 *
 * A pipeline recovered from the journal (jobs_journal.c) is made with the
 * fp__pipeline_ext_* and fp__job_pipeline_* functions below: its state from
 * its JOB record, its outputs read back, its call started again. One that
 * finished before the restart has no counters to show (its call is gone):
 * they read zero.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_impl.h"

struct pipeline_ext {
	fp_pool *pool;
	fp_item_cb on_item;        /* the store's callbacks, called after ours */
	fp_done_cb on_done;
	size_t nstages;            /* with the reduce, if any */
	size_t reduce_stage;       /* the reduce's stage number, or SIZE_MAX */
	size_t reduced;            /* position of the reduced value, or SIZE_MAX */
	bool ended;                /* the call is over: stats are final */
	bool ordered;
	struct fp_stage_stats *stats;
	char **names;
	/*
	 * Resumed from the inputs that were not done: the call's input i is
	 * the job's input input_map[i] (NULL: the same).
	 */
	uint32_t *input_map;
	size_t input_map_n;
};

struct pipeline_start {
	const fp_stage *stages;
	size_t nstages;
	const struct fp_buf *items;
	size_t n;
	const fp_pipeline_options *opts;
};

static void ext_free(void *p)
{
	struct pipeline_ext *x = p;

	if (!x)
		return;
	for (size_t i = 0; x->names && i < x->nstages; i++)
		free(x->names[i]);
	free(x->names);
	free(x->stats);
	free(x->input_map);
	free(x);
}

/*
 * A tombstone asks nothing of the pool: its callbacks may come from inside
 * fp_pool_free(), and nobody will read the counters.
 */
static void stats_copy(struct pipeline_ext *x, fp_job *job)
{
	if (!x->ended && !fp__job_forgotten(job))
		fp_pipeline_stats(x->pool, fp__job_call_id(job), x->stats, x->nstages);
}

static void pipeline_item_cb(fp_pool *pool, uint64_t call_id, const struct fp_result *r,
			     void *data)
{
	fp_job *job = data;
	struct pipeline_ext *x = fp__job_ext(job);
	size_t before = fp_job_total(job);
	struct fp_result resumed;

	if (x->input_map && r->index < x->input_map_n) {
		resumed = *r;
		resumed.index = x->input_map[r->index];
		r = &resumed;
	}
	/* No copy of the counters here: a reader gets them live while the call lasts. */
	x->on_item(pool, call_id, r, data);
	/* The store appends: the value is at `before` if it was kept. */
	if (r->stage == x->reduce_stage && r->status == FP_ITEM_OK && fp_job_total(job) > before)
		x->reduced = before;
}

/* Every output of the input is delivered: the journal says so (jobs_journal.c). */
static void pipeline_input_cb(fp_pool *pool, uint64_t call_id, size_t input, void *data)
{
	fp_job *job = data;
	struct pipeline_ext *x = fp__job_ext(job);

	(void)pool;
	(void)call_id;
	if (fp__job_forgotten(job))
		return;
	if (x->input_map)
		input = input < x->input_map_n ? x->input_map[input] : SIZE_MAX;
	if (input < job->inputs)
		fp__jobs_journal_input_done(job->jobs, job, input);
}

static void pipeline_done_cb(fp_pool *pool, const struct fp_call_summary *s, void *data)
{
	fp_job *job = data;
	struct pipeline_ext *x = fp__job_ext(job);

	stats_copy(x, job);
	x->ended = true;
	/* May free the job (and x) when it was forgotten: nothing after this. */
	x->on_done(pool, s, data);
}

static int start_pipeline(fp_pool *pool, fp_job *job, const void *arg, fp_item_cb on_item,
			  fp_done_cb on_done, uint64_t *call_id)
{
	static const fp_pipeline_options defaults = FP_PIPELINE_OPTIONS_DEFAULT;
	const struct pipeline_start *p = arg;
	struct pipeline_ext *x = fp__job_ext(job);
	fp_pipeline_options o = p->opts ? *p->opts : defaults;
	char label[FP__JOB_LABEL_LEN];

	x->on_item = on_item;
	x->on_done = on_done;
	fp__job_label(job, label);
	o.on_start = fp__job_started;
	o.label = label;
	/*
	 * The store's, not the caller's (its data is the job). Only a journal
	 * has a use for it: a restart resumes from the inputs not done.
	 */
	o.on_input_done = !o.reduce && fp_jobs_journal(job->jobs) ? pipeline_input_cb : NULL;
	/* Inputs the job keeps are lent for the call's life. */
	if (job->lent)
		return fp_pool_pipeline_borrow_async(pool, p->stages, p->nstages, job->lent, p->n,
						     &o, pipeline_item_cb, pipeline_done_cb, job,
						     call_id);
	return fp_pool_pipeline_async(pool, p->stages, p->nstages, p->items, p->n, &o,
				      pipeline_item_cb, pipeline_done_cb, job, call_id);
}

/* "words|lower|count": the stages' tasks, the reduce's last. */
static char *pipeline_name(const fp_stage *stages, size_t nstages, const char *reduce)
{
	size_t len = 1, i;
	char *name;

	for (i = 0; i < nstages; i++)
		len += strlen(stages[i].task) + 1;
	if (reduce)
		len += strlen(reduce) + 1;
	name = malloc(len);
	if (!name)
		return NULL;
	name[0] = '\0';
	for (i = 0; i < nstages; i++) {
		if (i)
			strcat(name, "|");
		strcat(name, stages[i].task);
	}
	if (reduce) {
		strcat(name, "|");
		strcat(name, reduce);
	}
	return name;
}

void *fp__pipeline_ext_new(fp_jobs *jobs, size_t nstages, bool reduce, bool ordered,
			    bool recovered)
{
	struct pipeline_ext *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->pool = fp__jobs_pool(jobs);
	x->nstages = nstages + reduce;
	x->reduce_stage = reduce ? nstages : SIZE_MAX;
	x->reduced = SIZE_MAX;
	x->ordered = ordered;
	/* Recovered: no call in the pool until it is started again. */
	x->ended = recovered;
	x->stats = calloc(x->nstages, sizeof(*x->stats));
	x->names = calloc(x->nstages, sizeof(*x->names));
	if (!x->stats || !x->names) {
		ext_free(x);
		return NULL;
	}
	return x;
}

int fp__pipeline_ext_name(void *ext, size_t k, const char *task, size_t len)
{
	struct pipeline_ext *x = ext;

	if (k >= x->nstages)
		return -EINVAL;
	free(x->names[k]);
	x->names[k] = malloc(len + 1);
	if (!x->names[k])
		return -ENOMEM;
	memcpy(x->names[k], task, len);
	x->names[k][len] = '\0';
	return 0;
}

void fp__pipeline_ext_free(void *ext)
{
	ext_free(ext);
}

void fp__job_pipeline_output(fp_job *job, const struct fp_result *r)
{
	struct pipeline_ext *x = fp__job_ext(job);
	size_t before = fp_job_total(job);

	fp__job_item_cb(x->pool, 0, r, job);
	if (r->stage == x->reduce_stage && r->status == FP_ITEM_OK && fp_job_total(job) > before)
		x->reduced = before;
}

int fp__job_pipeline_restart(fp_job *job, const fp_stage *stages, size_t nstages,
			     const struct fp_buf *items, size_t n,
			     const fp_pipeline_options *opts, uint32_t *input_map)
{
	struct pipeline_start p = { stages, nstages, items, n, opts };
	struct pipeline_ext *x = fp__job_ext(job);
	int err;

	free(x->input_map);
	x->input_map = input_map;
	x->input_map_n = input_map ? n : 0;

	err = start_pipeline(x->pool, job, &p, fp__job_item_cb, fp__job_done_cb,
			     &job->call_id);
	if (err == 0)
		x->ended = false;
	return err;
}

static int submit_pipeline(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
			   const struct fp_buf *items, size_t n, struct fp_buf *lent,
			   void *lent_text, const fp_pipeline_options *opts,
			   const struct fp_job_idem *idem, fp_job **out);

int fp_jobs_submit_pipeline(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
			    const struct fp_buf *items, size_t n,
			    const fp_pipeline_options *opts, fp_job **out)
{
	return fp_jobs_submit_pipeline_idem(jobs, stages, nstages, items, n, opts, NULL, out);
}

int fp_jobs_submit_pipeline_idem(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
				 const struct fp_buf *items, size_t n,
				 const fp_pipeline_options *opts,
				 const struct fp_job_idem *idem, fp_job **out)
{
	return submit_pipeline(jobs, stages, nstages, items, n, NULL, NULL, opts, idem, out);
}

int fp_jobs_submit_pipeline_taking(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
				   struct fp_buf *items, size_t n, void *text,
				   const fp_pipeline_options *opts,
				   const struct fp_job_idem *idem, fp_job **out)
{
	return submit_pipeline(jobs, stages, nstages, items, n, items, text, opts, idem, out);
}

/* `lent` and `lent_text` (NULL: none) are taken whatever the outcome. */
static int submit_pipeline(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
			   const struct fp_buf *items, size_t n, struct fp_buf *lent,
			   void *lent_text, const fp_pipeline_options *opts,
			   const struct fp_job_idem *idem, fp_job **out)
{
	const char *reduce = opts && opts->reduce ? opts->reduce : NULL;
	struct pipeline_start p = { stages, nstages, items, n, opts };
	struct fp__job_start s = {
		.kind = FP_JOB_PIPELINE, .n = n, .items = items, .start = start_pipeline,
		.arg = &p, .ext_free = ext_free, .idem = idem,
		.stages = stages, .nstages = nstages, .popts = opts,
		.lent = lent, .lent_text = lent_text,
	};
	struct pipeline_ext *x = NULL;
	char *name = NULL;
	size_t i;
	int err = -EINVAL;

	if (out)
		*out = NULL;
	if (!jobs || !stages || !nstages || (n && !items))
		goto err_lent;
	for (i = 0; i < nstages; i++)
		if (!stages[i].task)
			goto err_lent;
	err = -ENOMEM;
	x = fp__pipeline_ext_new(jobs, nstages, reduce != NULL, opts && opts->ordered, false);
	if (!x)
		goto err_lent;
	for (i = 0; i < x->nstages; i++) {
		const char *task = i < nstages ? stages[i].task : reduce;

		if (fp__pipeline_ext_name(x, i, task, strlen(task)) < 0)
			goto err_lent;
	}
	name = pipeline_name(stages, nstages, reduce);
	if (!name)
		goto err_lent;
	/*
	 * x and the lent items are fp__jobs_submit()'s whatever the outcome: a
	 * call refused by the journal after it started still reads x until
	 * its done callback.
	 */
	s.name = name;
	s.ext = x;
	err = fp__jobs_submit(jobs, &s, out);
	free(name);
	return err;

err_lent:
	free(name);
	ext_free(x);
	fp_mem_free(lent);
	fp_mem_free(lent_text);
	return err;
}

static struct pipeline_ext *pipeline_of(const fp_job *job)
{
	return fp_job_kind(job) == FP_JOB_PIPELINE ? fp__job_ext(job) : NULL;
}

size_t fp_job_stages(const fp_job *job)
{
	struct pipeline_ext *x = pipeline_of(job);

	return x ? x->nstages : 0;
}

const char *fp_job_stage_task(const fp_job *job, size_t k)
{
	struct pipeline_ext *x = pipeline_of(job);

	return x && k < x->nstages ? x->names[k] : NULL;
}

bool fp_job_has_reduce(const fp_job *job)
{
	struct pipeline_ext *x = pipeline_of(job);

	return x && x->reduce_stage != SIZE_MAX;
}

size_t fp_job_stage_stats(const fp_job *job, struct fp_stage_stats *out, size_t max)
{
	struct pipeline_ext *x = pipeline_of(job);

	if (!x)
		return 0;
	stats_copy(x, (fp_job *)job);
	memcpy(out, x->stats, (max < x->nstages ? max : x->nstages) * sizeof(*out));
	return x->nstages;
}

bool fp_job_ordered(const fp_job *job)
{
	struct pipeline_ext *x = pipeline_of(job);

	return x && x->ordered;
}

size_t fp_job_reduced(const fp_job *job)
{
	struct pipeline_ext *x = pipeline_of(job);

	return x ? x->reduced : SIZE_MAX;
}
