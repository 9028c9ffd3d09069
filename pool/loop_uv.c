/*
 * The epoll backend, on libuv: readiness turned into completions.
 *
 * libuv allows one uv_poll_t per fd, so every fd with work on it has one
 * entry in a registry indexed by fd, holding the read stream or accept and
 * the write queue; the poll watches the union of what they need. An entry
 * lives exactly as long as it has work: its handle is closed (which removes
 * the fd from epoll at once, libuv's uv__platform_invalidate_fd) before the
 * last callback runs, so the caller may close the fd in that callback, and a
 * later fd with the same number, or a dup of the old file kept open by a
 * forked child, never reaches a stale watcher.
 *
 * Callbacks that cannot run where they arise (a write that finished at once,
 * a cancel) wait on a done list that an idle handle drains, keeping the loop
 * from sleeping while it is not empty.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "loop_impl.h"

enum {
	RBUF_LEN = 65536,
	WQ_IOV = 64,
	READS_PER_EVENT = 16,          /* fairness between fds */
	ACCEPTS_PER_EVENT = 32,
};

/* io->state */
enum {
	S_QUEUED = 1 << 0,             /* on its fd's write queue */
	S_DONELIST = 1 << 1,
};

struct uvfd {
	uv_poll_t poll;                /* first: the close callback frees the entry */
	struct uvb *b;
	int fd;
	int events;
	uint8_t not_socket;            /* learnt from ENOTSOCK, valid while the entry lives */
	fp_io *reader;                 /* read stream or accept */
	fp_io *wq_head, *wq_tail;
};

struct uvb {
	uv_loop_t uv;
	fp_loop *loop;
	uv_idle_t idle;
	fp_io *done_head, *done_tail;
	struct uvfd **fds;
	unsigned nfds;
	uv_timer_t *tcache;            /* stopped timers, linked through data */
	char *rbuf;
	struct iovec iov[WQ_IOV];
};

/* --- deferred callbacks -------------------------------------------------- */

static void idle_cb(uv_idle_t *h);

static void done_push(struct uvb *b, fp_io *io, ssize_t res)
{
	io->res = res;
	io->state = S_DONELIST;
	io->next = NULL;
	if (b->done_tail)
		b->done_tail->next = io;
	else
		b->done_head = io;
	b->done_tail = io;
	uv_idle_start(&b->idle, idle_cb);
}

static void done_run(struct uvb *b)
{
	fp_io *io;

	while ((io = b->done_head)) {
		b->done_head = io->next;
		if (!b->done_head)
			b->done_tail = NULL;
		io->next = NULL;
		io->state = 0;
		fp__io_finish(io, io->res, NULL);
	}
	uv_idle_stop(&b->idle);
}

static void idle_cb(uv_idle_t *h)
{
	done_run(h->data);
}

/* --- the fd registry ----------------------------------------------------- */

static void fd_closed(uv_handle_t *h)
{
	free(h);
}

static void poll_cb(uv_poll_t *h, int status, int events);

static struct uvfd *fd_find(struct uvb *b, int fd)
{
	return (unsigned)fd < b->nfds ? b->fds[fd] : NULL;
}

static int fd_get(struct uvb *b, int fd, struct uvfd **out)
{
	struct uvfd **n, *f;
	unsigned cap;
	int r;

	if ((unsigned)fd >= b->nfds) {
		cap = b->nfds ? b->nfds : 64;
		while (cap <= (unsigned)fd)
			cap *= 2;
		n = realloc(b->fds, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + b->nfds, 0, (cap - b->nfds) * sizeof(*n));
		b->fds = n;
		b->nfds = cap;
	}
	f = b->fds[fd];
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		/* Also makes the fd non-blocking, as libuv requires. */
		r = uv_poll_init(&b->uv, &f->poll, fd);
		if (r < 0) {
			free(f);
			return r;
		}
		f->poll.data = f;
		f->b = b;
		f->fd = fd;
		b->fds[fd] = f;
	}
	*out = f;
	return 0;
}

/* Watch what the entry's work needs; with no work left, close it. */
static void fd_update(struct uvb *b, struct uvfd *f)
{
	int events = (f->reader ? UV_READABLE : 0) |
		     (f->wq_head ? UV_WRITABLE : 0);

	if (!events) {
		b->fds[f->fd] = NULL;
		uv_close((uv_handle_t *)&f->poll, fd_closed);
		return;
	}
	if (events != f->events) {
		uv_poll_start(&f->poll, events, poll_cb);
		f->events = events;
	}
}

/* --- writes -------------------------------------------------------------- */

