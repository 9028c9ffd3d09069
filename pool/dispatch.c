/*
 * Dispatch: one FIFO queue, chunks to idle workers (and, for quick work while
 * none is idle, a busy worker's next chunk ahead), cut from the first
 * entry that may run (the head, unless a pipeline stage is held back by its
 * worker cap or a full buffer after it); results back in item order; what a
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

#include "mem.h"
#include "pool_impl.h"

/* A single argument larger than this is written from the call's memory. */
#define COPY_ARGS_MAX (64u * 1024)

/* --- the queue ----------------------------------------------------------- */

static int queue_grow(struct fp_queue *q)
{
	size_t cap = q->cap ? q->cap * 2 : 64, i;
	struct fp_qent *buf = malloc(cap * sizeof(*buf));

	if (!buf)
		return -ENOMEM;
	for (i = 0; i < q->len; i++)
		buf[i] = q->buf[(q->head + i) % q->cap];
	free(q->buf);
	q->buf = buf;
	q->cap = cap;
	q->head = 0;
	return 0;
}

static int queue_push_ent(struct fp_queue *q, const struct fp_qent *e, bool front)
{
	if (q->len == q->cap && queue_grow(q) < 0)
		return -ENOMEM;
	if (front) {
		q->head = (q->head + q->cap - 1) % q->cap;
		q->buf[q->head] = *e;
	} else {
		q->buf[(q->head + q->len) % q->cap] = *e;
	}
	q->len++;
	q->items += e->count;
	return 0;
}

int fp__queue_push(struct fp_queue *q, struct fp_call *call, uint32_t first,
		   uint32_t count, bool front)
{
	struct fp_qent e = { .call = call, .first = first, .count = count };

	if (!count)
		return 0;
	return queue_push_ent(q, &e, front);
}

static void queue_pop(struct fp_queue *q)
{
	q->items -= q->buf[q->head].count;
	q->head = (q->head + 1) % q->cap;
	q->len--;
}

/* Remove the (empty) entry at i, keeping the order of the rest. */
static void queue_remove(struct fp_queue *q, size_t i)
{
	/* Move the i entries before it one place on: O(i), as finding it was. */
	for (; i > 0; i--)
		*fp__queue_at(q, i) = *fp__queue_at(q, i - 1);
	q->head = (q->head + 1) % q->cap;
	q->len--;
}

