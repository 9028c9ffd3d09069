/*
 * The lock table (locks.h): a short list of named locks in the pool,
 * each with its holder and its queue of waiters. Locks are few and held
 * briefly (a task's critical section), so a list searched by name is enough.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "locks.h"
#include "pool_impl.h"
#include "worker.h"

struct waiter {
	struct waiter *next;
	struct lock *lock;
	struct fp_group *group;    /* the worker's (each group's slots are its own) */
	unsigned slot;
	uint64_t generation;
	uint64_t id;               /* its call */
	uint64_t timeout_ms;
	fp_timer timer;
	fp_lock_answer_fn answer;
};

struct lock {
	struct lock *next;
	struct fp_group *group;    /* the holder's */
	unsigned slot;
	uint64_t generation;
	struct waiter *waiters, **tail;
	size_t len;
	char name[];
};

struct fp_locks {
	struct lock *head;
};

static struct fp_locks *table(struct fp_group *g)
{
	fp_pool *root = g->pool;

	if (!root->locks)
		root->locks = calloc(1, sizeof(*root->locks));
	return root->locks;
}

static bool holds(const struct lock *k, const struct fp_worker *w)
{
	return k->group == w->group && k->slot == w->slot && k->generation == w->generation;
}

static struct lock **find(struct fp_locks *t, const char *name, size_t len)
{
	struct lock **kp;

	for (kp = &t->head; *kp; kp = &(*kp)->next)
		if ((*kp)->len == len && memcmp((*kp)->name, name, len) == 0)
			return kp;
	return kp;
}

static void waiter_unlink(struct waiter *wt)
{
	struct lock *k = wt->lock;
	struct waiter **pp;

	for (pp = &k->waiters; *pp != wt; pp = &(*pp)->next)
		;
	*pp = wt->next;
	if (k->tail == &wt->next)
		k->tail = pp;
	fp_timer_stop(&wt->timer);
}

/* Pass `*kp` on to its first waiter, or drop it when none waits. */
static void release(struct lock **kp)
{
	struct lock *k = *kp;
	struct waiter *wt = k->waiters;

	if (!wt) {
		*kp = k->next;
		free(k);
		return;
	}
	waiter_unlink(wt);
	k->group = wt->group;
	k->slot = wt->slot;
	k->generation = wt->generation;
	wt->answer(wt->group, wt->slot, wt->generation, wt->id, 0, NULL);
	free(wt);
}

static void waited_too_long(fp_timer *t)
{
	struct waiter *wt = t->data;
	char msg[FP_KV_KEY_MAX + 128];

	snprintf(msg, sizeof(msg), "lock '%.*s' was not free within its %llu ms timeout",
		 (int)wt->lock->len, wt->lock->name, (unsigned long long)wt->timeout_ms);
	waiter_unlink(wt);
	wt->answer(wt->group, wt->slot, wt->generation, wt->id, -ETIMEDOUT, msg);
	free(wt);
}

int fp__lock(struct fp_worker *w, uint64_t id, const char *name, size_t len, uint64_t timeout_ms,
	     fp_lock_answer_fn answer)
{
	struct fp_locks *t = table(w->group);
	struct lock **kp, *k;
	struct waiter *wt;
	char msg[FP_KV_KEY_MAX + 128];

	if (!t)
		return -ENOMEM;
	kp = find(t, name, len);
	if (!*kp) {
		k = malloc(sizeof(*k) + len);
		if (!k)
			return -ENOMEM;
		memcpy(k->name, name, len);
		k->len = len;
		k->group = w->group;
		k->slot = w->slot;
		k->generation = w->generation;
		k->waiters = NULL;
		k->tail = &k->waiters;
		k->next = NULL;
		*kp = k;
		answer(w->group, w->slot, w->generation, id, 0, NULL);
		return 0;
	}
	k = *kp;
	if (holds(k, w)) {
		snprintf(msg, sizeof(msg), "lock '%.*s' is held by this task already",
			 (int)len, name);
		answer(w->group, w->slot, w->generation, id, -EDEADLK, msg);
		return 0;
	}
	if (!timeout_ms) {
		snprintf(msg, sizeof(msg), "lock '%.*s' was not free within its 0 ms timeout",
			 (int)len, name);
		answer(w->group, w->slot, w->generation, id, -ETIMEDOUT, msg);
		return 0;
	}
	wt = calloc(1, sizeof(*wt));
	if (!wt)
		return -ENOMEM;
	*wt = (struct waiter){
		.lock = k, .group = w->group, .slot = w->slot, .generation = w->generation,
		.id = id, .timeout_ms = timeout_ms, .answer = answer,
	};
	wt->timer.data = wt;
	if (fp_timer_start(w->group->loop, &wt->timer, timeout_ms, waited_too_long) < 0) {
		free(wt);
		return -ENOMEM;
	}
	*k->tail = wt;
	k->tail = &wt->next;
	return 0;
}

int fp__unlock(struct fp_worker *w, const char *name, size_t len)
{
	struct fp_locks *t = w->group->pool->locks;
	struct lock **kp;

	if (!t)
		return -ENOENT;
	kp = find(t, name, len);
	if (!*kp || !holds(*kp, w))
		return -ENOENT;
	release(kp);
	return 0;
}

unsigned fp__unlock_all(struct fp_worker *w)
{
	struct fp_locks *t = w->group->pool->locks;
	struct lock **kp;
	unsigned n = 0;

	if (!t)
		return 0;
	for (kp = &t->head; *kp;) {
		struct lock *k = *kp;

		if (holds(k, w)) {
			bool passed = k->waiters != NULL;

			n++;
			release(kp);
			/* Passed on, it stays in the list; dropped, *kp is the next already. */
			if (passed)
				kp = &k->next;
		} else {
			kp = &k->next;
		}
	}
	return n;
}

void fp__locks_worker_gone(struct fp_worker *w)
{
	struct fp_locks *t = w->group->pool->locks;
	unsigned n;

	if (!t)
		return;
	for (struct lock *k = t->head; k; k = k->next) {
		struct waiter *wt = k->waiters, *next;

		for (; wt; wt = next) {
			next = wt->next;
			if (wt->group == w->group && wt->slot == w->slot &&
			    wt->generation == w->generation) {
				waiter_unlink(wt);
				free(wt);
			}
		}
	}
	n = fp__unlock_all(w);
	if (n)
		fp_log_info(&w->group->log, "worker %u (pid %d) is gone: %u lock%s it held %s free",
			    w->slot, (int)w->pid, n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
}

void fp__locks_free(struct fp_locks *t)
{
	if (!t)
		return;
	while (t->head) {
		struct lock *k = t->head;

		while (k->waiters) {
			struct waiter *wt = k->waiters;

			k->waiters = wt->next;
			fp_timer_stop(&wt->timer);
			free(wt);
		}
		t->head = k->next;
		free(k);
	}
	free(t);
}
