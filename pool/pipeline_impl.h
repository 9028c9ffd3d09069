/* What the pipeline's own files share (pipeline.c, pipeline_flow.c, pipeline_order.c). */
#ifndef FP_PIPELINE_IMPL_H
#define FP_PIPELINE_IMPL_H

#include <stddef.h>

#include "pipeline.h"
#include "pool_impl.h"

/*
 * A stage's batch: a call (call.h) whose items are one stage's inputs,
 * dispatched like any other through fp__batch_ops. Its items' outputs go
 * to the pipeline, not to an on_item.
 */
struct fp_batch {
	struct fp_call call;       /* first: batches are linked and queued as calls */
	struct fp_pipe_stage *stage;
	uint32_t *origin;          /* each item's pipeline input; NULL: its own index */
	size_t items_cap, arena_len, arena_cap;  /* while gathering */
	bool closed;               /* queued: no more items join it */
};

/* The batch a call is: only for calls made by fp__batch_new(). */
static inline struct fp_batch *fp__batch(const struct fp_call *c)
{
	return (struct fp_batch *)((char *)c - offsetof(struct fp_batch, call));
}

/* The table dispatch reaches a batch through (pipeline_batch.c). */
extern const struct fp_call_ops fp__batch_ops;

/* pipeline.c and pipeline_flow.c: what a batch's ops ask of its stages */
/*
 * A batch's item produced an output / ended, at stage `hop` of its chain
 * (0: the batch's own stage).
 */
void fp__pipe_output(struct fp_call *batch, uint32_t index, unsigned hop, const char *value,
		     size_t len, pid_t pid, unsigned attempts);
void fp__pipe_item_end(struct fp_call *batch, uint32_t index, unsigned hop,
		       fp_item_status status, const char *msg, pid_t pid, unsigned attempts,
		       uint64_t duration_us);
/* How many stages after the batch's its items run through in the same worker now. */
unsigned fp__pipe_hops(const struct fp_call *batch);
/* `count` items of the batch were sent with a chain of `hops` stages after its own. */
void fp__pipe_chain_sent(struct fp_call *batch, unsigned hops, uint32_t count);
/*
 * `count` items sent with a chain of `hops` are over: ended at stage `hop`
 * of the chain (whose own end the item's end counts), or, with hop 0, gone
 * back or ended at the batch's stage. The stages before `hop` count them as
 * done with one output each; those after take them back.
 */
void fp__pipe_chain_ended(struct fp_call *batch, unsigned hops, unsigned hop, uint32_t count);
/* A run time (µs) for each task of a chain of `hops`, shared among them. */
void fp__pipe_chain_us_record(struct fp_call *batch, unsigned hops, uint64_t us);
/*
 * How many items of the queue entry (batch, from item `first`, `count` of
 * them) may be given to a worker now, sent with a chain of `hops` stages
 * after its own: 0 while the stage is at its worker cap or the stage after
 * the chain is full.
 */
size_t fp__pipe_chunk_room(const struct fp_call *batch, uint32_t first, size_t want,
			   unsigned hops);
/* Whether a worker running an item of this batch (chained through `hops`) must stop being read. */
bool fp__pipe_blocked(const struct fp_call *batch, unsigned hops);
/* Whether answers of its items sent with a chain of `hops` may be taken a run at a time. */
bool fp__pipe_runs(const struct fp_call *batch, unsigned hops);

/* pipeline_flow.c */
/*
 * Items of a stage went back to waiting (a worker died): keep waiting_max
 * true. `ending` of them are about to be delivered as failed instead.
 */
void fp__pipe_note_waiting(struct fp_pipe_stage *s, uint64_t ending);
/* Queue what the pipelines gathered during this loop turn (pool->feed_flush). */
void fp__pipe_flush(fp_pool *p);
/*
 * Hand items [first, first + count) of a batch to whoever runs `task`: every
 * stage's work goes through here, the one place to route a task to another
 * pool.
 */
int fp__stage_work_submit(fp_pool *p, const char *task, struct fp_call *b,
			  uint32_t first, uint32_t count);
/*
 * A new batch of stage s with room for `items` items of `bytes` in all; or,
 * `lent` not NULL, whose items are those (the caller's: a borrowed input).
 */
struct fp_call *fp__batch_new(struct fp_pipe *pipe, struct fp_pipe_stage *s,
			      size_t items, size_t bytes, bool with_origin,
			      const struct fp_buf *lent);
void fp__batch_free(struct fp_pipe *pipe, struct fp_call *b);
/* Fold what is gathered for the reduce into one more reduce item. */
void fp__reduce_close(struct fp_pipe *pipe);
/* Input i owes nothing more: tell the caller, if it asked and the call runs on. */
void fp__pipe_input_done(struct fp_pipe *pipe, uint32_t i);
/* End the pipeline if nothing is owed any more (maybe after one more reduce). */
void fp__pipe_check_end(struct fp_pipe *pipe);

/* pipeline.c */
/* Deliver (or, in input order, hold back) one output or error. */
void fp__pipe_result(struct fp_pipe *pipe, uint32_t index, unsigned stage,
		     fp_item_status status, const char *value, size_t len,
		     const char *msg, pid_t pid, unsigned attempts, uint64_t duration_us);
/* Call on_item now. */
void fp__pipe_deliver(struct fp_pipe *pipe, const struct fp_result *r);
/* Its last callbacks, then free it. */
void fp__pipe_end(struct fp_pipe *pipe);

/* pipeline_order.c: input order. Each is a no-op in completion order. */
int fp__order_new(struct fp_pipe *pipe, size_t n, size_t window);
void fp__order_free(struct fp_pipe *pipe);
/* An item of input i was created / ended. */
void fp__order_begin(struct fp_pipe *pipe, uint32_t i);
void fp__order_end(struct fp_pipe *pipe, uint32_t i);
/* Hold the result back: 1 if held, 0 if it may be delivered now. */
int fp__order_hold(struct fp_pipe *pipe, const struct fp_result *r);
/* Deliver everything still held, in input order (the pipeline is ending). */
void fp__order_release_all(struct fp_pipe *pipe);
/* Items of stage 0 from input `first` on that may start now (the window). */
size_t fp__order_room(const struct fp_pipe *pipe, uint32_t first, size_t want);

#endif