void fp__queue_deinit(struct fp_queue *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

static void defer_cb(fp_timer *t)
{
	fp__deliver_failing(t->data);
	/* A pipeline may have work to queue after its items failed. */
	fp__dispatch(t->data);
}

int fp__fail_later(fp_pool *p, struct fp_call *call, uint32_t first,
		   uint32_t count, fp_item_status status, const char *why)
{
	struct fp_qent e = { call, first, count, status, why };
	int err = queue_push_ent(&p->failing, &e, false);

	if (!err && !fp_timer_active(&p->defer))
		err = fp_timer_start(p->loop, &p->defer, 0, defer_cb);
	return err;
}

void fp__queue_fail(fp_pool *p, struct fp_call *call, fp_item_status status,
		    const char *why)
{
	struct fp_queue *q = &p->queue;
	size_t i, kept = 0, len = q->len;

	/* Compact in place, keeping the order of what stays. */
	for (i = 0; i < len; i++) {
		struct fp_qent e = *fp__queue_at(q, i);
		if (!call || e.call == call) {
			/* Moving to another queue can only fail for memory; the
			 * item would then be lost, so keep it queued instead. */
			if (fp__fail_later(p, e.call, e.first, e.count, status, why) == 0) {
				q->items -= e.count;
				continue;
			}
		}
		*fp__queue_at(q, kept++) = e;
	}
	q->len = kept;
}

/* --- results ------------------------------------------------------------- */

const double fp_duration_bounds[FP_DURATION_BUCKETS] = {
	0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 60, 1e300,
};

static void count_duration(fp_pool *p, uint64_t us)
{
	unsigned i = 0;

	while (i < FP_DURATION_BUCKETS - 1 && (double)us > fp_duration_bounds[i] * 1e6)
		i++;
	p->duration_counts[i]++;
	p->duration_sum_us += us;
}

/* --- attempts and retries ------------------------------------------------ */

/*
 * How log lines name an item: "item 3 of job 5f3a…" with the caller's label,
 * "item 3 of call 14" without; a pipeline's by its input and stage.
 */
static void item_name(char *buf, size_t len, const struct fp_call *c, uint32_t index,
		      unsigned hop)
{
	const char *label = c->stage ? c->stage->pipe->label : c->label;
	char num[32];

	if (!label) {
		snprintf(num, sizeof(num), "call %llu", (unsigned long long)c->id);
		label = num;
	}
	if (c->stage)
		snprintf(buf, len, "item %u (stage %u) of %s", c->origin ? c->origin[index] : index,
			 c->stage->index + hop, label);
	else
		snprintf(buf, len, "item %u of %s", index, label);
}

/* An item was started: its run counts, whatever comes of it. */
static void count_start(struct fp_item *it)
{
	if (it->attempts < UINT16_MAX)
		it->attempts++;
}

/*
 * The retries an item of c has at stage `hop` of its chain: none past the
 * first task (a chain's later stages have none: pipeline.h), whose args
 * were a value only the worker had.
 */
static unsigned retries_at(const struct fp_call *c, unsigned hop)
{
	return hop ? 0 : c->retries;
}

/*
 * Whether an item of c that failed by `kind` (FP_RETRY_*) at stage `hop`,
 * its start counted, runs again: while it has been started at most
 * `retries` times, and not once it handed outputs on (they would be given
 * twice).
 */
static bool retry_wanted(const struct fp_call *c, const struct fp_item *it, unsigned kind,
			 unsigned hop)
{
	return (c->retry_on & kind) && !it->emitted && it->attempts <= retries_at(c, hop) &&
	       it->attempts < UINT16_MAX;
}

static const char *retry_kind_name(unsigned kind)
{
	return kind == FP_RETRY_TIMEOUT ? "timeout" : kind == FP_RETRY_CRASH ? "crash" : "task_error";
}

/*
 * "attempt 2 of 4", and why it is not run again when it had retries to
 * spare: what a failure's log line and message say of its attempts.
 */
static void attempt_note(char *buf, size_t len, const struct fp_call *c,
			 const struct fp_item *it, unsigned kind, unsigned hop, bool retry)
{
	unsigned retries = retries_at(c, hop);

	if (retry || it->attempts > retries || !retries)
		snprintf(buf, len, "attempt %u of %u%s", it->attempts, retries + 1,
			 retry ? ", retrying" : "");
	else if (it->emitted)
		snprintf(buf, len, "attempt %u, not retried: its outputs were handed on already",
			 it->attempts);
	else
		snprintf(buf, len, "attempt %u, not retried: retry_on has no %s", it->attempts,
			 retry_kind_name(kind));
}

/*
 * An item ended; a pipeline batch's at stage `hop` of its chain (the tasks
 * before it there ran, and count as done).
 */
static void item_deliver_tb(fp_pool *p, struct fp_call *call, uint32_t index,
			    fp_item_status status, const char *value, size_t len,
			    const char *msg, const char *traceback, pid_t pid,
			    uint64_t duration_us, unsigned hop)
{
	struct fp_result r = {
		.index = index,
		.status = status,
		.value = status == FP_ITEM_OK ? value : NULL,
		.value_len = status == FP_ITEM_OK ? len : 0,
		.message = status == FP_ITEM_OK ? NULL : msg,
		.attempts = call->items[index].attempts,
		.pid = pid,
		.duration_us = duration_us,
		.traceback = status == FP_ITEM_TASK_ERROR ? traceback : NULL,
	};

	p->done += hop;
	if (status == FP_ITEM_OK) {
		p->done++;
	} else {
		p->failed++;
		if (status == FP_ITEM_CANCELLED)
			p->ncancelled++;
	}
	if (call->stage) {
		/* Its outputs went to the pipeline already; this is its end. */
		fp__pipe_item_end(call, index, hop, status, msg, pid, duration_us);
		return;
	}
	call->finished++;
	if (status == FP_ITEM_OK)
		call->ok++;
	else
		call->failed++;
	/* Its start first, if the loop has not told it yet. */
	if (call->start.queued)
		fp__start_tell(p, &call->start, false);
	if (call->on_item)
		call->on_item(p->root, call->id, &r, call->data);
	fp__call_maybe_finish(call);
}

/* Every end but a task error's has no traceback. */
static void item_deliver(fp_pool *p, struct fp_call *call, uint32_t index,
			 fp_item_status status, const char *value, size_t len,
			 const char *msg, pid_t pid, uint64_t duration_us, unsigned hop)
{
	item_deliver_tb(p, call, index, status, value, len, msg, NULL, pid, duration_us, hop);
}

void fp__deliver_failing(fp_pool *p)
{
	struct fp_queue *q = &p->failing;
	struct fp_call *c, *next;

	fp_timer_stop(&p->defer);
	for (;;) {
		struct fp_qent e;

		/* Outputs gathered for a pipeline fail here too once the pool stops. */
		if (p->root->dirty)
			fp__pipe_flush(p->root);
		if (!q->len)
			break;
		e = q->buf[q->head];
		queue_pop(q);
		for (uint32_t i = 0; i < e.count; i++)
			item_deliver(p, e.call, e.first + i, e.status, NULL, 0, e.why, 0, 0, 0);
	}
	/* Calls with no items finish here too. */
	for (c = p->calls; c; c = next) {
		next = c->next;
		if (c->n == 0)
			fp__call_maybe_finish(c);
	}
}

/* --- sending chunks ------------------------------------------------------ */

static struct fp_worker *find_idle(fp_pool *p)
{
	struct fp_worker *w;

	for (w = p->workers; w; w = w->next)
		if (w->state == FP_WORKER_IDLE && !w->leaving && !w->reaped &&
		    !w->call && !fp_io_active(&w->wio) && !fp__worker_standby(w))
			return w;
	return NULL;
}

static char *put_task_header(char *dst, uint64_t id, const struct fp_call *call,
			     uint32_t args_len, bool last)
{
	struct fp_frame_header h;

	fp_frame_header_init(&h, FP_FRAME_TASK, id, call->name_len + 1 + args_len,
			     (call->stage ? FP_FRAME_STREAM : 0) | (last ? FP_FRAME_FLUSH : 0));
	memcpy(dst, &h, sizeof(h));
	dst += sizeof(h);
	memcpy(dst, call->task, call->name_len + 1);
	return dst + call->name_len + 1;
}

static void deadline_cb(fp_timer *t);

/*
 * The worker's chunk buffer is kept from one chunk to the next: a fresh
 * mapping per chunk would be faulted in and zeroed again every time.
 */
static int wbuf_reserve(struct fp_worker *w, size_t len)
{
	char *b;

	if (len <= w->wcap)
		return 0;
	b = fp_mem_alloc(len);
	if (!b)
		return -ENOMEM;
	fp_mem_free(w->wbuf);
	w->wbuf = b;
	w->wcap = len;
	return 0;
}

/*
 * The name a segment's TASKS frame carries: its task's, or for a chain its
 * stages' names, which lie one after the other, NUL-separated, in the
 * pipeline's name block (pipeline.c).
 */
static uint32_t seg_name_len(const struct fp_seg *g)
{
	uint32_t len = g->call->name_len;

	for (unsigned j = 1; j <= g->hops; j++)
		len += 1 + g->call->stage[j].name_len;
	return len;
}

/*
 * Whether a segment goes as one TASKS frame: two items or more, or a chain
 * (chunk.c made sure it fits), to a worker that reads them (an exec pool's
 * shim speaks per-item frames), within what the worker's reader takes.
 */
static bool seg_packed(const fp_pool *p, const struct fp_seg *g, size_t args_total)
{
	return (g->count >= 2 || g->hops) && !p->exec && g->call->name_len > 0 &&
	       fp_frame_tasks_len(g->count, seg_name_len(g), args_total) <= p->opts.max_payload;
}

static int send_chunk(struct fp_worker *w, const struct fp_seg *segs, uint32_t nsegs)
{
	fp_pool *p = w->pool;
	struct iovec iov[2];
	uint64_t base = p->next_frame_id, id = base, timeout, tasks = 0;
	size_t total = 0, i, args_total[FP_BATCH_MAX];
	uint32_t s, count = 0;
	int iovcnt = 1, err;
	char *dst;

	for (s = 0; s < nsegs; s++) {
		const struct fp_call *call = segs[s].call;

		args_total[s] = 0;
		for (i = 0; i < segs[s].count; i++)
			args_total[s] += call->items[segs[s].first + i].args_len;
		if (seg_packed(p, &segs[s], args_total[s]))
			total += FP_FRAME_HEADER_SIZE +
				 fp_frame_tasks_len(segs[s].count, seg_name_len(&segs[s]),
						    args_total[s]);
		else
			total += segs[s].count * (FP_FRAME_HEADER_SIZE + call->name_len + 1) +
				 args_total[s];
		count += segs[s].count;
	}

	if (count == 1 && !segs[0].hops &&
	    segs[0].call->items[segs[0].first].args_len > COPY_ARGS_MAX) {
		/* One big argument: send it from where it is. */
		struct fp_call *call = segs[0].call;
		struct fp_item *it = &call->items[segs[0].first];
		if (wbuf_reserve(w, FP_FRAME_HEADER_SIZE + call->name_len + 1))
			return -ENOMEM;
		dst = put_task_header(w->wbuf, base, call, it->args_len, true);
		iov[0] = (struct iovec){ w->wbuf, (size_t)(dst - w->wbuf) };
		iov[1] = (struct iovec){ (void *)it->args, it->args_len };
		iovcnt = 2;
	} else {
		if (wbuf_reserve(w, total))
			return -ENOMEM;
		dst = w->wbuf;
		for (s = 0; s < nsegs; s++) {
			const struct fp_call *call = segs[s].call;

			if (seg_packed(p, &segs[s], args_total[s])) {
				uint32_t name_len = seg_name_len(&segs[s]);

				dst = fp_frame_put_tasks(
					dst, id, segs[s].count, call->task, name_len,
					(uint32_t)fp_frame_tasks_len(segs[s].count, name_len,
								     args_total[s]),
					(call->stage ? FP_FRAME_STREAM : 0) |
						(s + 1 == nsegs ? FP_FRAME_FLUSH : 0),
					segs[s].hops);
				for (i = 0; i < segs[s].count; i++) {
					struct fp_item *it = &call->items[segs[s].first + i];
					dst = fp_frame_put_tasks_item(dst, it->args, it->args_len);
				}
				id += segs[s].count;
				continue;
			}
			for (i = 0; i < segs[s].count; i++) {
				struct fp_item *it = &call->items[segs[s].first + i];
				dst = put_task_header(dst, id, call, it->args_len,
						      id + 1 == base + count);
				id++;
				memcpy(dst, it->args, it->args_len);
				dst += it->args_len;
			}
		}
		iov[0] = (struct iovec){ w->wbuf, total };
	}

	err = fp_io_write(p->loop, &w->wio, w->fd, iov, iovcnt, fp__worker_write_cb);
	if (err)
		return err;
	p->next_frame_id += count;
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
	id = base;
	for (s = 0; s < nsegs; s++) {
		struct fp_pipe_stage *st = segs[s].call->stage;
		struct fp_seg *g = &w->segs[w->nsegs + s];

		/* Handed to a worker: the call has started (attempts count at the item's start). */
		if (st && !st->pipe->start.started)
			fp__start_note(p, &st->pipe->start);
		else if (!st && !segs[s].call->start.started)
			fp__start_note(p, &segs[s].call->start);
		*g = segs[s];
		g->id0 = id;
		g->chunk_end = s + 1 == nsegs;
		id += segs[s].count;
		/* A batch's chunk is its only segment (chunk.c): one worker more. */
		if (st) {
			st->nworkers++;
			st->st.running += segs[s].count;
			fp__pipe_chain_sent(segs[s].call, segs[s].hops, segs[s].count);
		}
		tasks += (uint64_t)segs[s].count * (1u + segs[s].hops);
	}
	w->nsegs += nsegs;
	w->call = w->segs[w->seg].call;
	w->count += count;
	w->nchunks++;
	if (w->nchunks == 1) {
		w->mark_ns = fp_now_ns();
		timeout = fp__chunk_timeout_ms(w);
		if (timeout)
			fp_timer_start(p->loop, &w->deadline, timeout, deadline_cb);
	} else if (!fp_timer_active(&w->deadline) && (timeout = fp__chunk_timeout_ms(w))) {
		/*
		 * The chunk it runs has no timeout; this one's items start
		 * later than now. A running timer is left alone: a prefetched
		 * chunk's timeout is never shorter than its period
		 * (may_prefetch()), and deadline_cb() times each item by its own.
		 */
		fp_timer_start(p->loop, &w->deadline, timeout, deadline_cb);
	}
	w->state = FP_WORKER_BUSY;
	w->tasks_dispatched += tasks;
	if (w->tasks_limit && w->tasks_dispatched >= w->tasks_limit) {
		/* Its last chunk: the successor takes over now, so capacity holds. */
		w->leaving = true;
		fp__spawn_successor(w);
		/* The standby takes over: its own is due now if its budget is small. */
		if (w->successor && w->successor->ready)
			fp__spawn_standby(w->successor);
	} else {
		fp__spawn_standby(w);
	}
	return 0;
}

/* The segments are the queue entries from `at` on, in order: take them off. */
static void queue_take(fp_pool *p, size_t at, const struct fp_seg *segs, uint32_t n)
{
	for (uint32_t s = 0; s < n; s++) {
		struct fp_qent *e = fp__queue_at(&p->queue, at);
		e->first += segs[s].count;
		e->count -= segs[s].count;
		p->queue.items -= segs[s].count;
		if (!e->count)
			queue_remove(&p->queue, at);
	}
}

/*
 * Whether segments may be held ahead, or have a chunk held behind them: not
 * those of a capped pipeline stage (a chunk waiting on a worker would hold
 * one of its few places) nor of a generator's stage (its worker may be
 * paused by back-pressure, and a chunk behind the paused item would wait
 * with it).
 */
static bool segs_may_queue(const struct fp_seg *segs, uint32_t n)
{
	for (uint32_t s = 0; s < n; s++) {
		const struct fp_pipe_stage *st = segs[s].call->stage;

		if (st && (st->cap || st->generator))
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
static bool may_prefetch(fp_pool *p, const struct fp_worker *w)
{
	return w->state == FP_WORKER_BUSY && w->call && w->nchunks == 1 && !w->leaving &&
	       !w->reaped && !w->read_done && !w->paused && !w->rpause && !w->quit_sent &&
	       w->kill_reason == FP_KILL_NONE && !fp_io_active(&w->wio) && !p->exec &&
	       fp__chunk_quick(p, w->segs + w->seg, w->nsegs - w->seg) &&
	       segs_may_queue(w->segs + w->seg, w->nsegs - w->seg);
}

/*
 * Whether the planned chunk may wait behind what w runs: small and quick,
 * and no item of it with a shorter timeout than w's timer period (a running
 * timer is not rearmed for it; see send_chunk()).
 */
static bool prefetch_fits(fp_pool *p, const struct fp_worker *w, const struct fp_seg *segs,
			  uint32_t n)
{
	uint64_t period = fp__chunk_timeout_ms(w);
	size_t items = 0;

	if (!fp__chunk_quick(p, segs, n) || !segs_may_queue(segs, n))
		return false;
	for (uint32_t s = 0; s < n; s++) {
		uint64_t t = segs[s].call->timeout_ms;

		items += segs[s].count;
		if (t && period && t < period)
			return false;
	}
	return items <= FP_PREFETCH_ITEMS_MAX;
}

/*
 * A pipeline's stage ran items from this pool: room in the buffer before
 * it may let a paused worker go on, or a stage held back for that buffer
 * run, in this pool or, when stages run in exec pools, in another of the
 * family. Each is looked at again from the loop.
 */
static void stage_taken(fp_pool *p)
{
	fp_pool *root = p->root;

	if (p->npaused)
		fp__resume_later(p);
	for (unsigned i = 0; i < root->nchildren + 1u && root->nchildren; i++) {
		fp_pool *q = i ? root->children[i - 1] : root;

		if (q != p && (q->npaused || q->queue.len))
			fp__resume_later(q);
	}
}

static void dispatch_pool(fp_pool *p)
{
	struct fp_seg segs[FP_BATCH_MAX];
	struct fp_worker *w;
	size_t at;
	uint32_t n;
	int err;

	if (p->state != FP_POOL_RUNNING)
		return;
	/* No worker will start to run them (spawn.c): they end now, saying why. */
	if (p->unavailable && p->queue.len)
		fp__queue_fail(p, NULL, FP_ITEM_START_FAILURE, p->start_error);
	while (p->queue.len && (w = find_idle(p))) {
		n = fp__chunk_plan(p, w, segs, &at);
		if (!n)
			return;    /* all that is queued is held back */
		err = send_chunk(w, segs, n);
		if (err) {
			fp_log_error(&p->log, "cannot send work to worker %u: %s",
				     w->slot, fp_strerror(err));
			fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
			continue;
		}
		if (segs[0].call->stage)
			stage_taken(p);
		queue_take(p, at, segs, n);
	}
	/*
	 * No worker is idle: busy ones running quick work may take their next
	 * chunk, while the queue is long. An item that turns out slow holds
	 * back the chunk behind it; with a short queue that could be most of
	 * what is left (a worker coming free finds nothing, the slow worker
	 * holds the rest), with a long one every worker stays busy anyway.
	 */
	if (p->queue.items < FP_PREFETCH_BACKLOG)
		return;
	for (w = p->workers; w && p->queue.len; w = w->next) {
		if (!may_prefetch(p, w))
			continue;
		n = fp__chunk_plan(p, w, segs, &at);
		if (!n)
			return;
		if (!prefetch_fits(p, w, segs, n) || send_chunk(w, segs, n) < 0)
			/* Not sent: it waits in the queue for a worker to come free. */
			continue;
		if (segs[0].call->stage)
			stage_taken(p);
		queue_take(p, at, segs, n);
	}
}

void fp__dispatch(fp_pool *p)
{
	fp_pool *root = p->root;

	if (p->state != FP_POOL_RUNNING)
		return;
	/*
	 * Pipelines are the root's, and their batches may go to any pool of
	 * the family (exec stages): queue what they gathered this turn, and
	 * then the others get their share too.
	 */
	if (root->dirty) {
		fp__pipe_flush(root);
		for (unsigned i = 0; i < root->nchildren + 1u && root->nchildren; i++) {
			fp_pool *q = i ? root->children[i - 1] : root;

			if (q != p && q->queue.len)
				dispatch_pool(q);
		}
	}
	dispatch_pool(p);
}

void fp__worker_write_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct fp_worker *w = io->data;
	fp_pool *p = w->pool;

	if (res < 0 && !w->reaped && w->kill_reason == FP_KILL_NONE && !w->quit_sent) {
		/* A live worker that cannot be written to is of no use. */
		fp_log_warn(&p->log, "worker %u (pid %d): write failed: %s", w->slot,
			    (int)w->pid, fp_strerror((int)res));
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
	}
	if (w->reaped)
		fp__worker_maybe_free(w);
	else
		fp__dispatch(p);
}

/* --- timeouts ------------------------------------------------------------ */

static void deadline_cb(fp_timer *t)
{
	struct fp_worker *w = t->data;
	fp_pool *p = w->pool;
	struct fp_call *c;
	uint64_t cur, started, limit_ns, now, period;
	uint32_t index;
	unsigned hop;
	char name[160];

	if (w->reaped)
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
		fp_timer_start(p->loop, t, period, deadline_cb);
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
		fp_timer_start(p->loop, t, period, deadline_cb);
		return;
	}
	/* The start may be stamped early by up to the slack: never time out early. */
	limit_ns = c->timeout_ms * 1000000u +
		   atomic_load_explicit(&w->shm->started_slack_ns, memory_order_relaxed);
	if (now < started + limit_ns) {
		/* Its end, or sooner: an item behind it may have a shorter timeout. */
		uint64_t ms = (started + limit_ns - now) / 1000000u + 1;
		fp_timer_start(p->loop, t, ms < period ? ms : period, deadline_cb);
		return;
	}
	item_name(name, sizeof(name), c, index, hop);
	fp_log_warn(&p->log, "worker %u (pid %d): task %s ran past its %llu ms timeout; "
		    "stopping it (%s)", w->slot, (int)w->pid, fp__item_task(c, hop),
		    (unsigned long long)c->timeout_ms, name);
	fp__worker_kill(w, SIGTERM, FP_KILL_TIMEOUT);
	fp_timer_start(p->loop, t, p->opts.kill_grace_ms, deadline_cb);
}

/* --- frames from a worker ------------------------------------------------ */

static void worker_broken(struct fp_worker *w, const char *what, int err)
{
	fp_log_error(&w->pool->log, "worker %u (pid %d) %s: %s; killing it", w->slot,
		     (int)w->pid, what, fp_strerror(err));
	fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
}

/* Who answered: an exec worker's program, else the worker itself. */
static pid_t answer_pid(const struct fp_worker *w)
{
	int32_t prog = atomic_load_explicit(&w->shm->program_pid, memory_order_relaxed);

	return prog > 0 ? (pid_t)prog : w->pid;
}

static void requeue(fp_pool *p, struct fp_call *call, uint32_t first, uint32_t count);

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
	fp_pool *p = w->pool;
	struct fp_item *it = &call->items[index];
	bool retry = p->state == FP_POOL_RUNNING && !call->cancelled &&
		     retry_wanted(call, it, FP_RETRY_TASK_ERROR, hop);
	char name[160], note[128], *full = NULL;

	attempt_note(note, sizeof(note), call, it, FP_RETRY_TASK_ERROR, hop, retry);
	if (retry) {
		item_name(name, sizeof(name), call, index, hop);
		fp_log_info(&p->log, "worker %u (pid %d): task %s failed (%s, %s): %.200s",
			    w->slot, (int)w->pid, fp__item_task(call, hop), name, note, msg);
	}
	if (call->stage) {
		/* Only now: while it runs, its output is not yet counted waiting. */
		call->stage->st.running--;
		/* A retry waits at the chain's first stage again; else it ends where it failed. */
		if (hops)
			fp__pipe_chain_ended(call, hops, retry ? 0 : hop, 1);
	}
	if (retry) {
		requeue(p, call, index, 1);
		if (call->stage)
			fp__pipe_note_waiting(call->stage, 0);
		return;
	}
	if ((it->attempts > 1 || retries_at(call, hop)) &&
	    (full = malloc(strlen(msg) + strlen(note) + 4)))
		sprintf(full, "%s (%s)", msg, note);
	item_deliver_tb(p, call, index, FP_ITEM_TASK_ERROR, NULL, 0, full ? full : msg, tb,
			answer_pid(w), us, hop);
	free(full);
}

