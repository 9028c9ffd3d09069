/*
 * The loop object: choosing a backend, validating calls before they reach
 * it, the counts that decide when fp_loop_run() returns, and the parts both
 * backends share (signals through a signalfd, write-queue arithmetic).
 *
 * This file and the backend files are the only places that know which
 * backends exist; fp_config.h says which ones were compiled in.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fp_config.h"
#include "loop_impl.h"

/* --- clock --------------------------------------------------------------- */

uint64_t fp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t fp_now_ms(void)
{
	return fp_now_ns() / 1000000u;
}

/* --- choosing a backend -------------------------------------------------- */

static const struct fp_loop_ops *backend_ops(fp_loop_backend b)
{
	switch (b) {
	case FP_LOOP_URING:
#if FP_HAVE_URING
		return &fp__loop_uring_ops;
#else
		return NULL;
#endif
	case FP_LOOP_EPOLL:
#if FP_HAVE_UV
		return &fp__loop_uv_ops;
#else
		return NULL;
#endif
	default:
		return NULL;
	}
}

int fp_loop_backend_parse(const char *name, fp_loop_backend *out)
{
	if (!name || !out)
		return -EINVAL;
	if (!strcasecmp(name, "auto"))
		*out = FP_LOOP_AUTO;
	else if (!strcasecmp(name, "uring") || !strcasecmp(name, "io_uring"))
		*out = FP_LOOP_URING;
	else if (!strcasecmp(name, "epoll") || !strcasecmp(name, "uv"))
		*out = FP_LOOP_EPOLL;
	else
		return -EINVAL;
	return 0;
}

const char *fp_loop_backend_name(const fp_loop *loop)
{
	return loop ? loop->ops->name : "none";
}

static int loop_create(fp_loop **out, const struct fp_loop_ops *ops)
{
	fp_loop *loop;
	int r;

	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->ops = ops;
	loop->sigfd = -1;
	sigemptyset(&loop->sigwatched);
	sigemptyset(&loop->sigblocked);

	r = ops->init(loop);
	if (r < 0) {
		free(loop);
		return r;
	}
	*out = loop;
	return 0;
}

int fp_loop_new(fp_loop **out, fp_loop_backend backend)
{
	const struct fp_loop_ops *ops;
	const char *env;
	int r;

	if (!out)
		return -EINVAL;
	*out = NULL;

	if (backend == FP_LOOP_AUTO) {
		env = getenv("FORKPOOL_LOOP");
		/* A typo should not silently pick a backend. */
		if (env && *env && fp_loop_backend_parse(env, &backend) < 0)
			return -EINVAL;
	}

	if (backend != FP_LOOP_AUTO) {
		ops = backend_ops(backend);
		if (!ops)
			return backend == FP_LOOP_URING ||
			       backend == FP_LOOP_EPOLL ? -ENOTSUP : -EINVAL;
		return loop_create(out, ops);
	}

	/*
	 * Auto: io_uring when the ring can be set up. Any failure falls back,
	 * not just ENOSYS: EPERM comes from kernel.io_uring_disabled and
	 * seccomp, ENOMEM from RLIMIT_MEMLOCK on kernels before 5.12, EINVAL
	 * from kernels that lack what the backend requires.
	 */
	r = FP_ENO_BACKEND;
	ops = backend_ops(FP_LOOP_URING);
	if (ops && (r = loop_create(out, ops)) == 0)
		return 0;
	ops = backend_ops(FP_LOOP_EPOLL);
	if (ops && (r = loop_create(out, ops)) == 0)
		return 0;
	return r;
}

static void signals_release(fp_loop *loop);

void fp_loop_free(fp_loop *loop)
{
	if (!loop)
		return;
	/* The backend first: it cancels the read on the signalfd. */
	loop->ops->deinit(loop);
	signals_release(loop);
	free(loop);
}

int fp_loop_run(fp_loop *loop)
{
	int r;

	if (!loop)
		return -EINVAL;
	if (loop->running)
		return -EBUSY;
	loop->running = 1;
	r = loop->ops->run(loop);
	loop->running = 0;
	/* A stop ends one run; the next run starts afresh. */
	loop->stopping = 0;
	return r;
}

void fp_loop_stop(fp_loop *loop)
{
	if (!loop)
		return;
	loop->stopping = 1;
	if (loop->ops->stop)
		loop->ops->stop(loop);
}

