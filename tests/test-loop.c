/*
 * The event loop, under whichever backend FORKPOOL_LOOP names (meson runs
 * this once per backend). Every wait is the loop itself, bounded by a
 * watchdog timer that stops the loop and fails the test; nothing sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include <cmocka.h>

#include "forkpool/loop.h"

#define WATCHDOG_MS 10000

/* --- helpers ------------------------------------------------------------- */

/* The loop and a watchdog; `parts` counts what must still finish. */
struct ctx {
	fp_loop *loop;
	fp_timer wd;
	int wd_fired;
	int parts;
};

static void wd_cb(fp_timer *t)
{
	struct ctx *c = t->data;

	c->wd_fired = 1;
	fp_loop_stop(c->loop);
}

static const char *env_backend(void)
{
	const char *e = getenv("FORKPOOL_LOOP");

	return e ? e : "";
}

static void ctx_init(struct ctx *c, int parts)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(fp_loop_new(&c->loop, FP_LOOP_AUTO), 0);
	c->wd.data = c;
	assert_int_equal(fp_timer_start(c->loop, &c->wd, WATCHDOG_MS, wd_cb), 0);
	c->parts = parts;
}

/* One awaited thing finished; the last one releases the watchdog. */
static void ctx_part_done(struct ctx *c)
{
	if (--c->parts == 0)
		fp_timer_stop(&c->wd);
}

/* Run until every part is done; the loop must then have nothing pending. */
static void ctx_run(struct ctx *c)
{
	assert_int_equal(fp_loop_run(c->loop), 0);
	assert_false(c->wd_fired);
	assert_int_equal(c->parts, 0);
}

static void ctx_free(struct ctx *c)
{
	fp_timer_stop(&c->wd);
	fp_loop_free(c->loop);
}

static void socketpair_nb(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
				    SOCK_CLOEXEC, 0, sv), 0);
}

static void pipe_nb(int p[2])
{
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static unsigned char pat(size_t i, unsigned seed)
{
	return (unsigned char)((i * 131u + seed + (i >> 13)) & 0xff);
}

static char *pattern(size_t len, unsigned seed)
{
	char *p = malloc(len);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < len; i++)
		p[i] = (char)pat(i, seed);
	return p;
}

/* --- a reader that checks a byte pattern --------------------------------- */

struct sink {
	fp_io io;
	struct ctx *c;
	unsigned seed;
	const char *expect;    /* when set, the bytes to see instead of pat() */
	size_t expect_len;
	size_t got;
	size_t bad;            /* first mismatching offset + 1 */
	int data_calls;
	int ends;              /* last callbacks seen */
	int after_end;         /* callbacks after the last one */
	ssize_t final;
	int active_in_final;
	int cancel_at_first;   /* cancel from inside the first data callback */
	int data_after_cancel;
	int cancelled;
};

static void sink_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct sink *s = io->data;
	ssize_t i;

	if (s->ends) {
		s->after_end++;
		return;
	}
	if (res > 0) {
		assert_non_null(buf);
		if (s->cancelled)
			s->data_after_cancel++;
		s->data_calls++;
		for (i = 0; i < res && !s->bad; i++) {
			size_t at = s->got + (size_t)i;
			unsigned char want = s->expect ?
				(at < s->expect_len ? (unsigned char)s->expect[at] : 0) :
				pat(at, s->seed);

			if ((unsigned char)buf[i] != want ||
			    (s->expect && at >= s->expect_len))
				s->bad = at + 1;
		}
		s->got += res;
		if (s->cancel_at_first && !s->cancelled) {
			s->cancelled = 1;
			fp_io_cancel(io);
		}
		return;
	}
	s->ends++;
	s->final = res;
	s->active_in_final = fp_io_active(io);
	ctx_part_done(s->c);
}

static void sink_start(struct sink *s, struct ctx *c, int fd, unsigned seed)
{
	memset(s, 0, sizeof(*s));
	s->c = c;
	s->seed = seed;
	s->io.data = s;
	assert_int_equal(fp_io_read_start(c->loop, &s->io, fd, sink_cb), 0);
	assert_true(fp_io_active(&s->io));
}

static void sink_check_eof(struct sink *s, size_t len)
{
	assert_int_equal(s->ends, 1);
	assert_int_equal(s->after_end, 0);
	assert_int_equal(s->final, 0);
	assert_false(s->active_in_final);
	assert_false(fp_io_active(&s->io));
	assert_int_equal(s->bad, 0);
	assert_int_equal(s->got, len);
}

/* --- a writer that counts its callbacks ---------------------------------- */

struct wr {
	fp_io io;
	struct ctx *c;
	int calls;
	ssize_t res;
	int active_in_cb;
	int shut_fd;           /* shutdown(SHUT_WR) or close after writing */
	int close_fd;
};

static void wr_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct wr *w = io->data;

	w->calls++;
	w->res = res;
	w->active_in_cb = fp_io_active(io);
	if (w->shut_fd >= 0)
		shutdown(w->shut_fd, SHUT_WR);
	if (w->close_fd >= 0) {
		close(w->close_fd);
		w->close_fd = -1;
	}
	ctx_part_done(w->c);
}

static void wr_init(struct wr *w, struct ctx *c)
{
	memset(w, 0, sizeof(*w));
	w->c = c;
	w->io.data = w;
	w->shut_fd = -1;
	w->close_fd = -1;
}

/* --- backend choice ------------------------------------------------------ */

static void backend_matches_env(void **state)
{
	const char *env = env_backend();
	fp_loop_backend b;
	fp_loop *loop;
	int r;

	assert_int_equal(fp_loop_new(&loop, FP_LOOP_AUTO), 0);
	if (!strcmp(env, "uring"))
		assert_string_equal(fp_loop_backend_name(loop), "io_uring");
	else if (!strcmp(env, "epoll"))
		assert_string_equal(fp_loop_backend_name(loop), "epoll");
	fp_loop_free(loop);

	r = fp_loop_new(&loop, FP_LOOP_EPOLL);
	if (r == 0) {
		assert_string_equal(fp_loop_backend_name(loop), "epoll");
		fp_loop_free(loop);
	} else {
		assert_int_equal(r, -ENOTSUP);
	}

	assert_int_equal(fp_loop_backend_parse("uring", &b), 0);
	assert_int_equal(b, FP_LOOP_URING);
	assert_int_equal(fp_loop_backend_parse("io_uring", &b), 0);
	assert_int_equal(b, FP_LOOP_URING);
	assert_int_equal(fp_loop_backend_parse("epoll", &b), 0);
	assert_int_equal(b, FP_LOOP_EPOLL);
	assert_int_equal(fp_loop_backend_parse("uv", &b), 0);
	assert_int_equal(b, FP_LOOP_EPOLL);
	assert_int_equal(fp_loop_backend_parse("auto", &b), 0);
	assert_int_equal(b, FP_LOOP_AUTO);
	assert_int_equal(fp_loop_backend_parse("kqueue", &b), -EINVAL);
	assert_int_equal(fp_loop_backend_parse(NULL, &b), -EINVAL);
}

static void bad_env_is_refused(void **state)
{
	char *saved = strdup(env_backend());
	fp_loop *loop = (fp_loop *)&loop;

	setenv("FORKPOOL_LOOP", "kqueue", 1);
	assert_int_equal(fp_loop_new(&loop, FP_LOOP_AUTO), -EINVAL);
	assert_null(loop);
	setenv("FORKPOOL_LOOP", saved, 1);
	free(saved);
}

/* --- read streams -------------------------------------------------------- */

struct feeder {
	fp_timer t;
	struct ctx *c;
	int fd;
	unsigned seed;
	size_t off, chunk, total;
	int shut;              /* 1: shutdown(SHUT_WR), 0: close */
};

/* Writes one chunk per tick, so data also arrives while a read waits. */
static void feeder_cb(fp_timer *t)
{
	struct feeder *f = t->data;
	char buf[4096];
	size_t n = f->total - f->off < f->chunk ? f->total - f->off : f->chunk;
	size_t i;

	assert_true(n <= sizeof(buf));
	for (i = 0; i < n; i++)
		buf[i] = (char)pat(f->off + i, f->seed);
	assert_int_equal(write(f->fd, buf, n), (ssize_t)n);
	f->off += n;
	if (f->off < f->total) {
		assert_int_equal(fp_timer_start(f->c->loop, t, 1, feeder_cb), 0);
		return;
	}
	if (f->shut)
		shutdown(f->fd, SHUT_WR);
	else
		close(f->fd);
	f->fd = -1;
	ctx_part_done(f->c);
}

