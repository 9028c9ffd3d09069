/*
 * Pipelines, the API side: submit, cancel, statistics, delivery and the end;
 * what dispatch asks of a stage (may it run, must its worker wait). The flow
 * of items between stages is in pipeline_flow.c, input order in
 * pipeline_order.c.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "forkpool/loop.h"
#include "pipeline_impl.h"

#define REDUCE_BATCH_DEFAULT 256
/* A stage's chunks: a share of the next buffer per worker, within these. */
#define STAGE_CHUNK_MAX 1024

/* --- what dispatch asks -------------------------------------------------- */

static uint64_t waiting(const struct fp_pipe_stage *s)
{
	return s->st.in - s->st.done - s->st.running;
}

/* Where stage s's outputs go: the next stage, the reduce, or NULL (delivered). */
static const struct fp_pipe_stage *next_stage(const struct fp_pipe_stage *s)
{
	const struct fp_pipe *pipe = s->pipe;

	if (s == pipe->reduce)
		return NULL;
	if (s->index + 1 < pipe->nstages)
		return &pipe->stages[s->index + 1];
	return pipe->reduce;
}

size_t fp__pipe_chunk_room(const struct fp_call *b, uint32_t first, size_t want, unsigned hops)
{
	const struct fp_pipe_stage *s = fp__batch(b)->stage, *last, *nx;
	uint64_t used;

	if (s->cap && s->nworkers >= s->cap)
		return 0;
	if (s->index == 0)
		want = fp__order_room(s->pipe, first, want);
	/*
	 * A chain's outputs come out of its last stage: its chunks are sized
	 * for the buffer after it, the batch's for the buffer after its own.
	 */
	last = s + hops;
	if (want > last->chunk)
		want = last->chunk;
	nx = next_stage(last);
	if (!nx || !want)
		return want;
	if (nx == s->pipe->reduce)
		/* Values are folded reduce_batch at a time: count reduce items. */
		return waiting(nx) < nx->buffer ? want : 0;
	/*
	 * Each running item makes at least one output for the next stage if
	 * it is a plain task: reserve room for them, so only a generator's
	 * extra outputs can ever meet a full buffer. (A chained item runs in
	 * every stage of its chain: the last one's count has it too.)
	 */
	used = waiting(nx) + last->st.running;
	/*
	 * A whole chunk or nothing: feeding a nearly full buffer an item at a
	 * time would turn the pipeline into a ping-pong of one-item chunks.
	 * The room comes back as the next stage takes its items.
	 */
	return used + want <= nx->buffer ? want : 0;
}

bool fp__pipe_blocked(const struct fp_call *b, unsigned hops)
{
	const struct fp_pipe_stage *nx = next_stage(fp__batch(b)->stage + hops);

	return nx && waiting(nx) >= nx->buffer;
}

/*
 * The chain ends at the last stage (no reduce): its outputs are the
 * pipeline's and wait in no buffer, so no answer of it can pause its
 * worker, and a run of answers may be handled at once.
 */
bool fp__pipe_runs(const struct fp_call *b, unsigned hops)
{
	return !next_stage(fp__batch(b)->stage + hops);
}

/* --- stage fusion (pipeline.h) ------------------------------------------- */

static bool stage_slow(const struct fp_pipe_stage *s)
{
	uint32_t us = fp__task_us(s->group, s->pipe->reg_gen, s->task_ix);

	return us != FP_TASK_US_UNKNOWN && us > FP_BATCH_QUICK_US;
}

/* Whether stage k's chain may go on into nx, the stage after it. */
static bool chain_link(const struct fp_pipe_stage *k, const struct fp_pipe_stage *nx)
{
	return nx->group == k->group && !nx->cap && !nx->generator && !nx->emits &&
	       !nx->retries && nx->timeout_ms == k->timeout_ms && !stage_slow(nx);
}

