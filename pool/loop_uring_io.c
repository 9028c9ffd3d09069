/*
 * The io_uring backend's operations on fds: read streams (multishot recv
 * into the provided-buffer ring, one-shot reads into a buffer cache where
 * that is not available), multishot accept, writes serialised and gathered
 * per fd, and cancels.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop_uring.h"

/* --- buffers ------------------------------------------------------------- */

static void *br_map(size_t len);

/*
 * One-shot read buffers are mappings too, for the reason br_map() gives:
 * they are what the workers' log pipes are read into.
 */
static char *rbuf_get(struct uring *u)
{
	struct rbuf *h = u->rfree;

	if (h) {
		u->rfree = h->next;
		u->nrfree--;
	} else {
		h = br_map(RBUF_MAP);
		if (!h)
			return NULL;
	}
	h->next = u->rused.next;
	h->prev = &u->rused;
	u->rused.next->prev = h;
	u->rused.next = h;
	return (char *)(h + 1);
}

static void rbuf_put(struct uring *u, char *p)
{
	struct rbuf *h = (struct rbuf *)p - 1;

	h->prev->next = h->next;
	h->next->prev = h->prev;
	if (u->nrfree < READ_BUF_CACHE) {
		h->next = u->rfree;
		u->rfree = h;
		u->nrfree++;
	} else {
		munmap(h, RBUF_MAP);
	}
}

static void br_recycle(struct uring *u, unsigned bid)
{
	io_uring_buf_ring_add(u->br, u->brbufs + (size_t)bid * BR_BUF_LEN,
			      BR_BUF_LEN, bid, u->br_mask, 0);
	io_uring_buf_ring_advance(u->br, 1);
}

/*
 * Provided buffers are an optimisation: failing here means one-shot recv.
 * Ring and buffers are mappings of their own marked MADV_DONTFORK: a forked
 * worker never uses them, and otherwise every buffer the kernel fills after
 * a fork costs the master a copy-on-write fault.
 */
static void *br_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_DONTFORK);
	return p;
}

void fp__uring_br_unmap(struct uring *u)
{
	if (u->br)
		munmap(u->br, BR_RING_BYTES);
	if (u->brbufs)
		munmap(u->brbufs, BR_BUFS_BYTES);
	u->br = NULL;
	u->brbufs = NULL;
}

void fp__uring_br_setup(struct uring *u)
{
	struct io_uring_buf_reg reg;
	unsigned i;

	u->br = br_map(BR_RING_BYTES);
	u->brbufs = br_map(BR_BUFS_BYTES);
	if (!u->br || !u->brbufs)
		goto err;
	io_uring_buf_ring_init(u->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uintptr_t)u->br;
	reg.ring_entries = BR_ENTRIES;
	reg.bgid = BR_GROUP;
	if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0)
		goto err;
	u->br_mask = io_uring_buf_ring_mask(BR_ENTRIES);
	for (i = 0; i < BR_ENTRIES; i++)
		io_uring_buf_ring_add(u->br, u->brbufs + (size_t)i * BR_BUF_LEN,
				      BR_BUF_LEN, i, u->br_mask, i);
	io_uring_buf_ring_advance(u->br, BR_ENTRIES);
	return;
err:
	fp__uring_br_unmap(u);
}

/* --- lists --------------------------------------------------------------- */

static void arm_push(struct uring *u, fp_io *io)
{
	io->state |= S_QUEUED;
	io->next = NULL;
	if (u->arm_tail)
		u->arm_tail->next = io;
	else
		u->arm_head = io;
	u->arm_tail = io;
}

static void arm_unlink(struct uring *u, fp_io *io)
{
	fp_io **pp, *prev = NULL;

	for (pp = &u->arm_head; *pp && *pp != io; pp = &(*pp)->next)
		prev = *pp;
	if (!*pp)
		return;
	*pp = io->next;
	if (u->arm_tail == io)
		u->arm_tail = prev;
	io->next = NULL;
	io->state &= ~S_QUEUED;
}

static void done_push(struct uring *u, fp_io *io, ssize_t res)
{
	io->res = res;
	io->state |= S_DONELIST;
	io->next = NULL;
	if (u->done_tail)
		u->done_tail->next = io;
	else
		u->done_head = io;
	u->done_tail = io;
}

