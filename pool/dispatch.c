/*
 * Dispatch: a group's FIFO queue, chunks to its idle workers (and, for
 * quick work while none is idle, a busy worker's next chunk ahead), cut
 * from the first entry that may run (the head, unless its call holds it
 * back: call.h's room, or a concurrency limit: limit.h), and the timeouts
 * of what they run. The answers coming back are answers.c's; what a dead
 * worker leaves unfinished, worker_exit.c's.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cancel.h"
#include "item.h"
#include "pool_impl.h"

/* --- sending chunks ------------------------------------------------------ */

static struct fp_worker *find_idle(struct fp_group *g)
{
	struct fp_worker *w;

	for (w = g->workers; w; w = w->next)
		if (fp__worker_can_take(w))
			return w;
	return NULL;
}

static void deadline_cb(fp_timer *t);

/* w holds the segments just sent, after what it still has to answer; their tasks. */
static uint64_t chunk_held(struct fp_worker *w, const struct fp_seg *segs, uint32_t nsegs,
		       uint64_t base, uint32_t count)
{
	struct fp_group *g = w->group;
	uint64_t id = base, tasks = 0;
	uint32_t s;

	/* Answered segments of the chunk before go; the rest stay first in line. */
	if (!w->call) {
		w->nsegs = w->seg = w->seg_acked = 0;
		w->count = w->acked = 0;
	} else if (w->seg) {
		for (s = 0; s < w->seg; s++) {
			w->count -= w->segs[s].count;
			w->acked -= w->segs[s].count;
		}
		memmove(w->segs, w->segs + w->seg, (w->nsegs - w->seg) * sizeof(*w->segs));
		w->nsegs -= w->seg;
		w->seg = 0;
	}
	for (s = 0; s < nsegs; s++) {
		struct fp_seg *sg = &w->segs[w->nsegs + s];

		segs[s].call->ops->sent(segs[s].call, g, segs[s].hops, segs[s].count);
		*sg = segs[s];
		sg->id0 = id;
		sg->chunk_end = s + 1 == nsegs;
		id += segs[s].count;
		tasks += (uint64_t)segs[s].count * (1u + segs[s].hops);
	}
	w->nsegs += nsegs;
	w->call = w->segs[w->seg].call;
	w->count += count;
	w->nchunks++;
	return tasks;
}

static int send_chunk(struct fp_worker *w, const struct fp_seg *segs, uint32_t nsegs)
{
	struct fp_group *g = w->group;
	struct iovec iov[2];
	uint64_t base = g->next_frame_id, timeout, tasks;
	uint32_t count = 0;
	int iovcnt, err;

	for (uint32_t s = 0; s < nsegs; s++)
		count += segs[s].count;
	iovcnt = fp__chunk_encode(w, segs, nsegs, base, iov);
	if (iovcnt < 0)
		return iovcnt;
	err = fp_io_write(g->loop, &w->wio, w->fd, iov, iovcnt, fp__worker_write_cb);
	if (err)
		return err;
	g->next_frame_id += count;
	tasks = chunk_held(w, segs, nsegs, base, count);
	if (w->nchunks == 1) {
		w->mark_ns = fp_now_ns();
		timeout = fp__chunk_timeout_ms(w);
		if (timeout)
			fp_timer_start(g->loop, &w->deadline, timeout, deadline_cb);
	} else if (!fp_timer_active(&w->deadline) && (timeout = fp__chunk_timeout_ms(w))) {
		/*
		 * The chunk it runs has no timeout; this one's items start
		 * later than now. A running timer is left alone: a prefetched
		 * chunk's timeout is never shorter than its period
		 * (may_prefetch()), and deadline_cb() times each item by its own.
		 */
		fp_timer_start(g->loop, &w->deadline, timeout, deadline_cb);
	}
	w->life = FP_LIFE_BUSY;
	fp__worker_gave(w, tasks);
	return 0;
}

