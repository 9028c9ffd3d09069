#include "fp_test.h"
#include "forkpool/loop.h"

struct wait_until {
	int (*cond)(void *);
	void *data;
	fp_loop *loop;
	fp_timer tick;
	uint64_t deadline;
	int met;
};

static void wait_tick(fp_timer *t)
{
	struct wait_until *w = t->data;

	if (w->cond(w->data)) {
		w->met = 1;
		fp_loop_stop(w->loop);
		return;
	}
	if (fp_now_ms() >= w->deadline) {
		fp_loop_stop(w->loop);
		return;
	}
	fp_timer_start(w->loop, t, 2, wait_tick);
}

int fp_test_run_until(fp_pool *p, int (*cond)(void *), void *data, uint64_t ms)
{
	struct wait_until w = { cond, data, fp_pool_loop(p) };

	w.tick.data = &w;
	w.deadline = fp_now_ms() + ms;
	fp_timer_start(w.loop, &w.tick, 0, wait_tick);
	while (!w.met && fp_now_ms() < w.deadline)
		fp_pool_run(p);
	fp_timer_stop(&w.tick);
	return w.met;
}
