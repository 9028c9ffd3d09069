/*
 * Named locks for tasks (issue 18): held in the master, by a worker for its
 * running task. A lock outlives neither: the worker gives back what its task
 * still holds when the task ends (worker_kv.c), and the master takes back
 * everything a worker held or waited for as soon as it is gone
 * (fp__locks_worker_gone(), from the exit accounting), so a lock held by a
 * SIGKILLed worker is free at once, and its first waiter has it.
 *
 * Waiters queue in order of asking; each gives up after its timeout, with
 * an error that names it. A lock is not re-entrant: taking one the worker
 * already holds is refused (-EDEADLK) rather than waiting for itself.
 */
#ifndef FP_LOCKS_H
#define FP_LOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

struct fp_group;

struct fp_worker;
struct fp_locks;

/* Where an answer goes: kv_serve.c's reply to the worker's call `id`. */
typedef void (*fp_lock_answer_fn)(struct fp_group *g, unsigned slot, uint64_t generation,
				  uint64_t id, int err, const char *msg);

void fp__locks_free(struct fp_locks *l);

/* Take `name` for w's call `id`, waiting at most timeout_ms (0: not at all). */
int fp__lock(struct fp_worker *w, uint64_t id, const char *name, size_t len, uint64_t timeout_ms,
	     fp_lock_answer_fn answer);
/* Give `name` back: 0, or -ENOENT when w does not hold it. */
int fp__unlock(struct fp_worker *w, const char *name, size_t len);
/* Give back all w holds: how many. */
unsigned fp__unlock_all(struct fp_worker *w);
/* w is gone: its locks are free and its waits dropped. */
void fp__locks_worker_gone(struct fp_worker *w);

#endif
