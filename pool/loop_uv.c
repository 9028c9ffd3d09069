/*
 * The epoll backend, on libuv: readiness turned into completions.
 *
 * libuv allows one uv_poll_t per fd, so every fd the loop has seen has one
 * entry in a registry indexed by fd, holding its read stream or accept and
 * its write queue; a poll handle exists only while that work needs
 * readiness, watching the union of what it needs. The handle is closed
 * (which removes the fd from epoll at once, libuv's
 * uv__platform_invalidate_fd) before the last callback of the fd's last
 * operation runs, so the caller may close the fd in that callback, and a
 * later file under the same number, or the old file kept open by a forked
 * child, never reaches a stale watcher.
 *
 * Writes go out without waiting for epoll: at once when submitted from
 * outside the loop, and from inside it at the end of the callback burst
 * (prepare and check handles), gathering everything queued on the fd into
 * one sendmsg. Their callbacks, like those of cancels, wait on a done list
 * that an idle handle drains, keeping the loop from sleeping meanwhile.
 *
 * File writes and fsyncs (loop.h) go to libuv's threadpool: a uv_fs_t per
 * request, in a wrapper the backend owns and lists, so that teardown can
 * cut it from its fp_io (no callback may run then) and still wait for the
 * pool thread to finish with it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
	struct uvb *b;
	uv_poll_t *poll;               /* while the work needs readiness */
	int fd;
	int events;
	uint8_t not_socket;            /* learnt from ENOTSOCK while busy */
	uint8_t wwait;                 /* the queue waits for writability */
	uint8_t dirty;
	fp_io *reader;                 /* read stream or accept */
	fp_io *pollers[2];             /* fp_io_poll_start(): one per direction */
	fp_io *wq_head, *wq_tail;
	struct uvfd *dirty_next;
};

/* A file request in libuv's threadpool. io is NULL once orphaned. */
struct uvfs {
	uv_fs_t req;
	struct uvb *b;
	fp_io *io;
	struct uvfs *prev, *next;
};

struct uvb {
	uv_loop_t uv;
	fp_loop *loop;
	pid_t pid;
	uv_idle_t idle;
	uv_prepare_t prepare;
	uv_check_t check;
	fp_io *done_head, *done_tail;
	struct uvfd *dirty;
	struct uvfd **fds;
	unsigned nfds;
	uv_timer_t *tcache;            /* stopped timers, linked through data */
	fp_timer *firing;              /* the timer whose callback runs */
	bool in_uv_run;                /* inside uv_run(): uv_stop() is safe */
	char *rbuf;
	struct uvfs *fsreqs;           /* in the threadpool */
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

static void poll_cb(uv_poll_t *h, int status, int events);

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static struct uvfd *fd_find(struct uvb *b, int fd)
{
	return (unsigned)fd < b->nfds ? b->fds[fd] : NULL;
}

static struct uvfd *fd_get(struct uvb *b, int fd)
{
	struct uvfd **n, *f;
	unsigned cap;

	if ((unsigned)fd >= b->nfds) {
		cap = b->nfds ? b->nfds : 64;
		while (cap <= (unsigned)fd)
			cap *= 2;
		n = realloc(b->fds, cap * sizeof(*n));
		if (!n)
			return NULL;
		memset(n + b->nfds, 0, (cap - b->nfds) * sizeof(*n));
		b->fds = n;
		b->nfds = cap;
	}
	f = b->fds[fd];
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return NULL;
		f->b = b;
		f->fd = fd;
		b->fds[fd] = f;
	}
	return f;
}

/*
 * Watch what the fd's work needs now; without any, close the handle. Called
 * after every change of that work and before any last callback.
 */
