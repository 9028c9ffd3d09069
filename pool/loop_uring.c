/*
 * The io_uring backend: completions, not readiness.
 *
 * Every request's user_data points at the object that owns it, with the
 * object's kind in the two low bits (all three kinds are at least 8-byte
 * aligned): an fp_io for read streams and accepts, a per-fd write queue for
 * writes, the op of the one kernel timeout that serves all timers. user_data
 * 0 marks internal requests (cancel, timeout removal) whose completions carry
 * nothing to deliver.
 *
 * Nothing is submitted from inside the calls of the API: they queue work on
 * lists that flush() turns into SQEs just before the single
 * io_uring_submit_and_wait() of each iteration, so a burst of callbacks costs
 * one system call. The exceptions are cancels and timeout removals, which are
 * prepared at once (they must precede anything that reuses their target's
 * address, and SQEs are consumed in order) but still only submitted with the
 * next batch.
 *
 * Kernel floors: IORING_FEAT_NODROP (5.5) so CQ overflow loses nothing,
 * IORING_OP_READ and the probe (5.6). Used when present, with fallbacks:
 * SINGLE_ISSUER|DEFER_TASKRUN (6.1), COOP_TASKRUN (5.19), provided-buffer
 * rings (5.19), multishot accept (5.19), multishot recv (6.0), cancel ANY
 * (5.19) for teardown.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "loop_impl.h"

enum {
	SQ_ENTRIES = 1024,
	CQ_ENTRIES = 8192,
	BR_ENTRIES = 256,              /* provided buffers, a power of two */
	BR_BUF_LEN = 16384,
	BR_GROUP = 0,
	BR_RING_BYTES = BR_ENTRIES * sizeof(struct io_uring_buf),
	BR_BUFS_BYTES = BR_ENTRIES * BR_BUF_LEN,
	RBUF_MAP = 65536,              /* one-shot reads (pipes, fallback) */
	READ_BUF_LEN = RBUF_MAP - 16,  /* after the struct rbuf header */
	READ_BUF_CACHE = 16,
	WQ_IOV = 64,                   /* iovecs one sendmsg gathers */
	DRAIN_MS = 1000,               /* teardown waits this long at most */
};

enum { UD_IO = 0, UD_WQ = 1, UD_TIMER = 2, UD_MASK = 3 };

/* io->state */
enum {
	S_INFLIGHT = 1 << 0,           /* a request for it is prepared or in the kernel */
	S_MULTISHOT = 1 << 1,          /* ... a multishot one */
	S_POLLING = 1 << 2,            /* ... a POLL_ADD (or, queued: arm one) */
	S_QUEUED = 1 << 3,             /* on u->arm, or (writes) on its queue */
	S_DONELIST = 1 << 4,           /* on u->done: last callback pending */
	S_CANCEL_SENT = 1 << 5,
	S_SINGLE = 1 << 6,             /* one-shot requests only */
	S_OWNBUF = 1 << 7,             /* io->buf comes from the buffer cache */
};

/* A fallback read buffer; the data follows the header. */
struct rbuf {
	struct rbuf *prev, *next;
};
_Static_assert(sizeof(struct rbuf) == 16, "READ_BUF_LEN assumes a 16-byte header");

/*
 * Timers live in a min-heap here; the kernel holds one IORING_OP_TIMEOUT
 * for the earliest deadline. A TIMEOUT per fp_timer would cost a kernel
 * round under the ring's timeout lock for every start and stop (measured at
 * ~13 us each on this project's paravirtualised CI VM); a pool arms one per
 * task. Starting a timer later than the armed one, and every stop, touch no
 * kernel state. The op object outlives what it was armed for: when the
 * earliest deadline moves earlier the old op is marked stale, and its CQE,
 * whenever it comes, only frees it.
 */
struct utimer {
	struct __kernel_timespec ts;   /* absolute; read by the kernel at submission */
	uint64_t due;                  /* ns, CLOCK_MONOTONIC */
	struct utimer *next;           /* free list, or every live op */
};

struct theap_ent {
	uint64_t due;
	uint64_t seq;                  /* FIFO among equal deadlines */
	fp_timer *t;                   /* t->impl holds its index + 1 */
};