unsigned fp__pipe_hops(const struct fp_call *b)
{
	const struct fp_pipe_stage *s = fp__batch(b)->stage;
	const struct fp_pipe *pipe = s->pipe;
	unsigned h = 0;

	if (s == pipe->reduce || s->group->exec || s->cap || s->generator || s->emits ||
	    b->cancelled || stage_slow(s))
		return 0;
	while (h < FP_FRAME_HOPS_MAX && s->index + h + 1 < pipe->nstages &&
	       chain_link(s + h, s + h + 1))
		h++;
	return h;
}

void fp__pipe_chain_sent(struct fp_call *b, unsigned hops, uint32_t count)
{
	for (unsigned j = 1; j <= hops; j++) {
		struct fp_pipe_stage *s = fp__batch(b)->stage + j;

		s->st.in += count;
		s->st.running += count;
	}
}

void fp__pipe_chain_ended(struct fp_call *b, unsigned hops, unsigned hop, uint32_t count)
{
	for (unsigned j = 0; j <= hops; j++) {
		struct fp_pipe_stage *s = fp__batch(b)->stage + j;

		if (j < hop) {
			/* Passed through: one output, handed on inside the worker. */
			s->st.out += count;
			s->st.done += count;
		}
		if (j == 0)
			continue;   /* the batch's own stage: counted as for any item */
		s->st.running -= count;
		if (j > hop)
			s->st.in -= count;
		else
			s->st.fused += count;
	}
}

void fp__pipe_chain_us_record(struct fp_call *b, unsigned hops, uint64_t us)
{
	const struct fp_pipe_stage *s = fp__batch(b)->stage;

	for (unsigned j = 0; j <= hops; j++)
		fp__task_ix_us_record(s[j].group, s->pipe->reg_gen, s[j].task_ix, us / (hops + 1));
}

/* --- delivery and the end ------------------------------------------------ */

void fp__pipe_deliver(struct fp_pipe *pipe, const struct fp_result *r)
{
	/* Its start first, if the loop has not told it yet. */
	fp__start_tell(pipe->pool, &pipe->start, false);
	if (r->status == FP_ITEM_OK)
		pipe->ok++;
	else
		pipe->failed++;
	if (pipe->on_item)
		pipe->on_item(pipe->pool, pipe->id, r, pipe->data);
}

void fp__pipe_result(struct fp_pipe *pipe, uint32_t index, unsigned stage,
		     fp_item_status status, const char *value, size_t len,
		     const char *msg, pid_t pid, unsigned attempts, uint64_t duration_us)
{
	struct fp_result r = {
		.index = index,
		.status = status,
		.value = status == FP_ITEM_OK ? value : NULL,
		.value_len = status == FP_ITEM_OK ? len : 0,
		.message = status == FP_ITEM_OK ? NULL : (msg ? msg : fp_item_status_name(status)),
		.attempts = attempts,
		.pid = pid,
		.duration_us = duration_us,
		.stage = stage,
	};

	if (!fp__order_hold(pipe, &r))
		fp__pipe_deliver(pipe, &r);
}

static void pipe_free(struct fp_pipe *pipe)
{
	fp_pool *p = pipe->pool;
	struct fp_pipe **d;

	fp_timer_stop(&pipe->later);
	fp__start_tell(p, &pipe->start, true);
	for (d = &p->dirty; *d; d = &(*d)->dirty_next) {
		if (*d == pipe) {
			*d = pipe->dirty_next;
			break;
		}
	}
	if (!p->dirty)
		p->feed_flush = NULL;
	if (pipe->prev)
		pipe->prev->next = pipe->next;
	else if (p->pipes == pipe)
		p->pipes = pipe->next;
	if (pipe->next)
		pipe->next->prev = pipe->prev;
	while (pipe->batches)
		fp__batch_free(pipe, pipe->batches);
	fp__order_free(pipe);
	fp_mem_free(pipe->input_live);
	free(pipe->acc);
	free(pipe->names);
	free(pipe->label);
	free(pipe->stages);
	free(pipe);
}