static void read_stream_case(int use_pipe)
{
	struct feeder f = { 0 };
	struct sink s;
	struct ctx c;
	int fds[2], rfd, wfd;
	char first[100];
	size_t i;

	ctx_init(&c, 2);
	if (use_pipe)
		pipe_nb(fds);
	else
		socketpair_nb(fds);
	rfd = fds[0];
	wfd = fds[1];

	/* Some data before the read starts, the rest in ticks, then EOF. */
	for (i = 0; i < sizeof(first); i++)
		first[i] = (char)pat(i, 7);
	assert_int_equal(write(wfd, first, sizeof(first)), (ssize_t)sizeof(first));
	sink_start(&s, &c, rfd, 7);

	f.c = &c;
	f.fd = wfd;
	f.seed = 7;
	f.off = sizeof(first);
	f.chunk = 3000;
	f.total = 60000;
	f.shut = !use_pipe;
	f.t.data = &f;
	assert_int_equal(fp_timer_start(c.loop, &f.t, 0, feeder_cb), 0);

	/* No callback from inside the starting call. */
	assert_int_equal(s.data_calls, 0);
	ctx_run(&c);
	sink_check_eof(&s, f.total);
	assert_true(s.data_calls >= 2);

	if (f.fd >= 0)
		close(f.fd);
	if (!use_pipe)
		close(wfd);
	close(rfd);
	ctx_free(&c);
}

/* --- a read paused and started again loses nothing ----------------------- */

struct pauser {
	fp_io io;
	struct ctx *c;
	fp_timer again;
	int fd;
	unsigned seed;
	size_t got, bad;
	int calls, pausing, pauses;
	ssize_t final;
};

static void pauser_cb(fp_io *io, ssize_t res, const char *buf);

static void pauser_again(fp_timer *t)
{
	struct pauser *s = t->data;

	assert_int_equal(fp_io_read_start(s->c->loop, &s->io, s->fd, pauser_cb), 0);
}

static void pauser_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct pauser *s = io->data;

	if (res > 0) {
		/* Bytes still come after the pause was asked: they must be next. */
		for (ssize_t i = 0; i < res && !s->bad; i++)
			if ((unsigned char)buf[i] != pat(s->got + (size_t)i, s->seed))
				s->bad = s->got + (size_t)i + 1;
		s->got += (size_t)res;
		if (!s->pausing && s->calls++ % 2 == 0) {
			s->pausing = 1;
			fp_io_read_pause(io);
		}
		return;
	}
	if (res == -ECANCELED && s->pausing) {
		/* Paused: what is left stays in the socket until we read again. */
		assert_false(fp_io_active(io));
		s->pausing = 0;
		s->pauses++;
		assert_int_equal(fp_timer_start(s->c->loop, &s->again, 2, pauser_again), 0);
		return;
	}
	s->final = res;
	ctx_part_done(s->c);
}

static void paused_read_loses_nothing(void **state)
{
	struct feeder f = { 0 };
	struct pauser s = { 0 };
	struct ctx c;
	int fds[2];

	char *first;

	ctx_init(&c, 2);
	socketpair_nb(fds);
	s.c = &c;
	s.fd = fds[0];
	s.seed = 11;
	s.io.data = &s;
	s.again.data = &s;
	/*
	 * More than one read buffer waiting before the read starts: io_uring
	 * then has several completions with data in flight when the pause is
	 * asked for, and they must be delivered, not dropped.
	 */
	first = pattern(150000, 11);
	assert_int_equal(write(fds[1], first, 150000), 150000);
	free(first);
	assert_int_equal(fp_io_read_start(c.loop, &s.io, s.fd, pauser_cb), 0);

	f.c = &c;
	f.fd = fds[1];
	f.seed = 11;
	f.off = 150000;
	f.chunk = 4000;
	f.total = 400000;
	f.shut = 1;
	f.t.data = &f;
	assert_int_equal(fp_timer_start(c.loop, &f.t, 0, feeder_cb), 0);
	ctx_run(&c);
	assert_int_equal(s.final, 0);
	assert_int_equal(s.bad, 0);
	assert_int_equal(s.got, f.total);
	assert_true(s.pauses >= 2);
	close(fds[1]);
	close(fds[0]);
	ctx_free(&c);
}

static void read_stream_socketpair(void **state)
{
	read_stream_case(0);
}

static void read_stream_pipe(void **state)
{
	read_stream_case(1);
}

/* The one-shot recv path the ring uses without multishot/buffer rings. */
static void read_stream_no_multishot(void **state)
{
	setenv("FORKPOOL_URING_NO_MULTISHOT", "1", 1);
	read_stream_case(0);
	read_stream_case(1);
	unsetenv("FORKPOOL_URING_NO_MULTISHOT");
}

/*
 * Many streams with data waiting at once: more than the provided-buffer
 * ring holds, so under io_uring multishot recvs end with -ENOBUFS and must
 * be re-armed without losing or reordering bytes.
 */
