/*
 * The io_uring backend: the ring's setup and teardown, batched submission,
 * the run loop, completion dispatch by the kind in user_data, and the ops
 * table. The design is described in loop_uring.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop_uring.h"

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

struct io_uring_sqe *fp__uring_get_sqe(struct uring *u)
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

void fp__uring_sqe_own(struct uring *u, struct io_uring_sqe *sqe, void *p,
		       unsigned tag)
{
	io_uring_sqe_set_data64(sqe, p ? (uint64_t)(uintptr_t)p | tag : 0);
	u->inflight++;
}

int fp__uring_send_cancel(struct uring *u, uint64_t target)
{
	struct io_uring_sqe *sqe = fp__uring_get_sqe(u);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_cancel64(sqe, target, 0);
	fp__uring_sqe_own(u, sqe, NULL, 0);
	return 0;
}

/* --- the loop ------------------------------------------------------------ */

static void dispatch(struct uring *u, const struct ucqe *c)
{
	void *p = (void *)(uintptr_t)(c->ud & ~(uint64_t)UD_MASK);

	if (!p)
		return;
	switch (c->ud & UD_MASK) {
	case UD_IO:
		fp__uring_io_cqe(u, p, c->res, c->flags);
		break;
	case UD_WQ:
		fp__uring_wq_cqe(u, p, c->res);
		break;
	case UD_TIMER:
		fp__uring_timer_cqe(u, p);
		break;
	}
}

/*
 * Turn queued work into SQEs. Returns 1 when some of it could not get an
 * SQE (the caller must then not sleep), 0 when everything went out.
 * *due: a timer is due already (fp__uring_timer_arm), to fire after the
 * next reap, so the caller must not sleep either.
 */
static int flush(struct uring *u, int *due)
{
	struct uwq *wq;
	fp_io *io;
	int r;

	*due = 0;
	while (u->done_head || u->arm_head || u->dirty) {
		while ((io = u->done_head)) {
			u->done_head = io->next;
			if (!u->done_head)
				u->done_tail = NULL;
			io->next = NULL;
			fp__uring_io_end(u, io, io->res);
		}
		while ((io = u->arm_head)) {
			if (io->state & S_INFLIGHT) {
				/* Queued for its cancel only. */
				if (fp__uring_send_cancel(u, (uint64_t)(uintptr_t)io |
							  UD_IO) < 0)
					return 1;
				io->state |= S_CANCEL_SENT;
				r = 0;
			} else if (io->cancelled) {
				r = -ECANCELED;
			} else {
				r = fp__uring_arm_io(u, io);
				if (r == -EAGAIN)
					return 1;
			}
			u->arm_head = io->next;
			if (!u->arm_head)
				u->arm_tail = NULL;
			io->next = NULL;
			io->state &= ~S_QUEUED;
			if (r < 0)
				fp__uring_io_end(u, io, r);
		}
		while ((wq = u->dirty)) {
			if (fp__uring_wq_arm(u, wq) < 0)
				return 1;
			u->dirty = wq->dirty_next;
			wq->dirty_next = NULL;
			wq->dirty = 0;
		}
	}
	/* Last: the callbacks above may have started timers; arming runs none. */
	r = fp__uring_timer_arm(u);
	if (r < 0)
		return 1;
	*due = r;
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
	int r, blocked, due;

	/*
	 * The ring was created disabled so that SINGLE_ISSUER binds it to the
	 * thread that runs the loop, not the one that made it.
	 */
	if (!u->enabled && (r = ring_enable(u)) < 0)
		return r;

	for (;;) {
		if (loop->stopping)
			break;
		blocked = flush(u, &due);
		if (!fp__loop_alive(loop))
			break;
		/*
		 * A due timer must not starve I/O: with DEFER_TASKRUN the
		 * kernel posts completions only inside an io_uring_enter with
		 * GETEVENTS, which submit_and_wait(0) skips when there is
		 * nothing to submit. submit_and_get_events() always enters.
		 */
		if (due)
			r = io_uring_submit_and_get_events(&u->ring);
		else
			r = io_uring_submit_and_wait(&u->ring,
						     blocked || u->nstash ? 0 : 1);
		if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN &&
		    r != -ETIME)
			return r;
		reap(u);
		if (due)
			fp__uring_timer_fire_due(u);
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

	sqe = fp__uring_get_sqe(u);
	if (sqe) {
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
		fp__uring_sqe_own(u, sqe, NULL, 0);
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
			fp__uring_br_unmap(u);
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
		IORING_OP_FSYNC,
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
		fp__uring_br_setup(u);
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
	.read_start = fp__uring_read_start,
	.accept_start = fp__uring_accept_start,
	.write = fp__uring_write,
	.pwrite = fp__uring_file_start,
	.fsync = fp__uring_file_start,
	.poll_start = fp__uring_poll_start,
	.cancel = fp__uring_cancel,
	.timer_start = fp__uring_timer_start,
	.timer_stop = fp__uring_timer_stop,
};