static void handle_result(struct fp_worker *w, const struct fp_frame_header *h,
			  const char *payload, uint64_t now)
{
	fp_pool *p = w->pool;
	struct fp_call *call = w->call;
	uint32_t index;
	fp_item_status status;
	unsigned hops, hop = h->hop;
	bool seg_end;
	uint64_t us;

	if (!call || h->id != w->segs[w->seg].id0 + w->seg_acked) {
		worker_broken(w, "answered an item it was not given", FP_EPROTOCOL);
		return;
	}
	hops = w->segs[w->seg].hops;
	if (hop > hops) {
		worker_broken(w, "answered from past the end of its chain", FP_EPROTOCOL);
		return;
	}
	index = w->segs[w->seg].first + w->seg_acked++;
	w->acked++;
	/* It ran: its answer is the proof. */
	count_start(&call->items[index]);
	seg_end = w->seg_acked == w->segs[w->seg].count;
	if (seg_end) {
		const struct fp_seg *g = &w->segs[w->seg];

		/* A batch's chunk is its only segment: its stage has one worker less. */
		if (call->stage)
			call->stage->nworkers--;
		if (g->chunk_end)
			w->nchunks--;
		if (w->seg + 1 < w->nsegs) {
			w->seg++;
			w->seg_acked = 0;
			w->call = w->segs[w->seg].call;
		}
	}
	w->tasks_done += 1u + hops;
	us = now > w->mark_ns ? (now - w->mark_ns) / 1000u : 0;
	w->mark_ns = now;
	count_duration(p, us);
	/*
	 * A chain's time goes to each of its tasks: for quick ones once a
	 * segment (they ran together; it is their average anyway), a slow one
	 * at once.
	 */
	if (hops && (seg_end || (h->flags >> FP_FRAME_US_SHIFT) / (hops + 1u) > FP_BATCH_QUICK_US))
		fp__pipe_chain_us_record(call, hops, h->flags >> FP_FRAME_US_SHIFT);
	else if (!hops)
		fp__task_us_record(p, call, h->flags >> FP_FRAME_US_SHIFT);
	if (h->rss_kib)
		w->rss_kib = h->rss_kib;
	if (w->acked == w->count) {
		w->call = NULL;
		if (w->kill_reason == FP_KILL_NONE) {
			fp_timer_stop(&w->deadline);
			w->state = w->leaving ? FP_WORKER_RETIRING : FP_WORKER_IDLE;
		}
	}
	if (h->flags & FP_FRAME_RETIRE) {
		p->recycles++;
		if (w->state != FP_WORKER_STOPPING)
			w->state = FP_WORKER_RETIRING;
		w->leaving = true;
		/* One line per worker event: operators grep these for "recycled". */
		if (w->tasks_limit && w->tasks_done >= w->tasks_limit)
			fp_log_info(&p->log, "worker %u (pid %d) recycled: %llu tasks done (max %llu)",
				    w->slot, (int)w->pid, (unsigned long long)w->tasks_done,
				    (unsigned long long)w->tasks_limit);
		else
			fp_log_info(&p->log, "worker %u (pid %d) recycled: rss %zu MiB over the %zu MiB limit",
				    w->slot, (int)w->pid, w->rss_kib / 1024,
				    p->opts.max_rss_bytes >> 20);
		fp__spawn_successor(w);
	}

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
	if (call->stage) {
		/* A stage's RESULT carries its last output, unless it says it has none. */
		if (status == FP_ITEM_OK && !(h->flags & FP_FRAME_NOVALUE))
			fp__pipe_output(call, index, hop, payload, h->len, answer_pid(w),
					call->items[index].attempts);
		/* Only now: while it runs, its output is not yet counted waiting. */
		call->stage->st.running--;
		if (hops)
			fp__pipe_chain_ended(call, hops, hop, 1);
	}
	item_deliver(p, call, index, status, payload, h->len, payload, answer_pid(w), us, hop);
}