void fp__pipe_end(struct fp_pipe *pipe)
{
	struct fp_call_summary s;

	pipe->finishing = true;
	fp__order_release_all(pipe);
	/* Started and nothing delivered (every output filtered out): told before its end. */
	fp__start_tell(pipe->pool, &pipe->start, false);
	s = (struct fp_call_summary){ pipe->id, pipe->ok + pipe->failed, pipe->ok,
				      pipe->failed, pipe->cancelled };
	/*
	 * Still in the pool's list during on_done, so that fp_pipeline_stats()
	 * gives the final counters there (a job keeps them); `finishing` keeps
	 * fp_pool_cancel() from finding it: the id is over for the caller.
	 * pipe_free() takes it out.
	 */
	if (pipe->on_done)
		pipe->on_done(pipe->pool, &s, pipe->data);
	pipe_free(pipe);
}

static void later_cb(fp_timer *t)
{
	struct fp_pipe *pipe = t->data;
	fp_pool *p = pipe->pool;

	fp__pipe_check_end(pipe);
	fp__dispatch(p->groups[0]);
}

void fp__pipes_free_all(fp_pool *p)
{
	while (p->pipes)
		pipe_free(p->pipes);
}

/* --- submit -------------------------------------------------------------- */

/*
 * Which group runs `task` and whether it is there: group 0 for a module's
 * task, or the exec group of NAME.task, which knows its tasks once one of
 * its workers said ready (until then its worker decides, as for apply). Sets
 * *gen when the task is declared a generator.
 */
static int stage_task(fp_pool *p, const char *task, struct fp_group **by,
		      const struct fp_registry_task **t, bool *gen)
{
	const struct fp_exec_task *xt;

	*t = NULL;
	*gen = false;
	if (!task)
		return FP_EUNKNOWN_TASK;
	*by = fp__group_of(p, task);
	if (!(*by)->exec) {
		if (!(*t = fp_registry_find(&p->reg, task)))
			return FP_EUNKNOWN_TASK;
		*gen = (*t)->generator;
		return 0;
	}
	task += (*by)->exec->name_len + 1;
	if (fp__exec_has_task((*by)->exec, task) == 0)
		return FP_EUNKNOWN_TASK;
	xt = fp__exec_task((*by)->exec, task);
	*gen = xt && xt->generator;
	return 0;
}

