/*
 * Dispatch: one FIFO queue, chunks to idle workers (and, for quick work while
 * none is idle, a busy worker's next chunk ahead), cut from the first
 * entry that may run (the head, unless its call holds it back: call.h's
 * room, or a concurrency limit: limit.h); results back in item order; what a
 * dead worker leaves unfinished goes back to the head of the queue, except
 * the one item it was running, which fails (or is retried while it has
 * attempts left).
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

/* --- results ------------------------------------------------------------- */

const double fp_duration_bounds[FP_DURATION_BUCKETS] = {
	0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 60, 1e300,
};

static void count_duration(struct fp_group *g, uint64_t us)
{
	unsigned i = 0;

	while (i < FP_DURATION_BUCKETS - 1 && (double)us > fp_duration_bounds[i] * 1e6)
		i++;
	g->duration_counts[i]++;
	g->duration_sum_us += us;
}

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

/* --- frames from a worker ------------------------------------------------ */

static void worker_broken(struct fp_worker *w, const char *what, int err)
{
	fp_log_error(&w->group->log, "worker %u (pid %d) %s: %s; killing it", w->slot,
		     (int)w->pid, what, fp_strerror(err));
	fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
}

/* Every item sent to w is answered: it has no call, and a busy worker is idle again. */
static void answered_all(struct fp_worker *w)
{
	w->call = NULL;
	if (w->kill_reason == FP_KILL_NONE) {
		fp_timer_stop(&w->deadline);
		if (w->life == FP_LIFE_BUSY)
			w->life = FP_LIFE_IDLE;
	}
}

/*
 * A task answered with an error (its start counted). Retried when its call
 * asks for it: the item goes back to the head of the queue to run again
 * from its arguments, as after a crash. Else it ends, its message saying
 * which attempt it was when it had retries to spend.
 */
static void task_error_end(struct fp_worker *w, struct fp_call *call, uint32_t index,
			   unsigned hops, unsigned hop, const char *msg, const char *tb,
			   uint64_t us)
{
	struct fp_group *g = w->group;
	unsigned attempts = fp__item_starts(call, index) + 1;
	bool retry = g->state == FP_POOL_RUNNING && !call->cancelled &&
		     fp__item_retry_wanted(call, index, attempts, FP_RETRY_TASK_ERROR, hop);
	char name[160], note[128], *full = NULL;

	fp__item_attempt_note(note, sizeof(note), call, index, attempts, FP_RETRY_TASK_ERROR, hop,
			      retry);
	if (retry) {
		fp__item_name(name, sizeof(name), call, index, hop);
		fp_log_info(&g->log, "worker %u (pid %d): task %s failed (%s, %s): %.200s",
			    w->slot, (int)w->pid, fp__item_task(call, hop), name, note, msg);
	}
	/* A retry waits at the chain's first stage again; else it ends where it failed. */
	if (call->ops->ran)
		call->ops->ran(call, hops, retry ? 0 : hop, 1);
	if (retry) {
		/* Its next run is its next attempt. */
		fp__item_started(call, index);
		fp__item_requeue(g, call, index, 1);
		if (call->ops->requeued)
			call->ops->requeued(call, 0);
		return;
	}
	if ((attempts > 1 || fp__item_retries(call, hop)) &&
	    (full = malloc(strlen(msg) + strlen(note) + 4)))
		sprintf(full, "%s (%s)", msg, note);
	fp__item_end_tb(g, call, index, FP_ITEM_TASK_ERROR, NULL, 0, full ? full : msg, tb,
			fp__worker_answer_pid(w), us, hop, attempts);
	free(full);
}

/*
 * Whether answer frame h (one answer, or a run from its id on) is of the
 * item w is to answer next, from no further than its chain; else w is
 * broken. Frames come in the order the items were sent.
 */
