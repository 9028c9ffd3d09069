/*
 * The io_uring backend's timers: a min-heap of deadlines under one
 * IORING_OP_TIMEOUT for the earliest (loop_uring.h says why).
 */
#include <errno.h>
#include <stdlib.h>

#include "loop_uring.h"

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

int fp__uring_timer_start(fp_loop *loop, fp_timer *timer, uint64_t ms)
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

void fp__uring_timer_stop(fp_loop *loop, fp_timer *timer)
{
	/* The armed op may now be early; its CQE then just re-arms. */
	if (timer->impl)
		heap_remove(loop->impl, timer);
}

/*
 * Make the kernel op cover heap[0]. Returns 1 when heap[0] is due already:
 * no op is armed for it, and the run loop, which must then not sleep, fires
 * it after its next reap (fp__uring_timer_fire_due). -EAGAIN: no SQE, try
 * again later.
 *
 * A timer due at once is what the pool uses to run something "on the next
 * round" (0 ms), several times per HTTP apply. Armed as an
 * IORING_OP_TIMEOUT it cost a kernel round under the timeout lock, its CQE
 * a second io_uring_enter, and often a TIMEOUT_REMOVE of the later op it
 * superseded: 0.3 timeout SQEs an apply and about a fifth of the master's
 * samples under wrk (docs/PROFILE-http-apply.md, "io_uring's timers").
 */
int fp__uring_timer_arm(struct uring *u)
{
	struct io_uring_sqe *sqe;
	struct utimer *op;
	uint64_t due;

	if (!u->nheap || (u->tcur && u->tcur->due <= u->heap[0].due))
		return 0;
	/* Only read the clock when an op would be armed otherwise. */
	if (u->heap[0].due <= fp_now_ns())
		return 1;
	sqe = fp__uring_get_sqe(u);
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
			fp__uring_sqe_own(u, sqe, NULL, 0);
			return -EAGAIN;
		}
	}
	if (u->tcur) {
		/* Superseded: removal is best effort, its CQE is ignored. */
		io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)u->tcur |
					     UD_TIMER, 0);
		fp__uring_sqe_own(u, sqe, NULL, 0);
		u->tcur = NULL;
		sqe = fp__uring_get_sqe(u);
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
	fp__uring_sqe_own(u, sqe, op, UD_TIMER);
	u->tcur = op;
	return 0;
}

void fp__uring_timer_cqe(struct uring *u, struct utimer *op)
{
	struct utimer **pp;
	int current = op == u->tcur;

	for (pp = &u->tlive; *pp != op; pp = &(*pp)->next)
		;
	*pp = op->next;
	op->next = u->tfree;
	u->tfree = op;
	if (!current)
		return;
	u->tcur = NULL;
	fp__uring_timer_fire_due(u);
}

void fp__uring_timer_fire_due(struct uring *u)
{
	uint64_t now = fp_now_ns(), seq = u->tseq;
	fp_timer *t;

	/*
	 * Timers started by these callbacks wait for the next round even at
	 * 0 ms, so a timer re-arming itself cannot keep this loop going.
	 */
	while (u->nheap && u->heap[0].due <= now && u->heap[0].seq < seq) {
		t = u->heap[0].t;
		heap_remove(u, t);
		fp__timer_fire(t);
	}
}