static void many_streams_exhaust_buffers(void **state)
{
	enum { N = 48, LEN = 160 * 1024 };
	struct sink *s = calloc(N, sizeof(*s));
	size_t *sent = calloc(N, sizeof(*sent));
	int (*fds)[2] = calloc(N, sizeof(*fds));
	char *data[N];
	struct ctx c;
	ssize_t w;
	int i, sz = 4 * LEN;

	assert_non_null(s);
	assert_non_null(sent);
	assert_non_null(fds);
	ctx_init(&c, N);
	for (i = 0; i < N; i++) {
		socketpair_nb(fds[i]);
		/* Room for the whole stream, so it is queued before the run. */
		setsockopt(fds[i][1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(fds[i][0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		data[i] = pattern(LEN, (unsigned)i);
		while (sent[i] < LEN) {
			w = write(fds[i][1], data[i] + sent[i], LEN - sent[i]);
			if (w <= 0)
				break;
			sent[i] += (size_t)w;
		}
		shutdown(fds[i][1], SHUT_WR);
		sink_start(&s[i], &c, fds[i][0], (unsigned)i);
	}
	ctx_run(&c);
	for (i = 0; i < N; i++) {
		assert_true(sent[i] > 0);
		sink_check_eof(&s[i], sent[i]);
		close(fds[i][0]);
		close(fds[i][1]);
		free(data[i]);
	}
	ctx_free(&c);
	free(s);
	free(sent);
	free(fds);
}

/* --- writes -------------------------------------------------------------- */

static void large_write_case(int use_pipe, size_t len)
{
	char *data = pattern(len, 3);
	struct iovec iov[3];
	struct sink s;
	struct wr w;
	struct ctx c;
	int fds[2];

	ctx_init(&c, 2);
	if (use_pipe)
		pipe_nb(fds);
	else
		socketpair_nb(fds);
	sink_start(&s, &c, fds[0], 3);

	/* Uneven pieces, so partial writes split them anywhere. */
	iov[0].iov_base = data;
	iov[0].iov_len = 1;
	iov[1].iov_base = data + 1;
	iov[1].iov_len = len / 3;
	iov[2].iov_base = data + 1 + len / 3;
	iov[2].iov_len = len - 1 - len / 3;
	wr_init(&w, &c);
	if (use_pipe)
		w.close_fd = fds[1];
	else
		w.shut_fd = fds[1];
	assert_int_equal(fp_io_write(c.loop, &w.io, fds[1], iov, 3, wr_cb), 0);
	assert_int_equal(w.calls, 0);

	ctx_run(&c);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.res, (ssize_t)len);
	assert_false(w.active_in_cb);
	sink_check_eof(&s, len);

	if (!use_pipe)
		close(fds[1]);
	close(fds[0]);
	ctx_free(&c);
	free(data);
}

static void large_write_socketpair(void **state)
{
	large_write_case(0, 8u << 20);
}

static void large_write_pipe(void **state)
{
	large_write_case(1, 4u << 20);
}

/*
 * Many writes queued on one fd at once arrive in order, each completing
 * once with its own length (the backends serialise and gather them).
 */
static void queued_writes_keep_order(void **state)
{
	enum { N = 2000 };
	size_t lens[N], total = 0, off;
	struct wr *w = calloc(N, sizeof(*w));
	struct iovec iov;
	struct sink s;
	struct ctx c;
	char *data;
	int fds[2], i;

	assert_non_null(w);
	for (i = 0; i < N; i++) {
		lens[i] = (size_t)(i % 7 == 0 ? 20000 : 1 + i % 97);
		total += lens[i];
	}
	data = pattern(total, 11);
	ctx_init(&c, N + 1);
	socketpair_nb(fds);
	sink_start(&s, &c, fds[0], 11);
	for (i = 0, off = 0; i < N; off += lens[i], i++) {
		wr_init(&w[i], &c);
		iov.iov_base = data + off;
		iov.iov_len = lens[i];
		assert_int_equal(fp_io_write(c.loop, &w[i].io, fds[1], &iov, 1, wr_cb), 0);
	}
	w[N - 1].shut_fd = fds[1];
	ctx_run(&c);
	for (i = 0; i < N; i++) {
		assert_int_equal(w[i].calls, 1);
		assert_int_equal(w[i].res, (ssize_t)lens[i]);
	}
	sink_check_eof(&s, total);
	close(fds[0]);
	close(fds[1]);
	ctx_free(&c);
	free(data);
	free(w);
}

/* Both directions of one fd at once: read and write share its poll. */
static void duplex_on_one_fd(void **state)
{
	enum { LEN = 3u << 20 };
	char *a2b = pattern(LEN, 21), *b2a = pattern(LEN, 22);
	struct sink sa, sb;
	struct wr wa, wb;
	struct iovec iov;
	struct ctx c;
	int fds[2];

	ctx_init(&c, 4);
	socketpair_nb(fds);
	sink_start(&sa, &c, fds[0], 22);
	sink_start(&sb, &c, fds[1], 21);
	wr_init(&wa, &c);
	wa.shut_fd = fds[0];
	wr_init(&wb, &c);
	wb.shut_fd = fds[1];
	iov.iov_base = a2b;
	iov.iov_len = LEN;
	assert_int_equal(fp_io_write(c.loop, &wa.io, fds[0], &iov, 1, wr_cb), 0);
	iov.iov_base = b2a;
	assert_int_equal(fp_io_write(c.loop, &wb.io, fds[1], &iov, 1, wr_cb), 0);
	ctx_run(&c);
	assert_int_equal(wa.res, LEN);
	assert_int_equal(wb.res, LEN);
	sink_check_eof(&sa, LEN);
	sink_check_eof(&sb, LEN);
	close(fds[0]);
	close(fds[1]);
	ctx_free(&c);
	free(a2b);
	free(b2a);
}

static void write_to_closed_peer_is_epipe(void **state)
{
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	struct sigaction sa;
	sigset_t pending;
	struct wr w;
	struct ctx c;
	int fds[2];

	/* Default action: a SIGPIPE would kill the test. */
	assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
	assert_true(sa.sa_handler == SIG_DFL);

	ctx_init(&c, 1);
	socketpair_nb(fds);
	close(fds[1]);
	wr_init(&w, &c);
	assert_int_equal(fp_io_write(c.loop, &w.io, fds[0], &iov, 1, wr_cb), 0);
	assert_int_equal(w.calls, 0);
	ctx_run(&c);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.res, -EPIPE);
	assert_int_equal(sigpending(&pending), 0);
	assert_false(sigismember(&pending, SIGPIPE));
	close(fds[0]);
	ctx_free(&c);
}

struct canceller {
	fp_timer t;
	fp_io *io;
};

static void canceller_cb(fp_timer *t)
{
	struct canceller *k = t->data;

	fp_io_cancel(k->io);
}

/* A write stuck on a full socket ends with -ECANCELED, once. */
static void cancel_pending_write(void **state)
{
	enum { LEN = 16u << 20 };
	char *data = pattern(LEN, 1);
	struct iovec iov = { .iov_base = data, .iov_len = LEN };
	struct canceller k = { 0 };
	struct wr w;
	struct ctx c;
	int fds[2];

	ctx_init(&c, 1);
	socketpair_nb(fds);
	wr_init(&w, &c);
	assert_int_equal(fp_io_write(c.loop, &w.io, fds[0], &iov, 1, wr_cb), 0);
	k.t.data = &k;
	k.io = &w.io;
	assert_int_equal(fp_timer_start(c.loop, &k.t, 20, canceller_cb), 0);
	ctx_run(&c);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.res, -ECANCELED);
	assert_false(fp_io_active(&w.io));
	close(fds[0]);
	close(fds[1]);
	ctx_free(&c);
	free(data);
}

/*
 * Three writes queued on a full socket; the middle one is cancelled while
 * the first is still going. The other two complete whole and the reader
 * sees exactly their bytes, in order. `late`: the last two are queued only
 * after the first is in the kernel, so the cancelled one is not part of the
 * request in flight (under io_uring the two cases take different paths).
 */
struct qcancel {
	fp_timer t;
	struct ctx *c;
	struct wr *w;
	struct sink *s;
	struct iovec iov[3];
	int fd, rfd, late;
};

static void qcancel_cb(fp_timer *t)
{
	struct qcancel *q = t->data;

	if (q->late) {
		assert_int_equal(fp_io_write(q->c->loop, &q->w[1].io, q->fd,
					     &q->iov[1], 1, wr_cb), 0);
		assert_int_equal(fp_io_write(q->c->loop, &q->w[2].io, q->fd,
					     &q->iov[2], 1, wr_cb), 0);
	}
	fp_io_cancel(&q->w[1].io);
	assert_int_equal(q->w[1].calls, 0);
	/* Now drain the socket. */
	assert_int_equal(fp_io_read_start(q->c->loop, &q->s->io, q->rfd, sink_cb), 0);
}

static void cancel_queued_write_case(int late)
{
	const size_t len[3] = { 4u << 20, 1000, 2000 };
	char *data = pattern(len[0] + len[1] + len[2], 9);
	char *expect = malloc(len[0] + len[2]);
	struct qcancel q = { 0 };
	struct wr w[3];
	struct sink s;
	struct ctx c;
	int fds[2], i;

	assert_non_null(expect);
	memcpy(expect, data, len[0]);
	memcpy(expect + len[0], data + len[0] + len[1], len[2]);
	ctx_init(&c, 4);
	socketpair_nb(fds);
	memset(&s, 0, sizeof(s));
	s.c = &c;
	s.io.data = &s;
	s.expect = expect;
	s.expect_len = len[0] + len[2];
	q.iov[0].iov_base = data;
	q.iov[1].iov_base = data + len[0];
	q.iov[2].iov_base = data + len[0] + len[1];
	for (i = 0; i < 3; i++) {
		q.iov[i].iov_len = len[i];
		wr_init(&w[i], &c);
	}
	w[2].shut_fd = fds[0];
	assert_int_equal(fp_io_write(c.loop, &w[0].io, fds[0], &q.iov[0], 1, wr_cb), 0);
	if (!late) {
		assert_int_equal(fp_io_write(c.loop, &w[1].io, fds[0], &q.iov[1], 1, wr_cb), 0);
		assert_int_equal(fp_io_write(c.loop, &w[2].io, fds[0], &q.iov[2], 1, wr_cb), 0);
	}
	q.c = &c;
	q.w = w;
	q.s = &s;
	q.fd = fds[0];
	q.rfd = fds[1];
	q.late = late;
	q.t.data = &q;
	assert_int_equal(fp_timer_start(c.loop, &q.t, 10, qcancel_cb), 0);
	ctx_run(&c);
	for (i = 0; i < 3; i++)
		assert_int_equal(w[i].calls, 1);
	assert_int_equal(w[0].res, (ssize_t)len[0]);
	assert_int_equal(w[1].res, -ECANCELED);
	assert_int_equal(w[2].res, (ssize_t)len[2]);
	sink_check_eof(&s, len[0] + len[2]);
	close(fds[0]);
	close(fds[1]);
	ctx_free(&c);
	free(expect);
	free(data);
}

static void cancel_queued_write(void **state)
{
	cancel_queued_write_case(0);
	cancel_queued_write_case(1);
}

/* A closed fd: refused at once or ended with -EBADF, never both. */
static void bad_fd_fails_cleanly(void **state)
{
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	struct sink s;
	struct wr w;
	struct ctx c;
	int fds[2], r;

	/* The loop first, so none of its own fds takes the closed numbers. */
	ctx_init(&c, 2);
	socketpair_nb(fds);
	close(fds[0]);
	close(fds[1]);

	memset(&s, 0, sizeof(s));
	s.c = &c;
	s.io.data = &s;
	r = fp_io_read_start(c.loop, &s.io, fds[0], sink_cb);
	if (r < 0) {
		assert_int_equal(r, -EBADF);
		assert_false(fp_io_active(&s.io));
		ctx_part_done(&c);
	}
	wr_init(&w, &c);
	assert_int_equal(fp_io_write(c.loop, &w.io, fds[1], &iov, 1, wr_cb), 0);
	ctx_run(&c);
	if (r == 0) {
		assert_int_equal(s.ends, 1);
		assert_int_equal(s.final, -EBADF);
	}
	assert_int_equal(s.data_calls, 0);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.res, -EBADF);
	ctx_free(&c);
}

/* --- accept -------------------------------------------------------------- */

struct acc {
	fp_io io;
	struct ctx *c;
	int want;
	int accepted;
	int nonblock_ok, cloexec_ok;
	int errors;
	int ends;
	ssize_t final;
	int active_in_final;
};

static void acc_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct acc *a = io->data;
	int fd = (int)res;

	if (!fp_io_active(io)) {
		a->ends++;
		a->final = res;
		a->active_in_final = fp_io_active(io);
		ctx_part_done(a->c);
		return;
	}
	if (res < 0) {
		a->errors++;
		return;
	}
	a->accepted++;
	if (fcntl(fd, F_GETFL) & O_NONBLOCK)
		a->nonblock_ok++;
	if (fcntl(fd, F_GETFD) & FD_CLOEXEC)
		a->cloexec_ok++;
	close(fd);
	if (a->accepted == a->want)
		fp_io_cancel(io);
}