static bool answer_expected(struct fp_worker *w, const struct fp_frame_header *h)
{
	if (!w->call || h->id != w->segs[w->seg].id0 + w->seg_acked) {
		worker_broken(w, "answered an item it was not given", FP_EPROTOCOL);
		return false;
	}
	if (h->hop > w->segs[w->seg].hops) {
		worker_broken(w, "answered from past the end of its chain", FP_EPROTOCOL);
		return false;
	}
	return true;
}

/* The time since w's last answer (µs), counted; the next one's runs from now. */
static uint64_t answer_us(struct fp_worker *w, uint64_t now)
{
	uint64_t us = now > w->mark_ns ? (now - w->mark_ns) / 1000u : 0;

	w->mark_ns = now;
	count_duration(w->group, us);
	return us;
}

/*
 * n items of the segment w answers (its call's, with a chain of `hops`)
 * were answered: the worker's books (segment, chunk, task budget, RSS,
 * state and timer, RETIRE). Whether that ended the segment.
 */
static bool worker_answered(struct fp_worker *w, struct fp_call *call, uint32_t n,
			    unsigned hops, uint32_t rss_kib, bool retire)
{
	bool seg_end;

	w->seg_acked += n;
	w->acked += n;
	seg_end = w->seg_acked == w->segs[w->seg].count;
	if (seg_end) {
		if (call->ops->seg_end)
			call->ops->seg_end(call);
		if (w->segs[w->seg].chunk_end)
			w->nchunks--;
		if (w->seg + 1 < w->nsegs) {
			w->seg++;
			w->seg_acked = 0;
			w->call = w->segs[w->seg].call;
		}
	}
	w->tasks_done += (uint64_t)n * (1u + hops);
	if (rss_kib)
		w->rss_kib = rss_kib;
	if (w->acked == w->count)
		answered_all(w);
	if (retire)
		fp__worker_retiring(w);
	return seg_end;
}

/*
 * A chain's time goes to each of its tasks: for quick ones once a segment
 * (they ran together; it is their average anyway), a slow one at once.
 */
static bool chain_time_wanted(unsigned hops, bool seg_end, uint64_t ran_us)
{
	return hops && (seg_end || ran_us / (hops + 1u) > FP_BATCH_QUICK_US);
}

static void handle_result(struct fp_worker *w, const struct fp_frame_header *h,
			  const char *payload, uint64_t now)
{
	struct fp_group *g = w->group;
	struct fp_call *call = w->call;
	uint32_t index;
	fp_item_status status;
	unsigned hops, hop = h->hop;
	bool seg_end;
	uint64_t us, ran_us = h->flags >> FP_FRAME_US_SHIFT;

	if (!answer_expected(w, h))
		return;
	hops = w->segs[w->seg].hops;
	/* It ran: its answer is the proof (counted where it is used, below). */
	index = w->segs[w->seg].first + w->seg_acked;
	seg_end = worker_answered(w, call, 1, hops, h->rss_kib, h->flags & FP_FRAME_RETIRE);
	us = answer_us(w, now);
	if (chain_time_wanted(hops, seg_end, ran_us))
		call->ops->chain_us(call, hops, ran_us);
	else if (!hops)
		fp__task_us_record(g, call, ran_us);

	status = h->type == FP_FRAME_RESULT ? FP_ITEM_OK : (fp_item_status)(h->flags & 0xff);
	if (status == FP_ITEM_OK && h->type != FP_FRAME_RESULT)
		status = FP_ITEM_TASK_ERROR;
	if (status == FP_ITEM_TASK_ERROR) {
		/* The payload is NUL-terminated; a traceback follows a NUL inside it. */
		const char *nul = memchr(payload, '\0', h->len);

		task_error_end(w, call, index, hops, hop, payload,
			       nul && nul + 1 < payload + h->len ? nul + 1 : NULL, us);
		return;
	}
	/* A streamed RESULT carries its last output, unless it says it has none. */
	if (call->ops->output && status == FP_ITEM_OK && !(h->flags & FP_FRAME_NOVALUE))
		call->ops->output(call, index, hop, payload, h->len, fp__worker_answer_pid(w),
				  fp__item_starts(call, index) + 1);
	if (call->ops->ran)
		call->ops->ran(call, hops, hop, 1);
	fp__item_end(g, call, index, status, payload, h->len, payload, fp__worker_answer_pid(w), us, hop,
		     fp__item_starts(call, index) + 1);
}

