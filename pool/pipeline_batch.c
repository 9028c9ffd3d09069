/*
 * A stage's batch as a call: the table (call.h) through which dispatch
 * sends a batch's items, takes their outputs and ends, and accounts for
 * them when a worker dies, keeping the stages' counters (pipeline.h says
 * what each means) without dispatch knowing that pipelines exist.
 */
#include <stdio.h>

#include "pipeline_impl.h"

static void batch_name(const struct fp_call *c, uint32_t index, unsigned hop, char *buf,
		       size_t len)
{
	const struct fp_batch *b = fp__batch(c);
	uint32_t input = b->origin ? b->origin[index] : index;
	unsigned stage = b->stage->index + hop;

	if (b->stage->pipe->label)
		snprintf(buf, len, "item %u (stage %u) of %s", input, stage, b->stage->pipe->label);
	else
		snprintf(buf, len, "item %u (stage %u) of call %llu", input, stage,
			 (unsigned long long)c->id);
}

/*
 * Handed to a worker: the pipeline has started, and the worker is one more
 * of the stage's (a batch's chunk is its only segment: chunk.c).
 */
static void batch_sent(struct fp_call *c, struct fp_group *g, unsigned hops, uint32_t count)
{
	struct fp_pipe_stage *st = fp__batch(c)->stage;

	if (!st->pipe->start.started)
		fp__start_note(g->pool, &st->pipe->start);
	st->nworkers++;
	st->st.running += count;
	fp__pipe_chain_sent(c, hops, count);
}

/* Its outputs went to the pipeline already (output below): this is its end. */
static void batch_item_end(struct fp_call *c, unsigned hop, const struct fp_result *r)
{
	fp__pipe_item_end(c, (uint32_t)r->index, hop, r->status, r->message, r->pid,
			  r->attempts, r->duration_us);
}

static const char *batch_chain_task(const struct fp_call *c, unsigned hop)
{
	return fp__batch(c)->stage[hop].task;
}

/*
 * A chain's names lie one after the other, NUL-separated, in the
 * pipeline's name block (pipeline.c), starting at the batch's own.
 */
static uint32_t batch_chain_name_len(const struct fp_call *c, unsigned hops)
{
	const struct fp_pipe_stage *s = fp__batch(c)->stage;
	uint32_t len = c->name_len;

	for (unsigned j = 1; j <= hops; j++)
		len += 1 + s[j].name_len;
	return len;
}

/*
 * Not ahead in a worker, nor with a chunk held behind it: a capped stage's
 * (a chunk waiting on a worker would hold one of its few places) nor a
 * generator's (its worker may be paused by back-pressure, and a chunk
 * behind the paused item would wait with it).
 */
static bool batch_may_wait(const struct fp_call *c)
{
	const struct fp_pipe_stage *st = fp__batch(c)->stage;

	return !st->cap && !st->generator;
}

/*
 * The stage ran items of group g's queue: room in the buffer before it may
 * let a paused worker go on, or a stage held back for that buffer run, in
 * this group or, when stages run in exec groups, in another one. Each is
 * looked at again from the loop.
 */
static void batch_taken(struct fp_call *c, struct fp_group *g)
{
	fp_pool *p = g->pool;
	struct fp_group *q;
	unsigned i;

	if (g->npaused)
		fp__resume_later(g);
	if (p->ngroups > 1)
		FP_FOR_GROUPS(q, p, i)
			if (q != g && (q->npaused || q->queue.len))
				fp__resume_later(q);
}

/* Its worker holds the stage's place no more. */
static void batch_seg_end(struct fp_call *c)
{
	fp__batch(c)->stage->nworkers--;
}

/* Only now: while an item runs, its output is not yet counted waiting. */
static void batch_ran(struct fp_call *c, unsigned hops, unsigned hop, uint32_t count)
{
	fp__batch(c)->stage->st.running -= count;
	if (hops)
		fp__pipe_chain_ended(c, hops, hop, count);
}

static void batch_requeued(struct fp_call *c, uint64_t ending)
{
	fp__pipe_note_waiting(fp__batch(c)->stage, ending);
}

/* A task that emits without being declared a generator is never fused again. */
static void batch_emit(struct fp_call *c, uint32_t index, unsigned hop, const char *value,
		       size_t len, pid_t pid, unsigned attempts)
{
	fp__batch(c)->stage[hop].emits = true;
	fp__pipe_output(c, index, hop, value, len, pid, attempts);
}

static void batch_hop_us(struct fp_call *c, unsigned hop, uint64_t us)
{
	const struct fp_pipe_stage *s = &fp__batch(c)->stage[hop];

	fp__task_ix_us_record(s->group, c->reg_gen, s->task_ix, us);
}

const struct fp_call_ops fp__batch_ops = {
	/* A worker sends each output as it is produced. */
	.frame_flags = FP_FRAME_STREAM,
	/* Never joined to another call's: its stage counts its workers. */
	.joinable = false,
	.name = batch_name,
	.sent = batch_sent,
	.item_end = batch_item_end,
	.hops = fp__pipe_hops,
	.chain_task = batch_chain_task,
	.chain_name_len = batch_chain_name_len,
	.room = fp__pipe_chunk_room,
	.may_wait = batch_may_wait,
	.taken = batch_taken,
	.seg_end = batch_seg_end,
	.ran = batch_ran,
	.requeued = batch_requeued,
	.output = fp__pipe_output,
	.emit = batch_emit,
	.blocked = fp__pipe_blocked,
	.runs = fp__pipe_runs,
	.chain_us = fp__pipe_chain_us_record,
	.hop_us = batch_hop_us,
};
