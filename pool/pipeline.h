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
 */
#ifndef FP_PIPELINE_H
#define FP_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

struct fp_call;
struct fp_worker;

struct fp_pipe_stage {
	struct fp_pipe *pipe;
	unsigned index;            /* 0..nstages-1; nstages for the reduce */
	char *task;                /* in the pipeline's name block */
	uint32_t name_len;
	/*
	 * The pool whose queue and workers run its items: the pipeline's own,
	 * or the exec pool of a NAME.task (fp__route()).
	 */
	fp_pool *pool;
	uint32_t task_ix;          /* its place in pool->task_us (chunk.c); UINT32_MAX: none */
	unsigned cap;              /* most workers at once; 0: no cap */
	bool generator;            /* its task is a declared generator */
	size_t buffer;             /* bound on waiting */
	size_t chunk;              /* largest chunk of its items */
	uint64_t timeout_ms;
	unsigned retries;
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
};

/* pipeline.c: a batch's item produced an output / ended. */
void fp__pipe_output(struct fp_call *batch, uint32_t index, const char *value,
		     size_t len, pid_t pid, unsigned attempts);
void fp__pipe_item_end(struct fp_call *batch, uint32_t index, fp_item_status status,
		       const char *msg, pid_t pid, uint64_t duration_us);
/* Queue what the pipelines gathered during this loop turn. */
void fp__pipe_flush(fp_pool *p);
/*
 * How many items of the queue entry (batch, from item `first`, `count` of
 * them) may be given to a worker now: 0 while the stage is at its worker cap
 * or the stage after it is full.
 */
size_t fp__pipe_chunk_room(const struct fp_call *batch, uint32_t first, size_t want);
/* Whether a worker running an item of this batch must stop being read. */
bool fp__pipe_blocked(const struct fp_call *batch);
int fp__pipe_cancel(fp_pool *p, uint64_t id);
/*
 * Items of a stage went back to waiting (a worker died): keep waiting_max
 * true. `ending` of them are about to be delivered as failed instead.
 */
void fp__pipe_note_waiting(struct fp_pipe_stage *s, uint64_t ending);
/* Free every pipeline (the pool is being freed; nothing is delivered). */
void fp__pipes_free_all(fp_pool *p);

#endif