static int listener(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

static int client(const struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	/* Loopback with backlog room: completes without the acceptor. */
	assert_int_equal(connect(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
	return fd;
}

struct dialer {
	fp_timer t;
	struct ctx *c;
	struct sockaddr_in addr;
	int fds[8];
	int n, max;
};

/* One connection per tick, each arriving while the accept waits. */
static void dialer_cb(fp_timer *t)
{
	struct dialer *d = t->data;

	d->fds[d->n++] = client(&d->addr);
	if (d->n < d->max)
		assert_int_equal(fp_timer_start(d->c->loop, t, 2, dialer_cb), 0);
}

static void accept_case(void)
{
	struct dialer d = { 0 };
	struct acc a = { 0 };
	struct ctx c;
	int lfd, i;

	ctx_init(&c, 1);
	lfd = listener(&d.addr);
	/* Three wait in the backlog before the accept starts. */
	for (i = 0; i < 3; i++)
		d.fds[d.n++] = client(&d.addr);
	a.c = &c;
	a.want = 6;
	a.io.data = &a;
	assert_int_equal(fp_io_accept_start(c.loop, &a.io, lfd, acc_cb), 0);
	assert_int_equal(a.accepted, 0);
	d.c = &c;
	d.max = 6;
	d.t.data = &d;
	assert_int_equal(fp_timer_start(c.loop, &d.t, 2, dialer_cb), 0);
	ctx_run(&c);
	assert_int_equal(a.accepted, 6);
	assert_int_equal(a.nonblock_ok, 6);
	assert_int_equal(a.cloexec_ok, 6);
	assert_int_equal(a.errors, 0);
	assert_int_equal(a.ends, 1);
	assert_int_equal(a.final, -ECANCELED);
	assert_false(a.active_in_final);
	assert_false(fp_io_active(&a.io));
	for (i = 0; i < d.n; i++)
		close(d.fds[i]);
	close(lfd);
	ctx_free(&c);
}

static void accept_connections(void **state)
{
	accept_case();
}

/* The re-armed single accept the ring uses without multishot accept. */
static void accept_connections_no_multishot(void **state)
{
	setenv("FORKPOOL_URING_NO_MULTISHOT", "1", 1);
	accept_case();
	unsetenv("FORKPOOL_URING_NO_MULTISHOT");
}

/* --- cancel -------------------------------------------------------------- */

/* Cancel at once, from a timer while in flight, and from a callback. */
static void cancel_read_case(int use_pipe)
{
	struct canceller k = { 0 };
	struct sink s1, s2, s3;
	struct ctx c;
	int a[2], b[2], d[2];

	ctx_init(&c, 3);
	if (use_pipe) {
		pipe_nb(a);
		pipe_nb(b);
		pipe_nb(d);
	} else {
		socketpair_nb(a);
		socketpair_nb(b);
		socketpair_nb(d);
	}

	sink_start(&s1, &c, a[0], 0);
	fp_io_cancel(&s1.io);
	assert_int_equal(s1.ends, 0);       /* never from inside the call */
	fp_io_cancel(&s1.io);               /* twice is harmless */

	sink_start(&s2, &c, b[0], 0);
	k.t.data = &k;
	k.io = &s2.io;
	assert_int_equal(fp_timer_start(c.loop, &k.t, 10, canceller_cb), 0);

	sink_start(&s3, &c, d[0], 5);
	s3.cancel_at_first = 1;
	assert_int_equal(write(d[1], "\x05", 1), 1);

	ctx_run(&c);
	assert_int_equal(s1.ends, 1);
	assert_int_equal(s1.final, -ECANCELED);
	assert_int_equal(s1.data_calls, 0);
	assert_false(fp_io_active(&s1.io));
	assert_int_equal(s2.ends, 1);
	assert_int_equal(s2.final, -ECANCELED);
	assert_false(fp_io_active(&s2.io));
	assert_int_equal(s3.ends, 1);
	assert_int_equal(s3.final, -ECANCELED);
	assert_int_equal(s3.data_calls, 1);
	assert_int_equal(s3.data_after_cancel, 0);
	assert_int_equal(s1.after_end + s2.after_end + s3.after_end, 0);

	close(a[0]); close(a[1]);
	close(b[0]); close(b[1]);
	close(d[0]); close(d[1]);
	ctx_free(&c);
}

static void cancel_read_socket(void **state)
{
	cancel_read_case(0);
}

static void cancel_read_pipe(void **state)
{
	cancel_read_case(1);
}

static void cancel_accept(void **state)
{
	struct sockaddr_in addr;
	struct canceller k = { 0 };
	struct acc a1 = { 0 }, a2 = { 0 };
	struct ctx c;
	int l1, l2;

	ctx_init(&c, 2);
	l1 = listener(&addr);
	l2 = listener(&addr);
	a1.c = a2.c = &c;
	a1.want = a2.want = -1;
	a1.io.data = &a1;
	a2.io.data = &a2;
	assert_int_equal(fp_io_accept_start(c.loop, &a1.io, l1, acc_cb), 0);
	fp_io_cancel(&a1.io);
	assert_int_equal(a1.ends, 0);
	assert_int_equal(fp_io_accept_start(c.loop, &a2.io, l2, acc_cb), 0);
	k.t.data = &k;
	k.io = &a2.io;
	assert_int_equal(fp_timer_start(c.loop, &k.t, 10, canceller_cb), 0);
	ctx_run(&c);
	assert_int_equal(a1.ends, 1);
	assert_int_equal(a1.final, -ECANCELED);
	assert_int_equal(a2.ends, 1);
	assert_int_equal(a2.final, -ECANCELED);
	assert_int_equal(a1.accepted + a2.accepted + a1.errors + a2.errors, 0);
	close(l1);
	close(l2);
	ctx_free(&c);
}

/*
 * The same traffic through a ring of four entries: submissions go out in
 * many batches from inside the loop and completions overflow the CQ into
 * the kernel's backlog; nothing may be lost or reordered. (Other backends
 * ignore the variable and just run the cases again.)
 */
static void tiny_ring_loses_nothing(void **state)
{
	setenv("FORKPOOL_URING_ENTRIES", "4", 1);
	many_streams_exhaust_buffers(state);
	queued_writes_keep_order(state);
	cancel_queued_write(state);
	accept_case();
	cancel_read_case(0);
	unsetenv("FORKPOOL_URING_ENTRIES");
}

/* --- timers -------------------------------------------------------------- */

struct tick {
	fp_timer t;
	struct ctx *c;
	int id;
	int *order;
	int *n;
	int fired;
	uint64_t started_ns;
	uint64_t ms;
	uint64_t elapsed_ns;
	int rearm;             /* times to start itself again */
};

static void tick_cb(fp_timer *t)
{
	struct tick *k = t->data;

	k->fired++;
	k->elapsed_ns = fp_now_ns() - k->started_ns;
	if (k->order)
		k->order[(*k->n)++] = k->id;
	assert_false(fp_timer_active(t));
	if (k->rearm > 0) {
		k->rearm--;
		k->started_ns = fp_now_ns();
		assert_int_equal(fp_timer_start(t->loop, t, k->ms, tick_cb), 0);
		return;
	}
	ctx_part_done(k->c);
}

static void tick_start(struct tick *k, struct ctx *c, int id, uint64_t ms)
{
	k->t.data = k;
	k->c = c;
	k->id = id;
	k->ms = ms;
	k->started_ns = fp_now_ns();
	assert_int_equal(fp_timer_start(c->loop, &k->t, ms, tick_cb), 0);
	assert_true(fp_timer_active(&k->t));
}

static void timers_fire_in_order(void **state)
{
	struct tick k[3] = { 0 };
	int order[3], n = 0, i;
	struct ctx c;

	ctx_init(&c, 3);
	tick_start(&k[0], &c, 30, 30);
	tick_start(&k[1], &c, 10, 10);
	tick_start(&k[2], &c, 20, 20);
	for (i = 0; i < 3; i++) {
		k[i].order = order;
		k[i].n = &n;
	}
	ctx_run(&c);
	assert_int_equal(n, 3);
	assert_int_equal(order[0], 10);
	assert_int_equal(order[1], 20);
	assert_int_equal(order[2], 30);
	for (i = 0; i < 3; i++) {
		assert_int_equal(k[i].fired, 1);
		/* Never early (libuv rounds to the millisecond). */
		assert_true(k[i].elapsed_ns + 1000000 >= k[i].ms * 1000000);
	}
	ctx_free(&c);
}

static void timer_rearm(void **state)
{
	struct tick a = { 0 }, b = { 0 };
	struct ctx c;

	ctx_init(&c, 2);
	/* Re-armed while active: the later deadline replaces the first. */
	tick_start(&a, &c, 1, 5000);
	tick_start(&a, &c, 1, 15);
	/* Re-armed from its own callback, three times in all. */
	tick_start(&b, &c, 2, 5);
	b.rearm = 2;
	ctx_run(&c);
	assert_int_equal(a.fired, 1);
	assert_true(a.elapsed_ns < 2000ull * 1000000);
	assert_int_equal(b.fired, 3);
	ctx_free(&c);
}

/*
 * A 0 ms timer that keeps starting itself again (the pool's "next round")
 * must let the loop go on with everything else: io_uring fires such timers
 * without a kernel op and without sleeping (loop_uring.h), so this pins that
 * the loop still reaps I/O and still fires a later timer meanwhile.
 */
struct spin {
	fp_timer next_round, writer;
	fp_io io;
	struct ctx *c;
	int fds[2];
	int rounds, got, writer_fired;
};

static void spin_round_cb(fp_timer *t)
{
	struct spin *s = t->data;

	s->rounds++;
	if (!s->got)
		assert_int_equal(fp_timer_start(t->loop, t, 0, spin_round_cb), 0);
}

static void spin_writer_cb(fp_timer *t)
{
	struct spin *s = t->data;

	s->writer_fired = 1;
	assert_int_equal(write(s->fds[1], "x", 1), 1);
}

static void spin_read_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct spin *s = io->data;

	if (res == -ECANCELED)
		return;
	assert_int_equal(res, 1);
	assert_int_equal(buf[0], 'x');
	s->got = 1;
	fp_io_cancel(io);
	ctx_part_done(s->c);
}

static void zero_ms_timer_starves_neither_io_nor_later_timers(void **state)
{
	struct spin s = { 0 };
	struct ctx c;

	ctx_init(&c, 1);
	s.c = &c;
	socketpair_nb(s.fds);
	s.io.data = &s;
	s.next_round.data = &s;
	s.writer.data = &s;
	assert_int_equal(fp_io_read_start(c.loop, &s.io, s.fds[0], spin_read_cb), 0);
	assert_int_equal(fp_timer_start(c.loop, &s.writer, 20, spin_writer_cb), 0);
	assert_int_equal(fp_timer_start(c.loop, &s.next_round, 0, spin_round_cb), 0);
	ctx_run(&c);
	assert_int_equal(s.writer_fired, 1);
	assert_int_equal(s.got, 1);
	/* It spun while the writer's 20 ms passed, and stopped once the byte came. */
	assert_true(s.rounds > 1);
	assert_false(fp_timer_active(&s.next_round));
	close(s.fds[0]);
	close(s.fds[1]);
	ctx_free(&c);
}

/*
 * More timers due at once than the submission queue and the completion
 * queue hold: submissions must go out in several batches and completions
 * that overflow the CQ must still arrive, each exactly once.
 */
static void count_cb(fp_timer *t)
{
	struct ctx *c = t->data;

	t->data = NULL;        /* a second firing would crash here */
	ctx_part_done(c);
}

static void many_timers_at_once(void **state)
{
	enum { N = 20000 };
	fp_timer *t = calloc(N, sizeof(*t));
	struct ctx c;
	int i;

	assert_non_null(t);
	ctx_init(&c, N);
	for (i = 0; i < N; i++) {
		t[i].data = &c;
		assert_int_equal(fp_timer_start(c.loop, &t[i], (uint64_t)(i % 3), count_cb), 0);
	}
	ctx_run(&c);
	for (i = 0; i < N; i++) {
		assert_null(t[i].data);
		assert_false(fp_timer_active(&t[i]));
	}
	ctx_free(&c);
	free(t);
}

static void never_cb(fp_timer *t)
{
	int *hits = t->data;

	(*hits)++;
}

static void timer_stop_prevents_callback(void **state)
{
	struct tick later = { 0 };
	fp_timer stopped = { 0 };
	fp_timer *heap;
	int hits = 0;
	struct ctx c;

	ctx_init(&c, 1);
	stopped.data = &hits;
	assert_int_equal(fp_timer_start(c.loop, &stopped, 5, never_cb), 0);
	fp_timer_stop(&stopped);
	assert_false(fp_timer_active(&stopped));
	fp_timer_stop(&stopped);            /* stopping twice is harmless */

	/* Freed the moment it is stopped (ASan would see a late touch). */
	heap = calloc(1, sizeof(*heap));
	assert_non_null(heap);
	heap->data = &hits;
	assert_int_equal(fp_timer_start(c.loop, heap, 1, never_cb), 0);
	fp_timer_stop(heap);
	free(heap);

	tick_start(&later, &c, 1, 40);
	ctx_run(&c);
	assert_int_equal(hits, 0);
	assert_int_equal(later.fired, 1);
	ctx_free(&c);
}

/* Two timers due together: whichever runs first stops and frees the other,
 * whose completion may already be waiting in the same batch. */
struct pair {
	fp_timer *t[2];
	int fired;
	struct ctx *c;
};

static void pair_cb(fp_timer *t)
{
	struct pair *p = t->data;
	int me = p->t[0] == t ? 0 : 1;

	p->fired++;
	fp_timer_stop(p->t[!me]);
	free(p->t[!me]);
	p->t[!me] = NULL;
	free(t);
	p->t[me] = NULL;
	ctx_part_done(p->c);
}

static void timer_stopped_and_freed_from_callback(void **state)
{
	struct pair p = { 0 };
	struct tick after = { 0 };
	struct ctx c;
	int i;

	ctx_init(&c, 2);
	p.c = &c;
	for (i = 0; i < 2; i++) {
		p.t[i] = calloc(1, sizeof(fp_timer));
		assert_non_null(p.t[i]);
		p.t[i]->data = &p;
		assert_int_equal(fp_timer_start(c.loop, p.t[i], 5, pair_cb), 0);
	}
	tick_start(&after, &c, 1, 30);
	ctx_run(&c);
	assert_int_equal(p.fired, 1);
	ctx_free(&c);
}

/* --- signals ------------------------------------------------------------- */

struct sigs {
	fp_signal usr1, chld;
	struct ctx *c;
	int got_usr1, got_chld, wrong;
	pid_t child;
};

static void sig_cb(fp_signal *sig, int signum)
{
	struct sigs *s = sig->data;

	if (sig == &s->usr1 && signum == SIGUSR1)
		s->got_usr1++;
	else if (sig == &s->chld && signum == SIGCHLD)
		s->got_chld++;
	else
		s->wrong++;
	fp_signal_stop(sig);
	ctx_part_done(s->c);
}

static void raise_both(fp_timer *t)
{
	assert_int_equal(raise(SIGUSR1), 0);
	assert_int_equal(kill(getpid(), SIGCHLD), 0);
}

static int blocked(int signum)
{
	sigset_t cur;

	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	return sigismember(&cur, signum);
}

/*
 * raise() is thread-directed, kill() process-directed: both must reach the
 * signalfd read, also when that read was submitted before they came. Under
 * io_uring this pins down that an IORING_OP_READ of a signalfd, completed
 * from task work, dequeues the loop thread's signals (true on 6.18).
 */
static void signals_case(int early)
{
	struct sigs s = { 0 };
	fp_timer t = { 0 };
	fp_signal dup = { 0 };
	sigset_t mask;
	struct ctx c;

	assert_false(blocked(SIGUSR1));
	ctx_init(&c, 2);
	s.c = &c;
	s.usr1.data = s.chld.data = &s;
	assert_int_equal(fp_signal_start(c.loop, &s.usr1, SIGUSR1, sig_cb), 0);
	assert_int_equal(fp_signal_start(c.loop, &s.chld, SIGCHLD, sig_cb), 0);
	assert_int_equal(fp_signal_start(c.loop, &dup, SIGUSR1, sig_cb), -EEXIST);
	assert_true(blocked(SIGUSR1));
	fp_loop_sigmask(c.loop, &mask);
	assert_true(sigismember(&mask, SIGUSR1));
	assert_true(sigismember(&mask, SIGCHLD));
	assert_false(sigismember(&mask, SIGUSR2));

	if (early)
		raise_both(NULL);
	else
		assert_int_equal(fp_timer_start(c.loop, &t, 10, raise_both), 0);
	ctx_run(&c);
	assert_int_equal(s.got_usr1, 1);
	assert_int_equal(s.got_chld, 1);
	assert_int_equal(s.wrong, 0);
	/* Stopping the watchers gave the signals back. */
	assert_false(blocked(SIGUSR1));
	fp_loop_sigmask(c.loop, &mask);
	assert_false(sigismember(&mask, SIGUSR1));
	ctx_free(&c);
}

static void signals_delivered(void **state)
{
	signals_case(0);
	signals_case(1);
}

static void chld_cb(fp_signal *sig, int signum)
{
	struct sigs *s = sig->data;
	int status;

	if (signum != SIGCHLD) {
		s->wrong++;
		return;
	}
	/* Reap like the pool does; one SIGCHLD may stand for several. */
	if (waitpid(s->child, &status, WNOHANG) == s->child) {
		s->got_chld++;
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 7);
		fp_signal_stop(sig);
		ctx_part_done(s->c);
	}
}

static void sigchld_from_a_real_child(void **state)
{
	struct sigs s = { 0 };
	struct ctx c;

	ctx_init(&c, 1);
	s.c = &c;
	s.chld.data = &s;
	assert_int_equal(fp_signal_start(c.loop, &s.chld, SIGCHLD, chld_cb), 0);
	s.child = fork();
	assert_true(s.child >= 0);
	if (s.child == 0)
		_exit(7);
	ctx_run(&c);
	assert_int_equal(s.got_chld, 1);
	ctx_free(&c);
}

/* --- run semantics ------------------------------------------------------- */

static void stop_cb(fp_timer *t)
{
	struct tick *k = t->data;

	k->fired++;
	fp_loop_stop(k->c->loop);
}

static void run_returns_when_idle_and_runs_again(void **state)
{
	struct tick a = { 0 }, b = { 0 };
	fp_loop *loop;
	struct ctx c;

	/* Nothing pending: returns at once, as often as asked. */
	assert_int_equal(fp_loop_new(&loop, FP_LOOP_AUTO), 0);
	assert_int_equal(fp_loop_run(loop), 0);
	assert_int_equal(fp_loop_run(loop), 0);
	fp_loop_free(loop);

	ctx_init(&c, 1);
	tick_start(&a, &c, 1, 5);
	ctx_run(&c);
	assert_int_equal(a.fired, 1);
	/* Pending work again: the same loop runs it. */
	c.parts = 1;
	tick_start(&b, &c, 2, 5);
	assert_int_equal(fp_timer_start(c.loop, &c.wd, WATCHDOG_MS, wd_cb), 0);
	ctx_run(&c);
	assert_int_equal(b.fired, 1);
	ctx_free(&c);
}

static void stop_on_data(fp_io *io, ssize_t res, const char *buf)
{
	struct sink *s = io->data;

	sink_cb(io, res, buf);
	if (res > 0)
		fp_loop_stop(s->c->loop);
}

static void stop_on_cancel(fp_io *io, ssize_t res, const char *buf)
{
	if (!fp_io_active(io)) {
		assert_int_equal(res, -ECANCELED);
		fp_loop_stop(io->data);
	}
}

/*
 * Stopping from the last callback of a cancelled read, then freeing: the
 * stop must not outlive the run (libuv's stop flag once did, and teardown
 * then leaked its handles; LeakSanitizer in the sanitizer build sees it).
 */
static void stop_from_last_callback_then_free(void **state)
{
	fp_loop *loop;
	fp_io io = { 0 };
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(fp_loop_new(&loop, FP_LOOP_AUTO), 0);
	io.data = loop;
	assert_int_equal(fp_io_read_start(loop, &io, sv[0], stop_on_cancel), 0);
	fp_io_cancel(&io);
	assert_int_equal(fp_loop_run(loop), 0);
	assert_false(fp_io_active(&io));
	close(sv[0]);
	close(sv[1]);
	fp_loop_free(loop);
}

static void stop_from_callback(void **state)
{
	struct tick a = { 0 }, b = { 0 };
	struct sink s;
	struct ctx c;
	int fds[2];

	ctx_init(&c, 1);
	a.c = b.c = &c;
	a.t.data = &a;
	assert_int_equal(fp_timer_start(c.loop, &a.t, 5, stop_cb), 0);
	tick_start(&b, &c, 2, 5000);
	assert_int_equal(fp_loop_run(c.loop), 0);
	/* Returned on the stop, with the other timer still pending. */
	assert_int_equal(a.fired, 1);
	assert_int_equal(b.fired, 0);
	assert_true(fp_timer_active(&b.t));
	/* The stop ended that run only. */
	tick_start(&b, &c, 2, 5);
	ctx_run(&c);
	assert_int_equal(b.fired, 1);

	/* From a read callback, as the pool's blocking calls do; the stream
	 * carries on in the next run. */
	c.parts = 1;
	assert_int_equal(fp_timer_start(c.loop, &c.wd, WATCHDOG_MS, wd_cb), 0);
	socketpair_nb(fds);
	memset(&s, 0, sizeof(s));
	s.c = &c;
	s.io.data = &s;
	assert_int_equal(fp_io_read_start(c.loop, &s.io, fds[0], stop_on_data), 0);
	assert_int_equal(write(fds[1], "\x00", 1), 1);
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_false(c.wd_fired);
	assert_int_equal(s.got, 1);
	assert_true(fp_io_active(&s.io));
	assert_int_equal(write(fds[1], "\x83", 1), 1);
	close(fds[1]);
	/* One more stop on the second byte, then the EOF. */
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_int_equal(s.got, 2);
	ctx_run(&c);
	sink_check_eof(&s, 2);
	close(fds[0]);
	ctx_free(&c);
}

/* State lives in the loop object: two loops work side by side. */
static void two_loops_coexist(void **state)
{
	struct ctx c1, c2;
	struct sink s1, s2;
	int p1[2], p2[2];

	ctx_init(&c1, 1);
	ctx_init(&c2, 1);
	socketpair_nb(p1);
	socketpair_nb(p2);
	sink_start(&s1, &c1, p1[0], 0);
	sink_start(&s2, &c2, p2[0], 0);
	close(p1[1]);
	close(p2[1]);
	ctx_run(&c2);
	assert_int_equal(s2.ends, 1);
	assert_int_equal(s1.ends, 0);
	ctx_run(&c1);
	sink_check_eof(&s1, 0);
	sink_check_eof(&s2, 0);
	close(p1[0]);
	close(p2[0]);
	ctx_free(&c1);
	ctx_free(&c2);
}

/*
 * A forked child that frees the loop it inherited must not disturb the
 * parent's: the epoll set and the ring are shared kernel objects.
 */
struct late {
	fp_timer t;
	int fd;
};

static void late_write_cb(fp_timer *t)
{
	struct late *l = t->data;

	assert_int_equal(write(l->fd, "\x00\x83", 2), 2);
	shutdown(l->fd, SHUT_WR);
}

static void loop_freed_in_child_leaves_parent_working(void **state)
{
	struct late l = { 0 };
	uint64_t t0;
	struct sink s;
	struct ctx c;
	int fds[2], status;
	pid_t pid;

	ctx_init(&c, 1);
	socketpair_nb(fds);
	sink_start(&s, &c, fds[0], 0);
	l.t.data = &l;
	l.fd = fds[1];
	assert_int_equal(fp_timer_start(c.loop, &l.t, 20, late_write_cb), 0);
	/* Let the read reach the kernel before the fork. */
	assert_int_equal(fp_timer_start(c.loop, &c.wd, 1, wd_cb), 0);
	assert_int_equal(fp_loop_run(c.loop), 0);
	c.wd_fired = 0;
	assert_int_equal(fp_timer_start(c.loop, &c.wd, WATCHDOG_MS, wd_cb), 0);

	t0 = fp_now_ms();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fp_loop_free(c.loop);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The child did not wait for requests it cannot touch. */
	assert_true(fp_now_ms() - t0 < 500);

	ctx_run(&c);
	sink_check_eof(&s, 2);
	close(fds[0]);
	close(fds[1]);
	ctx_free(&c);
}

/* --- file writes and fsync ----------------------------------------------- */

/* A regular file in TMPDIR (not a memfd: fsync must reach a filesystem). */
static int tmp_file(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/fp-test-loop-XXXXXX",
		 dir && *dir ? dir : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

struct fops;

/* One file operation and what its callbacks said. */
struct fop {
	fp_io io;
	struct fops *f;
	int calls;
	int seq;               /* when its callback ran, among the test's */
	int active_in_cb;
	ssize_t res;
};

struct fops {
	struct ctx *c;
	int ncalls;
	int fd;
	int sync_after;        /* start `sync` when this many writes are done */
	int writes_done;
	struct fop sync;
};

static void fop_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct fop *o = io->data;
	struct fops *f = o->f;

	o->calls++;
	o->res = res;
	o->seq = f->ncalls++;
	o->active_in_cb = fp_io_active(io);
	if (io->kind == FP_IO_PWRITE && ++f->writes_done == f->sync_after)
		assert_int_equal(fp_io_fsync(f->c->loop, &f->sync.io, f->fd, 0,
					     fop_cb), 0);
	ctx_part_done(f->c);
}

static void fop_init(struct fop *o, struct fops *f)
{
	memset(o, 0, sizeof(*o));
	o->f = f;
	o->io.data = o;
	o->seq = -1;
}

static void fops_init(struct fops *f, struct ctx *c, int fd)
{
	memset(f, 0, sizeof(*f));
	f->c = c;
	f->fd = fd;
	fop_init(&f->sync, f);
}

/*
 * Writes at offsets, submitted last block first, each from three iovecs:
 * every one ends once with its full length, the file holds each at its
 * place, and an fsync started from the last write's callback ends after
 * all of them, with 0.
 */
static void pwrite_at_offsets_then_fsync(void **state)
{
	enum { N = 16, LEN = 65536 };
	char *data = pattern((size_t)N * LEN, 3), *back = malloc((size_t)N * LEN);
	struct fop w[N];
	struct iovec iov[3];
	struct fops f;
	struct ctx c;
	int fd, i;

	assert_non_null(back);
	ctx_init(&c, N + 1);
	fd = tmp_file();
	fops_init(&f, &c, fd);
	f.sync_after = N;
	for (i = N - 1; i >= 0; i--) {
		char *p = data + (size_t)i * LEN;

		fop_init(&w[i], &f);
		iov[0] = (struct iovec){ p, 100 };
		iov[1] = (struct iovec){ p + 100, 0 };
		iov[2] = (struct iovec){ p + 100, LEN - 100 };
		assert_int_equal(fp_io_pwrite(c.loop, &w[i].io, fd, iov, 3,
					      (uint64_t)i * LEN, fop_cb), 0);
		assert_true(fp_io_active(&w[i].io));
	}
	/* No callback from inside the submitting call. */
	assert_int_equal(f.ncalls, 0);
	ctx_run(&c);
	for (i = 0; i < N; i++) {
		assert_int_equal(w[i].calls, 1);
		assert_int_equal(w[i].res, LEN);
		assert_false(w[i].active_in_cb);
		assert_true(w[i].seq < f.sync.seq);
	}
	assert_int_equal(f.sync.calls, 1);
	assert_int_equal(f.sync.res, 0);
	assert_int_equal(f.sync.seq, N);
	assert_int_equal(pread(fd, back, (size_t)N * LEN, 0), (ssize_t)N * LEN);
	assert_memory_equal(back, data, (size_t)N * LEN);
	/* Positional: the file position never moved. */
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
	close(fd);
	ctx_free(&c);
	free(back);
	free(data);
}

/*
 * A short write is continued where it stopped: with RLIMIT_FSIZE at 64 KiB
 * a 100 KiB write lands its first 64 KiB, and the rest then fails with
 * EFBIG, which is what the callback says.
 */
static void pwrite_short_write_is_continued(void **state)
{
	enum { LIM = 65536, LEN = 102400 };
	char *data = pattern(LEN, 5), *back = malloc(LEN);
	struct rlimit old, lim;
	struct iovec iov = { data, LEN };
	void (*oldsig)(int);
	struct fops f;
	struct fop w;
	struct ctx c;
	int fd;

	assert_non_null(back);
	ctx_init(&c, 1);
	fd = tmp_file();
	fops_init(&f, &c, fd);
	fop_init(&w, &f);
	oldsig = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = LIM;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(fp_io_pwrite(c.loop, &w.io, fd, &iov, 1, 0, fop_cb), 0);
	ctx_run(&c);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.res, -EFBIG);
	assert_int_equal(lseek(fd, 0, SEEK_END), LIM);
	assert_int_equal(pread(fd, back, LIM, 0), LIM);
	assert_memory_equal(back, data, LIM);
	close(fd);
	ctx_free(&c);
	free(back);
	free(data);
}