static int stages_init(fp_pool *p, struct fp_pipe *pipe, const fp_stage *stages,
		       size_t nstages, const fp_pipeline_options *o)
{
	const struct fp_registry_task *t;
	size_t i, total = nstages + (o->reduce ? 1 : 0), names = 0, off = 0;
	struct fp_group *by;
	bool gen;
	int err;

	for (i = 0; i < total; i++) {
		const char *task = i < nstages ? stages[i].task : o->reduce;
		if ((err = stage_task(p, task, &by, &t, &gen)) < 0)
			return err;
		if (by->unavailable)
			return FP_EUNAVAILABLE;
		names += strlen(task) + 1;
	}
	pipe->stages = calloc(total, sizeof(*pipe->stages));
	pipe->names = malloc(names);
	if (!pipe->stages || !pipe->names)
		return -ENOMEM;
	pipe->nstages = (unsigned)nstages;
	for (i = 0; i < total; i++) {
		struct fp_pipe_stage *s = &pipe->stages[i];
		const fp_stage *in = i < nstages ? &stages[i] : NULL;
		const char *task = in ? in->task : o->reduce;

		stage_task(p, task, &by, &t, &gen);
		s->pipe = pipe;
		s->index = (unsigned)i;
		s->group = by;
		s->name_len = (uint32_t)strlen(task);
		/* An exec task has no run-time record: never a quick task. */
		s->task_ix = t ? (uint32_t)(t - p->reg.tasks) : UINT32_MAX;
		s->task = memcpy(pipe->names + off, task, s->name_len + 1);
		off += s->name_len + 1;
		s->cap = in ? in->workers : 0;
		s->buffer = in && in->buffer ? in->buffer : FP_PIPELINE_BUFFER_DEFAULT;
		s->timeout_ms = !in || in->timeout_ms < 0 ? p->opts.timeout_ms
							  : (uint64_t)in->timeout_ms;
		s->retries = in ? in->retries : 0;
		s->retry_on = in && in->retry_on ? in->retry_on : FP_RETRY_DEFAULT;
	}
	if (o->reduce)
		pipe->reduce = &pipe->stages[nstages];
	/*
	 * Chunks: each worker's share of the buffer after the stage, so that
	 * the workers together can fill it, in as few round trips as that.
	 * The workers are those of the pool that runs the stage.
	 */
	for (i = 0; i < total; i++) {
		struct fp_pipe_stage *s = &pipe->stages[i];
		const struct fp_pipe_stage *nx = next_stage(s);
		size_t b = nx ? nx->buffer : s->buffer;

		s->chunk = b / (size_t)s->group->opts.workers;
		if (s->chunk < 1)
			s->chunk = 1;
		if (s->chunk > STAGE_CHUNK_MAX)
			s->chunk = STAGE_CHUNK_MAX;
		/*
		 * A generator's items one at a time: the worker that may not
		 * pause (see pipeline.h) then overfills the next buffer by
		 * the outputs of one item at most, not of a whole chunk. An
		 * exec task is known as one once its program said so.
		 */
		stage_task(p, s->task, &by, &t, &gen);
		s->generator = gen;
		if (s->generator)
			s->chunk = 1;
	}
	return 0;
}

/* Stage 0's batch: the call's inputs, copied, or the caller's own when `borrow`. */
static int inputs_init(fp_pool *p, struct fp_pipe *pipe, const struct fp_buf *items, size_t n,
		       bool borrow)
{
	struct fp_pipe_stage *s0 = &pipe->stages[0];
	struct fp_call *b;
	size_t i, bytes = 0, off = 0, per;

	for (i = 0; i < n && !borrow; i++)
		if (items[i].len <= p->opts.max_payload)
			bytes += items[i].len;
	b = fp__batch_new(pipe, s0, n, bytes, false, borrow ? items : NULL);
	if (!b)
		return -ENOMEM;
	for (i = 0; i < n && !borrow; i++) {
		if (items[i].len > p->opts.max_payload)
			continue;
		memcpy(b->arena + off, items[i].base, items[i].len);
		b->items[i] = (struct fp_buf){ b->arena + off, items[i].len };
		off += items[i].len;
	}
	b->n = n;
	fp__batch(b)->closed = true;
	per = fp__default_chunksize(s0->group, n);
	b->chunksize = per < s0->chunk ? per : s0->chunk;
	s0->st.in = n;
	pipe->live = n;
	return 0;
}

/* Queue stage 0's inputs, leaving out (and failing) those too large to send. */
static int inputs_queue(fp_pool *p, struct fp_pipe *pipe, const struct fp_buf *items, size_t n)
{
	struct fp_call *b = pipe->batches;
	size_t i, run_start = 0;
	int err = 0;

	for (i = 0; i <= n && !err; i++) {
		if (i < n && items[i].len <= p->opts.max_payload)
			continue;
		if (i > run_start)
			err = fp__stage_work_submit(p, b->task, b, (uint32_t)run_start,
						    (uint32_t)(i - run_start));
		if (!err && i < n)
			err = fp__fail_later(b->group, b, (uint32_t)i, 1, FP_ITEM_TOO_LARGE,
					     "argument is over the pool's max_payload");
		run_start = i + 1;
	}
	return err;
}

