/*
 * <forkpool/loop.h>: forkpool's event loop, for programs that run their own
 * I/O beside a pool on the same thread (forkpoold's HTTP server, its job
 * journal and Redis client are such programs). <forkpool.h> creates, runs and
 * frees a loop; this header adds what runs on it: I/O, timers, signals, the
 * clock, and the big-block allocator the engine uses for its buffers.
 *
 * Completion style: submit a read, write, accept or timer and get a callback
 * with its result. Two backends sit behind one interface: io_uring and epoll
 * (through libuv); fp_loop_backend_name() says which one runs.
 *
 * Errors: every fallible function returns 0 or a negative errno; a callback
 * gets its result as `res`, bytes or a negative errno.
 *
 * Ownership and lifetimes, in one place:
 *  - Callbacks run only from inside fp_loop_run() (or a pool call that runs
 *    the loop), never from inside the call that submitted or cancelled an
 *    operation.
 *  - An fp_io is caller-owned and must stay valid, untouched, until its last
 *    callback: the one after which fp_io_active(io) is false. Every started
 *    operation gets exactly one last callback, whether it finished, failed or
 *    was cancelled. Close an fd only after the last callback of every
 *    operation on it.
 *  - A timer is different: after fp_timer_stop() returns its callback will not
 *    run and the fp_timer may be freed at once.
 *  - Buffers a read stream hands to its callback are the loop's, valid during
 *    the callback only. Bytes given to a write are the caller's, and must stay
 *    valid until its callback.
 *  - The structs below are public so that a caller can embed them in its own
 *    objects; only their `data` member is the caller's, the rest is the
 *    loop's and may change in any release.
 */
#ifndef FP_LOOP_H
#define FP_LOOP_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <forkpool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_io fp_io;
typedef struct fp_timer fp_timer;
typedef struct fp_signal fp_signal;

/*
 * An operation's callback.
 *  read stream: res > 0 bytes in `buf` (loop-owned, valid during the
 *               callback only); res == 0 end of file (last); res < 0 -errno
 *               (last). -ECANCELED after fp_io_cancel().
 *  accept:      res >= 0 a new connection's fd (non-blocking, close-on-exec),
 *               owned by the callee; res < 0 -errno. Transient errors
 *               (EMFILE, ECONNABORTED...) are reported with the op still
 *               active; the op ends on cancel or a fatal error.
 *  write:       once: res = bytes written (all of them), or -errno.
 *  pwrite:      once: res = bytes written (all of them), or -errno.
 *  fsync:       once: res = 0, or -errno.
 *  poll:        res > 0 the ready events (POLLIN, POLLOUT, POLLERR,
 *               POLLHUP), again and again while the fd stays ready;
 *               res < 0 -errno (last). -ECANCELED after fp_io_cancel().
 */
typedef void (*fp_io_cb)(fp_io *io, ssize_t res, const char *buf);
typedef void (*fp_timer_cb)(fp_timer *timer);
typedef void (*fp_signal_cb)(fp_signal *sig, int signum);

#define FP_IO_IOV_MAX 8

enum fp_io_kind {
	FP_IO_NONE = 0,
	FP_IO_READ,     /* read stream */
	FP_IO_ACCEPT,   /* multishot accept */
	FP_IO_WRITE,
	FP_IO_PWRITE,   /* positional file write */
	FP_IO_FSYNC,
	FP_IO_POLL,     /* readiness, level-triggered */
};

struct fp_io {
	void *data;                  /* the caller's */

	/* Private to the loop and its backends. */
	fp_loop *loop;
	fp_io_cb cb;
	int fd;
	uint8_t kind;                /* enum fp_io_kind */
	uint8_t active;              /* started, last callback not yet run */
	uint8_t cancelled;
	uint8_t keep;                /* read paused: deliver what still arrives */
	uint8_t is_socket;
	uint8_t datasync;            /* fsync: fdatasync(2) */
	uint16_t events;             /* poll: POLLIN and/or POLLOUT */
	struct iovec iov[FP_IO_IOV_MAX];  /* write: what is left to write */
	int iovcnt;
	size_t done;                 /* write: bytes written so far */
	uint64_t off;                /* pwrite: file offset of iov's first byte */
	char *buf;                   /* read: loop-owned buffer, when one is used */
	size_t buflen;
	void *impl;                  /* backend's per-operation state */
	fp_io *next;                 /* backend's queues */
	ssize_t res;                 /* last result, while its callback is deferred */
	uint8_t state;               /* backend's flags for this operation */
};

struct fp_timer {
	void *data;

	/* Private. */
	fp_loop *loop;
	fp_timer_cb cb;
	uint64_t due_ms;             /* monotonic */
	void *impl;                  /* backend's per-timer state */
};

struct fp_signal {
	void *data;

	/* Private. */
	fp_loop *loop;
	fp_signal_cb cb;
	int signum;
	fp_signal *next;
};

/* Monotonic clock in milliseconds and nanoseconds. */
uint64_t fp_now_ms(void);
uint64_t fp_now_ns(void);

static inline int fp_io_active(const fp_io *io) { return io->active; }

/* Continuous reads from fd until EOF, error or cancel. fd must be non-blocking. */
int fp_io_read_start(fp_loop *loop, fp_io *io, int fd, fp_io_cb cb);