static void handle_emit(struct fp_worker *w, const struct fp_frame_header *h,
			const char *payload)
{
	struct fp_call *call = w->call;
	uint32_t index;

	/* Outputs of the item it is running, and only in a pipeline. */
	if (!call || !call->stage || h->id != w->segs[w->seg].id0 + w->seg_acked ||
	    h->hop > w->segs[w->seg].hops) {
		worker_broken(w, "emitted an output for an item it is not running",
			      FP_EPROTOCOL);
		return;
	}
	/* A task that emits without being declared a generator is never fused again. */
	call->stage[h->hop].emits = true;
	index = w->segs[w->seg].first + w->seg_acked;
	/* Handed on: a retry would hand them on twice. */
	call->items[index].emitted = true;
	/* It runs now; its start is counted when it ends. */
	fp__pipe_output(call, index, h->hop, payload, h->len, answer_pid(w),
			call->items[index].attempts + 1u);
}

static void handle_frame(struct fp_worker *w, const struct fp_frame_header *h,
			 const char *payload, uint64_t now)
{
	fp_pool *p = w->pool;

	switch (h->type) {
	case FP_FRAME_READY:
		/* An exec worker's READY lists the tasks its program announced. */
		if (p->exec && fp__exec_set_tasks(p->exec, payload, h->len) < 0) {
			worker_broken(w, "said ready without a task list", FP_EPROTOCOL);
			break;
		}
		w->ready = true;
		fp__worker_ready(w);
		w->rss_kib = h->rss_kib;
		p->start_failures = 0;
		p->slots[w->slot].start_failures = 0;
		if (w->state == FP_WORKER_STARTING)
			w->state = FP_WORKER_IDLE;
		/* It wrote its pid first thing: known now, whatever its zygote says. */
		fp__worker_learn_pid(w);
		if (p->state != FP_POOL_RUNNING)
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
	fp_pool *p = w->pool;
	struct fp_worker *o;

	if (!w->call || !w->call->stage || w->reaped || w->read_done ||
	    w->kill_reason != FP_KILL_NONE || !fp__pipe_blocked(w->call, w->segs[w->seg].hops))
		return false;
	for (o = p->workers; o; o = o->next)
		if (o != w && !o->paused && fp__worker_able(o))
			return true;
	return false;
}

static void pause_reading(struct fp_worker *w)
{
	w->paused = true;
	w->pool->npaused++;
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
	const char *payload;
	int rc = 0;

	while (w->kill_reason != FP_KILL_PROTOCOL) {
		if (must_pause(w)) {
			pause_reading(w);
			return;
		}
		rc = fp_frame_reader_next(&w->reader, &h, &payload);
		if (rc != 1)
			break;
		handle_frame(w, &h, payload, now);
	}
	if (rc < 0 && w->kill_reason != FP_KILL_PROTOCOL)
		worker_broken(w, "sent a bad frame", rc);
}

void fp__worker_read_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct fp_worker *w = io->data;
	fp_pool *p = w->pool;
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
				fp__dispatch(p);
			}
			return;
		}
		/* The stream is over: what it sent is handled now, paused or not. */
		w->rpause = false;
		w->read_done = true;
		if (w->paused) {
			w->paused = false;
			p->npaused--;
		}
		process_frames(w, fp_now_ns());
		fp__worker_read_done(w);
		fp__dispatch(p);
		return;
	}
	fp__dispatch(p);
}