static int pipeline_submit(fp_pool *p, const fp_stage *stages, size_t nstages,
			   const struct fp_buf *items, size_t n,
			   const fp_pipeline_options *opts, fp_item_cb on_item,
			   fp_done_cb on_done, void *data, uint64_t *call_id, bool borrow)
{
	static const fp_pipeline_options defaults = FP_PIPELINE_OPTIONS_DEFAULT;
	struct fp_pipe *pipe;
	int err;

	if (p->state != FP_POOL_RUNNING)
		return FP_ESTOPPED;
	if (!stages || nstages == 0 || nstages > UINT32_MAX / 2 || (n && !items))
		return -EINVAL;
	if (n > UINT32_MAX)
		return -E2BIG;
	if (!opts)
		opts = &defaults;
	if (opts->reduce && opts->reduce_batch == 1)
		return -EINVAL;

	pipe = calloc(1, sizeof(*pipe));
	if (!pipe)
		return -ENOMEM;
	pipe->pool = p;
	pipe->later.data = pipe;
	pipe->reg_gen = p->reg_gen;
	fp__task_us_sync(p->groups[0]);
	pipe->ninputs = n;
	pipe->reduce_batch = opts->reduce_batch ? opts->reduce_batch : REDUCE_BATCH_DEFAULT;
	err = stages_init(p, pipe, stages, nstages, opts);
	if (err)
		goto err_free;
	pipe->id = p->next_call_id++;
	pipe->on_item = on_item;
	pipe->on_done = on_done;
	pipe->data = data;
	pipe->start = (struct fp_start_note){ .cb = opts->on_start, .data = data, .id = pipe->id };
	if (opts->label && !(pipe->label = strdup(opts->label))) {
		err = -ENOMEM;
		goto err_free;
	}
	/* Results in input order only mean something without a reduce. */
	if (opts->ordered && !pipe->reduce) {
		err = fp__order_new(pipe, n, nstages > 1 ? pipe->stages[1].buffer
							 : FP_PIPELINE_BUFFER_DEFAULT);
		if (err)
			goto err_free;
	}
	/* Without a reduce only: with one, values belong to no input. */
	if (opts->on_input_done && !pipe->reduce) {
		pipe->on_input_done = opts->on_input_done;
		if (!pipe->order && !(pipe->input_live = fp_mem_alloc((n ? n : 1) *
								     sizeof(uint32_t)))) {
			err = -ENOMEM;
			goto err_free;
		}
		/* Its stage-0 item each. */
		for (size_t i = 0; pipe->input_live && i < n; i++)
			pipe->input_live[i] = 1;
	}
	err = inputs_init(p, pipe, items, n, borrow);
	if (err)
		goto err_free;

	pipe->next = p->pipes;
	if (p->pipes)
		p->pipes->prev = pipe;
	p->pipes = pipe;

	err = inputs_queue(p, pipe, items, n);
	if (!err && n == 0)
		err = fp_timer_start(p->loop, &pipe->later, 0, later_cb);
	if (err) {
		/* Undo: nothing of it may stay queued, and nothing is told. */
		fp__queue_fail(pipe->batches->group, pipe->batches, FP_ITEM_CANCELLED, "cancelled");
		pipe->on_item = NULL;
		pipe->on_done = NULL;
		pipe->start.cb = NULL;
		pipe->cancelled = true;
		pipe->batches->cancelled = true;
		return err;
	}
	if (call_id)
		*call_id = pipe->id;
	fp__dispatch(p->groups[0]);
	if (pipe->stages[0].group != p->groups[0])
		fp__dispatch(pipe->stages[0].group);
	return 0;

err_free:
	pipe_free(pipe);
	return err;
}

int fp_pool_pipeline_async(fp_pool *p, const fp_stage *stages, size_t nstages,
			   const struct fp_buf *items, size_t n,
			   const fp_pipeline_options *opts,
			   fp_item_cb on_item, fp_done_cb on_done, void *data,
			   uint64_t *call_id)
{
	return pipeline_submit(p, stages, nstages, items, n, opts, on_item, on_done, data,
			       call_id, false);
}

