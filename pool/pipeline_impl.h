/* What the pipeline's own files share (pipeline.c, pipeline_flow.c, pipeline_order.c). */
#ifndef FP_PIPELINE_IMPL_H
#define FP_PIPELINE_IMPL_H

#include "pool_impl.h"

/* pipeline_flow.c */
/*
 * Hand items [first, first + count) of a batch to whoever runs `task`: every
 * stage's work goes through here, the one place to route a task to another
 * pool.
 */
int fp__stage_work_submit(fp_pool *p, const char *task, struct fp_call *b,
			  uint32_t first, uint32_t count);
struct fp_call *fp__batch_new(struct fp_pipe *pipe, struct fp_pipe_stage *s,
			      size_t items, size_t bytes, bool with_origin);
void fp__batch_free(struct fp_pipe *pipe, struct fp_call *b);
/* Fold what is gathered for the reduce into one more reduce item. */
void fp__reduce_close(struct fp_pipe *pipe);
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