static int fd_watch(struct uvb *b, struct uvfd *f)
{
	int events = (f->reader ? UV_READABLE : 0) |
		     (f->wq_head && f->wwait ? UV_WRITABLE : 0);
	int r, i;

	for (i = 0; i < 2; i++)
		if (f->pollers[i])
			events |= (f->pollers[i]->events & POLLIN ? UV_READABLE : 0) |
				  (f->pollers[i]->events & POLLOUT ? UV_WRITABLE : 0);
	if (!f->reader && !f->wq_head && !f->pollers[0] && !f->pollers[1])
		f->not_socket = 0;     /* the fd may be closed and reused now */
	if (!events) {
		if (f->poll) {
			uv_close((uv_handle_t *)f->poll, poll_closed);
			f->poll = NULL;
			f->events = 0;
		}
		return 0;
	}
	if (!f->poll) {
		f->poll = malloc(sizeof(*f->poll));
		if (!f->poll)
			return -ENOMEM;
		/* Also makes the fd non-blocking, as libuv requires. */
		r = uv_poll_init(&b->uv, f->poll, f->fd);
		if (r < 0) {
			free(f->poll);
			f->poll = NULL;
			return r;
		}
		f->poll->data = f;
		f->events = 0;
	}
	if (events != f->events) {
		r = uv_poll_start(f->poll, events, poll_cb);
		if (r < 0)
			return r;
		f->events = events;
	}
	return 0;
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
		/* Not a socket (a pipe): writev from now until the fd idles. */
		*not_socket = 1;
	}
	do
		r = writev(fd, iov, n);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* Everything queued on f, in as few system calls as the kernel allows. */
static void fd_flush(struct uvb *b, struct uvfd *f)
{
	fp_io **pp, *io, *kept;
	unsigned i, nios;
	size_t n, rem, take;
	ssize_t r;
	int cnt, end;

	while (f->wq_head && !f->wwait) {
		cnt = fp__wq_gather(f->wq_head, b->iov, WQ_IOV, &nios);
		r = write_some(f->fd, b->iov, cnt, &f->not_socket);
		if (r == -EAGAIN) {
			f->wwait = 1;
			break;
		}
		n = r > 0 ? (size_t)r : 0;
		kept = NULL;
		pp = &f->wq_head;
		for (i = 0; i < nios && (io = *pp); i++) {
			if (r >= 0) {
				rem = fp__io_remaining(io);
				take = n < rem ? n : rem;
				n -= take;
				end = fp__io_advance(io, take);
			} else {
				end = 1;
			}
			if (!end) {
				/* Short write: the socket is full. */
				f->wwait = 1;
				kept = io;
				pp = &io->next;
				continue;
			}
			*pp = io->next;
			done_push(b, io, r >= 0 ? (ssize_t)io->done : r);
		}
		if (!*pp)
			f->wq_tail = kept;
	}
	r = fd_watch(b, f);
	if (r < 0 && f->wwait) {
		/* Cannot wait for writability (epoll refuses regular files). */
		while ((io = f->wq_head)) {
			f->wq_head = io->next;
			done_push(b, io, r);
		}
		f->wq_tail = NULL;
		f->wwait = 0;
		fd_watch(b, f);
	}
}

static void flush_dirty(struct uvb *b)
{
	struct uvfd *f;

	while ((f = b->dirty)) {
		b->dirty = f->dirty_next;
		f->dirty_next = NULL;
		f->dirty = 0;
		fd_flush(b, f);
	}
	uv_prepare_stop(&b->prepare);
	uv_check_stop(&b->check);
}

static void prepare_cb(uv_prepare_t *h)
{
	flush_dirty(h->data);
}

static void check_cb(uv_check_t *h)
{
	flush_dirty(h->data);
}

