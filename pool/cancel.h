/*
 * Cooperative cancel (issue 18): a running task learns that its item was
 * given up on (its call cancelled, or past its timeout) and may stop cleanly
 * in the grace before the SIGKILL.
 *
 * Master: fp__worker_stop() writes the running item's id into the shared
 * page (`cancel`), then sends SIGTERM and SIGKILLs after the pool's grace.
 * Worker: fp_cancelled() is a load from that page, no round trip. A C task
 * that never asks dies at the SIGTERM, as before; one that asks has said it
 * stops by itself, so from its first question to its end SIGTERM is only
 * recorded (and makes fp_cancelled() true): the worker then sends what the
 * task answered and exits, since the master wants it gone.
 */
#ifndef FP_CANCEL_H
#define FP_CANCEL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "worker_main.h"

struct fp_worker;
enum fp_kill_reason;

/*
 * Stop w's running item for `why` (FP_KILL_TIMEOUT or FP_KILL_CANCEL):
 * tell the task, SIGTERM, SIGKILL after the grace. `tell`: whether the
 * running item is the one given up on (a cancelled call's worker may be
 * running another call's item, which is not told it was cancelled).
 */
void fp__worker_stop(struct fp_worker *w, enum fp_kill_reason why, bool tell);

/* The worker's side, one per running task. */
struct fp_task_cancel {
	bool armed;                 /* SIGTERM is only recorded */
	struct sigaction old;
};

/* Whether item `id` was given up on or the worker told to stop; arms the first time. */
bool fp__task_cancelled(struct fp_task_cancel *tc, struct fp_worker_shm *shm, uint64_t id);

/* The task ended: SIGTERM kills again. True when one came meanwhile (the worker must go). */
bool fp__task_cancel_end(struct fp_task_cancel *tc);

#endif