/*
 * Writes are serialised per fd: two sends in flight on one stream could
 * complete out of order (one waits for space, the next goes inline). The
 * request in flight gathers the head of the queue into one sendmsg.
 */
struct uwq {
	int fd;
	fp_io *head, *tail;
	unsigned nios;                 /* queue entries the request carries */
	uint8_t inflight, polling, dirty, not_socket;
	uint8_t want_poll, want_cancel, cancel_sent;
	struct uwq *dirty_next;
	struct msghdr msg;
	struct iovec iov[WQ_IOV];
};

struct ucqe {
	uint64_t ud;
	int32_t res;
	uint32_t flags;
};

struct uring {
	struct io_uring ring;
	fp_loop *loop;
	unsigned inflight;             /* requests whose last CQE is due */
	pid_t pid;                     /* the process that owns the requests */
	uint8_t enabled;               /* R_DISABLED lifted by the first run */
	uint8_t no_multishot;          /* FORKPOOL_URING_NO_MULTISHOT */

	struct io_uring_buf_ring *br;  /* NULL: no provided buffers here */
	char *brbufs;
	unsigned br_mask;

	fp_io *arm_head, *arm_tail;
	fp_io *done_head, *done_tail;
	struct uwq *dirty;
	struct theap_ent *heap;
	unsigned nheap, heap_cap;
	uint64_t tseq;
	struct utimer *tcur;           /* the armed op for heap[0], or NULL */
	struct utimer *tlive;          /* ops the kernel may still complete */
	struct utimer *tfree;

	struct uwq **wqs;
	unsigned nwqs;

	struct rbuf rused;             /* circular, sentinel */
	struct rbuf *rfree;
	unsigned nrfree;

	/* CQEs moved out of the ring to let a submission through. */
	struct ucqe *stash;
	unsigned nstash, stash_pos, stash_cap;
};

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

static void br_unmap(struct uring *u)
{
	if (u->br)
		munmap(u->br, BR_RING_BYTES);
	if (u->brbufs)
		munmap(u->brbufs, BR_BUFS_BYTES);
	u->br = NULL;
	u->brbufs = NULL;
}

static void br_setup(struct uring *u)
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
	br_unmap(u);
}

/* --- submission ---------------------------------------------------------- */

static int take_cqe(struct uring *u, struct ucqe *out)
{
	struct io_uring_cqe *cqe;

	if (io_uring_peek_cqe(&u->ring, &cqe) != 0 || !cqe)
		return 0;
	out->ud = cqe->user_data;
	out->res = cqe->res;
	out->flags = cqe->flags;
	io_uring_cqe_seen(&u->ring, cqe);
	if (!(out->flags & IORING_CQE_F_MORE))
		u->inflight--;
	return 1;
}

/*
 * Old kernels refuse submissions with -EBUSY while completions they could
 * not post wait; moving CQEs to memory makes room without running any
 * callback from inside a submitting call. reap() delivers them first.
 */
static void stash_cqes(struct uring *u)
{
	struct ucqe c, *n;

	while (1) {
		if (u->nstash == u->stash_cap) {
			unsigned cap = u->stash_cap ? u->stash_cap * 2 : 256;

			n = realloc(u->stash, cap * sizeof(*n));
			if (!n)
				return;
			u->stash = n;
			u->stash_cap = cap;
		}
		if (!take_cqe(u, &c))
			return;
		u->stash[u->nstash++] = c;
	}
}

static struct io_uring_sqe *get_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	int r;

	if (sqe)
		return sqe;
	/* A disabled ring takes no submissions; flush() retries in run. */
	if (!u->enabled)
		return NULL;
	r = io_uring_submit(&u->ring);
	if (r == -EBUSY || r == -EAGAIN) {
		stash_cqes(u);
		io_uring_submit(&u->ring);
	}
	return io_uring_get_sqe(&u->ring);
}

static void sqe_own(struct uring *u, struct io_uring_sqe *sqe, void *p,
		    unsigned tag)
{
	io_uring_sqe_set_data64(sqe, p ? (uint64_t)(uintptr_t)p | tag : 0);
	u->inflight++;
}