int fp_pool_pipeline_borrow_async(fp_pool *p, const fp_stage *stages, size_t nstages,
				  const struct fp_buf *items, size_t n,
				  const fp_pipeline_options *opts,
				  fp_item_cb on_item, fp_done_cb on_done, void *data,
				  uint64_t *call_id)
{
	return pipeline_submit(p, stages, nstages, items, n, opts, on_item, on_done, data,
			       call_id, true);
}

/* --- cancel and statistics ----------------------------------------------- */

/* Whether w has an unanswered item of a batch of pipe. */
static bool worker_holds_pipe(const struct fp_worker *w, const struct fp_pipe *pipe)
{
	if (!w->call)
		return false;
	for (uint32_t s = w->seg; s < w->nsegs; s++)
		if (w->segs[s].call->ops == &fp__batch_ops &&
		    fp__batch(w->segs[s].call)->stage->pipe == pipe)
			return true;
	return false;
}

/* Whether the item w runs now is of one of pipe's batches (it may run another call's). */
static bool running_pipe(struct fp_worker *w, const struct fp_pipe *pipe)
{
	uint64_t cur = atomic_load_explicit(&w->shm->current, memory_order_acquire);
	uint32_t index;
	unsigned hop;
	struct fp_call *c = fp__worker_item(w, cur, &index, &hop);

	return c && c->ops == &fp__batch_ops && fp__batch(c)->stage->pipe == pipe;
}

static struct fp_pipe *pipe_find(fp_pool *p, uint64_t id)
{
	struct fp_pipe *pipe;

	for (pipe = p->pipes; pipe; pipe = pipe->next)
		if (pipe->id == id && !pipe->finishing)
			return pipe;
	return NULL;
}

int fp__pipe_cancel(fp_pool *p, uint64_t id)
{
	struct fp_pipe *pipe = pipe_find(p, id);
	struct fp_worker *w;
	struct fp_group *g;
	unsigned i;
	struct fp_call *b;

	if (!pipe || pipe->cancelled)
		return -ENOENT;
	pipe->cancelled = true;
	/* Gathered items are not queued yet: closing them fails them. */
	fp__pipe_flush(p);
	/* Each batch is queued in the pool that runs its stage. */
	for (b = pipe->batches; b; b = b->next) {
		b->cancelled = true;
		fp__queue_fail(b->group, b, FP_ITEM_CANCELLED, "cancelled");
	}
	/*
	 * As for a call: only workers still running one of its chunks, in any
	 * group, stopped as a call's are (cancel.h), so that a stage's task may
	 * see fp_cancelled() and end within the grace.
	 */
	FP_FOR_GROUPS(g, p, i) {
		for (w = g->workers; w; w = w->next)
			if (!fp__worker_exited(w) && worker_holds_pipe(w, pipe))
				fp__worker_stop(w, FP_KILL_CANCEL, running_pipe(w, pipe));
	}
	/* Nothing owed (e.g. no inputs): end it from the loop. */
	if (!pipe->live && !fp_timer_active(&pipe->later))
		fp_timer_start(p->loop, &pipe->later, 0, later_cb);
	return 0;
}

int fp_pipeline_stats(fp_pool *p, uint64_t call_id, struct fp_stage_stats *out, size_t max)
{
	struct fp_pipe *pipe;
	size_t i, total;

	/* A finishing pipeline too: its on_done may read the final counters. */
	for (pipe = p->pipes; pipe && pipe->id != call_id; pipe = pipe->next)
		;
	if (!pipe)
		return -ENOENT;
	total = pipe->nstages + (pipe->reduce ? 1 : 0);
	for (i = 0; i < total && i < max; i++) {
		out[i] = pipe->stages[i].st;
		out[i].waiting = waiting(&pipe->stages[i]);
	}
	return (int)total;
}
