/*
 * hiredis on fp_loop: the adapter behind redis_loop.h.
 *
 * hiredis wants level-triggered readiness, as ae, libev and libuv give it:
 * redisAsyncHandleRead() reads once (16 KiB) per call and expects to be
 * called again while bytes remain. fp_io_poll_start() promises exactly that.
 *
 * The hooks only record what hiredis wants and start or cancel a poll; a
 * cancel's last callback comes later, and hiredis may want the direction
 * again meanwhile (delWrite then addWrite within one handler), so that last
 * callback starts the poll again when it is wanted. After cleanup (the
 * context is being freed, and hiredis closes the socket right after) nothing
 * is wanted any more, and the last of the two last callbacks frees us.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>

#include "redis_loop.h"

struct adapter {
	redisAsyncContext *ac;         /* NULL after cleanup */
	fp_loop *loop;
	unsigned *live;
	int fd;
	bool want_read, want_write;
	bool busy;                     /* in a last callback: not freed under it */
	fp_io rd, wr;
};

static void poll_cb(fp_io *io, ssize_t res, const char *buf);

static void adapter_free_if_done(struct adapter *a)
{
	if (a->ac || a->busy || fp_io_active(&a->rd) || fp_io_active(&a->wr))
		return;
	(*a->live)--;
	free(a);
}

/* Make the poll of one direction match what hiredis wants. */
static void sync_poll(struct adapter *a, fp_io *io, bool want, unsigned events)
{
	if (want && !fp_io_active(io)) {
		io->data = a;
		/*
		 * Cannot fail for a valid fd but on memory: hiredis would then
		 * wait forever, so say the connection is broken instead.
		 */
		if (fp_io_poll_start(a->loop, io, a->fd, events, poll_cb) < 0 && a->ac)
			redisAsyncDisconnect(a->ac);
	} else if (!want && fp_io_active(io)) {
		fp_io_cancel(io);
	}
	/* Active but cancelled and wanted again: its last callback restarts it. */
}

static void poll_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct adapter *a = io->data;
	bool is_read = io == &a->rd;

	(void)buf;
	if (res > 0) {
		/* hiredis may free the context (and call cleanup) in here. */
		if (a->ac && is_read)
			redisAsyncHandleRead(a->ac);
		else if (a->ac)
			redisAsyncHandleWrite(a->ac);
		return;
	}
	/*
	 * The last callback: cancelled, or the loop could not watch the fd.
	 * This poll is inactive already, so hiredis freeing the context in
	 * here would free us too, but for `busy`.
	 */
	a->busy = true;
	if (a->ac && res != -ECANCELED) {
		/* Let hiredis meet the error itself, on its own read or write. */
		if (is_read)
			redisAsyncHandleRead(a->ac);
		else
			redisAsyncHandleWrite(a->ac);
	}
	if (a->ac)
		sync_poll(a, io, is_read ? a->want_read : a->want_write,
			  is_read ? POLLIN : POLLOUT);
	a->busy = false;
	adapter_free_if_done(a);
}

static void add_read(void *p)
{
	struct adapter *a = p;

	a->want_read = true;
	sync_poll(a, &a->rd, true, POLLIN);
}

static void del_read(void *p)
{
	struct adapter *a = p;

	a->want_read = false;
	sync_poll(a, &a->rd, false, POLLIN);
}

static void add_write(void *p)
{
	struct adapter *a = p;

	a->want_write = true;
	sync_poll(a, &a->wr, true, POLLOUT);
}

static void del_write(void *p)
{
	struct adapter *a = p;

	a->want_write = false;
	sync_poll(a, &a->wr, false, POLLOUT);
}

static void cleanup(void *p)
{
	struct adapter *a = p;

	a->ac->ev.data = NULL;
	a->ac = NULL;
	a->want_read = a->want_write = false;
	/* Out of the loop's watch before hiredis closes the fd. */
	fp_io_cancel(&a->rd);
	fp_io_cancel(&a->wr);
	adapter_free_if_done(a);
}

int fp__redis_loop_attach(redisAsyncContext *ac, fp_loop *loop, unsigned *live)
{
	struct adapter *a;

	if (ac->ev.data)
		return -EEXIST;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->ac = ac;
	a->loop = loop;
	a->live = live;
	a->fd = ac->c.fd;
	(*live)++;
	ac->ev.data = a;
	ac->ev.addRead = add_read;
	ac->ev.delRead = del_read;
	ac->ev.addWrite = add_write;
	ac->ev.delWrite = del_write;
	ac->ev.cleanup = cleanup;
	return 0;
}
