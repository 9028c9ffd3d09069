/*
 * The io_uring backend: completions, not readiness.
 *
 * This header holds its insides, shared by pool/loop_uring*.c and nothing
 * else: the backend object, the per-operation state that user_data points
 * to, and what one part calls in another. loop_uring.c holds the ring
 * (setup, teardown, submission, the run loop, completion dispatch) and the
 * ops table, loop_uring_io.c read streams, accepts, writes, cancels and the
 * read buffers, loop_uring_timer.c the timer heap under one ring timeout.
 *
 * Every request's user_data points at the object that owns it, with the
 * object's kind in the two low bits (all three kinds are at least 8-byte
 * aligned): an fp_io for read streams and accepts, a per-fd write queue for
 * writes, the op of the one kernel timeout that serves all timers. user_data
 * 0 marks internal requests (cancel, timeout removal) whose completions carry
 * nothing to deliver.
 *
 * A timer already due when flush() runs (0 ms: "on the next round", as the
 * pool uses them) gets no kernel op at all: the run loop does not sleep and
 * fires it after its reap, as epoll's loop does with a zero timeout.
 *
 * Nothing is submitted from inside the calls of the API: they queue work on
 * lists that flush() turns into SQEs just before the single
 * io_uring_submit_and_wait() of each iteration, so a burst of callbacks costs
 * one system call. The exceptions are cancels and timeout removals, which are
 * prepared at once (they must precede anything that reuses their target's
 * address, and SQEs are consumed in order) but still only submitted with the
 * next batch.
 *
 * File writes and fsyncs (the journal's) are fp_io too, armed like one-shot
 * reads: IORING_OP_WRITEV at an explicit offset, re-armed for what a short
 * write left, and IORING_OP_FSYNC. They are never linked (IOSQE_IO_LINK):
 * a link orders an fsync after one SQE only, not after the other writes in
 * flight, and a short or failed write would cancel the fsync linked to it;
 * group commit instead starts its fsync from the callbacks of the writes
 * it must cover (loop.h).
 *
 * Kernel floors: IORING_FEAT_NODROP (5.5) so CQ overflow loses nothing,
 * IORING_OP_READ and the probe (5.6). Used when present, with fallbacks:
 * SINGLE_ISSUER|DEFER_TASKRUN (6.1), COOP_TASKRUN (5.19), provided-buffer
 * rings (5.19), multishot accept (5.19), multishot recv (6.0), cancel ANY
 * (5.19) for teardown.
 */
#ifndef FP_LOOP_URING_H
#define FP_LOOP_URING_H

#include <liburing.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

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

/* loop_uring.c: submission. */
struct io_uring_sqe *fp__uring_get_sqe(struct uring *u);
void fp__uring_sqe_own(struct uring *u, struct io_uring_sqe *sqe, void *p,
		       unsigned tag);
int fp__uring_send_cancel(struct uring *u, uint64_t target);

/* loop_uring_io.c: buffers, read streams, accepts, writes, cancels. */
void fp__uring_br_setup(struct uring *u);
void fp__uring_br_unmap(struct uring *u);
void fp__uring_io_end(struct uring *u, fp_io *io, ssize_t res);
int fp__uring_arm_io(struct uring *u, fp_io *io);
void fp__uring_io_cqe(struct uring *u, fp_io *io, int res, unsigned flags);
int fp__uring_wq_arm(struct uring *u, struct uwq *wq);
void fp__uring_wq_cqe(struct uring *u, struct uwq *wq, int res);
int fp__uring_read_start(fp_loop *loop, fp_io *io);
int fp__uring_accept_start(fp_loop *loop, fp_io *io);
int fp__uring_write(fp_loop *loop, fp_io *io);
int fp__uring_file_start(fp_loop *loop, fp_io *io);
int fp__uring_poll_start(fp_loop *loop, fp_io *io);
void fp__uring_cancel(fp_loop *loop, fp_io *io);

/* loop_uring_timer.c: the timer heap. */
int fp__uring_timer_arm(struct uring *u);
void fp__uring_timer_cqe(struct uring *u, struct utimer *op);
void fp__uring_timer_fire_due(struct uring *u);
int fp__uring_timer_start(fp_loop *loop, fp_timer *timer, uint64_t ms);
void fp__uring_timer_stop(fp_loop *loop, fp_timer *timer);

#endif