/*
 * A run of answers of one segment, all OK (RESULTS entries): what
 * handle_result() does for each, done once for the run where it can be,
 * and the run handed to a call that takes it whole (items_end), else item
 * by item as handle_result() would (output, ran, item_end). Answers read
 * together arrived in one instant, so the first takes the time since the
 * worker's last answer and the rest 0, as one by one. The results are made
 * in pool->answers: nothing a delivery calls reads frames of this pool
 * again before it returns.
 */
static void handle_results(struct fp_worker *w, const struct fp_frame_header *h,
			   char *payload, uint32_t n, uint64_t now)
{
	struct fp_group *g = w->group;
	struct fp_call *call = w->call;
	struct fp_frame_results_walk k;
	struct fp_result *r = g->answers;
	uint32_t i, first, flags, len, *task_us = NULL;
	unsigned hops, hop = h->hop;
	uint64_t us;
	pid_t pid;
	bool retire = false, seg_end;

	/* process_frames() asked for no more than the segment being answered owes. */
	if (!answer_expected(w, h))
		return;
	hops = w->segs[w->seg].hops;
	first = w->segs[w->seg].first + w->seg_acked;
	seg_end = w->seg_acked + n == w->segs[w->seg].count;
	us = answer_us(w, now);
	g->duration_counts[0] += n - 1;
	if (!hops)
		task_us = fp__task_us_slot(g, call);
	pid = fp__worker_answer_pid(w);
	fp_frame_results_walk_init(&k, payload, n);
	for (i = 0; i < n; i++) {
		const char *v = fp_frame_results_walk_next(&k, &flags, &len);
		uint64_t ran_us = flags >> FP_FRAME_US_SHIFT;

		r[i] = (struct fp_result){
			.index = first + i,
			.status = FP_ITEM_OK,
			/* A streamed RESULT without a value ends its item and hands nothing on. */
			.value = flags & FP_FRAME_NOVALUE ? NULL : v,
			.value_len = flags & FP_FRAME_NOVALUE ? 0 : len,
			/* It ran: its answer is the proof. */
			.attempts = fp__item_starts(call, first + i) + 1,
			.pid = pid,
			.duration_us = i ? 0 : us,
		};
		if (task_us)
			fp__task_us_update(task_us, ran_us);
		else if (chain_time_wanted(hops, seg_end && i + 1 == n, ran_us))
			call->ops->chain_us(call, hops, ran_us);
		retire |= (flags & FP_FRAME_RETIRE) != 0;
	}
	worker_answered(w, call, n, hops, h->rss_kib, retire);

	if (call->ops->items_end && !call->ops->output && !hops) {
		if (call->ops->ran)
			call->ops->ran(call, 0, 0, n);
		fp__items_ok(g, call, r, n);
		return;
	}
	/* The last end may free the call: nothing of it is read after. */
	for (i = 0; i < n; i++) {
		if (call->ops->output && r[i].value)
			call->ops->output(call, first + i, hop, r[i].value, r[i].value_len, pid,
					  r[i].attempts);
		if (call->ops->ran)
			call->ops->ran(call, hops, hop, 1);
		fp__item_end(g, call, first + i, FP_ITEM_OK, r[i].value ? r[i].value : "",
			     r[i].value_len, NULL, pid, r[i].duration_us, hop, r[i].attempts);
	}
}

/*
 * How many answers of a RESULTS frame process_frames() may take at once:
 * what the segment being answered still owes, when none of them can pause
 * the worker (call.h's items_end and runs); else one at a time.
 */