/* Each error comes once, as -errno, and leaves the loop as it was. */
static void file_ops_report_errors(void **state)
{
	struct iovec iov = { "journal", 7 };
	struct fop w[4], s;
	struct fops f;
	struct ctx c;
	int ro, full, p[2];

	ctx_init(&c, 4);
	fops_init(&f, &c, -1);
	ro = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);
	full = open("/dev/full", O_WRONLY | O_CLOEXEC);
	assert_true(full >= 0);
	pipe_nb(p);
	fop_init(&w[0], &f);
	fop_init(&w[1], &f);
	fop_init(&w[2], &f);
	fop_init(&w[3], &f);
	fop_init(&s, &f);
	assert_int_equal(fp_io_pwrite(c.loop, &w[0].io, ro, &iov, 1, 0, fop_cb), 0);
	assert_int_equal(fp_io_pwrite(c.loop, &w[1].io, full, &iov, 1, 0, fop_cb), 0);
	/* No offsets on a pipe: refused at once, as by pwritev(2). */
	assert_int_equal(fp_io_pwrite(c.loop, &w[2].io, p[1], &iov, 1, 0, fop_cb), -ESPIPE);
	assert_false(fp_io_active(&w[2].io));
	assert_int_equal(fp_io_pwrite(c.loop, &w[3].io, ro, &iov, 1, 4096, fop_cb), 0);
	assert_int_equal(fp_io_fsync(c.loop, &s.io, p[1], 1, fop_cb), 0);
	ctx_run(&c);
	assert_int_equal(w[0].calls, 1);
	assert_int_equal(w[0].res, -EBADF);
	assert_int_equal(w[1].calls, 1);
	assert_int_equal(w[1].res, -ENOSPC);
	assert_int_equal(w[2].calls, 0);
	assert_int_equal(w[3].res, -EBADF);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.res, -EINVAL);
	/* Bad arguments are refused at once, with no callback. */
	assert_int_equal(fp_io_pwrite(c.loop, &w[0].io, -1, &iov, 1, 0, fop_cb), -EINVAL);
	assert_int_equal(fp_io_pwrite(c.loop, &w[0].io, ro, &iov, 0, 0, fop_cb), -EINVAL);
	assert_int_equal(fp_io_pwrite(c.loop, &w[0].io, ro, &iov, 1,
				      (uint64_t)INT64_MAX + 1, fop_cb), -EINVAL);
	assert_int_equal(fp_io_fsync(c.loop, &s.io, -1, 0, fop_cb), -EINVAL);
	assert_false(fp_io_active(&w[0].io));
	close(ro);
	close(full);
	close(p[0]);
	close(p[1]);
	ctx_free(&c);
}

