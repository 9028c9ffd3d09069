/*
 * A pipeline's flow: outputs becoming the next stage's items (gathered into
 * batches), the reduce stage's fan-in, item ends, and the pipeline's end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forkpool/loop.h"
#include "pool_impl.h"
#include "pipeline_impl.h"

/* A batch starts this small and doubles while its loop turn gathers more. */
#define BATCH_ITEMS_MIN 64
#define BATCH_BYTES_MIN 4096

/* --- batches ------------------------------------------------------------- */

/*
 * Every stage's work is queued here, in the group that serves the task:
 * group 0, or the exec group of a NAME.task. The pipeline is the pool's;
 * the batch is one more call in that group's queue, run by its workers
 * (fp__dispatch() of any group flushes what the pipelines gathered, then
 * dispatches every group).
 */
int fp__stage_work_submit(fp_pool *p, const char *task, struct fp_call *b,
			  uint32_t first, uint32_t count)
{
	struct fp_group *by;
	int err;

	if (p->ngroups == 1)
		return fp__queue_push(&p->groups[0]->queue, b, first, count, false);
	by = fp__group_of(p, task);
	err = fp__queue_push(&by->queue, b, first, count, false);
	/*
	 * Not every flush is followed by a dispatch of the pool that got the
	 * work (one while failed items are delivered, a cancel): have the
	 * loop look at it, in case nothing else does sooner.
	 */
	if (!err)
		fp__resume_later(by);
	return err;
}

struct fp_call *fp__batch_new(struct fp_pipe *pipe, struct fp_pipe_stage *s,
			      size_t items, size_t bytes, bool with_origin,
			      const struct fp_buf *lent)
{
	struct fp_batch *batch = calloc(1, sizeof(*batch));
	struct fp_call *b = batch ? &batch->call : NULL;

	if (!b)
		return NULL;
	if (lent) {
		/* Read only while the pipeline lives: its caller's word (forkpool.h). */
		b->items = (struct fp_buf *)lent;
		b->borrowed = true;
	} else {
		b->items = fp_mem_alloc((items ? items : 1) * sizeof(*b->items));
		b->arena = fp_mem_alloc(bytes ? bytes : 1);
	}
	fp__batch(b)->origin = with_origin ? fp_mem_alloc((items ? items : 1) * sizeof(*fp__batch(b)->origin)) : NULL;
	if (!b->items || (!lent && !b->arena) || (with_origin && !fp__batch(b)->origin)) {
		if (!lent)
			fp_mem_free(b->items);
		fp_mem_free(b->arena);
		fp_mem_free(fp__batch(b)->origin);
		free(batch);
		return NULL;
	}
	fp__batch(b)->items_cap = items;
	fp__batch(b)->arena_cap = bytes;
	b->id = pipe->id;
	/* The pool whose queue holds it: items fail and are requeued there. */
	b->group = s->group;
	b->task = s->task;
	b->name_len = s->name_len;
	b->task_ix = s->task_ix;
	b->reg_gen = pipe->reg_gen;
	b->timeout_ms = s->timeout_ms;
	b->retries = s->retries;
	b->retry_on = s->retry_on;
	b->chunksize = 1;
	fp__batch(b)->stage = s;
	b->ops = &fp__batch_ops;
	b->cancelled = pipe->cancelled;
	b->next = pipe->batches;
	if (pipe->batches)
		pipe->batches->prev = b;
	pipe->batches = b;
	return b;
}

void fp__batch_free(struct fp_pipe *pipe, struct fp_call *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		pipe->batches = b->next;
	if (b->next)
		b->next->prev = b->prev;
	if (!b->borrowed)
		fp_mem_free(b->items);
	fp_mem_free(b->arena);
	fp_mem_free(b->marks);
	fp_mem_free(fp__batch(b)->origin);
	free(fp__batch(b));
}

/* Double what has to grow for one more item of `len` bytes; -ENOMEM. */
static int batch_grow(struct fp_call *b, size_t len)
{
	if (b->n == fp__batch(b)->items_cap) {
		size_t cap = fp__batch(b)->items_cap * 2;
		struct fp_buf *items = fp_mem_alloc(cap * sizeof(*items));
		uint32_t *origin = fp_mem_alloc(cap * sizeof(*origin));

		if (!items || !origin) {
			fp_mem_free(items);
			fp_mem_free(origin);
			return -ENOMEM;
		}
		memcpy(items, b->items, b->n * sizeof(*items));
		memcpy(origin, fp__batch(b)->origin, b->n * sizeof(*origin));
		fp_mem_free(b->items);
		fp_mem_free(fp__batch(b)->origin);
		b->items = items;
		fp__batch(b)->origin = origin;
		fp__batch(b)->items_cap = cap;
	}
	if (fp__batch(b)->arena_cap - fp__batch(b)->arena_len < len) {
		size_t cap = fp__batch(b)->arena_cap * 2;
		char *arena;

		while (cap - fp__batch(b)->arena_len < len)
			cap *= 2;
		arena = fp_mem_alloc(cap);
		if (!arena)
			return -ENOMEM;
		memcpy(arena, b->arena, fp__batch(b)->arena_len);
		fp_mem_free(b->arena);
		b->arena = arena;
		fp__batch(b)->arena_cap = cap;
	}
	return 0;
}

