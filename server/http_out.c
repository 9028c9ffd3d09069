/*
 * The output queue: responses are formatted into blocks; one gathered write
 * is in flight per connection, and its completion frees what was sent,
 * moves the stall deadline, calls the drain callback once the unsent output
 * is under the high-water mark, and resumes parsing pipelined requests.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "http_impl.h"

static void oblk_put(struct conn *c, struct oblk *b)
{
	if (b->cap == OBLK_SIZE && c->nfree < OBLK_CACHE) {
		b->next = c->ofree;
		c->ofree = b;
		c->nfree++;
	} else if (b->cap > OBLK_SIZE && c->phase == PH_HANDLER &&
		   c->obig_bytes + b->cap <= OBLK_BIG_SPARE) {
		b->next = c->obig;
		c->obig = b;
		c->obig_bytes += b->cap;
	} else {
		free(b);
	}
}

/*
 * The spare large blocks go when the response ends. They are kept while it
 * lasts because a stream writes a megabyte or so ahead in blocks of 64 KiB
 * and more: freed as each write completes, they were malloc's top of heap,
 * trimmed and grown again with fresh pages, a page fault every 4 KiB of the
 * stream (a sixth of a results stream's time, docs/PROFILE-http-pipeline.md).
 */
void fp__http_out_spare_free(struct conn *c)
{
	struct oblk *b;

	while ((b = c->obig)) {
		c->obig = b->next;
		free(b);
	}
	c->obig_bytes = 0;
}

/* A spare large block of at least n bytes, or NULL. */
static struct oblk *big_get(struct conn *c, size_t n)
{
	struct oblk *b, **pp;

	for (pp = &c->obig; (b = *pp); pp = &b->next) {
		if (b->cap >= n) {
			*pp = b->next;
			c->obig_bytes -= b->cap;
			return b;
		}
	}
	return NULL;
}

/*
 * Room for n contiguous bytes at the end of the queue; fp__http_out_commit()
 * says how many were used. A large body gets a block of its own, sized for it
 * (in whole OBLK_SIZEs, so that a spare one fits the next of about its size).
 */
char *fp__http_out_reserve(struct conn *c, size_t n)
{
	struct oblk *b = c->oq_tail;

	if (b && b->cap - b->len >= n)
		return b->data + b->len;
	if (n <= OBLK_SIZE && c->ofree) {
		b = c->ofree;
		c->ofree = b->next;
		c->nfree--;
	} else if (n <= OBLK_SIZE || !(b = big_get(c, n))) {
		size_t cap = OBLK_SIZE;

		if (n > OBLK_SIZE) {
			if (n > SIZE_MAX - sizeof(*b) - OBLK_SIZE)
				return NULL;
			cap = (n + OBLK_SIZE - 1) / OBLK_SIZE * OBLK_SIZE;
		}
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
	}
	b->len = b->sent = b->inflight = 0;
	b->next = NULL;
	if (c->oq_tail)
		c->oq_tail->next = b;
	else
		c->oq_head = b;
	c->oq_tail = b;
	return b->data;
}

void fp__http_out_commit(struct conn *c, size_t n)
{
	c->oq_tail->len += n;
	c->unsent += n;
	c->out_total += n;
}

int fp__http_out_append(struct conn *c, const char *s, size_t n)
{
	char *p = fp__http_out_reserve(c, n);

	if (!p)
		return -ENOMEM;
	memcpy(p, s, n);
	fp__http_out_commit(c, n);
	return 0;
}

/* Start a write of what is queued, unless one is in flight. */
void fp__http_conn_flush(struct conn *c)
{
	fp_http_server *srv = c->srv;
	struct iovec iov[FP_IO_IOV_MAX];
	size_t budget = WRITE_MAX, take;
	struct oblk *b;
	int n = 0;

	if (c->dead || !c->unsent || c->writing)
		return;
	/*
	 * A large body goes out in several writes: each completion frees
	 * memory, reports progress to the drain callback and moves the
	 * stall deadline, which a single huge write would not.
	 */
	for (b = c->oq_head; b && n < FP_IO_IOV_MAX && budget; b = b->next) {
		if (b->len == b->sent)
			continue;
		take = b->len - b->sent < budget ? b->len - b->sent : budget;
		iov[n].iov_base = b->data + b->sent;
		iov[n].iov_len = take;
		b->inflight = b->sent + take;
		budget -= take;
		n++;
	}
	if (!n)
		return;
	if (c->io->write(c, iov, n) < 0) {
		for (b = c->oq_head; b; b = b->next)
			b->inflight = b->sent;
		fp__http_conn_kill(c);
		return;
	}
	c->writing = 1;
	srv->stats.writes++;
	/* A peer that stops reading is dropped after idle_timeout_ms. */
	if (srv->lim.idle_timeout_ms) {
		c->wdeadline = fp_now_ms() + srv->lim.idle_timeout_ms;
		fp__http_sweep_arm(srv, c->wdeadline);
	}
}

void fp__http_conn_written(struct conn *c, ssize_t res)
{
	fp_http_request *req = &c->req;
	struct oblk *b, **pp, *prev = NULL;

	c->busy++;
	c->writing = 0;
	if (res < 0) {
		/* -EPIPE, -ECONNRESET: the client is gone; -ECANCELED: we killed it. */
		fp__http_conn_kill(c);
		fp__http_conn_leave(c);
		return;
	}
	for (pp = &c->oq_head; (b = *pp);) {
		if (b->inflight > b->sent) {
			c->unsent -= b->inflight - b->sent;
			b->sent = b->inflight;
		}
		if (b->sent == b->len) {
			*pp = b->next;
			if (c->oq_tail == b)
				c->oq_tail = prev;
			oblk_put(c, b);
			continue;
		}
		prev = b;
		pp = &b->next;
	}
	if (!c->unsent)
		c->wdeadline = 0;
	if (c->want_drain && fp__http_stream_room(c)) {
		c->want_drain = 0;
		if (c->phase == PH_HANDLER && req->resp == R_STREAM && !req->gone &&
		    req->drain_cb)
			req->drain_cb(req, req->drain_data);
	}
	if (c->resume_pending && !c->dead && !c->closing && c->phase == PH_IDLE)
		fp__http_conn_process(c);
	fp__http_conn_leave(c);
}