static int send_cancel(struct uring *u, uint64_t target)
{
	struct io_uring_sqe *sqe = get_sqe(u);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_cancel64(sqe, target, 0);
	sqe_own(u, sqe, NULL, 0);
	return 0;
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

static void io_end(struct uring *u, fp_io *io, ssize_t res)
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
		io_end(u, io, -ECANCELED);
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

static int arm_io(struct uring *u, fp_io *io)
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
	sqe = get_sqe(u);
	if (!sqe)
		return -EAGAIN;

	io->state &= ~S_MULTISHOT;
	if (io->state & S_POLLING) {
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
	sqe_own(u, sqe, io, UD_IO);
	return 0;
}

static int uring_read_start(fp_loop *loop, fp_io *io)
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

static int uring_accept_start(fp_loop *loop, fp_io *io)
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
		/* After a cancel nothing but the last callback is due. */
		if (!io->cancelled)
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
	io_end(u, io, res);
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
	io_end(u, io, res);
}

static void io_cqe(struct uring *u, fp_io *io, int res, unsigned flags)
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
			io_end(u, io, res);
		else
			rearm(u, io);
		return;
	}
	if (io->kind == FP_IO_ACCEPT)
		accept_cqe(u, io, res, flags);
	else
		read_cqe(u, io, res, flags);
}

static void uring_cancel(fp_loop *loop, fp_io *io);

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

static int uring_write(fp_loop *loop, fp_io *io)
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

static int wq_arm(struct uring *u, struct uwq *wq)
{
	struct io_uring_sqe *sqe;
	int n;

	if (wq->inflight) {
		if (wq->want_cancel && !wq->cancel_sent) {
			if (send_cancel(u, (uint64_t)(uintptr_t)wq | UD_WQ) < 0)
				return -EAGAIN;
			wq->cancel_sent = 1;
		}
		wq->want_cancel = 0;
		return 0;
	}
	wq->want_cancel = 0;
	if (!wq->head)
		return 0;
	sqe = get_sqe(u);
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
	sqe_own(u, sqe, wq, UD_WQ);
	return 0;
}

static void wq_cqe(struct uring *u, struct uwq *wq, int res)
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
		io_end(u, io, io->res);
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
			if (send_cancel(u, (uint64_t)(uintptr_t)wq | UD_WQ) == 0) {
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

static void uring_cancel(fp_loop *loop, fp_io *io)
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
	if (send_cancel(u, (uint64_t)(uintptr_t)io | UD_IO) == 0)
		io->state |= S_CANCEL_SENT;
	else
		arm_push(u, io);
}

/* --- timers -------------------------------------------------------------- */

static unsigned heap_idx(const fp_timer *t)
{
	return (unsigned)((uintptr_t)t->impl - 1);
}