void fp__worker_resume(struct fp_worker *w)
{
	fp_pool *p = w->pool;
	int err;

	if (w->paused) {
		w->paused = false;
		p->npaused--;
	}
	process_frames(w, fp_now_ns());
	if (w->paused || w->rpause || w->read_done || fp_io_active(&w->rio))
		return;
	err = fp_io_read_start(p->loop, &w->rio, w->fd, fp__worker_read_cb);
	if (err) {
		fp_log_error(&p->log, "worker %u (pid %d): cannot read again: %s", w->slot,
			     (int)w->pid, fp_strerror(err));
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
		/* Nothing more will be read: its end is accounted when it is reaped. */
		fp__worker_read_done(w);
	}
}

static void resume_cb(fp_timer *t)
{
	fp_pool *p = t->data;
	struct fp_worker *w, *next;

	for (w = p->workers; w && p->npaused; w = next) {
		next = w->next;
		if (w->paused && (!w->call || !fp__pipe_blocked(w->call, w->segs[w->seg].hops) ||
				  w->reaped || w->kill_reason != FP_KILL_NONE))
			fp__worker_resume(w);
	}
	fp__dispatch(p);
}

void fp__resume_later(fp_pool *p)
{
	if (!fp_timer_active(&p->resume))
		fp_timer_start(p->loop, &p->resume, 0, resume_cb);
}