static void mark_dirty(struct fp_pipe *pipe)
{
	fp_pool *p = pipe->pool;

	if (pipe->dirty)
		return;
	pipe->dirty = true;
	pipe->dirty_next = p->dirty;
	p->dirty = pipe;
	p->feed_flush = fp__pipe_flush;
}

void fp__pipe_note_waiting(struct fp_pipe_stage *s, uint64_t ending)
{
	uint64_t w = s->st.in - s->st.done - s->st.running;

	w = w > ending ? w - ending : 0;
	if (w > s->st.waiting_max)
		s->st.waiting_max = w;
}

/* One more item for stage s, from pipeline input `origin`. */
static void stage_add(struct fp_pipe *pipe, struct fp_pipe_stage *s, uint32_t origin,
		      const char *value, size_t len)
{
	struct fp_call *b = s->open;
	char msg[96];

	if (!b) {
		b = fp__batch_new(pipe, s, BATCH_ITEMS_MIN,
				  len > BATCH_BYTES_MIN ? len : BATCH_BYTES_MIN, true, NULL);
		if (!b)
			goto oom;
		s->open = b;
		mark_dirty(pipe);
	}
	if (batch_grow(b, len) < 0)
		goto oom;
	/* Where args will point is known once the arena stops moving: at close. */
	b->items[b->n] = (struct fp_buf){ .base = NULL, .len = len };
	fp__batch(b)->origin[b->n] = origin;
	memcpy(b->arena + fp__batch(b)->arena_len, value, len);
	fp__batch(b)->arena_len += len;
	b->n++;
	s->st.in++;
	pipe->live++;
	if (pipe->input_live)
		pipe->input_live[origin]++;
	fp__order_begin(pipe, origin);
	fp__pipe_note_waiting(s, 0);
	return;
oom:
	snprintf(msg, sizeof(msg), "no memory to give an output to stage %u", s->index);
	fp__pipe_result(pipe, origin, s->index, FP_ITEM_CRASH, NULL, 0, msg, 0, 0, 0);
}

/* Close stage s's open batch and hand it to the pool (or fail it). */
static void stage_close(struct fp_pipe *pipe, struct fp_pipe_stage *s)
{
	fp_pool *p = pipe->pool;
	struct fp_call *b = s->open;
	size_t i, off = 0, per;
	int err = 0;

	if (!b)
		return;
	s->open = NULL;
	fp__batch(b)->closed = true;
	for (i = 0; i < b->n; i++) {
		b->items[i].base = b->arena + off;
		off += b->items[i].len;
	}
	/*
	 * Spread a batch of slow (or not yet timed) items over the workers;
	 * quick ones go a whole stage chunk at a time, since there a worker's
	 * round trip to the master, not the work, is what costs.
	 */
	per = fp__task_quick(s->group, b) ? b->n : (b->n + s->group->opts.workers - 1) /
						  s->group->opts.workers;
	b->chunksize = per < s->chunk ? (per ? per : 1) : s->chunk;
	if (pipe->cancelled || p->state != FP_POOL_RUNNING)
		err = -ECANCELED;
	else
		err = fp__stage_work_submit(p, s->task, b, 0, (uint32_t)b->n);
	if (err)
		fp__fail_later(b->group, b, 0, (uint32_t)b->n, FP_ITEM_CANCELLED,
			       err == -ECANCELED ? "cancelled" : "cancelled: out of memory to queue it");
}

void fp__pipe_flush(fp_pool *p)
{
	while (p->dirty) {
		struct fp_pipe *pipe = p->dirty;
		unsigned i;

		p->dirty = pipe->dirty_next;
		pipe->dirty = false;
		pipe->dirty_next = NULL;
		for (i = 1; i < pipe->nstages + (pipe->reduce ? 1u : 0u); i++)
			stage_close(pipe, &pipe->stages[i]);
	}
	p->feed_flush = NULL;
}

/* --- reduce -------------------------------------------------------------- */