static int heap_less(const struct theap_ent *a, const struct theap_ent *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(struct uring *u, unsigned i, struct theap_ent e)
{
	u->heap[i] = e;
	e.t->impl = (void *)(uintptr_t)(i + 1);
}

static void heap_sift(struct uring *u, unsigned i)
{
	struct theap_ent e = u->heap[i];
	unsigned c;

	while (i > 0 && heap_less(&e, &u->heap[(i - 1) / 2])) {
		heap_set(u, i, u->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	for (;;) {
		c = 2 * i + 1;
		if (c >= u->nheap)
			break;
		if (c + 1 < u->nheap && heap_less(&u->heap[c + 1], &u->heap[c]))
			c++;
		if (!heap_less(&u->heap[c], &e))
			break;
		heap_set(u, i, u->heap[c]);
		i = c;
	}
	heap_set(u, i, e);
}

static void heap_remove(struct uring *u, fp_timer *t)
{
	unsigned i = heap_idx(t);

	t->impl = NULL;
	if (--u->nheap == i)
		return;
	u->heap[i] = u->heap[u->nheap];
	heap_sift(u, i);
}

static int uring_timer_start(fp_loop *loop, fp_timer *timer, uint64_t ms)
{
	struct uring *u = loop->impl;
	struct theap_ent *n;
	unsigned cap;

	if (timer->impl) {
		heap_remove(u, timer);
	} else if (u->nheap == u->heap_cap) {
		cap = u->heap_cap ? u->heap_cap * 2 : 64;
		n = realloc(u->heap, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		u->heap = n;
		u->heap_cap = cap;
	}
	/* An absolute deadline: flush() may arm it much later than now. */
	u->heap[u->nheap].due = fp_now_ns() + ms * 1000000u;
	u->heap[u->nheap].seq = u->tseq++;
	u->heap[u->nheap].t = timer;
	u->nheap++;
	heap_sift(u, u->nheap - 1);
	return 0;
}

static void uring_timer_stop(fp_loop *loop, fp_timer *timer)
{
	/* The armed op may now be early; its CQE then just re-arms. */
	if (timer->impl)
		heap_remove(loop->impl, timer);
}

/* Make the kernel op cover heap[0]. -EAGAIN: no SQE, try again later. */
static int timer_arm(struct uring *u)
{
	struct io_uring_sqe *sqe;
	struct utimer *op;
	uint64_t due;

	if (!u->nheap || (u->tcur && u->tcur->due <= u->heap[0].due))
		return 0;
	sqe = get_sqe(u);
	if (!sqe)
		return -EAGAIN;
	op = u->tfree;
	if (op) {
		u->tfree = op->next;
	} else {
		op = malloc(sizeof(*op));
		if (!op) {
			/* Unused SQE: make it a no-op rather than leave junk. */
			io_uring_prep_nop(sqe);
			sqe_own(u, sqe, NULL, 0);
			return -EAGAIN;
		}
	}
	if (u->tcur) {
		/* Superseded: removal is best effort, its CQE is ignored. */
		io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)u->tcur |
					     UD_TIMER, 0);
		sqe_own(u, sqe, NULL, 0);
		u->tcur = NULL;
		sqe = get_sqe(u);
		if (!sqe) {
			op->next = u->tfree;
			u->tfree = op;
			return -EAGAIN;
		}
	}
	due = u->heap[0].due;
	op->due = due;
	op->ts.tv_sec = (long long)(due / 1000000000u);
	op->ts.tv_nsec = (long long)(due % 1000000000u);
	op->next = u->tlive;
	u->tlive = op;
	io_uring_prep_timeout(sqe, &op->ts, 0, IORING_TIMEOUT_ABS);
	sqe_own(u, sqe, op, UD_TIMER);
	u->tcur = op;
	return 0;
}

static void timer_cqe(struct uring *u, struct utimer *op)
{
	struct utimer **pp;
	uint64_t now, seq;
	fp_timer *t;
	int current = op == u->tcur;

	for (pp = &u->tlive; *pp != op; pp = &(*pp)->next)
		;
	*pp = op->next;
	op->next = u->tfree;
	u->tfree = op;
	if (!current)
		return;
	u->tcur = NULL;

	/*
	 * Fire what is due. Timers started by these callbacks wait for the
	 * next round even at 0 ms, so a timer re-arming itself cannot keep
	 * this loop going.
	 */
	now = fp_now_ns();
	seq = u->tseq;
	while (u->nheap && u->heap[0].due <= now && u->heap[0].seq < seq) {
		t = u->heap[0].t;
		heap_remove(u, t);
		fp__timer_fire(t);
	}
}

/* --- the loop ------------------------------------------------------------ */

static void dispatch(struct uring *u, const struct ucqe *c)
{
	void *p = (void *)(uintptr_t)(c->ud & ~(uint64_t)UD_MASK);

	if (!p)
		return;
	switch (c->ud & UD_MASK) {
	case UD_IO:
		io_cqe(u, p, c->res, c->flags);
		break;
	case UD_WQ:
		wq_cqe(u, p, c->res);
		break;
	case UD_TIMER:
		timer_cqe(u, p);
		break;
	}
}

/*
 * Turn queued work into SQEs. Returns 1 when some of it could not get an
 * SQE (the caller must then not sleep), 0 when everything went out.
 */
static int flush(struct uring *u)
{
	struct uwq *wq;
	fp_io *io;
	int r;

	while (u->done_head || u->arm_head || u->dirty ||
	       (u->nheap && (!u->tcur || u->tcur->due > u->heap[0].due))) {
		while ((io = u->done_head)) {
			u->done_head = io->next;
			if (!u->done_head)
				u->done_tail = NULL;
			io->next = NULL;
			io_end(u, io, io->res);
		}
		if (timer_arm(u) < 0)
			return 1;
		while ((io = u->arm_head)) {
			if (io->state & S_INFLIGHT) {
				/* Queued for its cancel only. */
				if (send_cancel(u, (uint64_t)(uintptr_t)io | UD_IO) < 0)
					return 1;
				io->state |= S_CANCEL_SENT;
				r = 0;
			} else if (io->cancelled) {
				r = -ECANCELED;
			} else {
				r = arm_io(u, io);
				if (r == -EAGAIN)
					return 1;
			}
			u->arm_head = io->next;
			if (!u->arm_head)
				u->arm_tail = NULL;
			io->next = NULL;
			io->state &= ~S_QUEUED;
			if (r < 0)
				io_end(u, io, r);
		}
		while ((wq = u->dirty)) {
			if (wq_arm(u, wq) < 0)
				return 1;
			u->dirty = wq->dirty_next;
			wq->dirty_next = NULL;
			wq->dirty = 0;
		}
	}
	return 0;
}

static void reap(struct uring *u)
{
	unsigned budget = io_uring_cq_ready(&u->ring);
	struct ucqe c;

	for (;;) {
		/* Stashed CQEs are older than anything still in the ring. */
		if (u->stash_pos < u->nstash) {
			c = u->stash[u->stash_pos++];
			dispatch(u, &c);
			continue;
		}
		u->nstash = u->stash_pos = 0;
		if (!budget--)
			break;
		if (!take_cqe(u, &c))
			break;
		dispatch(u, &c);
	}
}

static int ring_enable(struct uring *u)
{
	/* liburing 2.3 declares io_uring_enable_rings() but Debian's build
	 * does not export it; the call is one register opcode. */
	if (syscall(__NR_io_uring_register, u->ring.ring_fd,
		    IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		return -errno;
	u->enabled = 1;
	/* Registered per task: done here, in the thread that runs the loop. */
	io_uring_register_ring_fd(&u->ring);
	return 0;
}

static int uring_run(fp_loop *loop)
{
	struct uring *u = loop->impl;
	int r, blocked;

	/*
	 * The ring was created disabled so that SINGLE_ISSUER binds it to the
	 * thread that runs the loop, not the one that made it.
	 */
	if (!u->enabled && (r = ring_enable(u)) < 0)
		return r;

	for (;;) {
		if (loop->stopping)
			break;
		blocked = flush(u);
		if (!fp__loop_alive(loop))
			break;
		r = io_uring_submit_and_wait(&u->ring,
					     blocked || u->nstash ? 0 : 1);
		if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN &&
		    r != -ETIME)
			return r;
		reap(u);
	}
	/* Let the kernel start on what the last callbacks queued. */
	if (io_uring_sq_ready(&u->ring))
		io_uring_submit(&u->ring);
	return 0;
}

/*
 * Teardown must not leave requests running: a forked child may hold the
 * ring open, keeping them alive, and they would write into freed buffers.
 */
static int drain(struct uring *u)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100000000 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	uint64_t deadline = fp_now_ms() + DRAIN_MS;
	struct ucqe c;

	sqe = get_sqe(u);
	if (sqe) {
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
		sqe_own(u, sqe, NULL, 0);
	}
	while (u->inflight && fp_now_ms() < deadline) {
		if (io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts,
						     NULL) == -EINTR)
			continue;
		while (take_cqe(u, &c))
			;
	}
	return u->inflight ? -EBUSY : 0;
}

static void uring_deinit(fp_loop *loop)
{
	struct uring *u = loop->impl;
	struct utimer *t, *tn;
	struct rbuf *h, *hn;
	int leak = 0;
	unsigned i;

	if (!u)
		return;
	/*
	 * In a forked child the requests are the parent's: it can neither
	 * cancel nor wait for them (SINGLE_ISSUER), and must not try. Its copy
	 * of the buffers is its own memory, free to release.
	 */
	if (u->pid == getpid()) {
		if (u->enabled && u->inflight)
			leak = drain(u) < 0;
		if (u->br && u->enabled && !leak)
			io_uring_unregister_buf_ring(&u->ring, BR_GROUP);
	}
	io_uring_queue_exit(&u->ring);

	/*
	 * Requests that would not end may still own memory: keep it. A forked
	 * child never inherited the buffer mappings (MADV_DONTFORK); there
	 * the address may hold something else by now.
	 */
	if (u->pid == getpid()) {
		if (!leak) {
			br_unmap(u);
			for (h = u->rused.next; h != &u->rused; h = hn) {
				hn = h->next;
				munmap(h, RBUF_MAP);
			}
		}
		for (h = u->rfree; h; h = hn) {
			hn = h->next;
			munmap(h, RBUF_MAP);
		}
	}
	for (t = u->tlive; t; t = tn) {
		tn = t->next;
		free(t);
	}
	for (t = u->tfree; t; t = tn) {
		tn = t->next;
		free(t);
	}
	free(u->heap);
	for (i = 0; i < u->nwqs; i++)
		free(u->wqs[i]);
	free(u->wqs);
	free(u->stash);
	free(u);
	loop->impl = NULL;
}

static int uring_init(fp_loop *loop)
{
	/* Newest first; EINVAL means this kernel lacks a flag, try fewer. */
	static const unsigned ladder[] = {
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
			IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
		0,
	};
	static const int needed[] = {
		IORING_OP_READ, IORING_OP_RECV, IORING_OP_WRITEV,
		IORING_OP_SENDMSG, IORING_OP_ACCEPT, IORING_OP_ASYNC_CANCEL,
		IORING_OP_TIMEOUT, IORING_OP_TIMEOUT_REMOVE, IORING_OP_POLL_ADD,
	};
	struct io_uring_params p;
	struct io_uring_probe *probe;
	unsigned i, flags = 0, sq = SQ_ENTRIES, cq = CQ_ENTRIES;
	const char *env;
	unsigned long n;
	struct uring *u;
	int r = -EINVAL;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->loop = loop;
	u->pid = getpid();
	u->rused.next = u->rused.prev = &u->rused;

	/*
	 * FORKPOOL_URING_ENTRIES=n shrinks the rings (SQ n, CQ 2n) so tests
	 * reach the full-SQ and CQ-overflow paths with a handful of requests.
	 */
	env = getenv("FORKPOOL_URING_ENTRIES");
	if (env && (n = strtoul(env, NULL, 10)) >= 1 && n <= SQ_ENTRIES) {
		sq = (unsigned)n;
		cq = 2 * sq;
	}
	for (i = 0; i < sizeof(ladder) / sizeof(ladder[0]); i++) {
		memset(&p, 0, sizeof(p));
		flags = ladder[i];
		p.flags = flags | IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
		r = io_uring_queue_init_params(sq, &u->ring, &p);
		if (r != -EINVAL)
			break;
	}
	if (r < 0)
		goto err_free;
	u->enabled = !(flags & IORING_SETUP_R_DISABLED);

	r = -ENOSYS;
	if (!(p.features & IORING_FEAT_NODROP))
		goto err_exit;
	probe = io_uring_get_probe_ring(&u->ring);
	if (!probe)
		goto err_exit;
	for (i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		if (!io_uring_opcode_supported(probe, needed[i]))
			break;
	io_uring_free_probe(probe);
	if (i < sizeof(needed) / sizeof(needed[0]))
		goto err_exit;

	/* Forces the one-shot paths so tests cover them on new kernels too. */
	u->no_multishot = fp__env_flag("FORKPOOL_URING_NO_MULTISHOT");
	if (!u->no_multishot)
		br_setup(u);
	loop->impl = u;
	return 0;

err_exit:
	io_uring_queue_exit(&u->ring);
err_free:
	free(u);
	return r;
}

const struct fp_loop_ops fp__loop_uring_ops = {
	.name = "io_uring",
	.init = uring_init,
	.deinit = uring_deinit,
	.run = uring_run,
	.stop = NULL,
	.read_start = uring_read_start,
	.accept_start = uring_accept_start,
	.write = uring_write,
	.cancel = uring_cancel,
	.timer_start = uring_timer_start,
	.timer_stop = uring_timer_stop,
};
