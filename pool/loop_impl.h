/*
 * What the loop and its backends share, and nothing a caller of loop.h sees.
 *
 * One const ops table per backend and a void *impl for that backend's state
 * in the loop object (nginx ngx_event_actions_t, redis ae.c apidata). loop.c
 * validates arguments, keeps the counts that decide when fp_loop_run()
 * returns, and delivers every last callback through fp__io_finish() and
 * fp__timer_fire(), so the exactly-once rules live in one place.
 */
#ifndef FP_LOOP_IMPL_H
#define FP_LOOP_IMPL_H

#include <signal.h>
#include <stddef.h>
#include <sys/signalfd.h>

#include "forkpool/loop.h"

struct fp_loop_ops {
	const char *name;              /* fp_loop_backend_name() */

	/* Set loop->impl. -errno when the backend cannot start here. */
	int (*init)(fp_loop *loop);
	/* Free everything, in-flight kernel work included; no callbacks. */
	void (*deinit)(fp_loop *loop);
	/* Run until loop->stopping or !fp__loop_alive(loop); 0 or -errno. */
	int (*run)(fp_loop *loop);
	/* fp_loop_stop() was called, perhaps from a callback. May be NULL. */
	void (*stop)(fp_loop *loop);

	/*
	 * Start an operation. io->fd, kind, cb, iov/iovcnt (write) are set and
	 * io->active is 1; buf is NULL unless loop.c provides one (the signal
	 * stream). A failure leaves nothing behind and no callback follows.
	 */
	int (*read_start)(fp_loop *loop, fp_io *io);
	int (*accept_start)(fp_loop *loop, fp_io *io);
	int (*write)(fp_loop *loop, fp_io *io);
	/* File operations: io->off / io->datasync are set. */
	int (*pwrite)(fp_loop *loop, fp_io *io);
	int (*fsync)(fp_loop *loop, fp_io *io);
	/* Readiness: io->events is set (POLLIN and/or POLLOUT). */
	int (*poll_start)(fp_loop *loop, fp_io *io);
	/* io->cancelled is already set; the last callback must come later. */
	void (*cancel)(fp_loop *loop, fp_io *io);

	/* Arm (or re-arm, when t->impl is set) a one-shot timer. */
	int (*timer_start)(fp_loop *loop, fp_timer *t, uint64_t ms);
	/* Detach: the callback must never run, t may be freed on return. */
	void (*timer_stop)(fp_loop *loop, fp_timer *t);
};

/* How many bytes the signal stream reads at once: whole siginfos. */
#define FP__SIGBUF_LEN (16 * sizeof(struct signalfd_siginfo))

struct fp_loop {
	const struct fp_loop_ops *ops;
	void *impl;                    /* the backend's state */

	unsigned nio;                  /* active caller operations */
	unsigned ntimers;              /* active timers */
	unsigned nsignals;             /* watched signals */
	uint8_t stopping;              /* fp_loop_stop() until run returns */
	uint8_t running;

	/*
	 * Signals: one signalfd per loop whose mask follows the watchers,
	 * read by an internal read stream that is not counted in nio, so a
	 * loop with nothing but an idle signalfd still counts as idle once
	 * the last watcher is gone.
	 */
	int sigfd;
	sigset_t sigwatched;           /* in the signalfd's mask */
	sigset_t sigblocked;           /* blocked by us: unblock on stop */
	fp_signal *signals;
	fp_io sigio;
	char sigbuf[FP__SIGBUF_LEN];
};

extern const struct fp_loop_ops fp__loop_uring_ops;
extern const struct fp_loop_ops fp__loop_uv_ops;

/* Something is pending and nobody asked to stop. */
static inline int fp__loop_alive(const fp_loop *loop)
{
	return !loop->stopping &&
	       (loop->nio || loop->ntimers || loop->nsignals);
}

/*
 * Deliver the last callback of io: it becomes inactive first, so the
 * callback may start it again or free it. A cancelled operation always
 * ends with -ECANCELED, whatever the kernel said, so callers see one rule.
 */
void fp__io_finish(fp_io *io, ssize_t res, const char *buf);

/* The timer's impl is already detached; run its callback once. */
void fp__timer_fire(fp_timer *t);

/* Bytes still to write in io->iov. */
size_t fp__io_remaining(const fp_io *io);
/* Account `n` written bytes to io; 1 once nothing is left. */
int fp__io_advance(fp_io *io, size_t n);

/*
 * Gather the unwritten parts of the queued writes from `head` (linked by
 * next) into iov[0..max): *nios receives how many operations contributed.
 * One sendmsg then carries many small messages (the benchmark case).
 */
int fp__wq_gather(fp_io *head, struct iovec *iov, int max, unsigned *nios);

/* accept(2) errors after which the listener is still usable. */
int fp__accept_error_transient(int err);

/* FORKPOOL_URING_NO_MULTISHOT=1 and the like: a boolean switch. */
int fp__env_flag(const char *name);

#define fp__container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#endif