void fp__uring_io_end(struct uring *u, fp_io *io, ssize_t res)
{
	if (io->state & S_OWNBUF) {
		rbuf_put(u, io->buf);
		io->buf = NULL;
	}
	io->state = 0;
	fp__io_finish(io, res, NULL);
}

/* After a one-shot completion: go again, unless a cancel came meanwhile. */
static void rearm(struct uring *u, fp_io *io)
{
	if (io->cancelled)
		fp__uring_io_end(u, io, -ECANCELED);
	else
		arm_push(u, io);
}

static void wq_dirty(struct uring *u, struct uwq *wq)
{
	if (wq->dirty)
		return;
	wq->dirty = 1;
	wq->dirty_next = u->dirty;
	u->dirty = wq;
}

/* --- read streams and accept --------------------------------------------- */

int fp__uring_arm_io(struct uring *u, fp_io *io)
{
	struct io_uring_sqe *sqe;
	int single = io->state & S_SINGLE;

	if (io->kind == FP_IO_READ && single && !io->buf) {
		io->buf = rbuf_get(u);
		if (!io->buf)
			return -ENOMEM;
		io->buflen = READ_BUF_LEN;
		io->state |= S_OWNBUF;
	}
	sqe = fp__uring_get_sqe(u);
	if (!sqe)
		return -EAGAIN;

	io->state &= ~S_MULTISHOT;
	if (io->kind == FP_IO_PWRITE) {
		/* The remaining iovecs at the offset of their first byte. */
		io_uring_prep_writev(sqe, io->fd, io->iov, (unsigned)io->iovcnt,
				     io->off + io->done);
	} else if (io->kind == FP_IO_FSYNC) {
		io_uring_prep_fsync(sqe, io->fd,
				    io->datasync ? IORING_FSYNC_DATASYNC : 0);
	} else if (io->kind == FP_IO_POLL) {
		io_uring_prep_poll_add(sqe, io->fd, io->events);
	} else if (io->state & S_POLLING) {
		io_uring_prep_poll_add(sqe, io->fd, POLLIN);
	} else if (io->kind == FP_IO_ACCEPT) {
		if (single) {
			io_uring_prep_accept(sqe, io->fd, NULL, NULL,
					     SOCK_NONBLOCK | SOCK_CLOEXEC);
		} else {
			io_uring_prep_multishot_accept(sqe, io->fd, NULL, NULL,
						       SOCK_NONBLOCK | SOCK_CLOEXEC);
			io->state |= S_MULTISHOT;
		}
	} else if (!single) {
		io_uring_prep_recv_multishot(sqe, io->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BR_GROUP;
		io->state |= S_MULTISHOT;
	} else if (io->is_socket) {
		io_uring_prep_recv(sqe, io->fd, io->buf, io->buflen, 0);
	} else {
		/* Offset -1: the file position, which pipes ignore. */
		io_uring_prep_read(sqe, io->fd, io->buf, (unsigned)io->buflen,
				   (uint64_t)-1);
	}
	io->state |= S_INFLIGHT;
	fp__uring_sqe_own(u, sqe, io, UD_IO);
	return 0;
}

int fp__uring_read_start(fp_loop *loop, fp_io *io)
{
	struct uring *u = loop->impl;
	struct stat st;

	/* loop.c hands its own buffer only to the signalfd stream. */
	if (!io->buf) {
		if (fstat(io->fd, &st) < 0)
			return -errno;
		io->is_socket = S_ISSOCK(st.st_mode);
	}
	if (!io->is_socket || !u->br || u->no_multishot)
		io->state |= S_SINGLE;
	arm_push(u, io);
	return 0;
}

int fp__uring_accept_start(fp_loop *loop, fp_io *io)
{
	struct uring *u = loop->impl;

	io->is_socket = 1;
	if (u->no_multishot)
		io->state |= S_SINGLE;
	arm_push(u, io);
	return 0;
}

static void read_cqe(struct uring *u, fp_io *io, int res, unsigned flags)
{
	int more = flags & IORING_CQE_F_MORE;
	int was_multishot = io->state & S_MULTISHOT;
	const char *buf = io->buf;
	int bid = -1;

	if (flags & IORING_CQE_F_BUFFER) {
		bid = (int)(flags >> IORING_CQE_BUFFER_SHIFT);
		buf = u->brbufs + (size_t)bid * BR_BUF_LEN;
	}
	if (res > 0) {
		/*
		 * After a cancel nothing but the last callback is due, unless
		 * the read is only paused: these bytes left the socket already.
		 */
		if (!io->cancelled || io->keep)
			io->cb(io, res, buf);
		if (bid >= 0)
			br_recycle(u, (unsigned)bid);
		/* A multishot that ended after data (CQ pressure) restarts. */
		if (!more)
			rearm(u, io);
		return;
	}
	if (bid >= 0)
		br_recycle(u, (unsigned)bid);
	if (more)
		return;
	switch (res) {
	case -ENOBUFS:
		/*
		 * The buffer ring ran dry and ended the multishot. Every buffer
		 * of an earlier CQE is back by now (they are recycled as each
		 * callback returns), so re-arming makes progress.
		 */
	case -EINTR:
		rearm(u, io);
		return;
	case -EAGAIN:
		/* Kernels that honour O_NONBLOCK in io_uring reads: wait. */
		io->state |= S_POLLING;
		rearm(u, io);
		return;
	case -EINVAL:
		/* 5.19 has provided buffers but not multishot recv. */
		if (was_multishot) {
			io->state |= S_SINGLE;
			rearm(u, io);
			return;
		}
		break;
	}
	fp__uring_io_end(u, io, res);
}

static void accept_cqe(struct uring *u, fp_io *io, int res, unsigned flags)
{
	int more = flags & IORING_CQE_F_MORE;

	if (res >= 0) {
		/* Accepted after the cancel was asked for: nobody wants it. */
		if (io->cancelled)
			close(res);
		else
			io->cb(io, res, NULL);
		if (!more)
			rearm(u, io);
		return;
	}
	if (more) {
		/* Not seen from 6.x kernels, which end the multishot on any
		 * error; should one come, it is only worth a report. */
		if (!io->cancelled && res != -EINTR && res != -EAGAIN)
			io->cb(io, res, NULL);
		return;
	}
	if (res == -EINVAL && (io->state & S_MULTISHOT)) {
		/* Before 5.19 the multishot flag is refused. A listener that
		 * is not listening fails again, single-shot, and ends. */
		io->state |= S_SINGLE;
		rearm(u, io);
		return;
	}
	if (res == -EINTR || res == -EAGAIN) {
		rearm(u, io);
		return;
	}
	if (res != -ECANCELED && fp__accept_error_transient(-res)) {
		if (!io->cancelled)
			io->cb(io, res, NULL);
		rearm(u, io);
		return;
	}
	fp__uring_io_end(u, io, res);
}

/* --- readiness ------------------------------------------------------------ */

/*
 * One-shot POLL_ADDs, re-armed after each callback: the kernel checks the
 * file's readiness when a poll is armed, so this is level-triggered, which
 * is what fp_io_poll_start() promises. A multishot poll (5.13) posts only
 * on wake-ups, edge-triggered unless IORING_POLL_ADD_LEVEL (6.0) is given;
 * hiredis reads at most 16 KiB per readiness call, so an edge would strand
 * the rest of a large reply. The one SQE per event is cheap at the rates a
 * readiness user has here (a Redis connection, a few commands a second).
 */
int fp__uring_poll_start(fp_loop *loop, fp_io *io)
{
	arm_push(loop->impl, io);
	return 0;
}

static void poll_cqe(struct uring *u, fp_io *io, int res)
{
	if (res > 0) {
		if (!io->cancelled)
			io->cb(io, res, NULL);
		rearm(u, io);
		return;
	}
	if (res == 0 || res == -EINTR || res == -EAGAIN) {
		rearm(u, io);
		return;
	}
	fp__uring_io_end(u, io, res);
}

/* --- file writes and fsync ------------------------------------------------ */

int fp__uring_file_start(fp_loop *loop, fp_io *io)
{
	arm_push(loop->impl, io);
	return 0;
}

static void file_cqe(struct uring *u, fp_io *io, int res)
{
	if (res == -EINTR || res == -EAGAIN) {
		rearm(u, io);
		return;
	}
	if (io->kind == FP_IO_PWRITE && res >= 0) {
		fp__io_advance(io, (size_t)res);
		if (io->iovcnt) {
			/* A regular file takes at least a byte or says why;
			 * zero would only make us spin. */
			if (res == 0) {
				fp__uring_io_end(u, io, -EIO);
				return;
			}
			rearm(u, io);
			return;
		}
		fp__uring_io_end(u, io, (ssize_t)io->done);
		return;
	}
	fp__uring_io_end(u, io, res);
}

void fp__uring_io_cqe(struct uring *u, fp_io *io, int res, unsigned flags)
{
	if (!(flags & IORING_CQE_F_MORE)) {
		io->state &= ~(S_INFLIGHT | S_CANCEL_SENT);
		/* Queued only to have its cancel sent: too late for that. */
		if (io->state & S_QUEUED)
			arm_unlink(u, io);
	}
	if (io->state & S_POLLING) {
		io->state &= ~S_POLLING;
		if (res < 0 && res != -EINTR)
			fp__uring_io_end(u, io, res);
		else
			rearm(u, io);
		return;
	}
	if (io->kind == FP_IO_POLL)
		poll_cqe(u, io, res);
	else if (io->kind == FP_IO_PWRITE || io->kind == FP_IO_FSYNC)
		file_cqe(u, io, res);
	else if (io->kind == FP_IO_ACCEPT)
		accept_cqe(u, io, res, flags);
	else
		read_cqe(u, io, res, flags);
}

/* --- writes -------------------------------------------------------------- */

static struct uwq *wq_get(struct uring *u, int fd)
{
	struct uwq **n;
	unsigned cap;

	if ((unsigned)fd >= u->nwqs) {
		cap = u->nwqs ? u->nwqs : 64;
		while (cap <= (unsigned)fd)
			cap *= 2;
		n = realloc(u->wqs, cap * sizeof(*n));
		if (!n)
			return NULL;
		memset(n + u->nwqs, 0, (cap - u->nwqs) * sizeof(*n));
		u->wqs = n;
		u->nwqs = cap;
	}
	if (!u->wqs[fd]) {
		u->wqs[fd] = calloc(1, sizeof(struct uwq));
		if (!u->wqs[fd])
			return NULL;
		u->wqs[fd]->fd = fd;
	}
	return u->wqs[fd];
}

int fp__uring_write(fp_loop *loop, fp_io *io)
{
	struct uring *u = loop->impl;
	struct uwq *wq = wq_get(u, io->fd);

	if (!wq)
		return -ENOMEM;
	io->impl = wq;
	io->state |= S_QUEUED;
	io->next = NULL;
	if (wq->tail)
		wq->tail->next = io;
	else
		wq->head = io;
	wq->tail = io;
	wq_dirty(u, wq);
	return 0;
}

int fp__uring_wq_arm(struct uring *u, struct uwq *wq)
{
	struct io_uring_sqe *sqe;
	int n;

	if (wq->inflight) {
		if (wq->want_cancel && !wq->cancel_sent) {
			if (fp__uring_send_cancel(u, (uint64_t)(uintptr_t)wq |
					  UD_WQ) < 0)
				return -EAGAIN;
			wq->cancel_sent = 1;
		}
		wq->want_cancel = 0;
		return 0;
	}
	wq->want_cancel = 0;
	if (!wq->head)
		return 0;
	sqe = fp__uring_get_sqe(u);
	if (!sqe)
		return -EAGAIN;
	if (wq->want_poll) {
		wq->want_poll = 0;
		wq->polling = 1;
		io_uring_prep_poll_add(sqe, wq->fd, POLLOUT);
	} else {
		n = fp__wq_gather(wq->head, wq->iov, WQ_IOV, &wq->nios);
		if (wq->not_socket) {
			io_uring_prep_writev(sqe, wq->fd, wq->iov, (unsigned)n,
					     (uint64_t)-1);
		} else {
			memset(&wq->msg, 0, sizeof(wq->msg));
			wq->msg.msg_iov = wq->iov;
			wq->msg.msg_iovlen = (size_t)n;
			io_uring_prep_sendmsg(sqe, wq->fd, &wq->msg, MSG_NOSIGNAL);
		}
	}
	wq->inflight = 1;
	wq->cancel_sent = 0;
	fp__uring_sqe_own(u, sqe, wq, UD_WQ);
	return 0;
}

void fp__uring_wq_cqe(struct uring *u, struct uwq *wq, int res)
{
	fp_io *done = NULL, **dtail = &done, **pp, *io, *kept = NULL;
	unsigned i, nios = wq->nios;
	size_t n = res > 0 ? (size_t)res : 0, rem, take;
	int end;

	wq->inflight = 0;
	wq->cancel_sent = 0;
	if (wq->polling) {
		wq->polling = 0;
		if (res != -ECANCELED) {
			/* Writable, or an error the write itself will report. */
			wq_dirty(u, wq);
			return;
		}
	} else if (res == -ENOTSOCK && !wq->not_socket) {
		/* A pipe: sendmsg was the guess, writev it is until drained. */
		wq->not_socket = 1;
		wq_dirty(u, wq);
		return;
	} else if (res == -EINTR) {
		wq_dirty(u, wq);
		return;
	} else if (res == -EAGAIN) {
		wq->want_poll = 1;
		wq_dirty(u, wq);
		return;
	}
	wq->nios = 0;

	/* Account, and take out what is over, before any callback runs. */
	pp = &wq->head;
	for (i = 0; i < nios && (io = *pp); i++) {
		if (res >= 0) {
			rem = fp__io_remaining(io);
			take = n < rem ? n : rem;
			n -= take;
			fp__io_advance(io, take);
			end = io->iovcnt == 0;
			io->res = (ssize_t)io->done;
		} else if (res == -ECANCELED) {
			/* Nothing was written; only the cancelled ones end. */
			end = 0;
		} else {
			end = 1;
			io->res = res;
		}
		if (end || io->cancelled) {
			*pp = io->next;
			io->state &= ~S_QUEUED;
			io->next = NULL;
			*dtail = io;
			dtail = &io->next;
		} else {
			kept = io;
			pp = &io->next;
		}
	}
	if (!*pp)
		wq->tail = kept;
	if (wq->head)
		wq_dirty(u, wq);
	else
		wq->not_socket = 0;  /* the fd may be closed and reused now */

	while ((io = done)) {
		done = io->next;
		io->next = NULL;
		fp__uring_io_end(u, io, io->res);
	}
}

static void wq_cancel(struct uring *u, fp_io *io)
{
	struct uwq *wq = io->impl;
	fp_io **pp, *prev = NULL;
	unsigned idx = 0;

	/* Off the queue: its last callback is on its way already. */
	if (!(io->state & S_QUEUED))
		return;
	for (pp = &wq->head; *pp && *pp != io; pp = &(*pp)->next, idx++)
		prev = *pp;
	if (!*pp)
		return;
	if (wq->inflight && idx < wq->nios) {
		/* Its bytes are in the request: cancel the request; the ones
		 * that share it and are not cancelled go again. */
		if (!wq->cancel_sent) {
			if (fp__uring_send_cancel(u, (uint64_t)(uintptr_t)wq |
						  UD_WQ) == 0) {
				wq->cancel_sent = 1;
			} else {
				wq->want_cancel = 1;
				wq_dirty(u, wq);
			}
		}
		return;
	}
	*pp = io->next;
	if (wq->tail == io)
		wq->tail = prev;
	io->next = NULL;
	io->state &= ~S_QUEUED;
	if (!wq->head && !wq->inflight)
		wq->not_socket = 0;
	done_push(u, io, -ECANCELED);
}

void fp__uring_cancel(fp_loop *loop, fp_io *io)
{
	struct uring *u = loop->impl;

	if (io->kind == FP_IO_WRITE) {
		wq_cancel(u, io);
		return;
	}
	/*
	 * Queued to be armed: flush() ends it. Not in flight and not queued:
	 * we are inside its own callback, and the code after the callback
	 * sees the flag.
	 */
	if ((io->state & (S_QUEUED | S_DONELIST)) || !(io->state & S_INFLIGHT))
		return;
	if (io->state & S_CANCEL_SENT)
		return;
	if (fp__uring_send_cancel(u, (uint64_t)(uintptr_t)io | UD_IO) == 0)
		io->state |= S_CANCEL_SENT;
	else
		arm_push(u, io);
}
