/*
 * The master's side of a task's shared-value call (kv_wire.h): a KV frame
 * from a worker is run through fp_pool_kv(), the same store and rules as
 * HTTP's /v1/kv, and answered with a KV_REPLY frame on the worker's socket.
 *
 * The answer goes behind whatever the master already wrote to that socket
 * (the worker picks it out: worker_kv.h). The socket has one write at a
 * time, so an answer that finds a chunk being written waits in the worker
 * (kv_reply) and goes as soon as that write ends (fp__worker_write_cb());
 * dispatch sends no chunk while the answer is being written.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "kv_wire.h"
#include "locks.h"
#include "pool_impl.h"
#include "worker.h"

/*
 * Whom an answer is for. fp_pool_kv() may answer later (a store that is not
 * in this process), by when the worker may be gone: it is found again by
 * slot and generation, never by a pointer that may dangle.
 */
struct kv_call {
	struct fp_group *group;
	unsigned slot;
	uint64_t generation;
	uint64_t id;
};

static struct fp_worker *find_worker(struct fp_group *g, unsigned slot, uint64_t generation)
{
	for (struct fp_worker *w = g->workers; w; w = w->next)
		if (w->slot == slot && w->generation == generation)
			return w;
	return NULL;
}

static void kv_write_cb(fp_io *io, ssize_t res, const char *buf)
{
	/* Its end is a write's end like any other: dispatch goes on from there. */
	fp__worker_write_cb(io, res, buf);
}

bool fp__kv_reply_flush(struct fp_worker *w)
{
	struct iovec iov;
	int err;

	if (!w->kv_reply_due || fp__worker_exited(w) || fp_io_active(&w->wio))
		return false;
	w->kv_reply_due = false;
	iov.iov_base = w->kv_reply;
	iov.iov_len = w->kv_reply_len;
	err = fp_io_write(w->group->loop, &w->wio, w->fd, &iov, 1, kv_write_cb);
	if (err) {
		fp_log_warn(&w->group->log, "worker %u (pid %d): cannot answer its shared-value call: %s",
			    w->slot, (int)w->pid, fp_strerror(err));
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
		return false;
	}
	return true;
}

/* Answer call `id` of the worker (group, slot, generation), if it is still there to hear it. */
static void answer(struct fp_group *g, unsigned slot, uint64_t generation, uint64_t id,
		   const struct fp_kv_reply *r)
{
	struct fp_worker *w = find_worker(g, slot, generation);
	struct fp_kv_wire_reply wr = {
		.err = r->err,
		.swapped = r->swapped,
		.number = r->number,
		.has_value = r->value != NULL,
		.value_len = r->value ? (uint32_t)r->value_len : 0,
	};
	struct fp_frame_header h;
	size_t len = sizeof(h) + sizeof(wr) + wr.value_len;
	char *p;

	/* A worker being stopped still gets its answer: its task may be cleaning up. */
	if (!w || fp__worker_exited(w) || w->kill_reason == FP_KILL_PROTOCOL)
		return;
	if (len > w->kv_reply_cap) {
		p = realloc(w->kv_reply, len);
		if (!p) {
			/* Its task would wait for an answer that never comes. */
			fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
			return;
		}
		w->kv_reply = p;
		w->kv_reply_cap = len;
	}
	fp_frame_header_init(&h, FP_FRAME_KV_REPLY, id, (uint32_t)(len - sizeof(h)), 0);
	p = w->kv_reply;
	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), &wr, sizeof(wr));
	if (wr.value_len)
		memcpy(p + sizeof(h) + sizeof(wr), r->value, wr.value_len);
	w->kv_reply_len = len;
	w->kv_reply_due = true;
	fp__kv_reply_flush(w);
}

static void answered(fp_pool *pool, const struct fp_kv_reply *r, void *data)
{
	struct kv_call *call = data;

	(void)pool;
	answer(call->group, call->slot, call->generation, call->id, r);
	free(call);
}

/* A lock's answer (locks.h), now or when it is free or the wait is over. */
static void lock_answered(struct fp_group *g, unsigned slot, uint64_t generation, uint64_t id,
			  int err, const char *msg)
{
	struct fp_kv_reply r = { .err = err, .value = msg, .value_len = msg ? strlen(msg) : 0 };

	answer(g, slot, generation, id, &r);
}

/* LOCK, UNLOCK, UNLOCK_ALL: the lock table, not the store. */
static int serve_lock(struct fp_worker *w, uint64_t id, const struct fp_kv_wire_req *wr,
		      const char *name)
{
	struct fp_kv_reply r = { 0 };
	char msg[FP_KV_KEY_MAX + 64];
	int err;

	if (wr->op != FP_KV_WIRE_UNLOCK_ALL && (wr->key_len == 0 || wr->key_len > FP_KV_KEY_MAX)) {
		r.err = -EINVAL;
		r.value = "a lock's name is 1 to 256 bytes";
		r.value_len = strlen(r.value);
		answer(w->group, w->slot, w->generation, id, &r);
		return 0;
	}
	switch (wr->op) {
	case FP_KV_WIRE_LOCK:
		err = fp__lock(w, id, name, wr->key_len, wr->ttl_ms, lock_answered);
		if (err)
			fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
		return 0;
	case FP_KV_WIRE_UNLOCK:
		r.err = fp__unlock(w, name, wr->key_len);
		if (r.err) {
			snprintf(msg, sizeof(msg), "lock '%.*s' is not held by this task",
				 (int)wr->key_len, name);
			r.value = msg;
			r.value_len = strlen(msg);
		}
		break;
	default:
		r.number = fp__unlock_all(w);
		break;
	}
	answer(w->group, w->slot, w->generation, id, &r);
	return 0;
}

int fp__kv_serve(struct fp_worker *w, const struct fp_frame_header *h, const char *payload)
{
	struct fp_kv_wire_req wr;
	struct fp_kv_request req;
	struct kv_call *call;
	const char *p = payload + sizeof(wr);
	int err;

	if (h->len < sizeof(wr))
		return -EPROTO;
	memcpy(&wr, payload, sizeof(wr));
	if ((uint64_t)wr.key_len + wr.value_len + wr.expect_len != h->len - sizeof(wr) ||
	    (!wr.has_expect && wr.expect_len) || w->kv_reply_due)
		return -EPROTO;
	if (wr.op >= FP_KV_WIRE_LOCK && wr.op <= FP_KV_WIRE_UNLOCK_ALL)
		return serve_lock(w, h->id, &wr, p);
	req = (struct fp_kv_request){
		.op = (fp_kv_op)wr.op,
		.key = p,
		.key_len = wr.key_len,
		.value = p + wr.key_len,
		.value_len = wr.value_len,
		.expect = wr.has_expect ? p + wr.key_len + wr.value_len : NULL,
		.expect_len = wr.expect_len,
		.by = wr.by,
		.ttl_ms = wr.ttl_ms,
	};
	call = malloc(sizeof(*call));
	if (!call) {
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
		return 0;
	}
	*call = (struct kv_call){ w->group, w->slot, w->generation, h->id };
	err = fp_pool_kv(w->group->pool, &req, answered, call);
	if (err) {
		free(call);
		fp__worker_kill(w, SIGKILL, FP_KILL_PROTOCOL);
	}
	return 0;
}
