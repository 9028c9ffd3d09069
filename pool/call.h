/*
 * A call: a run of items of one task that dispatch sends to workers, what
 * it keeps of them, and how it is submitted. Apply and map are calls
 * (call.c); so is a pipeline stage's batch (pipeline_flow.c), which
 * dispatch sends and answers through the same table (call_ops.h) without
 * knowing what a pipeline is. This header must not know the kinds of call
 * either.
 */
#ifndef FP_CALL_H
#define FP_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "call_ops.h"
#include "forkpool.h"

/*
 * What an item keeps of its runs, once there is something to keep: a start
 * before the one that ends it (a crash, a timeout, a task error retried, a
 * kill for another call's cancel), or outputs handed on. Most items have
 * neither, so a call has no array of these until one does (item.c).
 */
struct fp_item_mark {
	/*
	 * Starts counted so far (fp_result.attempts once it ends): an answer
	 * counts one, and so does its worker's death or kill while the shared
	 * page names it; being sent in a chunk counts nothing.
	 */
	uint16_t starts;
	bool emitted;              /* a stage handed outputs of it on: never retried */
};

/*
 * A call's (or a pipeline's) first hand-off to a worker, to be told to its
 * caller (fp_call_options.on_start) from the loop: never from inside the
 * submit that dispatched it, and before the call's first result.
 */
struct fp_start_note {
	struct fp_start_note *prev, *next;   /* pool->starting while queued */
	fp_start_cb cb;            /* NULL: nobody asked */
	void *data;
	uint64_t id;
	bool started;              /* an item of it was handed to a worker */
	bool queued;               /* started, and not told yet */
};

struct fp_call {
	uint64_t id;
	struct fp_group *group;   /* the group whose workers run it */
	struct fp_call *prev, *next;          /* pool->calls, or its pipeline's batches */
	char *task;                /* its own copy: the registry may be reloaded */
	uint32_t name_len;
	fp_item_cb on_item;
	fp_items_cb on_items;      /* instead of on_item: results in runs */
	fp_done_cb on_done;
	void *data;
	uint64_t timeout_ms;       /* 0: none */
	unsigned concurrency;      /* at most this many items at once (limit.c); 0: no cap */
	unsigned retries;
	unsigned retry_on;         /* FP_RETRY_* bits, resolved (never 0) */
	size_t chunksize;          /* resolved, >= 1 */
	/*
	 * Its items' arguments (JSON text): the caller's own array when it
	 * lends them (`borrowed`: then never written), else a copy in arena.
	 */
	struct fp_buf *items;
	size_t n;
	char *arena;
	bool borrowed;
	struct fp_item_mark *marks;   /* NULL until an item has something to keep */
	bool no_retry;             /* marks could not be made: retrying could repeat outputs */
	size_t finished, ok, failed;
	uint32_t task_ix;          /* its task's place in pool->task_us ... */
	uint64_t reg_gen;          /* ... valid while this is pool->reg_gen */
	bool cancelled;
	/* Map and apply only (a batch's are its pipeline's, reached through ops): */
	const char *label;         /* fp_call_options.label, after task in its block; or NULL */
	struct fp_start_note start;

	/* What kind of call it is, for dispatch: map and apply's, or a pipeline batch's. */
	const struct fp_call_ops *ops;
};

/* What a submit of apply or map asks for: its callbacks, and whether it borrows its items. */
struct fp_call_spec {
	fp_item_cb on_item;
	fp_items_cb on_items;      /* instead of on_item */
	fp_done_cb on_done;
	void *data;
	bool borrow;               /* the items' text stays the caller's until on_done */
};

/* Apply and map's (call.c). */
extern const struct fp_call_ops fp__call_ops;

/* The task an item of c runs at stage `hop` of its chain (c's own at 0). */
static inline const char *fp__item_task(const struct fp_call *c, unsigned hop)
{
	return hop ? c->ops->chain_task(c, hop) : c->task;
}

#endif