/* The segments are the queue entries from `at` on, in order: take them off. */
static void queue_take(struct fp_group *g, size_t at, const struct fp_seg *segs, uint32_t n)
{
	for (uint32_t s = 0; s < n; s++) {
		struct fp_qent *e = fp__queue_at(&g->queue, at);
		e->first += segs[s].count;
		e->count -= segs[s].count;
		g->queue.items -= segs[s].count;
		if (!e->count)
			fp__queue_remove(&g->queue, at);
	}
}

/* Whether segments may be held ahead, or have a chunk held behind them (call.h). */
static bool segs_may_queue(const struct fp_seg *segs, uint32_t n)
{
	for (uint32_t s = 0; s < n; s++) {
		const struct fp_call *c = segs[s].call;

		if (c->ops->may_wait && !c->ops->may_wait(c))
			return false;
	}
	return true;
}

/*
 * Whether busy worker w may be sent its next chunk now, to have it in its
 * socket when it finishes the one it runs: then it never waits a round
 * trip to the master between chunks. Only behind quick work (a long task
 * never holds a chunk back from other workers), one chunk ahead at most,
 * and not for an exec pool, whose program's per-item cost dwarfs the round
 * trip.
 */
static bool may_prefetch(struct fp_group *g, const struct fp_worker *w)
{
	return fp__worker_can_prefetch(w) && !g->exec &&
	       fp__chunk_quick(g, w->segs + w->seg, w->nsegs - w->seg) &&
	       segs_may_queue(w->segs + w->seg, w->nsegs - w->seg);
}

/*
 * Whether the planned chunk may wait behind what w runs: small and quick,
 * and no item of it with a shorter timeout than w's timer period (a running
 * timer is not rearmed for it; see send_chunk()).
 */
static bool prefetch_fits(struct fp_group *g, const struct fp_worker *w, const struct fp_seg *segs,
			  uint32_t n)
{
	uint64_t period = fp__chunk_timeout_ms(w);
	size_t items = 0;

	if (!fp__chunk_quick(g, segs, n) || !segs_may_queue(segs, n))
		return false;
	for (uint32_t s = 0; s < n; s++) {
		uint64_t t = segs[s].call->timeout_ms;

		items += segs[s].count;
		if (t && period && t < period)
			return false;
	}
	return items <= FP_PREFETCH_ITEMS_MAX;
}

static void dispatch_group(struct fp_group *g)
{
	struct fp_seg segs[FP_BATCH_MAX];
	struct fp_worker *w;
	size_t at;
	uint32_t n;
	int err;

	if (g->state != FP_POOL_RUNNING)
		return;
	/* No worker will start to run them (worker.c): they end now, saying why. */
	if (g->unavailable && g->queue.len)
		fp__queue_fail(g, NULL, FP_ITEM_START_FAILURE, g->start_error);
	while (g->queue.len && (w = find_idle(g))) {
		n = fp__chunk_plan(g, w, segs, &at);
		if (!n)
			return;    /* all that is queued is held back */
		err = send_chunk(w, segs, n);
		if (err) {
			fp_log_error(&g->log, "cannot send work to worker %u: %s",
				     w->slot, fp_strerror(err));
			fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
			continue;
		}
		if (segs[0].call->ops->taken)
			segs[0].call->ops->taken(segs[0].call, g);
		queue_take(g, at, segs, n);
	}
	/*
	 * No worker is idle: busy ones running quick work may take their next
	 * chunk, while the queue is long. An item that turns out slow holds
	 * back the chunk behind it; with a short queue that could be most of
	 * what is left (a worker coming free finds nothing, the slow worker
	 * holds the rest), with a long one every worker stays busy anyway.
	 */
	if (g->queue.items < FP_PREFETCH_BACKLOG)
		return;
	for (w = g->workers; w && g->queue.len; w = w->next) {
		if (!may_prefetch(g, w))
			continue;
		n = fp__chunk_plan(g, w, segs, &at);
		if (!n)
			return;
		if (!prefetch_fits(g, w, segs, n) || send_chunk(w, segs, n) < 0)
			/* Not sent: it waits in the queue for a worker to come free. */
			continue;
		if (segs[0].call->ops->taken)
			segs[0].call->ops->taken(segs[0].call, g);
		queue_take(g, at, segs, n);
	}
}