static int uvb_write(fp_loop *loop, fp_io *io)
{
	struct uvb *b = loop->impl;
	struct uvfd *f = fd_get(b, io->fd);

	if (!f)
		return -ENOMEM;
	io->state = S_QUEUED;
	io->next = NULL;
	if (f->wq_tail)
		f->wq_tail->next = io;
	else
		f->wq_head = io;
	f->wq_tail = io;
	if (f->wwait)
		return 0;              /* goes when the fd is writable */
	if (!loop->running) {
		/* Outside the loop nothing else will come to share the call. */
		fd_flush(b, f);
		return 0;
	}
	if (!f->dirty) {
		f->dirty = 1;
		f->dirty_next = b->dirty;
		b->dirty = f;
		uv_prepare_start(&b->prepare, prepare_cb);
		uv_check_start(&b->check, check_cb);
	}
	return 0;
}

/* --- reads and accepts --------------------------------------------------- */

static int uvb_read_start(fp_loop *loop, fp_io *io)
{
	struct uvb *b = loop->impl;
	struct uvfd *f = fd_get(b, io->fd);
	int r;

	if (!f)
		return -ENOMEM;
	if (f->reader || f->pollers[0] || f->pollers[1])
		return -EBUSY;        /* one read stream or accept per fd */
	f->reader = io;
	r = fd_watch(b, f);
	if (r < 0) {
		f->reader = NULL;
		fd_watch(b, f);
	}
	return r;
}

static void reader_end(struct uvb *b, struct uvfd *f, fp_io *io, ssize_t res)
{
	f->reader = NULL;
	fd_watch(b, f);
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

/* --- readiness ----------------------------------------------------------- */

/* epoll through libuv is level-triggered already: nothing to re-arm. */
static int uvb_poll_start(fp_loop *loop, fp_io *io)
{
	struct uvb *b = loop->impl;
	struct uvfd *f = fd_get(b, io->fd);
	int i, r;

	if (!f)
		return -ENOMEM;
	if (f->reader)
		return -EBUSY;
	for (i = 0; i < 2 && f->pollers[i]; i++)
		;
	if (i == 2)
		return -EBUSY;
	f->pollers[i] = io;
	r = fd_watch(b, f);
	if (r < 0) {
		f->pollers[i] = NULL;
		fd_watch(b, f);
	}
	return r;
}

static void pollers_end(struct uvb *b, struct uvfd *f, ssize_t res)
{
	fp_io *io;
	int i;

	for (i = 0; i < 2; i++) {
		if ((io = f->pollers[i])) {
			f->pollers[i] = NULL;
			done_push(b, io, res);
		}
	}
}

static void pollers_ready(struct uvfd *f, int events)
{
	unsigned ready = (events & UV_READABLE ? POLLIN : 0) |
			 (events & UV_WRITABLE ? POLLOUT : 0);
	unsigned hup = events & UV_DISCONNECT ? POLLHUP : 0;
	fp_io *io;
	int i;

	/* A slot is read again after each callback: it may have changed. */
	for (i = 0; i < 2; i++) {
		io = f->pollers[i];
		if (io && ((ready & io->events) || hup))
			io->cb(io, (ssize_t)((ready & io->events) | hup), NULL);
	}
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct uvfd *f = h->data;
	struct uvb *b = f->b;
	fp_io *io;

	if (status < 0) {
		pollers_end(b, f, status);
		/* The fd is unusable: everything on it ends with the error. */
		while ((io = f->wq_head)) {
			f->wq_head = io->next;
			done_push(b, io, status);
		}
		f->wq_tail = NULL;
		f->wwait = 0;
		if ((io = f->reader))
			reader_end(b, f, io, status);
		else
			fd_watch(b, f);
		return;
	}
	/*
	 * f outlives its handle, so it stays valid whatever the callbacks
	 * below do; a reader started by one of them at worst sees EAGAIN.
	 */
	if ((events & UV_WRITABLE) && f->wwait) {
		f->wwait = 0;
		fd_flush(b, f);
	}
	if (f->pollers[0] || f->pollers[1])
		pollers_ready(f, events);
	if ((events & UV_READABLE) && f->reader) {
		if (f->reader->kind == FP_IO_ACCEPT)
			fd_accept(b, f);
		else
			fd_read(b, f);
	}
}

/* --- file writes and fsync ---------------------------------------------- */

static void fs_cb(uv_fs_t *req);

static int fs_submit(struct uvb *b, fp_io *io)
{
	uv_buf_t bufs[FP_IO_IOV_MAX];
	sigset_t all, old;
	struct uvfs *w;
	int i, r;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->b = b;
	w->io = io;
	/*
	 * libuv starts its pool threads on the process's first request, and
	 * they inherit the mask of the thread that made it. A thread that does
	 * not block the signals the loop reads from its signalfd would take
	 * them instead (a SIGCHLD lost, a SIGTERM's default action): so every
	 * request is made with all signals blocked, the first one included.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (io->kind == FP_IO_PWRITE) {
		for (i = 0; i < io->iovcnt; i++)
			bufs[i] = uv_buf_init(io->iov[i].iov_base,
					      (unsigned)io->iov[i].iov_len);
		r = uv_fs_write(&b->uv, &w->req, io->fd, bufs,
				(unsigned)io->iovcnt,
				(int64_t)(io->off + io->done), fs_cb);
	} else if (io->datasync) {
		r = uv_fs_fdatasync(&b->uv, &w->req, io->fd, fs_cb);
	} else {
		r = uv_fs_fsync(&b->uv, &w->req, io->fd, fs_cb);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		free(w);
		return r;
	}
	w->next = b->fsreqs;
	if (w->next)
		w->next->prev = w;
	b->fsreqs = w;
	io->impl = w;
	return 0;
}

static void fs_cb(uv_fs_t *req)
{
	struct uvfs *w = fp__container_of(req, struct uvfs, req);
	struct uvb *b = w->b;
	ssize_t res = req->result;
	fp_io *io = w->io;
	int r;

	uv_fs_req_cleanup(req);
	if (w->prev)
		w->prev->next = w->next;
	else
		b->fsreqs = w->next;
	if (w->next)
		w->next->prev = w->prev;
	free(w);
	if (!io)
		return;
	io->impl = NULL;
	if (io->kind == FP_IO_PWRITE && res >= 0 && !io->cancelled) {
		/* libuv continues after a short write until an error. */
		fp__io_advance(io, (size_t)res);
		if (io->iovcnt) {
			r = res ? fs_submit(b, io) : -EIO;
			if (r == 0)
				return;
			res = r;
		} else {
			res = (ssize_t)io->done;
		}
	}
	fp__io_finish(io, res, NULL);
}

