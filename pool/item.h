/*
 * One item's fate, for those who see it end: dispatch (an answer) and the
 * worker's exit accounting (a crash, a timeout). Attempts and retries, how
 * log lines name it, its delivery (item.c).
 */
#ifndef FP_ITEM_H
#define FP_ITEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "call.h"
#include "forkpool.h"
#include "pool_impl.h"

/* "item 3 of job 5f3a…", "item 3 of call 14": how log lines name an item. */
void fp__item_name(char *buf, size_t len, const struct fp_call *c, uint32_t index,
		   unsigned hop);
/* The starts of item i of c counted so far. */
static inline unsigned fp__item_starts(const struct fp_call *c, uint32_t i)
{
	return c->marks ? c->marks[i].starts : 0;
}
/*
 * Item i of c started a run that does not end it as answered (a crash, a
 * timeout, a task error, a kill): counted, kept for its next run or end;
 * its starts with this one. (An answer that ends an item is its
 * fp__item_starts() + 1, kept nowhere.)
 */
unsigned fp__item_started(struct fp_call *c, uint32_t i);
/* Item i of c handed outputs on (a stage's EMIT): a rerun would hand them on twice. */
void fp__item_emitted(struct fp_call *c, uint32_t i);
/* The retries an item of c has at stage `hop` of its chain (none past the first). */
unsigned fp__item_retries(const struct fp_call *c, unsigned hop);
/*
 * Whether item i of c that failed by `kind` (FP_RETRY_*) at stage `hop`,
 * started `attempts` times with this run, runs again.
 */
bool fp__item_retry_wanted(const struct fp_call *c, uint32_t i, unsigned attempts,
			   unsigned kind, unsigned hop);
/* "attempt 2 of 4", and why it is not run again when it had retries to spare. */
void fp__item_attempt_note(char *buf, size_t len, const struct fp_call *c, uint32_t i,
			   unsigned attempts, unsigned kind, unsigned hop, bool retry);
/*
 * The item ended (at stage `hop` of its chain: the tasks before it there
 * ran, and count as done), started `attempts` times: count it, and tell
 * its call. Inline: it is on every answer's path.
 */
static inline void fp__item_end_tb(struct fp_group *g, struct fp_call *call, uint32_t index,
				   fp_item_status status, const char *value, size_t len,
				   const char *msg, const char *traceback, pid_t pid,
				   uint64_t duration_us, unsigned hop, unsigned attempts)
{
	struct fp_result r = {
		.index = index,
		.status = status,
		.value = status == FP_ITEM_OK ? value : NULL,
		.value_len = status == FP_ITEM_OK ? len : 0,
		.message = status == FP_ITEM_OK ? NULL : msg,
		.attempts = attempts,
		.pid = pid,
		.duration_us = duration_us,
		.traceback = status == FP_ITEM_TASK_ERROR ? traceback : NULL,
	};

	g->done += hop;
	if (status == FP_ITEM_OK) {
		g->done++;
	} else {
		g->failed++;
		if (status == FP_ITEM_CANCELLED)
			g->ncancelled++;
	}
	call->ops->item_end(call, hop, &r);
}

/*
 * n items of call ended OK at its own task, answered together (r[0..n)):
 * counted, and handed over whole when the call takes runs.
 */
static inline void fp__items_ok(struct fp_group *g, struct fp_call *call, const struct fp_result *r,
				size_t n)
{
	g->done += n;
	if (call->ops->items_end) {
		call->ops->items_end(call, r, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		call->ops->item_end(call, 0, &r[i]);
}

/* Every end but a task error's has no traceback. */
static inline void fp__item_end(struct fp_group *g, struct fp_call *call, uint32_t index,
				fp_item_status status, const char *value, size_t len,
				const char *msg, pid_t pid, uint64_t duration_us, unsigned hop,
				unsigned attempts)
{
	fp__item_end_tb(g, call, index, status, value, len, msg, NULL, pid, duration_us, hop,
			attempts);
}
/* Put items back at the head of g's queue; without memory for it they fail. */
void fp__item_requeue(struct fp_group *g, struct fp_call *call, uint32_t first, uint32_t count);

#endif