/* Add a value to fold; a full batch of them becomes a reduce item. */
static void reduce_add(struct fp_pipe *pipe, const char *value, size_t len, bool raw)
{
	size_t need = pipe->acc_len + len + 3;

	if (pipe->reduce_failed || pipe->cancelled)
		return;
	if (need > pipe->acc_cap) {
		size_t cap = pipe->acc_cap ? pipe->acc_cap * 2 : 4096;
		char *acc;

		while (cap < need)
			cap *= 2;
		acc = realloc(pipe->acc, cap);
		if (!acc) {
			pipe->reduce_failed = true;
			fp__pipe_result(pipe, 0, pipe->reduce->index, FP_ITEM_CRASH, NULL, 0,
					"no memory to gather values for the reduce", 0, 0, 0);
			return;
		}
		pipe->acc = acc;
		pipe->acc_cap = cap;
	}
	pipe->acc[pipe->acc_len++] = pipe->acc_n ? ',' : '[';
	memcpy(pipe->acc + pipe->acc_len, value, len);
	pipe->acc_len += len;
	pipe->acc[pipe->acc_len] = '\0';
	pipe->acc_n++;
	pipe->acc_raw |= raw;
	if (pipe->acc_n == pipe->reduce_batch)
		fp__reduce_close(pipe);
}

void fp__reduce_close(struct fp_pipe *pipe)
{
	if (!pipe->acc_n) {
		/* Nothing came out of the stages at all: fold nothing, once. */
		stage_add(pipe, pipe->reduce, 0, "[]", 2);
		return;
	}
	pipe->acc[pipe->acc_len++] = ']';    /* room kept by reduce_add() */
	stage_add(pipe, pipe->reduce, 0, pipe->acc, pipe->acc_len);
	pipe->acc_len = 0;
	pipe->acc_n = 0;
	pipe->acc_raw = false;
}

/* --- outputs and item ends ----------------------------------------------- */

void fp__pipe_output(struct fp_call *b, uint32_t index, unsigned hop, const char *value,
		     size_t len, pid_t pid, unsigned attempts)
{
	struct fp_pipe_stage *s = fp__batch(b)->stage + hop;
	struct fp_pipe *pipe = s->pipe;
	uint32_t origin = fp__batch(b)->origin ? fp__batch(b)->origin[index] : index;

	s->st.out++;
	if (s == pipe->reduce) {
		reduce_add(pipe, value, len, false);
		return;
	}
	if (s->index + 1 < pipe->nstages) {
		/* In a cancelled pipeline the new item fails at once (stage_close). */
		stage_add(pipe, &pipe->stages[s->index + 1], origin, value, len);
		return;
	}
	if (pipe->reduce) {
		reduce_add(pipe, value, len, true);
		return;
	}
	fp__pipe_result(pipe, origin, s->index, FP_ITEM_OK, value, len, NULL, pid, attempts, 0);
}

void fp__pipe_item_end(struct fp_call *b, uint32_t index, unsigned hop,
		       fp_item_status status, const char *msg, pid_t pid, unsigned attempts,
		       uint64_t duration_us)
{
	struct fp_pipe_stage *s = fp__batch(b)->stage + hop;
	struct fp_pipe *pipe = s->pipe;
	uint32_t origin = fp__batch(b)->origin ? fp__batch(b)->origin[index] : index;

	s->st.done++;
	pipe->live--;
	b->finished++;
	if (status != FP_ITEM_OK) {
		s->st.failed++;
		if (s == pipe->reduce)
			pipe->reduce_failed = true;
		fp__pipe_result(pipe, origin, s->index, status, NULL, 0, msg, pid, attempts,
				duration_us);
	}
	if (fp__batch(b)->closed && b->finished == b->n)
		fp__batch_free(pipe, b);
	/* Its error, if any, went out above: the input may be done now. */
	if (pipe->input_live && --pipe->input_live[origin] == 0)
		fp__pipe_input_done(pipe, origin);
	fp__order_end(pipe, origin);
	fp__pipe_check_end(pipe);
}

void fp__pipe_input_done(struct fp_pipe *pipe, uint32_t i)
{
	/*
	 * A cancelled call's inputs, or a stopping pool's, end with errors
	 * that are not theirs: told as done, a caller keeping outputs would
	 * keep those errors rather than run the inputs again.
	 */
	if (pipe->on_input_done && !pipe->cancelled && pipe->pool->state == FP_POOL_RUNNING)
		pipe->on_input_done(pipe->pool, pipe->id, i, pipe->data);
}

void fp__pipe_check_end(struct fp_pipe *pipe)
{
	fp_pool *p = pipe->pool;

	if (pipe->live || pipe->finishing)
		return;
	if (pipe->reduce && !pipe->cancelled && !pipe->reduce_failed &&
	    p->state == FP_POOL_RUNNING) {
		/* Done only once one value is left that came out of the reduce. */
		if (pipe->acc_n != 1 || pipe->acc_raw) {
			fp__reduce_close(pipe);
			if (pipe->live)
				return;
		} else {
			fp__pipe_result(pipe, 0, pipe->reduce->index, FP_ITEM_OK, pipe->acc + 1,
					pipe->acc_len - 1, NULL, 0, 1, 0);
		}
	}
	fp__pipe_end(pipe);
}