void fp__dispatch(struct fp_group *g)
{
	fp_pool *pool = g->pool;
	struct fp_group *q;
	bool all;
	unsigned i;

	if (g->state != FP_POOL_RUNNING)
		return;
	/*
	 * What was gathered this turn (a pipeline's outputs: pipelines are
	 * the pool's) may go to any group (exec stages): queue it, and then
	 * the other groups get their share too. So may an item that a limit
	 * shared across the groups held back (limit.c).
	 */
	all = pool->feed_flush || fp__limits_shared(&pool->limits, pool->ngroups);
	if (pool->feed_flush)
		pool->feed_flush(pool);
	if (all && pool->ngroups > 1)
		FP_FOR_GROUPS(q, pool, i)
			if (q != g && q->queue.len)
				dispatch_group(q);
	dispatch_group(g);
}

void fp__worker_write_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct fp_worker *w = io->data;
	struct fp_group *g = w->group;

	if (res < 0 && !fp__worker_exited(w) && w->kill_reason == FP_KILL_NONE && !w->quit_sent) {
		/* A live worker that cannot be written to is of no use. */
		fp_log_warn(&g->log, "worker %u (pid %d): write failed: %s", w->slot,
			    (int)w->pid, fp_strerror((int)res));
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
	}
	if (fp__worker_exited(w))
		fp__worker_maybe_free(w);
	else if (!fp__kv_reply_flush(w))
		fp__dispatch(g);
}

/* --- timeouts ------------------------------------------------------------ */

static void deadline_cb(fp_timer *t)
{
	struct fp_worker *w = t->data;
	struct fp_group *g = w->group;
	struct fp_call *c;
	uint64_t cur, started, limit_ns, now, period;
	uint32_t index;
	unsigned hop;
	char name[160];

	if (fp__worker_exited(w))
		return;
	if (w->kill_reason != FP_KILL_NONE) {
		/* The grace period after SIGTERM is over. */
		if (!w->sigkilled)
			fp__worker_kill(w, SIGKILL, w->kill_reason);
		return;
	}
	if (!w->call)
		return;
	period = fp__chunk_timeout_ms(w);
	if (!period)
		return;
	if (w->paused) {
		/*
		 * Blocked by back-pressure, not by its own slowness: a task that
		 * waits for the next stage to drain is not timed out for it.
		 */
		fp_timer_start(g->loop, t, period, deadline_cb);
		return;
	}
	cur = atomic_load_explicit(&w->shm->current, memory_order_acquire);
	started = atomic_load_explicit(&w->shm->started_ns, memory_order_relaxed);
	now = fp_now_ns();
	c = fp__worker_item(w, cur, &index, &hop);
	if (!c || !c->timeout_ms) {
		/*
		 * Between two items of the chunk, or running one without a
		 * timeout: check again a full period on.
		 */
		fp_timer_start(g->loop, t, period, deadline_cb);
		return;
	}
	/* The start may be stamped early by up to the slack: never time out early. */
	limit_ns = c->timeout_ms * 1000000u +
		   atomic_load_explicit(&w->shm->started_slack_ns, memory_order_relaxed);
	if (now < started + limit_ns) {
		/* Its end, or sooner: an item behind it may have a shorter timeout. */
		uint64_t ms = (started + limit_ns - now) / 1000000u + 1;
		fp_timer_start(g->loop, t, ms < period ? ms : period, deadline_cb);
		return;
	}
	fp__item_name(name, sizeof(name), c, index, hop);
	fp_log_warn(&g->log, "worker %u (pid %d): task %s ran past its %llu ms timeout; "
		    "stopping it (%s)", w->slot, (int)w->pid, fp__item_task(c, hop),
		    (unsigned long long)c->timeout_ms, name);
	/* The task may see fp_cancelled() and stop by itself within the grace. */
	fp__worker_stop(w, FP_KILL_TIMEOUT, true);
}