/* Cancelled before the loop ran: each ends once, with -ECANCELED. */
static void file_ops_cancel(void **state)
{
	struct iovec iov = { "journal", 7 };
	struct fop w, s;
	struct fops f;
	struct ctx c;
	int fd;

	ctx_init(&c, 2);
	fd = tmp_file();
	fops_init(&f, &c, fd);
	fop_init(&w, &f);
	fop_init(&s, &f);
	assert_int_equal(fp_io_pwrite(c.loop, &w.io, fd, &iov, 1, 0, fop_cb), 0);
	assert_int_equal(fp_io_fsync(c.loop, &s.io, fd, 0, fop_cb), 0);
	fp_io_cancel(&w.io);
	fp_io_cancel(&s.io);
	assert_int_equal(f.ncalls, 0);
	ctx_run(&c);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.res, -ECANCELED);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.res, -ECANCELED);
	close(fd);
	ctx_free(&c);
}

/* Freed with file operations in flight: no callback, nothing leaks (ASan). */
static void loop_freed_with_file_ops_pending(void **state)
{
	static char big[1 << 20];
	struct iovec iov = { big, sizeof(big) };
	struct fop w[4], s;
	struct fops f;
	fp_loop *loop;
	int fd, i;

	assert_int_equal(fp_loop_new(&loop, FP_LOOP_AUTO), 0);
	fd = tmp_file();
	fops_init(&f, NULL, fd);
	for (i = 0; i < 4; i++) {
		fop_init(&w[i], &f);
		assert_int_equal(fp_io_pwrite(loop, &w[i].io, fd, &iov, 1,
					      (uint64_t)i << 20, fop_cb), 0);
	}
	fop_init(&s, &f);
	assert_int_equal(fp_io_fsync(loop, &s.io, fd, 1, fop_cb), 0);
	fp_loop_free(loop);
	assert_int_equal(f.ncalls, 0);
	close(fd);
}