/* Accept connections on a listening, non-blocking socket until cancelled. */
int fp_io_accept_start(fp_loop *loop, fp_io *io, int fd, fp_io_cb cb);

/*
 * Write every byte of iov[0..iovcnt) (at most FP_IO_IOV_MAX entries; the
 * array is copied, the bytes must stay valid until the callback). Sockets are
 * written with MSG_NOSIGNAL: a closed peer is -EPIPE, never SIGPIPE.
 */
int fp_io_write(fp_loop *loop, fp_io *io, int fd, const struct iovec *iov,
		int iovcnt, fp_io_cb cb);

/*
 * File operations, for the journal: they may block in the kernel (a full
 * disk queue, a slow device) and so never run on the loop's thread. The
 * io_uring backend submits IORING_OP_WRITEV / IORING_OP_FSYNC (buffered
 * writes go to the ring's io-wq workers); the epoll backend hands them to
 * libuv's threadpool (uv_fs_write, uv_fs_fsync).
 *
 * fp_io_pwrite() writes every byte of iov[0..iovcnt) at file offset `off`
 * (pwritev(2): the file position is neither used nor moved), continuing
 * after a short write; the array is copied, the bytes must stay valid until
 * the callback. A pipe or socket is refused at once with -ESPIPE. Several
 * may be in flight on one fd; they may complete in
 * any order and, at overlapping offsets, land in any order.
 *
 * fp_io_fsync() is fsync(2), or fdatasync(2) when `datasync` is set. It is
 * not ordered against operations still in flight: it covers the writes
 * whose callbacks ran before it was started. That is what group commit
 * needs (one fsync for everything written so far) and why the backends do
 * not link it to a write.
 *
 * Cancelling either asks the backend not to start it; one already running
 * in the kernel or a pool thread finishes, and the callback still says
 * -ECANCELED, so what a cancelled write left in the file is unknown.
 */
int fp_io_pwrite(fp_loop *loop, fp_io *io, int fd, const struct iovec *iov,
		 int iovcnt, uint64_t off, fp_io_cb cb);
int fp_io_fsync(fp_loop *loop, fp_io *io, int fd, int datasync, fp_io_cb cb);

/*
 * Readiness, for libraries that do their own I/O on an fd they own (the
 * Redis client, server/redis_loop.c): the callback gets the ready events
 * of `events` (POLLIN and/or POLLOUT; POLLERR and POLLHUP always count),
 * level-triggered: while the fd stays ready the callback comes again after
 * each return, so a reader that takes only part of what is there is called
 * for the rest. It ends only with fp_io_cancel() or an error. Two polls
 * (one per direction) may watch one fd; a poll may share its fd with a
 * write but not with a read stream or accept. The fd is the caller's: it
 * may be closed once the cancel was asked for, the last callback follows.
 */
int fp_io_poll_start(fp_loop *loop, fp_io *io, int fd, unsigned events,
		     fp_io_cb cb);

/* Ask an active operation to end; its last callback follows with -ECANCELED. */
void fp_io_cancel(fp_io *io);

/*
 * End a read stream so that it can be started again later, losing nothing:
 * like fp_io_cancel(), except that bytes the backend has already taken from
 * the fd are still delivered (res > 0) before the last callback, instead of
 * being dropped. What is still in the fd stays there for the next start.
 */
void fp_io_read_pause(fp_io *io);

/* One-shot timer after `ms`. Starting an active timer re-arms it. */
int fp_timer_start(fp_loop *loop, fp_timer *timer, uint64_t ms, fp_timer_cb cb);
void fp_timer_stop(fp_timer *timer);
static inline int fp_timer_active(const fp_timer *t) { return t->cb != NULL; }

/*
 * Deliver `signum` to cb from the loop. The signal is blocked in the calling
 * thread and read from a signalfd; handlers never run. Several fp_signal may
 * watch different signals; one signal has at most one watcher per loop.
 */
int fp_signal_start(fp_loop *loop, fp_signal *sig, int signum, fp_signal_cb cb);
void fp_signal_stop(fp_signal *sig);

/* The signals the loop has blocked, for a child to unblock after fork(). */
void fp_loop_sigmask(const fp_loop *loop, sigset_t *out);

/* --- buffers -------------------------------------------------------------- */
/*
 * Memory for big blocks: a map's items and their arguments, the chunks
 * written to workers, a server's result buffers.
 *
 * Blocks of 256 KiB or more get a mapping of their own, marked
 * MADV_DONTFORK: a worker never touches them, so fork() need not copy their
 * page tables, and the master does not pay a copy-on-write fault for every
 * page it writes after each fork (in a VM, the bulk of a recycle's cost).
 * Blocks of 4 MiB and more also ask for transparent huge pages: a million-item
 * map touches some 100 MB at once, 25,000 faults in 4 KiB pages.
 *
 * Small blocks come from malloc. Both kinds are zeroed. fp_mem_alloc()
 * returns NULL when out of memory (or when len overflows); a block is
 * released with fp_mem_free() only, which accepts NULL. A child forked by
 * the caller must not touch a big block: it is not in the child.
 */
void *fp_mem_alloc(size_t len);
void fp_mem_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
