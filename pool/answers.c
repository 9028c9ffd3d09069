/*
 * Answers from a worker, in the master: its frames read and checked
 * against what it holds (results back in item order, or the worker is
 * killed), results handed to their calls one by one or a run at a time,
 * outputs (EMIT), task errors, its durations counted; and reading paused
 * while an item's outputs would go into a full buffer (back-pressure),
 * resumed from the loop. Chunks go out from dispatch.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
