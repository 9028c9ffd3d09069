/*
 * Input order for a pipeline's results (fp_pipeline_options.ordered).
 *
 * An input is finished when no item that came from it is left in any stage:
 * pending[i] counts them (its stage-0 item, plus one per output given to a
 * next stage, minus one per item that ended). Results of the oldest
 * unfinished input go out at once; those of later inputs are held back, in
 * one list per input, until every input before theirs has finished.
 *
 * The bound: stage 0 starts no input more than `window` places past the
 * oldest unfinished one, so what is held back is the results of at most
 * `window` inputs. (A generator's results for one input are as many as it
 * emits: the window bounds inputs, not outputs.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "forkpool/loop.h"
#include "pipeline_impl.h"

#define NONE UINT32_MAX

struct held {
	uint32_t next;             /* next held result of the same input */
	uint32_t index;
	unsigned stage;
	fp_item_status status;
	pid_t pid;
	unsigned attempts;
	uint64_t duration_us;
	size_t off, len;           /* the value or message, in text */
};

struct fp_pipe_order {
	size_t n, window, next_input;
	uint32_t *pending;
	uint32_t *head, *tail;     /* per input: its held results */
	struct held *recs;
	size_t nrecs, cap, live;   /* live: held and not yet delivered */
	char *text;
	size_t tlen, tcap;
};

int fp__order_new(struct fp_pipe *pipe, size_t n, size_t window)
{
	struct fp_pipe_order *o = calloc(1, sizeof(*o));
	size_t i;

	if (!o)
		return -ENOMEM;
	o->n = n;
	o->window = window ? window : 1;
	o->pending = fp_mem_alloc((n ? n : 1) * sizeof(uint32_t));
	o->head = fp_mem_alloc((n ? n : 1) * sizeof(uint32_t));
	o->tail = fp_mem_alloc((n ? n : 1) * sizeof(uint32_t));
	if (!o->pending || !o->head || !o->tail) {
		pipe->order = o;
		fp__order_free(pipe);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		o->pending[i] = 1;     /* its stage-0 item */
		o->head[i] = NONE;
		o->tail[i] = NONE;
	}
	pipe->order = o;
	return 0;
}

void fp__order_free(struct fp_pipe *pipe)
{
	struct fp_pipe_order *o = pipe->order;

	if (!o)
		return;
	fp_mem_free(o->pending);
	fp_mem_free(o->head);
	fp_mem_free(o->tail);
	free(o->recs);
	free(o->text);
	free(o);
	pipe->order = NULL;
}

void fp__order_begin(struct fp_pipe *pipe, uint32_t i)
{
	if (pipe->order && i < pipe->order->n)
		pipe->order->pending[i]++;
}

static void release(struct fp_pipe *pipe, uint32_t i)
{
	struct fp_pipe_order *o = pipe->order;
	uint32_t k = o->head[i];

	o->head[i] = o->tail[i] = NONE;
	while (k != NONE) {
		struct held *h = &o->recs[k];
		const char *t = o->text + h->off;
		struct fp_result r = {
			.index = h->index,
			.status = h->status,
			.value = h->status == FP_ITEM_OK ? t : NULL,
			.value_len = h->status == FP_ITEM_OK ? h->len : 0,
			.message = h->status == FP_ITEM_OK ? NULL : t,
			.attempts = h->attempts,
			.pid = h->pid,
			.duration_us = h->duration_us,
			.stage = h->stage,
		};

		k = h->next;
		o->live--;
		/* The callback may hold nothing new for input i: it is the oldest now. */
		fp__pipe_deliver(pipe, &r);
		o = pipe->order;
	}
	if (!o->live) {
		/* Everything held went out: start the buffers over. */
		o->nrecs = 0;
		o->tlen = 0;
	}
}

void fp__order_end(struct fp_pipe *pipe, uint32_t i)
{
	struct fp_pipe_order *o = pipe->order;

	if (!o || i >= o->n)
		return;
	if (--o->pending[i] || i != o->next_input)
		return;
	while (o->next_input < o->n && o->pending[o->next_input] == 0) {
		/* Its results went out already: it was the oldest unfinished one. */
		fp__pipe_input_done(pipe, (uint32_t)o->next_input);
		o->next_input++;
		if (o->next_input < o->n)
			release(pipe, (uint32_t)o->next_input);
	}
}

int fp__order_hold(struct fp_pipe *pipe, const struct fp_result *r)
{
	struct fp_pipe_order *o = pipe->order;
	const char *t = r->status == FP_ITEM_OK ? r->value : r->message;
	size_t len = r->status == FP_ITEM_OK ? r->value_len : (t ? strlen(t) : 0);
	struct held *h;

	if (!o || r->index >= o->n || r->index == o->next_input || pipe->finishing)
		return 0;
	if (o->nrecs == o->cap || o->nrecs >= NONE) {
		size_t cap = o->cap ? o->cap * 2 : 256;
		struct held *recs = o->nrecs < NONE ? realloc(o->recs, cap * sizeof(*recs)) : NULL;

		if (!recs)
			return 0;   /* out of order beats lost */
		o->recs = recs;
		o->cap = cap;
	}
	if (o->tcap - o->tlen < len + 1) {
		size_t cap = o->tcap ? o->tcap * 2 : 4096;
		char *text;

		while (cap - o->tlen < len + 1)
			cap *= 2;
		text = realloc(o->text, cap);
		if (!text)
			return 0;
		o->text = text;
		o->tcap = cap;
	}
	memcpy(o->text + o->tlen, t ? t : "", len);
	o->text[o->tlen + len] = '\0';
	h = &o->recs[o->nrecs];
	*h = (struct held){
		.next = NONE, .index = (uint32_t)r->index, .stage = r->stage,
		.status = r->status, .pid = r->pid, .attempts = r->attempts,
		.duration_us = r->duration_us, .off = o->tlen, .len = len,
	};
	o->tlen += len + 1;
	if (o->tail[r->index] == NONE)
		o->head[r->index] = (uint32_t)o->nrecs;
	else
		o->recs[o->tail[r->index]].next = (uint32_t)o->nrecs;
	o->tail[r->index] = (uint32_t)o->nrecs;
	o->nrecs++;
	o->live++;
	return 1;
}

void fp__order_release_all(struct fp_pipe *pipe)
{
	struct fp_pipe_order *o = pipe->order;
	size_t i;

	if (!o)
		return;
	for (i = o->next_input; i < o->n && pipe->order; i++)
		if (o->head[i] != NONE)
			release(pipe, (uint32_t)i);
}

size_t fp__order_room(const struct fp_pipe *pipe, uint32_t first, size_t want)
{
	const struct fp_pipe_order *o = pipe->order;
	size_t lim;

	if (!o)
		return want;
	lim = o->next_input + o->window;
	if (first >= lim)
		return 0;
	return lim - first < want ? lim - first : want;
}