static uint32_t answers_run_max(struct fp_worker *w)
{
	const struct fp_call *c = w->call;
	const struct fp_seg *sg;
	uint32_t left;

	if (!c)
		return 1;
	sg = &w->segs[w->seg];
	if (!(c->ops->items_end && !c->ops->output && !c->ops->blocked && !sg->hops) &&
	    !(c->ops->runs && c->ops->runs(c, sg->hops)))
		return 1;
	if (!w->group->answers &&
	    !(w->group->answers = malloc(FP_ANSWERS_MAX * sizeof(*w->group->answers))))
		return 1;   /* one at a time is as right */
	left = sg->count - w->seg_acked;
	return left < FP_ANSWERS_MAX ? left : FP_ANSWERS_MAX;
}

static void handle_emit(struct fp_worker *w, const struct fp_frame_header *h,
			const char *payload)
{
	struct fp_call *call = w->call;
	uint32_t index;

	/* Outputs of the item it is running, and only of a call that takes them. */
	if (!call || !call->ops->emit || h->id != w->segs[w->seg].id0 + w->seg_acked ||
	    h->hop > w->segs[w->seg].hops) {
		worker_broken(w, "emitted an output for an item it is not running",
			      FP_EPROTOCOL);
		return;
	}
	index = w->segs[w->seg].first + w->seg_acked;
	/* Handed on: a retry would hand them on twice. */
	fp__item_emitted(call, index);
	/* It runs now; its start is counted when it ends. */
	call->ops->emit(call, index, h->hop, payload, h->len, fp__worker_answer_pid(w),
			fp__item_starts(call, index) + 1u);
}

static void handle_frame(struct fp_worker *w, const struct fp_frame_header *h,
			 char *payload, uint32_t count, uint64_t now)
{
	struct fp_group *g = w->group;

	switch (h->type) {
	case FP_FRAME_RESULTS:
		/* A run of a packed frame's answers (fp_frame_reader_next_run()). */
		handle_results(w, h, payload, count, now);
		break;
	case FP_FRAME_READY:
		/* An exec worker's READY lists the tasks its program announced. */
		if (g->exec && fp__exec_set_tasks(g->exec, payload, h->len) < 0) {
			worker_broken(w, "said ready without a task list", FP_EPROTOCOL);
			break;
		}
		w->ready = true;
		fp__worker_ready(w);
		w->rss_kib = h->rss_kib;
		g->start_failures = 0;
		g->slots[w->slot].start_failures = 0;
		if (w->life == FP_LIFE_STARTING)
			w->life = FP_LIFE_IDLE;
		/* It wrote its pid first thing: known now, whatever its zygote says. */
		fp__worker_learn_pid(w);
		if (g->state != FP_POOL_RUNNING)
			fp__worker_quit(w);
		else
			fp__spawn_standby(w);
		break;
	case FP_FRAME_INITFAIL:
		snprintf(w->initfail, sizeof(w->initfail), "%.*s", (int)h->len, payload);
		break;
	case FP_FRAME_RESULT:
	case FP_FRAME_ERROR:
		handle_result(w, h, payload, now);
		break;
	case FP_FRAME_EMIT:
		handle_emit(w, h, payload);
		break;
	case FP_FRAME_KV:
		if (fp__kv_serve(w, h, payload) < 0)
			worker_broken(w, "sent a malformed shared-value call", FP_EPROTOCOL);
		break;
	default:
		worker_broken(w, "sent a frame a worker must not send", FP_EPROTOCOL);
		break;
	}
}

/*
 * Whether to stop reading a worker: its item's outputs would go into a full
 * buffer. Never the last worker that is not paused, which may be the only
 * one left to drain that buffer.
 */
static bool must_pause(struct fp_worker *w)
{
	struct fp_group *g = w->group;
	struct fp_worker *o;

	if (!w->call || !w->call->ops->blocked || fp__worker_exited(w) || w->read_done ||
	    w->kill_reason != FP_KILL_NONE ||
	    !w->call->ops->blocked(w->call, w->segs[w->seg].hops))
		return false;
	for (o = g->workers; o; o = o->next)
		if (o != w && !o->paused && fp__worker_able(o))
			return true;
	return false;
}

