/*
 * What dispatch needs of a call (struct fp_call_ops): the one table through
 * which dispatch.c, chunk.c and item.c name, send, answer and account any
 * call, apply and map's (call.c) or a pipeline batch's (pipeline_batch.c)
 * alike. Dispatch never learns which kind it holds.
 */
#ifndef FP_CALL_OPS_H
#define FP_CALL_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "forkpool.h"

struct fp_call;
struct fp_group;

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
	void (*sent)(struct fp_call *c, struct fp_group *g, unsigned hops, uint32_t count);
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
	void (*taken)(struct fp_call *c, struct fp_group *g);
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

#endif