/* --- a worker has gone --------------------------------------------------- */

static void requeue(fp_pool *p, struct fp_call *call, uint32_t first, uint32_t count)
{
	if (fp__queue_push(&p->queue, call, first, count, true) < 0) {
		/* Out of memory for the queue: failing beats losing them. */
		for (uint32_t i = 0; i < count; i++)
			item_deliver(p, call, first + i, FP_ITEM_CRASH, NULL, 0,
				     "could not requeue the item: out of memory", 0, 0, 0);
	}
}

/*
 * Items [from, from + count) of `call` that a dead worker left unfinished
 * and that nothing blames: cancelled with their call or the pool, else run
 * again. `requeue` says which of the two this pass does, so that the caller
 * can fail in chunk order and requeue from the back (each push goes to the
 * head, so the queue ends up in chunk order).
 */
static void leftover(fp_pool *p, struct fp_worker *w, struct fp_call *call, uint32_t from,
		     uint32_t count, bool requeue_pass)
{
	bool cancel = call->cancelled || w->kill_reason == FP_KILL_SHUTDOWN ||
		      p->state != FP_POOL_RUNNING;

	if (!count || cancel == requeue_pass)
		return;
	if (!cancel)
		requeue(p, call, from, count);
	else if (call->cancelled)
		fp__fail_later(p, call, from, count, FP_ITEM_CANCELLED, "cancelled");
	else
		fp__fail_later(p, call, from, count, FP_ITEM_CANCELLED,
			       "cancelled: the pool shut down before the item finished");
}

