/*
 * A worker has gone: what its exit is counted as, which item it blames (the
 * one the shared page names), and where the items it held go: back to the
 * queue, or to their end with a cancelled call. Its process and structure
 * are worker.c's; this file only settles its work.
 */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "item.h"
#include "locks.h"
#include "pool_impl.h"

/*
 * Items [from, from + count) of `call` that a dead worker left unfinished
 * and that nothing blames: cancelled with their call or the pool, else run
 * again. `requeue` says which of the two this pass does, so that the caller
 * can fail in chunk order and requeue from the back (each push goes to the
 * head, so the queue ends up in chunk order).
 */
static void leftover(struct fp_group *g, struct fp_worker *w, struct fp_call *call, uint32_t from,
		     uint32_t count, bool requeue_pass)
{
	bool cancel = call->cancelled || w->kill_reason == FP_KILL_SHUTDOWN ||
		      g->state != FP_POOL_RUNNING;

	if (!count || cancel == requeue_pass)
		return;
	if (!cancel)
		fp__item_requeue(g, call, from, count);
	else if (call->cancelled)
		fp__fail_later(g, call, from, count, FP_ITEM_CANCELLED, "cancelled");
	else
		fp__fail_later(g, call, from, count, FP_ITEM_CANCELLED,
			       "cancelled: the pool shut down before the item finished");
}

/* What a dead worker's exit blames: the item the shared page names, if any. */
struct exit_blame {
	struct fp_call *call;      /* NULL: no item is to blame */
	uint32_t run;              /* its index ... */
	unsigned hop;              /* ... and the stage of its chain it was in */
	unsigned kind;             /* FP_RETRY_TIMEOUT or FP_RETRY_CRASH */
	fp_item_status status;
	unsigned attempts;         /* its starts, this run's counted */
	bool retry;
	char msg[512];             /* how it ended, for its result and the log */
	char note[128];            /* its attempts (fp__item_attempt_note()) */
};

/*
 * The item the shared page names is to blame, unless its call was
 * cancelled, the pool is going, or it was killed for another call's cancel
 * (a chunk can hold several calls): those only end or go back. In a chain,
 * the page also says which stage's task it was in: the item ends there,
 * with no retry past the chain's first (fusion leaves out stages with
 * retries: pipeline.h).
 */
static void exit_blame(struct fp_worker *w, bool crashed, uint32_t fate, const char *how,
		       struct exit_blame *b)
{
	struct fp_group *g = w->group;
	uint64_t cur = atomic_load_explicit(&w->shm->current, memory_order_acquire);

	b->call = fp__worker_item(w, cur, &b->run, &b->hop);
	/* Started, blamed or not: a run killed for another call's cancel was one too. */
	if (b->call)
		b->attempts = fp__item_started(b->call, b->run);
	if (b->call && (b->call->cancelled || w->kill_reason == FP_KILL_SHUTDOWN ||
			w->kill_reason == FP_KILL_CANCEL || g->state != FP_POOL_RUNNING))
		b->call = NULL;
	if (!b->call && crashed && g->state == FP_POOL_RUNNING)
		/*
		 * It died between two items (told to quit, or killed from
		 * outside at that moment): no item is to blame. Results it
		 * had gathered but not sent are lost, so those run again.
		 */
		fp_log_warn(&g->log, "worker %u (pid %d) %s between tasks; "
			    "requeueing %u items", w->slot, (int)w->pid, how, w->count - w->acked);
	if (!b->call)
		return;
	b->status = w->kill_reason == FP_KILL_TIMEOUT ? FP_ITEM_TIMEOUT :
		    fate ? (fp_item_status)fate : FP_ITEM_CRASH;
	/* An exec program's bad line or oversized answer ended it too: a crash. */
	b->kind = b->status == FP_ITEM_TIMEOUT ? FP_RETRY_TIMEOUT : FP_RETRY_CRASH;
	b->retry = fp__item_retry_wanted(b->call, b->run, b->attempts, b->kind, b->hop);
}

/* The items leave the worker's segments: their calls count them as waiting or ending. */
static void exit_release(struct fp_worker *w, const struct exit_blame *b)
{
	for (uint32_t k = w->seg; k < w->nsegs; k++) {
		struct fp_seg *sg = &w->segs[k];
		const struct fp_call_ops *ops = sg->call->ops;
		uint32_t from = sg->first + (k == w->seg ? w->seg_acked : 0);
		uint32_t left = sg->first + sg->count - from, ends = 0;

		if (ops->seg_end)
			ops->seg_end(sg->call);
		if (!ops->ran)
			continue;
		/* The blamed item ends where it died; the rest never ran their chain. */
		if (sg->hops && sg->call == b->call && !b->retry && b->run >= from &&
		    b->run < from + left)
			ends = 1;
		ops->ran(sg->call, sg->hops, 0, left - ends);
		if (ends)
			ops->ran(sg->call, sg->hops, b->hop, 1);
	}
}