/* --- operations ---------------------------------------------------------- */

void fp__io_finish(fp_io *io, ssize_t res, const char *buf)
{
	fp_loop *loop = io->loop;

	if (io->cancelled)
		res = -ECANCELED;
	io->active = 0;
	if (io != &loop->sigio)
		loop->nio--;
	io->cb(io, res, res > 0 ? buf : NULL);
}

static void io_prepare(fp_loop *loop, fp_io *io, int fd, uint8_t kind,
		       fp_io_cb cb)
{
	io->loop = loop;
	io->cb = cb;
	io->fd = fd;
	io->kind = kind;
	io->active = 1;
	io->cancelled = 0;
	io->keep = 0;
	io->is_socket = 0;
	io->iovcnt = 0;
	io->done = 0;
	io->off = 0;
	io->datasync = 0;
	io->events = 0;
	io->buf = NULL;
	io->buflen = 0;
	io->impl = NULL;
	io->next = NULL;
	io->res = 0;
	io->state = 0;
}

static int io_check(fp_loop *loop, fp_io *io, int fd, fp_io_cb cb)
{
	if (!loop || !io || !cb || fd < 0)
		return -EINVAL;
	if (io->active)
		return -EBUSY;
	return 0;
}

static int io_started(fp_loop *loop, fp_io *io, int r)
{
	if (r < 0) {
		io->active = 0;
		return r;
	}
	loop->nio++;
	return 0;
}

int fp_io_read_start(fp_loop *loop, fp_io *io, int fd, fp_io_cb cb)
{
	int r = io_check(loop, io, fd, cb);

	if (r < 0)
		return r;
	io_prepare(loop, io, fd, FP_IO_READ, cb);
	return io_started(loop, io, loop->ops->read_start(loop, io));
}

int fp_io_accept_start(fp_loop *loop, fp_io *io, int fd, fp_io_cb cb)
{
	int r = io_check(loop, io, fd, cb);

	if (r < 0)
		return r;
	io_prepare(loop, io, fd, FP_IO_ACCEPT, cb);
	return io_started(loop, io, loop->ops->accept_start(loop, io));
}

