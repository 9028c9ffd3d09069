/*
 * A call: a run of items of one task that dispatch sends to workers, and
 * what dispatch needs of it (struct fp_call_ops). Apply and map are calls
 * (call.c); so is a pipeline stage's batch (pipeline_flow.c), which
 * dispatch sends and answers through the same table without knowing what a
 * pipeline is. This header must not know the kinds of call either.
 */
#ifndef FP_CALL_H
#define FP_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
	struct fp_start_note *prev, *next;   /* root->starting while queued */
	fp_start_cb cb;            /* NULL: nobody asked */
	void *data;
	uint64_t id;
	bool started;              /* an item of it was handed to a worker */
	bool queued;               /* started, and not told yet */
};

struct fp_call {
	uint64_t id;
	fp_pool *pool;
	struct fp_call *prev, *next;          /* pool->calls, or its pipeline's batches */
	char *task;                /* its own copy: the registry may be reloaded */
	uint32_t name_len;
	fp_item_cb on_item;
	fp_items_cb on_items;      /* instead of on_item: results in runs */
	fp_done_cb on_done;
	void *data;
	uint64_t timeout_ms;       /* 0: none */
	unsigned concurrency;      /* at most this many items at once (limit.c); 0: no cap */
	uint32_t limit_no;         /* 1 + the limit it counts under (options' `limit`); 0: none */
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

/*
 * What dispatch (dispatch.c, chunk.c) asks of a call and tells it. A
 * "chain" is a call's items run through `hops` more tasks in the same
 * worker (stage fusion, pipeline.h); a call without chains has hops 0
 * always and leaves the chain entries NULL. Entries marked "optional" may
 * be NULL, with the effect their comment gives.
 */
struct fp_call_ops {
	/* FP_FRAME_* flags its TASK frames carry (FP_FRAME_STREAM: outputs as made). */
	uint16_t frame_flags;
	/* Whether its items may share a chunk with other calls' (chunk.c). */
	bool joinable;
	/* How log lines name item `index`, at stage `hop` of its chain. */
	void (*name)(const struct fp_call *c, uint32_t index, unsigned hop, char *buf,
		     size_t len);
	/* `count` items went to a worker of pool p as one segment, with a chain of `hops`. */
	void (*sent)(struct fp_call *c, fp_pool *p, unsigned hops, uint32_t count);
	/* Item `index` ended at stage `hop` of its chain, as r says. */
	void (*item_end)(struct fp_call *c, unsigned hop, const struct fp_result *r);
	/*
	 * Optional: n items (r[0..n)) ended OK at the call's own task, answered
	 * together: dispatch then hands the run over whole (item_end each,
	 * else). Only for a call without chains, outputs or `blocked`; such a
	 * call's answers are always read a run at a time.
	 */
	void (*items_end)(struct fp_call *c, const struct fp_result *r, size_t n);

	/* Optional (0): the chain its items may run through now. */
	unsigned (*hops)(const struct fp_call *c);
	/* Chains only: the task at stage hop >= 1; its names' length from c->task on. */
	const char *(*chain_task)(const struct fp_call *c, unsigned hop);
	uint32_t (*chain_name_len)(const struct fp_call *c, unsigned hops);
	/*
	 * Optional (all): how many of `want` items from `first`, sent with a
	 * chain of `hops`, may go to a worker now; 0 holds the call back.
	 */
	size_t (*room)(const struct fp_call *c, uint32_t first, size_t want, unsigned hops);
	/*
	 * Optional (true): whether a chunk of it may wait in a worker behind
	 * another, or have one wait behind it (prefetch).
	 */
	bool (*may_wait)(const struct fp_call *c);
	/* Optional: pool p sent a chunk of it and took it off its queue. */
	void (*taken)(struct fp_call *c, fp_pool *p);
	/* Optional: a segment of it is over on its worker (answered, or the worker gone). */
	void (*seg_end)(struct fp_call *c);
	/*
	 * Optional: `count` items sent with a chain of `hops` stopped running:
	 * answered at stage `hop`, or (hop 0) back to the queue or ended at
	 * the call's own task.
	 */
	void (*ran)(struct fp_call *c, unsigned hops, unsigned hop, uint32_t count);
	/* Optional: items of it went back to the queue; `ending` of them fail instead. */
	void (*requeued)(struct fp_call *c, uint64_t ending);
	/*
	 * Optional: an output of item `index` at stage `hop` before its end:
	 * a streamed RESULT's value (output), or one of several a task emits
	 * (emit). NULL: a call's value comes with its item's end, and an EMIT
	 * is a protocol error.
	 */
	void (*output)(struct fp_call *c, uint32_t index, unsigned hop, const char *value,
		       size_t len, pid_t pid, unsigned attempts);
	void (*emit)(struct fp_call *c, uint32_t index, unsigned hop, const char *value,
		     size_t len, pid_t pid, unsigned attempts);
	/* Optional (false): whether a worker running its item (chain of `hops`) must not be read. */
	bool (*blocked)(const struct fp_call *c, unsigned hops);
	/*
	 * Optional (false): whether the answers of its items sent with a chain
	 * of `hops` may be read a run at a time even though it has outputs or
	 * `blocked` (none of them can ever pause the worker). They are then
	 * still handed over item by item (output, ran, item_end).
	 */
	bool (*runs)(const struct fp_call *c, unsigned hops);
	/*
	 * Chains only: a run time (µs) of a chain of `hops`, shared by its
	 * tasks; and of the task at stage `hop` alone (hop 0: the call's own).
	 */
	void (*chain_us)(struct fp_call *c, unsigned hops, uint64_t us);
	void (*hop_us)(struct fp_call *c, unsigned hop, uint64_t us);
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