/* Word what befell the blamed item, log it, and never join its task again for now. */
static void exit_message(struct fp_worker *w, struct exit_blame *b, uint32_t fate,
			 const char *how)
{
	struct fp_group *g = w->group;
	struct fp_call *c = b->call;
	const char *task = fp__item_task(c, b->hop);
	char name[160];

	if (b->status == FP_ITEM_TIMEOUT && fate)
		snprintf(b->msg, sizeof(b->msg), "task %s ran past its %llu ms timeout (%s)",
			 task, (unsigned long long)c->timeout_ms, how);
	else if (b->status == FP_ITEM_TIMEOUT)
		snprintf(b->msg, sizeof(b->msg), "task %s ran past its %llu ms timeout (worker pid %d %s)",
			 task, (unsigned long long)c->timeout_ms, (int)w->pid, how);
	else if (fate)
		snprintf(b->msg, sizeof(b->msg), "%s while running task %s", how, task);
	else
		snprintf(b->msg, sizeof(b->msg), "worker pid %d %s while running task %s",
			 (int)w->pid, how, task);
	fp__item_name(name, sizeof(name), c, b->run, b->hop);
	fp__item_attempt_note(b->note, sizeof(b->note), c, b->run, b->attempts, b->kind, b->hop,
			      b->retry);
	fp_log_warn(&g->log, "worker %u: %s (%s, %s)", w->slot, b->msg, name, b->note);
	/* A task that crashes or overruns is not one to share a chunk. */
	if (c->ops->hop_us)
		c->ops->hop_us(c, b->hop, FP_FRAME_US_MAX);
	else
		fp__task_us_record(g, c, FP_FRAME_US_MAX);
}

/*
 * Pass 0 fails what ends with a cancel, in chunk order; pass 1 requeues the
 * rest from the back. The blamed item, with retries left, goes back first
 * in line with the rest of its segment behind it; without, the rest of its
 * segment and then what came before it run again.
 */
static void exit_requeue(struct fp_worker *w, const struct exit_blame *b)
{
	struct fp_group *g = w->group;

	for (uint32_t pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < w->nsegs - w->seg; k++) {
			struct fp_seg *sg = &w->segs[pass ? w->nsegs - 1 - k : w->seg + k];
			uint32_t from = sg->first + (sg == &w->segs[w->seg] ? w->seg_acked : 0);
			uint32_t end = sg->first + sg->count, run = b->run;
			struct fp_call *call = sg->call;

			if (call != b->call || run < from || run >= end) {
				leftover(g, w, call, from, end - from, pass == 1);
			} else if (pass == 1 && b->retry) {
				fp__item_requeue(g, call, from, end - from);
			} else if (pass == 1) {
				fp__item_requeue(g, call, run + 1, end - run - 1);
				fp__item_requeue(g, call, from, run - from);
			}
		}
	}
	for (uint32_t k = w->seg; k < w->nsegs; k++) {
		struct fp_seg *sg = &w->segs[k];

		if (sg->call->ops->requeued)
			sg->call->ops->requeued(sg->call, sg->call == b->call && !b->retry ? 1 : 0);
	}
}

/*
 * A worker is gone (reaped and its stream read): count its end, and settle
 * the items it held: the one it was running is blamed (exit_blame()), the
 * others go back to the queue or end with their cancelled call.
 */
void fp__worker_account_exit(struct fp_worker *w)
{
	struct fp_group *g = w->group;
	struct exit_blame b = { 0 };
	uint32_t fate;
	char how[256];
	bool crashed;

	/* No lock outlives its holder: the next waiter has it now. */
	fp__locks_worker_gone(w);
	if (w->pid)
		fp__describe_status(w->status, how, sizeof(how));
	else
		snprintf(how, sizeof(how), "was never forked");
	/*
	 * An exec worker that left because of its program says what happened
	 * to the program: that, not the worker's exit, is the news.
	 */
	fate = atomic_load_explicit(&w->shm->fate_status, memory_order_acquire);
	if (fate)
		snprintf(how, sizeof(how), "%s", w->shm->fate);
	crashed = w->kill_reason == FP_KILL_NONE && !w->quit_sent &&
		  !(WIFEXITED(w->status) && WEXITSTATUS(w->status) == FP_WORKER_EXIT_OK);
	if (crashed && w->ready)
		g->crashes++;
	if (w->kill_reason == FP_KILL_TIMEOUT)
		g->timeouts++;

	if (!w->call || w->acked >= w->count) {
		if (crashed && w->ready)
			fp_log_warn(&g->log, "worker %u (pid %d) %s between tasks",
				    w->slot, (int)w->pid, how);
		else
			fp_log_debug(&g->log, "worker %u (pid %d) %s", w->slot, (int)w->pid, how);
		w->call = NULL;
		w->nchunks = 0;
		return;
	}
	exit_blame(w, crashed, fate, how, &b);
	exit_release(w, &b);
	if (b.call)
		exit_message(w, &b, fate, how);
	exit_requeue(w, &b);
	w->call = NULL;
	w->nchunks = 0;
	if (b.call && !b.retry) {
		/* Which attempt, when it had retries to spend. */
		if (b.attempts > 1 || fp__item_retries(b.call, b.hop)) {
			size_t l = strlen(b.msg);
			snprintf(b.msg + l, sizeof(b.msg) - l, " (%s)", b.note);
		}
		fp__item_end(g, b.call, b.run, b.status, NULL, 0, b.msg, fp__worker_answer_pid(w),
			     (fp_now_ns() - atomic_load(&w->shm->started_ns)) / 1000u, b.hop,
			     b.attempts);
	}
}