static ssize_t write_some(int fd, struct iovec *iov, int n, uint8_t *not_socket)
{
	struct msghdr msg;
	ssize_t r;

	if (!*not_socket) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)n;
		do
			r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (r < 0 && errno == EINTR);
		if (r >= 0 || errno != ENOTSOCK)
			return r < 0 ? -errno : r;
		*not_socket = 1;
	}
	do
		r = writev(fd, iov, n);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static int uvb_write(fp_loop *loop, fp_io *io)
{
	struct uvb *b = loop->impl;
	struct uvfd *f = fd_find(b, io->fd);
	uint8_t not_socket = f ? f->not_socket : 0;
	ssize_t r;

	/*
	 * Nothing queued on the fd: try at once, which usually finishes the
	 * write and saves an epoll round trip. The callback still comes from
	 * the loop.
	 */
	if (!f || !f->wq_head) {
		r = write_some(io->fd, io->iov, io->iovcnt, &not_socket);
		if (r >= 0 && fp__io_advance(io, (size_t)r)) {
			done_push(b, io, (ssize_t)io->done);
			return 0;
		}
		if (r < 0 && r != -EAGAIN) {
			done_push(b, io, r);
			return 0;
		}
	}
	r = fd_get(b, io->fd, &f);
	if (r < 0) {
		/* Some bytes may be out already: report, don't refuse. */
		done_push(b, io, r);
		return 0;
	}
	f->not_socket = not_socket;
	io->state = S_QUEUED;
	io->next = NULL;
	if (f->wq_tail)
		f->wq_tail->next = io;
	else
		f->wq_head = io;
	f->wq_tail = io;
	fd_update(b, f);
	return 0;
}

static void fd_write(struct uvb *b, struct uvfd *f)
{
	fp_io *done = NULL, **dtail = &done, **pp, *io, *kept = NULL;
	unsigned i, nios;
	size_t n, rem, take;
	ssize_t r;
	int cnt, end;

	cnt = fp__wq_gather(f->wq_head, b->iov, WQ_IOV, &nios);
	r = write_some(f->fd, b->iov, cnt, &f->not_socket);
	if (r == -EAGAIN)
		return;
	n = r > 0 ? (size_t)r : 0;

	/* Account, and take out what is over, before any callback runs. */
	pp = &f->wq_head;
	for (i = 0; i < nios && (io = *pp); i++) {
		if (r >= 0) {
			rem = fp__io_remaining(io);
			take = n < rem ? n : rem;
			n -= take;
			end = fp__io_advance(io, take);
			io->res = (ssize_t)io->done;
		} else {
			end = 1;
			io->res = r;
		}
		if (end) {
			*pp = io->next;
			io->state = 0;
			io->next = NULL;
			*dtail = io;
			dtail = &io->next;
		} else {
			kept = io;
			pp = &io->next;
		}
	}
	if (!*pp)
		f->wq_tail = kept;
	/* Before the callbacks: one of them may close the fd. */
	fd_update(b, f);

	while ((io = done)) {
		done = io->next;
		io->next = NULL;
		fp__io_finish(io, io->res, NULL);
	}
}

/* --- reads and accepts --------------------------------------------------- */

static int uvb_read_start(fp_loop *loop, fp_io *io)
{
	struct uvb *b = loop->impl;
	struct uvfd *f;
	int r;

	r = fd_get(b, io->fd, &f);
	if (r < 0)
		return r;
	if (f->reader) {
		/* One reader per fd; the entry may be new, then drop it. */
		fd_update(b, f);
		return -EBUSY;
	}
	f->reader = io;
	fd_update(b, f);
	return 0;
}

static void reader_end(struct uvb *b, struct uvfd *f, fp_io *io, ssize_t res)
{
	f->reader = NULL;
	fd_update(b, f);
	fp__io_finish(io, res, NULL);
}