static int uvb_file_start(fp_loop *loop, fp_io *io)
{
	return fs_submit(loop->impl, io);
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
	if (io->kind == FP_IO_PWRITE || io->kind == FP_IO_FSYNC) {
		/* Only a request no thread has taken yet can be withdrawn
		 * (then fs_cb sees UV_ECANCELED); a running one completes. */
		if (io->impl)
			uv_cancel((uv_req_t *)&((struct uvfs *)io->impl)->req);
		return;
	}
	if (!f)
		return;
	if (io->kind == FP_IO_POLL) {
		for (int i = 0; i < 2; i++) {
			if (f->pollers[i] == io) {
				f->pollers[i] = NULL;
				/* Out of epoll now: the caller may close the fd. */
				fd_watch(b, f);
				done_push(b, io, -ECANCELED);
			}
		}
		return;
	}
	if (io->kind != FP_IO_WRITE) {
		if (f->reader == io) {
			f->reader = NULL;
			fd_watch(b, f);
			done_push(b, io, -ECANCELED);
		}
		return;
	}
	if (!(io->state & S_QUEUED))
		return;
	for (pp = &f->wq_head; *pp && *pp != io; pp = &(*pp)->next)
		prev = *pp;
	if (!*pp)
		return;
	*pp = io->next;
	if (f->wq_tail == io)
		f->wq_tail = prev;
	fd_watch(b, f);
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
	b->firing = t;
	fp__timer_fire(t);
	b->firing = NULL;
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
	/*
	 * A timer started again at 0 ms from its own callback waits for the
	 * next round, as under io_uring: libuv 1.44's uv__run_timers() would
	 * fire it again in the same pass, for ever, the clock never moving
	 * past its deadline (test-loop.c zero_ms_timer_starves_...).
	 */
	if (!ms && t == b->firing)
		ms = 1;
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

	for (;;) {
		if (loop->stopping)
			break;
		done_run(b);
		if (!fp__loop_alive(loop))
			break;
		b->in_uv_run = true;
		uv_run(&b->uv, UV_RUN_ONCE);
		b->in_uv_run = false;
	}
	/* What the last callbacks wrote goes out now, not at the next run. */
	flush_dirty(b);
	return 0;
}

