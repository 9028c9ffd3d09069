/*
 * Pipelines: several stages in one call, each output of stage k an item of
 * stage k + 1 at once.
 *
 * A stage's items live in batches: internal fp_calls (call->stage set) that
 * dispatch.c runs like any other, with FP_FRAME_STREAM so a worker sends
 * each output as it is produced. The outputs that arrive during one loop
 * turn for one stage gather in its open batch, which is queued at the end of
 * the turn: one allocation and one queue entry for many items.
 *
 * Counting, never sentinels: every stage counts the items it was given (in)
 * and those that ended (done); the pipeline ends when no stage owes anything
 * (and the reduce, if any, has folded everything into one value).
 *
 * Back-pressure, three ways, all to keep `waiting` (items given to a stage
 * and not running yet) within the stage's buffer:
 *  - dispatch gives stage k at most buffer(k+1) - waiting(k+1) - running(k)
 *    items, so a stage of plain tasks (one output per item) never overflows
 *    the next stage's buffer;
 *  - a worker whose outputs would go into a full buffer is paused: the
 *    master stops reading its socket, and the worker blocks in its send;
 *  - except the last worker that is not paused: pausing it could leave no
 *    worker to drain the buffer (a deadlock), so its outputs go over the
 *    bound, and waiting_max says so. A declared generator's stage runs its
 *    items one per chunk, so that is the outputs of one item at most.
 * Items a dead worker gives back also wait again, and may go over.
 * So: waiting <= buffer while some other worker is free to drain it.
 *
 * Stage fusion. Runs of plain stages go through a worker as one chain
 * (frame.h, "Chains"): an item of stage k is sent with the tasks of stages
 * k+1..k+h, and only what comes out of the last (or of the stage where the
 * chain stopped: an error, a crash, a task that emits) comes back. Without
 * that, each stage costs a round trip through the master per item, which on
 * quick tasks is most of the work. Stage k+1 joins k's chain when both run
 * in the same pool (not an exec pool: its shim speaks per-item frames), it
 * has no worker cap (nor has k: the chain runs under k's), it is not a
 * generator (declared, or seen emitting), it has no retries (what it would
 * retry is a value only the worker had) and the same timeout as k, and
 * neither is known to be slow (a chain of slow tasks gains nothing and
 * would hold a worker's whole chunk through all of them). So the items
 * behave as they would stage by stage: each failure is its stage's, each
 * task is timed and counted on its own, and the buffer between two fused
 * stages stays empty. A fused item counts as given to (in) and running in
 * every stage of its chain from the moment it is sent; those it did not
 * reach are taken back when it ends; `fused` counts the items a stage ran
 * that way.
 */
#ifndef FP_PIPELINE_H
#define FP_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "call.h"
#include "forkpool.h"
#include "forkpool/loop.h"


struct fp_pipe_stage {
	struct fp_pipe *pipe;
	unsigned index;            /* 0..nstages-1; nstages for the reduce */
	char *task;                /* in the pipeline's name block */
	uint32_t name_len;
	/*
	 * The group whose queue and workers run its items: group 0, or the
	 * exec group of a NAME.task (fp__group_of()).
	 */
	struct fp_group *group;
	uint32_t task_ix;          /* its place in pool->task_us (chunk.c); UINT32_MAX: none */
	unsigned cap;              /* most workers at once; 0: no cap */
	bool generator;            /* its task is a declared generator */
	bool emits;                /* its task was seen emitting: never fused */
	size_t buffer;             /* bound on waiting */
	size_t chunk;              /* largest chunk of its items */
	uint64_t timeout_ms;
	unsigned retries;
	unsigned retry_on;         /* resolved: never 0 */
	struct fp_stage_stats st;  /* waiting is worked out when asked */
	unsigned nworkers;         /* workers running its chunks */
	struct fp_call *open;      /* batch gathering outputs of the stage before */
};

struct fp_pipe_order;

struct fp_pipe {
	fp_pool *pool;
	struct fp_pipe *prev, *next;   /* pool->pipes */
	struct fp_pipe *dirty_next;    /* pool->dirty */
	bool dirty;
	uint64_t id;
	uint64_t reg_gen;              /* the registry its task_ix are of */
	fp_item_cb on_item;
	fp_done_cb on_done;
	void *data;
	size_t ninputs;
	size_t ok, failed;             /* delivered outputs and errors */
	bool cancelled, finishing;
	unsigned nstages;              /* without the reduce */
	struct fp_pipe_stage *stages;  /* nstages, then the reduce if any */
	struct fp_pipe_stage *reduce;  /* NULL: none */
	uint64_t live;                 /* items given to a stage and not ended */
	struct fp_call *batches;       /* every batch not yet freed */
	fp_timer later;                /* end a pipeline from the loop */

	/* reduce: values waiting to be folded, as the text "[v1,v2,..." */
	char *acc;
	size_t acc_len, acc_cap, acc_n;
	size_t reduce_batch;
	bool acc_raw;                  /* holds an output not yet reduced */
	bool reduce_failed;

	/* ordered: outputs held back until every input before theirs is done */
	struct fp_pipe_order *order;   /* NULL: completion order */
	char *names;
	char *label;                   /* fp_pipeline_options.label, or NULL */
	/*
	 * fp_pipeline_options.on_input_done, and (in completion order) each
	 * input's items not ended yet; in input order pipeline_order.c's
	 * pending counts serve.
	 */
	fp_input_done_cb on_input_done;
	uint32_t *input_live;
	struct fp_start_note start;
};

int fp__pipe_cancel(fp_pool *p, uint64_t id);
/* Free every pipeline (the pool is being freed; nothing is delivered). */
void fp__pipes_free_all(fp_pool *p);

#endif