static void fd_read(struct uvb *b, struct uvfd *f)
{
	fp_io *io = f->reader;
	char *buf = io->buf ? io->buf : b->rbuf;
	size_t len = io->buf ? io->buflen : RBUF_LEN;
	ssize_t n;
	int i;

	for (i = 0; i < READS_PER_EVENT && f->reader == io; i++) {
		n = read(f->fd, buf, len);
		if (n > 0) {
			io->cb(io, n, buf);
			/* A short read drained the fd: skip the EAGAIN. */
			if ((size_t)n < len)
				return;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		reader_end(b, f, io, n == 0 ? 0 : -errno);
		return;
	}
}

static void fd_accept(struct uvb *b, struct uvfd *f)
{
	fp_io *io = f->reader;
	int i, fd, err;

	for (i = 0; i < ACCEPTS_PER_EVENT && f->reader == io; i++) {
		fd = accept4(f->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			io->cb(io, fd, NULL);
			continue;
		}
		err = errno;
		if (err == EINTR)
			continue;
		if (err == EAGAIN || err == EWOULDBLOCK)
			return;
		if (fp__accept_error_transient(err)) {
			io->cb(io, -err, NULL);
			return;
		}
		reader_end(b, f, io, -err);
		return;
	}
}

static int uvb_accept_start(fp_loop *loop, fp_io *io)
{
	return uvb_read_start(loop, io);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct uvfd *f = h->data;
	struct uvb *b = f->b;
	fp_io *io, *done;

	if (status < 0) {
		/* The fd is unusable: everything on it ends with the error. */
		io = f->reader;
		done = f->wq_head;
		f->reader = NULL;
		f->wq_head = f->wq_tail = NULL;
		fd_update(b, f);
		if (io)
			fp__io_finish(io, status, NULL);
		while ((io = done)) {
			done = io->next;
			io->next = NULL;
			io->state = 0;
			fp__io_finish(io, status, NULL);
		}
		return;
	}
	/*
	 * The entry stays allocated until its close callback, later in this
	 * iteration, so f is valid even if a callback ended its last work.
	 */
	if ((events & UV_WRITABLE) && f->wq_head)
		fd_write(b, f);
	if ((events & (UV_READABLE | UV_DISCONNECT)) && f->reader) {
		if (f->reader->kind == FP_IO_ACCEPT)
			fd_accept(b, f);
		else
			fd_read(b, f);
	}
}

/* --- cancel -------------------------------------------------------------- */

static void uvb_cancel(fp_loop *loop, fp_io *io)
{
	struct uvb *b = loop->impl;
	struct uvfd *f = fd_find(b, io->fd);
	fp_io **pp, *prev = NULL;

	/* Already waiting for its last callback: the flag makes it -ECANCELED. */
	if (io->state & S_DONELIST)
		return;
	if (io->kind != FP_IO_WRITE) {
		if (f && f->reader == io) {
			f->reader = NULL;
			fd_update(b, f);
			done_push(b, io, -ECANCELED);
		}
		return;
	}
	/* Off the queue but not on the done list: its callback is running. */
	if (!(io->state & S_QUEUED) || !f)
		return;
	for (pp = &f->wq_head; *pp && *pp != io; pp = &(*pp)->next)
		prev = *pp;
	if (!*pp)
		return;
	*pp = io->next;
	if (f->wq_tail == io)
		f->wq_tail = prev;
	io->next = NULL;
	fd_update(b, f);
	done_push(b, io, -ECANCELED);
}

/* --- timers -------------------------------------------------------------- */

static void timer_cb(uv_timer_t *h)
{
	struct uvb *b = h->loop->data;
	fp_timer *t = h->data;

	/* The handle goes back to the cache: the fp_timer may be freed or
	 * restarted by its callback. */
	h->data = b->tcache;
	b->tcache = h;
	fp__timer_fire(t);
}

static int uvb_timer_start(fp_loop *loop, fp_timer *t, uint64_t ms)
{
	struct uvb *b = loop->impl;
	uv_timer_t *h = t->impl;

	if (!h) {
		h = b->tcache;
		if (h) {
			b->tcache = h->data;
		} else {
			h = malloc(sizeof(*h));
			if (!h)
				return -ENOMEM;
			uv_timer_init(&b->uv, h);
		}
		h->data = t;
		t->impl = h;
	}
	/* libuv measures from the time cached at the top of the iteration;
	 * outside a callback that can be long ago. */
	uv_update_time(&b->uv);
	uv_timer_start(h, timer_cb, ms, 0);
	return 0;
}

static void uvb_timer_stop(fp_loop *loop, fp_timer *t)
{
	struct uvb *b = loop->impl;
	uv_timer_t *h = t->impl;

	if (!h)
		return;
	uv_timer_stop(h);
	h->data = b->tcache;
	b->tcache = h;
}

/* --- the loop ------------------------------------------------------------ */

static int uvb_run(fp_loop *loop)
{
	struct uvb *b = loop->impl;
	int r;

	for (;;) {
		if (loop->stopping)
			break;
		done_run(b);
		if (!fp__loop_alive(loop))
			break;
		r = uv_run(&b->uv, UV_RUN_ONCE);
		(void)r;
	}
	return 0;
}

static void uvb_stop(fp_loop *loop)
{
	struct uvb *b = loop->impl;

	/* Makes the poll phase of this iteration not sleep. */
	uv_stop(&b->uv);
}

static void close_any(uv_handle_t *h)
{
	if (h->type == UV_POLL || h->type == UV_TIMER)
		free(h);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, close_any);
}

static void uvb_deinit(fp_loop *loop)
{
	struct uvb *b = loop->impl;

	if (!b)
		return;
	/* Idle is embedded: close_any leaves it alone. */
	uv_walk(&b->uv, walk_close, NULL);
	uv_run(&b->uv, UV_RUN_DEFAULT);
	uv_loop_close(&b->uv);
	free(b->fds);
	free(b->rbuf);
	free(b);
	loop->impl = NULL;
}

static int uvb_init(fp_loop *loop)
{
	struct uvb *b;
	int r;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->loop = loop;
	b->rbuf = malloc(RBUF_LEN);
	if (!b->rbuf) {
		r = -ENOMEM;
		goto err_free;
	}
	r = uv_loop_init(&b->uv);
	if (r < 0)
		goto err_free;
	b->uv.data = b;
	uv_idle_init(&b->uv, &b->idle);
	b->idle.data = b;
	loop->impl = b;
	return 0;

err_free:
	free(b->rbuf);
	free(b);
	return r;
}

const struct fp_loop_ops fp__loop_uv_ops = {
	.name = "epoll",
	.init = uvb_init,
	.deinit = uvb_deinit,
	.run = uvb_run,
	.stop = uvb_stop,
	.read_start = uvb_read_start,
	.accept_start = uvb_accept_start,
	.write = uvb_write,
	.cancel = uvb_cancel,
	.timer_start = uvb_timer_start,
	.timer_stop = uvb_timer_stop,
};