/*
 * Signals still reach the loop after file operations started threads (the
 * epoll backend's libuv pool): in a fresh child, whose pool those threads
 * are, a pwrite runs first and then SIGUSR1 is sent to the process three
 * times; a thread that left it unblocked would die of it, or swallow it.
 */
struct usr1 {
	fp_signal sig;
	fp_loop *loop;
	int got;
};

static void usr1_cb(fp_signal *sig, int signum)
{
	struct usr1 *u = sig->data;

	if (++u->got < 3) {
		kill(getpid(), SIGUSR1);
		return;
	}
	fp_signal_stop(sig);
	fp_loop_stop(u->loop);
}

static void file_ops_leave_signals_to_the_loop(void **state)
{
	struct iovec iov = { "journal", 7 };
	struct fops f;
	struct fop w;
	struct ctx c;
	struct usr1 u = { 0 };
	int status, fd;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		ctx_init(&c, 1);
		fd = tmp_file();
		fops_init(&f, &c, fd);
		fop_init(&w, &f);
		if (fp_io_pwrite(c.loop, &w.io, fd, &iov, 1, 0, fop_cb) < 0 ||
		    fp_loop_run(c.loop) < 0 || w.res != 7)
			_exit(2);
		u.sig.data = &u;
		u.loop = c.loop;
		if (fp_signal_start(c.loop, &u.sig, SIGUSR1, usr1_cb) < 0)
			_exit(3);
		assert_int_equal(fp_timer_start(c.loop, &c.wd, WATCHDOG_MS, wd_cb), 0);
		kill(getpid(), SIGUSR1);
		while (u.got < 3 && !c.wd_fired)
			fp_loop_run(c.loop);
		_exit(u.got == 3 ? 0 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* --- fallback when io_uring is forbidden --------------------------------- */

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#endif

static int forbid_io_uring(void)
{
	struct sock_filter f[] = {
#ifdef NATIVE_ARCH
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
#endif
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(f) / sizeof(f[0])),
		.filter = f,
	};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

static void quit_cb(fp_timer *t)
{
	(*(int *)t->data)++;
}

/* Runs in the child; the exit code names the first check that failed. */
static int fallback_child(void)
{
	const char *env = env_backend();
	fp_timer t = { 0 };
	fp_loop *loop;
	int fired = 0, r;

	if (forbid_io_uring() < 0)
		return 10;
	if (syscall(__NR_io_uring_setup, 4, NULL) != -1 || errno != EPERM)
		return 11;

	/* Forcing io_uring fails with what setup said (or: not built). */
	r = fp_loop_new(&loop, FP_LOOP_URING);
	if (!(r == -EPERM || (r == -ENOTSUP && strcmp(env, "uring"))))
		return 12;
	/* The environment forcing it fails the same way. */
	if (!strcmp(env, "uring") && fp_loop_new(&loop, FP_LOOP_AUTO) != -EPERM)
		return 13;

	setenv("FORKPOOL_LOOP", "auto", 1);
	if (fp_loop_new(&loop, FP_LOOP_AUTO) != 0)
		return 14;
	if (strcmp(fp_loop_backend_name(loop), "epoll"))
		return 15;
	/* And the fallback works. */
	t.data = &fired;
	if (fp_timer_start(loop, &t, 1, quit_cb) != 0 || fp_loop_run(loop) != 0 ||
	    fired != 1)
		return 16;
	fp_loop_free(loop);
	return 0;
}

static void auto_falls_back_when_seccomp_forbids_io_uring(void **state)
{
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fallback_child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status))
		print_error("fallback child failed check %d\n", WEXITSTATUS(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* --- readiness ------------------------------------------------------------ */

struct poller {
	fp_io io;
	struct ctx *c;
	int fd;
	size_t want, got;               /* bytes to take, a few per callback */
	int calls, ends, after_end;
	ssize_t final;
	const char *send;               /* POLLOUT: write this once, then stop */
	struct poller *peer;            /* POLLIN on the other end: answer it */
};

static void poller_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct poller *p = io->data;
	char tmp[16];
	ssize_t n;

	(void)buf;
	if (p->ends) {
		p->after_end++;
		return;
	}
	if (res < 0) {
		p->ends++;
		p->final = res;
		ctx_part_done(p->c);
		return;
	}
	p->calls++;
	if (p->send) {
		assert_true(res & POLLOUT);
		n = write(p->fd, p->send, strlen(p->send));
		assert_int_equal(n, (ssize_t)strlen(p->send));
		p->send = NULL;
		fp_io_cancel(io);
		return;
	}
	assert_true(res & POLLIN);
	/* Take only 3 bytes: the rest must bring the callback back. */
	n = read(p->fd, tmp, p->want - p->got < 3 ? p->want - p->got : 3);
	assert_true(n > 0);
	p->got += (size_t)n;
	if (p->got == p->want) {
		if (p->peer)
			assert_int_equal(write(p->fd, "pong", 4), 4);
		fp_io_cancel(io);
	}
}

static void poller_start(struct poller *p, struct ctx *c, int fd,
			 unsigned events)
{
	memset(p, 0, sizeof(*p));
	p->c = c;
	p->fd = fd;
	p->io.data = p;
	assert_int_equal(fp_io_poll_start(c->loop, &p->io, fd, events, poller_cb), 0);
}

/* A reader that leaves bytes behind is called again for them. */
static void poll_is_level_triggered(void **state)
{
	struct poller p;
	struct ctx c;
	int sv[2];

	(void)state;
	ctx_init(&c, 1);
	socketpair_nb(sv);
	assert_int_equal(write(sv[1], "0123456789abcdefghij", 20), 20);
	poller_start(&p, &c, sv[0], POLLIN);
	p.want = 20;
	assert_int_equal(p.calls, 0);       /* never from inside the call */
	ctx_run(&c);
	assert_int_equal(p.got, 20);
	assert_int_equal(p.calls, 7);       /* 3 bytes at a time */
	assert_int_equal(p.ends, 1);
	assert_int_equal(p.final, -ECANCELED);
	assert_int_equal(p.after_end, 0);
	assert_false(fp_io_active(&p.io));
	close(sv[0]);
	close(sv[1]);
	ctx_free(&c);
}

/*
 * Two polls on one fd, one per direction, as the Redis adapter keeps them:
 * the POLLOUT one sends a request and stops, the peer's POLLIN answers it,
 * and the first fd's POLLIN poll reads the answer.
 */
static void poll_both_directions_on_one_fd(void **state)
{
	struct poller out, in, peer;
	struct ctx c;
	int sv[2];

	(void)state;
	ctx_init(&c, 3);
	socketpair_nb(sv);
	poller_start(&in, &c, sv[0], POLLIN);
	in.want = 4;
	poller_start(&out, &c, sv[0], POLLOUT);
	out.send = "ping";
	poller_start(&peer, &c, sv[1], POLLIN);
	peer.want = 4;
	peer.peer = &in;
	ctx_run(&c);
	assert_int_equal(out.calls, 1);
	assert_int_equal(peer.got, 4);
	assert_int_equal(in.got, 4);
	assert_int_equal(out.final + in.final + peer.final, -3 * ECANCELED);
	assert_int_equal(out.after_end + in.after_end + peer.after_end, 0);
	close(sv[0]);
	close(sv[1]);
	ctx_free(&c);
}

/* The fd may be closed right after the cancel: hiredis closes its socket so. */
static void poll_cancel_then_close(void **state)
{
	struct poller p, q;
	struct ctx c;
	int sv[2];

	(void)state;
	ctx_init(&c, 2);
	socketpair_nb(sv);
	assert_int_equal(write(sv[1], "x", 1), 1);
	poller_start(&p, &c, sv[0], POLLIN);
	poller_start(&q, &c, sv[0], POLLOUT);
	fp_io_cancel(&p.io);
	fp_io_cancel(&q.io);
	fp_io_cancel(&q.io);                /* twice is harmless */
	close(sv[0]);
	ctx_run(&c);
	assert_int_equal(p.calls + q.calls, 0);
	assert_int_equal(p.final, -ECANCELED);
	assert_int_equal(q.final, -ECANCELED);
	assert_int_equal(p.after_end + q.after_end, 0);
	close(sv[1]);
	ctx_free(&c);
}

static void poll_bad_arguments(void **state)
{
	struct poller p;
	struct ctx c;
	int sv[2];

	(void)state;
	ctx_init(&c, 0);
	socketpair_nb(sv);
	memset(&p, 0, sizeof(p));
	assert_int_equal(fp_io_poll_start(c.loop, &p.io, sv[0], 0, poller_cb), -EINVAL);
	assert_int_equal(fp_io_poll_start(c.loop, &p.io, sv[0], POLLPRI, poller_cb), -EINVAL);
	assert_int_equal(fp_io_poll_start(c.loop, &p.io, -1, POLLIN, poller_cb), -EINVAL);
	assert_false(fp_io_active(&p.io));
	close(sv[0]);
	close(sv[1]);
	ctx_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(backend_matches_env),
		cmocka_unit_test(bad_env_is_refused),
		cmocka_unit_test(read_stream_socketpair),
		cmocka_unit_test(paused_read_loses_nothing),
		cmocka_unit_test(read_stream_pipe),
		cmocka_unit_test(read_stream_no_multishot),
		cmocka_unit_test(many_streams_exhaust_buffers),
		cmocka_unit_test(large_write_socketpair),
		cmocka_unit_test(large_write_pipe),
		cmocka_unit_test(queued_writes_keep_order),
		cmocka_unit_test(duplex_on_one_fd),
		cmocka_unit_test(write_to_closed_peer_is_epipe),
		cmocka_unit_test(cancel_pending_write),
		cmocka_unit_test(cancel_queued_write),
		cmocka_unit_test(bad_fd_fails_cleanly),
		cmocka_unit_test(pwrite_at_offsets_then_fsync),
		cmocka_unit_test(pwrite_short_write_is_continued),
		cmocka_unit_test(file_ops_report_errors),
		cmocka_unit_test(file_ops_cancel),
		cmocka_unit_test(loop_freed_with_file_ops_pending),
		cmocka_unit_test(file_ops_leave_signals_to_the_loop),
		cmocka_unit_test(accept_connections),
		cmocka_unit_test(accept_connections_no_multishot),
		cmocka_unit_test(cancel_read_socket),
		cmocka_unit_test(cancel_read_pipe),
		cmocka_unit_test(cancel_accept),
		cmocka_unit_test(poll_is_level_triggered),
		cmocka_unit_test(poll_both_directions_on_one_fd),
		cmocka_unit_test(poll_cancel_then_close),
		cmocka_unit_test(poll_bad_arguments),
		cmocka_unit_test(tiny_ring_loses_nothing),
		cmocka_unit_test(timers_fire_in_order),
		cmocka_unit_test(timer_rearm),
		cmocka_unit_test(zero_ms_timer_starves_neither_io_nor_later_timers),
		cmocka_unit_test(timer_stop_prevents_callback),
		cmocka_unit_test(timer_stopped_and_freed_from_callback),
		cmocka_unit_test(many_timers_at_once),
		cmocka_unit_test(signals_delivered),
		cmocka_unit_test(sigchld_from_a_real_child),
		cmocka_unit_test(run_returns_when_idle_and_runs_again),
		cmocka_unit_test(stop_from_callback),
		cmocka_unit_test(stop_from_last_callback_then_free),
		cmocka_unit_test(two_loops_coexist),
		cmocka_unit_test(loop_freed_in_child_leaves_parent_working),
		cmocka_unit_test(auto_falls_back_when_seccomp_forbids_io_uring),
	};
	fp_loop *loop;
	int r;

	/* Asked for io_uring and cannot have it: skip, don't fail. */
	r = fp_loop_new(&loop, FP_LOOP_AUTO);
	if (r < 0 && !strcmp(env_backend(), "uring")) {
		fprintf(stderr, "io_uring unavailable (%s): skipping\n", strerror(-r));
		return 77;
	}
	if (r == 0)
		fp_loop_free(loop);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