int fp_io_write(fp_loop *loop, fp_io *io, int fd, const struct iovec *iov,
		int iovcnt, fp_io_cb cb)
{
	int r = io_check(loop, io, fd, cb);
	int i;

	if (r < 0)
		return r;
	if (!iov || iovcnt < 1 || iovcnt > FP_IO_IOV_MAX)
		return -EINVAL;
	io_prepare(loop, io, fd, FP_IO_WRITE, cb);
	/* Empty entries are dropped so the gather never sees them. */
	for (i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			io->iov[io->iovcnt++] = iov[i];
	/* Socket or not is learnt per fd by the backends, from ENOTSOCK. */
	return io_started(loop, io, loop->ops->write(loop, io));
}

int fp_io_pwrite(fp_loop *loop, fp_io *io, int fd, const struct iovec *iov,
		 int iovcnt, uint64_t off, fp_io_cb cb)
{
	int r = io_check(loop, io, fd, cb);
	struct stat st;
	int i;

	if (r < 0)
		return r;
	if (!iov || iovcnt < 1 || iovcnt > FP_IO_IOV_MAX || off > INT64_MAX)
		return -EINVAL;
	/*
	 * A pipe or socket has no offsets: io_uring writes one as a stream,
	 * ignoring `off`, where pwritev(2) says ESPIPE. Say it here, for both.
	 */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
		return -ESPIPE;
	io_prepare(loop, io, fd, FP_IO_PWRITE, cb);
	io->off = off;
	for (i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			io->iov[io->iovcnt++] = iov[i];
	/* Nothing to write still gets its callback from the loop. */
	return io_started(loop, io, loop->ops->pwrite(loop, io));
}

int fp_io_fsync(fp_loop *loop, fp_io *io, int fd, int datasync, fp_io_cb cb)
{
	int r = io_check(loop, io, fd, cb);

	if (r < 0)
		return r;
	io_prepare(loop, io, fd, FP_IO_FSYNC, cb);
	io->datasync = datasync != 0;
	return io_started(loop, io, loop->ops->fsync(loop, io));
}

int fp_io_poll_start(fp_loop *loop, fp_io *io, int fd, unsigned events,
		     fp_io_cb cb)
{
	int r = io_check(loop, io, fd, cb);

	if (r < 0)
		return r;
	if (!events || (events & ~(unsigned)(POLLIN | POLLOUT)))
		return -EINVAL;
	io_prepare(loop, io, fd, FP_IO_POLL, cb);
	io->events = (uint16_t)events;
	return io_started(loop, io, loop->ops->poll_start(loop, io));
}

void fp_io_read_pause(fp_io *io)
{
	if (!io || !io->active || io->cancelled || io->kind != FP_IO_READ)
		return;
	io->keep = 1;
	fp_io_cancel(io);
}

void fp_io_cancel(fp_io *io)
{
	if (!io || !io->active || io->cancelled)
		return;
	io->cancelled = 1;
	io->loop->ops->cancel(io->loop, io);
}

size_t fp__io_remaining(const fp_io *io)
{
	size_t n = 0;
	int i;

	for (i = 0; i < io->iovcnt; i++)
		n += io->iov[i].iov_len;
	return n;
}

int fp__io_advance(fp_io *io, size_t n)
{
	int i = 0, j;

	io->done += n;
	while (i < io->iovcnt && n >= io->iov[i].iov_len)
		n -= io->iov[i++].iov_len;
	if (i < io->iovcnt) {
		io->iov[i].iov_base = (char *)io->iov[i].iov_base + n;
		io->iov[i].iov_len -= n;
	}
	for (j = 0; i < io->iovcnt; i++, j++)
		io->iov[j] = io->iov[i];
	io->iovcnt = j;
	return io->iovcnt == 0;
}

int fp__wq_gather(fp_io *head, struct iovec *iov, int max, unsigned *nios)
{
	unsigned ios = 0;
	int n = 0, i;
	fp_io *io;

	for (io = head; io && n < max; io = io->next) {
		for (i = 0; i < io->iovcnt && n < max; i++)
			iov[n++] = io->iov[i];
		ios++;
	}
	*nios = ios;
	return n;
}

int fp__accept_error_transient(int err)
{
	switch (err) {
	/* Per accept(2), Linux passes pending network errors on the new
	 * socket through accept; they say nothing about the listener. */
	case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT:
	case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP:
	case ENETUNREACH: case EPERM:
	/* Out of descriptors or memory: the caller may free some. */
	case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:
		return 1;
	default:
		return 0;
	}
}

int fp__env_flag(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0") != 0;
}

/* --- timers -------------------------------------------------------------- */

int fp_timer_start(fp_loop *loop, fp_timer *timer, uint64_t ms, fp_timer_cb cb)
{
	int was_active, r;

	if (!loop || !timer || !cb)
		return -EINVAL;
	was_active = fp_timer_active(timer);
	if (was_active && timer->loop != loop)
		return -EBUSY;
	if (!was_active) {
		timer->impl = NULL;
		timer->loop = loop;
	}
	r = loop->ops->timer_start(loop, timer, ms);
	if (r < 0)
		return r;
	timer->cb = cb;
	timer->due_ms = fp_now_ms() + ms;
	if (!was_active)
		loop->ntimers++;
	return 0;
}

void fp_timer_stop(fp_timer *timer)
{
	if (!timer || !fp_timer_active(timer))
		return;
	timer->loop->ops->timer_stop(timer->loop, timer);
	timer->impl = NULL;
	timer->cb = NULL;
	timer->loop->ntimers--;
}

void fp__timer_fire(fp_timer *t)
{
	fp_timer_cb cb = t->cb;

	t->impl = NULL;
	t->cb = NULL;
	t->loop->ntimers--;
	cb(t);
}

/* --- signals ------------------------------------------------------------- */

static fp_signal *signal_find(fp_loop *loop, int signum)
{
	fp_signal *s;

	for (s = loop->signals; s; s = s->next)
		if (s->signum == signum)
			return s;
	return NULL;
}

static void sigio_cb(fp_io *io, ssize_t res, const char *buf)
{
	fp_loop *loop = fp__container_of(io, fp_loop, sigio);
	struct signalfd_siginfo si;
	fp_signal *s;
	ssize_t off;

	/*
	 * The stream only ends on an error or when the loop is torn down; the
	 * next fp_signal_start() starts it again.
	 */
	if (res <= 0)
		return;
	/* signalfd reads whole siginfos; copy each, buf has no alignment. */
	for (off = 0; off + (ssize_t)sizeof(si) <= res; off += sizeof(si)) {
		memcpy(&si, buf + off, sizeof(si));
		/* Looked up each time: a callback may stop any watcher. */
		s = signal_find(loop, (int)si.ssi_signo);
		if (s)
			s->cb(s, (int)si.ssi_signo);
	}
}

static int sigio_start(fp_loop *loop)
{
	fp_io *io = &loop->sigio;
	int r;

	if (io->active)
		return 0;
	io_prepare(loop, io, loop->sigfd, FP_IO_READ, sigio_cb);
	io->buf = loop->sigbuf;
	io->buflen = sizeof(loop->sigbuf);
	r = loop->ops->read_start(loop, io);
	if (r < 0)
		io->active = 0;
	return r;
}

int fp_signal_start(fp_loop *loop, fp_signal *sig, int signum, fp_signal_cb cb)
{
	sigset_t one, old, watched;
	int r, fd;

	if (!loop || !sig || !cb || signum <= 0 || signum >= NSIG ||
	    signum == SIGKILL || signum == SIGSTOP)
		return -EINVAL;
	if (sigismember(&loop->sigwatched, signum))
		return -EEXIST;

	sigemptyset(&one);
	sigaddset(&one, signum);
	/*
	 * Block before the signalfd takes it: an unblocked signal would run
	 * its handler (or default action) instead of queueing for the fd.
	 */
	r = pthread_sigmask(SIG_BLOCK, &one, &old);
	if (r)
		return -r;

	watched = loop->sigwatched;
	sigaddset(&watched, signum);
	fd = signalfd(loop->sigfd, &watched,
		      loop->sigfd < 0 ? SFD_NONBLOCK | SFD_CLOEXEC : 0);
	if (fd < 0) {
		r = -errno;
		goto err_unblock;
	}
	if (loop->sigfd < 0)
		loop->sigfd = fd;
	loop->sigwatched = watched;
	if (!sigismember(&old, signum))
		sigaddset(&loop->sigblocked, signum);

	r = sigio_start(loop);
	if (r < 0)
		goto err_unwatch;

	sig->loop = loop;
	sig->cb = cb;
	sig->signum = signum;
	sig->next = loop->signals;
	loop->signals = sig;
	loop->nsignals++;
	return 0;

err_unwatch:
	sigdelset(&loop->sigwatched, signum);
	sigdelset(&loop->sigblocked, signum);
	signalfd(loop->sigfd, &loop->sigwatched, 0);
err_unblock:
	if (!sigismember(&old, signum))
		pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	return r;
}

void fp_signal_stop(fp_signal *sig)
{
	fp_loop *loop;
	fp_signal **pp;
	sigset_t one;

	if (!sig || !sig->loop)
		return;
	loop = sig->loop;
	for (pp = &loop->signals; *pp && *pp != sig; pp = &(*pp)->next)
		;
	if (!*pp)
		return;
	*pp = sig->next;
	sig->next = NULL;
	sig->loop = NULL;
	loop->nsignals--;

	sigdelset(&loop->sigwatched, sig->signum);
	signalfd(loop->sigfd, &loop->sigwatched, 0);
	/*
	 * Give back only what we took: a signal the caller had blocked
	 * before stays blocked. Two loops in one thread watching the same
	 * signal would need a shared count; the rule is one loop per thread.
	 */
	if (sigismember(&loop->sigblocked, sig->signum)) {
		sigdelset(&loop->sigblocked, sig->signum);
		sigemptyset(&one);
		sigaddset(&one, sig->signum);
		pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	}
}

void fp_loop_sigmask(const fp_loop *loop, sigset_t *out)
{
	if (!out)
		return;
	if (!loop) {
		sigemptyset(out);
		return;
	}
	/* Every watched signal is blocked, whoever blocked it first. */
	*out = loop->sigwatched;
}

static void signals_release(fp_loop *loop)
{
	if (loop->sigfd >= 0)
		close(loop->sigfd);
	loop->sigfd = -1;
	pthread_sigmask(SIG_UNBLOCK, &loop->sigblocked, NULL);
	sigemptyset(&loop->sigblocked);
	sigemptyset(&loop->sigwatched);
}