void fp__worker_account_exit(struct fp_worker *w)
{
	fp_pool *p = w->pool;
	struct fp_call *call, *blamed;
	uint32_t run = 0, pass;
	unsigned hop = 0, kind = 0;
	uint64_t cur;
	uint32_t fate;
	fp_item_status status = FP_ITEM_CRASH;
	char how[256], msg[512], name[160], note[128];
	bool crashed, retry = false;

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
		p->crashes++;
	if (w->kill_reason == FP_KILL_TIMEOUT)
		p->timeouts++;

	if (!w->call || w->acked >= w->count) {
		if (crashed && w->ready)
			fp_log_warn(&p->log, "worker %u (pid %d) %s between tasks",
				    w->slot, (int)w->pid, how);
		else
			fp_log_debug(&p->log, "worker %u (pid %d) %s", w->slot, (int)w->pid, how);
		w->call = NULL;
		w->nchunks = 0;
		return;
	}

	/*
	 * The item the shared page names is to blame, unless its call was
	 * cancelled, the pool is going, or it was killed for another call's
	 * cancel (a chunk can hold several calls): those only end or go back.
	 * In a chain, the page also says which stage's task it was in: the
	 * item ends there, with no retry past the chain's first (fusion
	 * leaves out stages with retries: pipeline.h).
	 */
	cur = atomic_load_explicit(&w->shm->current, memory_order_acquire);
	blamed = fp__worker_item(w, cur, &run, &hop);
	/* Started, blamed or not: a run killed for another call's cancel was one too. */
	if (blamed)
		count_start(&blamed->items[run]);
	if (blamed && (blamed->cancelled || w->kill_reason == FP_KILL_SHUTDOWN ||
		       w->kill_reason == FP_KILL_CANCEL || p->state != FP_POOL_RUNNING))
		blamed = NULL;
	if (!blamed && crashed && p->state == FP_POOL_RUNNING)
		/*
		 * It died between two items (told to quit, or killed from
		 * outside at that moment): no item is to blame. Results it
		 * had gathered but not sent are lost, so those run again.
		 */
		fp_log_warn(&p->log, "worker %u (pid %d) %s between tasks; "
			    "requeueing %u items", w->slot, (int)w->pid, how, w->count - w->acked);
	if (blamed) {
		status = w->kill_reason == FP_KILL_TIMEOUT ? FP_ITEM_TIMEOUT :
			 fate ? (fp_item_status)fate : FP_ITEM_CRASH;
		/* An exec program's bad line or oversized answer ended it too: a crash. */
		kind = status == FP_ITEM_TIMEOUT ? FP_RETRY_TIMEOUT : FP_RETRY_CRASH;
		retry = retry_wanted(blamed, &blamed->items[run], kind, hop);
	}

	/* A pipeline stage's items leave its workers: they wait or end now. */
	for (uint32_t k = w->seg; k < w->nsegs; k++) {
		struct fp_seg *g = &w->segs[k];
		uint32_t from = g->first + (k == w->seg ? w->seg_acked : 0);
		uint32_t left = g->first + g->count - from, ends = 0;

		if (!g->call->stage)
			continue;
		g->call->stage->nworkers--;
		g->call->stage->st.running -= left;
		if (!g->hops)
			continue;
		/* The blamed item ends where it died; the rest never ran their chain. */
		if (g->call == blamed && !retry && run >= from && run < from + left)
			ends = 1;
		fp__pipe_chain_ended(g->call, g->hops, 0, left - ends);
		if (ends)
			fp__pipe_chain_ended(g->call, g->hops, hop, 1);
	}
	if (blamed) {
		const char *task = fp__item_task(blamed, hop);

		if (status == FP_ITEM_TIMEOUT && fate)
			snprintf(msg, sizeof(msg), "task %s ran past its %llu ms timeout (%s)",
				 task, (unsigned long long)blamed->timeout_ms, how);
		else if (status == FP_ITEM_TIMEOUT)
			snprintf(msg, sizeof(msg), "task %s ran past its %llu ms timeout (worker pid %d %s)",
				 task, (unsigned long long)blamed->timeout_ms, (int)w->pid, how);
		else if (fate)
			snprintf(msg, sizeof(msg), "%s while running task %s", how, task);
		else
			snprintf(msg, sizeof(msg), "worker pid %d %s while running task %s",
				 (int)w->pid, how, task);
		item_name(name, sizeof(name), blamed, run, hop);
		attempt_note(note, sizeof(note), blamed, &blamed->items[run], kind, hop, retry);
		fp_log_warn(&p->log, "worker %u: %s (%s, %s)", w->slot, msg, name, note);
		/* A task that crashes or overruns is not one to share a chunk. */
		if (blamed->stage)
			fp__task_ix_us_record(blamed->stage[hop].pool, blamed->reg_gen,
					      blamed->stage[hop].task_ix, FP_FRAME_US_MAX);
		else
			fp__task_us_record(p, blamed, FP_FRAME_US_MAX);
	}

	/*
	 * Pass 0 fails what ends with a cancel, in chunk order; pass 1 requeues
	 * the rest from the back. The blamed item, with retries left, goes
	 * back first in line with the rest of its segment behind it; without,
	 * the rest of its segment and then what came before it run again.
	 */
	for (pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < w->nsegs - w->seg; k++) {
			struct fp_seg *g = &w->segs[pass ? w->nsegs - 1 - k : w->seg + k];
			uint32_t from = g->first + (g == &w->segs[w->seg] ? w->seg_acked : 0);
			uint32_t end = g->first + g->count;

			call = g->call;
			if (call != blamed || run < from || run >= end) {
				leftover(p, w, call, from, end - from, pass == 1);
			} else if (pass == 1 && retry) {
				requeue(p, call, from, end - from);
			} else if (pass == 1) {
				requeue(p, call, run + 1, end - run - 1);
				requeue(p, call, from, run - from);
			}
		}
	}
	for (uint32_t k = w->seg; k < w->nsegs; k++) {
		struct fp_seg *g = &w->segs[k];

		if (g->call->stage)
			fp__pipe_note_waiting(g->call->stage,
					      g->call == blamed && !retry ? 1 : 0);
	}
	w->call = NULL;
	w->nchunks = 0;
	if (blamed && !retry) {
		/* Which attempt, when it had retries to spend. */
		if (blamed->items[run].attempts > 1 || retries_at(blamed, hop)) {
			size_t l = strlen(msg);
			snprintf(msg + l, sizeof(msg) - l, " (%s)", note);
		}
		item_deliver(p, blamed, run, status, NULL, 0, msg, answer_pid(w),
			     (fp_now_ns() - atomic_load(&w->shm->started_ns)) / 1000u, hop);
	}
}
