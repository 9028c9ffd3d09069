/*
 * Cooperative cancel: the master's stop with a grace, and fp_cancelled()'s
 * side in the worker (cancel.h says how the two meet).
 */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "cancel.h"
#include "pool_impl.h"
#include "worker.h"

static void grace_over(fp_timer *t)
{
	struct fp_worker *w = t->data;

	if (!fp__worker_exited(w) && !w->sigkilled)
		fp__worker_kill(w, SIGKILL, w->kill_reason);
}

void fp__worker_stop(struct fp_worker *w, enum fp_kill_reason why, bool tell)
{
	struct fp_group *g = w->group;

	if (fp__worker_exited(w))
		return;
	if (tell)
		atomic_store_explicit(&w->shm->cancel,
				      atomic_load_explicit(&w->shm->current, memory_order_acquire),
				      memory_order_release);
	fp__worker_kill(w, SIGTERM, why);
	if (!w->sigkilled)
		fp_timer_start(g->loop, &w->deadline, g->opts.kill_grace_ms, grace_over);
}

/*
 * Set by the handler, read and cleared between tasks. A signal handler
 * reaches only what is global; the worker is one process running one task.
 */
static volatile sig_atomic_t term_seen;

static void on_term(int sig)
{
	(void)sig;
	term_seen = 1;
}

bool fp__task_cancelled(struct fp_task_cancel *tc, struct fp_worker_shm *shm, uint64_t id)
{
	if (!tc->armed) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_term;
		sigemptyset(&sa.sa_mask);
		term_seen = 0;
		if (sigaction(SIGTERM, &sa, &tc->old) == 0)
			tc->armed = true;
	}
	return term_seen ||
	       (id && atomic_load_explicit(&shm->cancel, memory_order_acquire) == id);
}

bool fp__task_cancel_end(struct fp_task_cancel *tc)
{
	bool seen;

	if (!tc->armed)
		return false;
	sigaction(SIGTERM, &tc->old, NULL);
	tc->armed = false;
	seen = term_seen != 0;
	term_seen = 0;
	return seen;
}
