/*
 * A chunk: what one write to a worker holds (one or more segments, each a
 * run of one call's items: queue.h says how they are chosen), and the
 * record of how long each task ran that decides what may be joined
 * (chunk.c).
 */
#ifndef FP_CHUNK_H
#define FP_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "forkpool.h"
#include "frame.h"

struct fp_call;
struct fp_group;
struct fp_worker;

/*
 * A chunk spans calls only up to this many items, and only items of tasks
 * whose recent runs took at most FP_BATCH_QUICK_US each (as the worker
 * measured them): an item that turns out slow holds back at most
 * FP_BATCH_MAX - 1 quick ones behind it on its worker.
 */
#define FP_BATCH_MAX 16
#define FP_BATCH_QUICK_US 200u
/*
 * Answers a RESULTS frame hands to a call at once (dispatch.c): a chunk of
 * Python's usual size in one callback, and a bounded array to make them in.
 */
#define FP_ANSWERS_MAX 1024
/* What pool->task_us holds for a task that has not run yet. */
#define FP_TASK_US_UNKNOWN UINT32_MAX


/*
 * A worker holds at most this many chunks at once: the one it runs and, for
 * quick work while no worker is idle, the next one (dispatch.c says when).
 */
#define FP_WORKER_CHUNKS 2
/* A chunk sent ahead like that holds at most this many items... */
#define FP_PREFETCH_ITEMS_MAX 1024
/* ...and is sent only while at least this many items are queued. */
#define FP_PREFETCH_BACKLOG 4096

/* A run of one call's items inside a worker's chunk. */
struct fp_seg {
	struct fp_call *call;
	uint32_t first, count;
	uint64_t id0;              /* frame id of its first item (send_chunk) */
	bool chunk_end;            /* the last segment of its chunk */
	uint8_t hops;              /* its items' chain: tasks after the call's own (call.h) */
};

/*
 * Plan w's next chunk from the first queue entry that may run, at *at
 * (taking nothing off); segments, 0 when every entry is held back.
 */
uint32_t fp__chunk_plan(struct fp_group *g, struct fp_worker *w, struct fp_seg *segs, size_t *at);
/* The shortest timeout of w's unanswered segments; 0 when none has one. */
uint64_t fp__chunk_timeout_ms(const struct fp_worker *w);
/* Size pool->task_us for the registry as it is now; false without memory. */
bool fp__task_us_sync(struct fp_group *g);
/* Whether c's task has lately run quickly (at most FP_BATCH_QUICK_US). */
bool fp__task_quick(struct fp_group *g, const struct fp_call *c);
/* A run time (µs) of one of c's items. */
void fp__task_us_record(struct fp_group *g, const struct fp_call *c, uint64_t us);
/* c's task's record, for a run of answers to update in turn (NULL: none is kept). */
uint32_t *fp__task_us_slot(struct fp_group *g, const struct fp_call *c);
/* A run time into a record: up at once when slower, down by half the gap when quicker. */
static inline void fp__task_us_update(uint32_t *e, uint64_t us)
{
	uint32_t v = us > FP_FRAME_US_MAX ? FP_FRAME_US_MAX : (uint32_t)us;

	if (*e == FP_TASK_US_UNKNOWN || v >= *e)
		*e = v;
	else
		*e -= (*e - v) / 2;
}
/* The same for task task_ix of registry generation reg_gen, and what is known of it. */
void fp__task_ix_us_record(struct fp_group *g, uint64_t reg_gen, uint32_t task_ix, uint64_t us);
uint32_t fp__task_us(struct fp_group *g, uint64_t reg_gen, uint32_t task_ix);
/*
 * The call (and item index) of frame `id` if w has it unanswered, else NULL;
 * *hop: for an item sent with a chain, the stage of it the shared page says
 * runs (0 otherwise). index and hop may be NULL.
 */
struct fp_call *fp__worker_item(const struct fp_worker *w, uint64_t id, uint32_t *index,
				unsigned *hop);
/* Whether w has an unanswered item of c. */
bool fp__worker_holds(const struct fp_worker *w, const struct fp_call *c);
/* chunk_frames.c */
/*
 * Write the chunk's frames (ids from `base` on) into w's buffer: iov[0], and
 * iov[1] for one big argument sent from where it is. The iovec count, or
 * -ENOMEM.
 */
int fp__chunk_encode(struct fp_worker *w, const struct fp_seg *segs, uint32_t nsegs,
		     uint64_t base, struct iovec iov[2]);
/* Whether every segment is of a task that has lately run quickly, none cancelled. */
bool fp__chunk_quick(struct fp_group *g, const struct fp_seg *segs, uint32_t n);

#endif