static void uvb_stop(fp_loop *loop)
{
	struct uvb *b = loop->impl;

	/*
	 * Keeps the poll phase of this iteration from sleeping. Outside
	 * uv_run() the flag would outlive this run and make the uv_run() of
	 * teardown return before closing the handles (a leak); there,
	 * loop->stopping alone ends uvb_run().
	 */
	if (b->in_uv_run)
		uv_stop(&b->uv);
}

static void close_any(uv_handle_t *h)
{
	/* Idle, prepare and check are embedded in struct uvb. */
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
	struct uvfs *w;
	unsigned i;
	int child;

	if (!b)
		return;
	child = b->pid != getpid();
	/* File requests end without a callback; withdraw what has not started. */
	for (w = b->fsreqs; w; w = w->next) {
		w->io->impl = NULL;
		w->io = NULL;
		if (!child)
			uv_cancel((uv_req_t *)&w->req);
	}
	/*
	 * A forked child shares the parent's epoll instance: closing the poll
	 * handles would EPOLL_CTL_DEL the parent's fds from it. Give the child
	 * its own epoll first.
	 */
	if (child)
		uv_loop_fork(&b->uv);
	uv_walk(&b->uv, walk_close, NULL);
	if (child && b->fsreqs) {
		/*
		 * The parent's pool threads were not forked: those requests
		 * never complete here. Close the handles and leave the loop
		 * (and the requests' memory) be, rather than wait forever.
		 */
		uv_run(&b->uv, UV_RUN_NOWAIT);
		goto out;
	}
	/* In the parent this also waits for file requests already running. */
	uv_run(&b->uv, UV_RUN_DEFAULT);
	uv_loop_close(&b->uv);
out:
	for (i = 0; i < b->nfds; i++)
		free(b->fds[i]);
	free(b->fds);
	/* A forked child never had the mapping; the range may be reused. */
	if (b->pid == getpid())
		munmap(b->rbuf, RBUF_LEN);
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
	b->pid = getpid();
	/*
	 * Its own mapping, not inherited by forked workers: otherwise the
	 * first reads after every fork pay a copy-on-write fault per page.
	 */
	b->rbuf = mmap(NULL, RBUF_LEN, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->rbuf == MAP_FAILED) {
		r = -errno;
		goto err_free;
	}
	madvise(b->rbuf, RBUF_LEN, MADV_DONTFORK);
	r = uv_loop_init(&b->uv);
	if (r < 0)
		goto err_unmap;
	b->uv.data = b;
	uv_idle_init(&b->uv, &b->idle);
	b->idle.data = b;
	uv_prepare_init(&b->uv, &b->prepare);
	b->prepare.data = b;
	uv_check_init(&b->uv, &b->check);
	b->check.data = b;
	loop->impl = b;
	return 0;

err_unmap:
	munmap(b->rbuf, RBUF_LEN);
err_free:
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
	.pwrite = uvb_file_start,
	.fsync = uvb_file_start,
	.poll_start = uvb_poll_start,
	.cancel = uvb_cancel,
	.timer_start = uvb_timer_start,
	.timer_stop = uvb_timer_stop,
};