static void pause_reading(struct fp_worker *w)
{
	w->paused = true;
	w->group->npaused++;
	if (fp_io_active(&w->rio) && !w->rpause) {
		/* Bytes that still arrive are kept in the reader, unread. */
		w->rpause = true;
		fp_io_read_pause(&w->rio);
	}
}

/* Handle the whole frames received, until there are none or it is paused. */
static void process_frames(struct fp_worker *w, uint64_t now)
{
	struct fp_frame_header h;
	char *payload;
	uint32_t count;
	int rc = 0;

	while (w->kill_reason != FP_KILL_PROTOCOL) {
		if (must_pause(w)) {
			pause_reading(w);
			return;
		}
		rc = fp_frame_reader_next_run(&w->reader, &h, &payload, answers_run_max(w),
					      &count);
		if (rc != 1)
			break;
		handle_frame(w, &h, payload, count, now);
	}
	if (rc < 0 && w->kill_reason != FP_KILL_PROTOCOL)
		worker_broken(w, "sent a bad frame", rc);
}

void fp__worker_read_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct fp_worker *w = io->data;
	struct fp_group *g = w->group;
	int rc;

	if (res > 0 && w->kill_reason != FP_KILL_PROTOCOL) {
		rc = fp_frame_reader_feed(&w->reader, buf, (size_t)res);
		if (rc < 0)
			worker_broken(w, "sent more than could be stored", rc);
		else if (!w->paused)
			/*
			 * One clock reading for all the answers that arrived
			 * together: a worker gathers answers only of tasks
			 * that took microseconds.
			 */
			process_frames(w, fp_now_ns());
	}
	if (!fp_io_active(io)) {
		if (res == -ECANCELED && w->rpause) {
			/* Our own pause, not the end of the stream. */
			w->rpause = false;
			if (!w->paused) {
				fp__worker_resume(w);
				fp__dispatch(g);
			}
			return;
		}
		/* The stream is over: what it sent is handled now, paused or not. */
		w->rpause = false;
		w->read_done = true;
		if (w->paused) {
			w->paused = false;
			g->npaused--;
		}
		process_frames(w, fp_now_ns());
		fp__worker_read_done(w);
		fp__dispatch(g);
		return;
	}
	fp__dispatch(g);
}

void fp__worker_resume(struct fp_worker *w)
{
	struct fp_group *g = w->group;
	int err;

	if (w->paused) {
		w->paused = false;
		g->npaused--;
	}
	process_frames(w, fp_now_ns());
	if (w->paused || w->rpause || w->read_done || fp_io_active(&w->rio))
		return;
	err = fp_io_read_start(g->loop, &w->rio, w->fd, fp__worker_read_cb);
	if (err) {
		fp_log_error(&g->log, "worker %u (pid %d): cannot read again: %s", w->slot,
			     (int)w->pid, fp_strerror(err));
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
		/* Nothing more will be read: its end is accounted when it is reaped. */
		fp__worker_read_done(w);
	}
}

static void resume_cb(fp_timer *t)
{
	struct fp_group *g = t->data;
	struct fp_worker *w, *next;

	for (w = g->workers; w && g->npaused; w = next) {
		next = w->next;
		if (w->paused && (!w->call || !w->call->ops->blocked ||
				  !w->call->ops->blocked(w->call, w->segs[w->seg].hops) ||
				  fp__worker_exited(w) || w->kill_reason != FP_KILL_NONE))
			fp__worker_resume(w);
	}
	fp__dispatch(g);
}

void fp__resume_later(struct fp_group *g)
{
	if (!fp_timer_active(&g->resume))
		fp_timer_start(g->loop, &g->resume, 0, resume_cb);
}
