/*
 * A worker's life as the master drives it: the states it goes through, why
 * it was killed, its slot (generation, start failures, respawn backoff), and
 * the calls that move it (worker.c: start, standby, recycling, ready, kill,
 * quit, reap; worker_exit.c: its exit accounted). What a worker holds is
 * worker.h's struct fp_worker, which includes this.
 */
#ifndef FP_WORKER_LIFE_H
#define FP_WORKER_LIFE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"
#include "forkpool/loop.h"

struct fp_worker;
struct fp_worker_args;

/*
 * Consecutive start failures after which the pool reports itself unhealthy,
 * and, while none of its workers is ready, unavailable: its queued items
 * fail with FP_ITEM_START_FAILURE and new calls get FP_EUNAVAILABLE, until a
 * worker starts (worker.c). One failure may be bad luck; three in a row, a
 * slot's backoff spacing them 100 and 200 ms apart, are the program or the
 * module itself.
 */
#define FP_UNHEALTHY_AFTER 3
/* The last bytes (whole lines) of what a worker wrote before READY. */
#define FP_START_OUTPUT_MAX 2048

/*
 * A worker's life, one state at a time. worker.c moves it, through
 * fp__worker_set_life() (dispatch.c only between IDLE and BUSY):
 *
 *   STARTING --READY--> IDLE <--a chunk sent / all its answers in--> BUSY
 *   STANDBY   a successor started ahead of time (fp__spawn_standby()),
 *             ready or not, while its predecessor is still able; it becomes
 *             STARTING or IDLE the moment that ends.
 *   LEAVING   takes no more work: its last chunk is out (recycling), it
 *             announced its retirement, or it was asked to quit (reload,
 *             shutdown); it may still be running that chunk.
 *   STOPPING  a signal was sent to end it (timeout, cancel, shutdown,
 *             a broken protocol; kill_reason says which).
 *   EXITED    reaped, or never forked; the struct waits for its streams
 *             to end and its exit to be accounted.
 *
 * The order matters: the first four are able, the rest take no work again.
 * What the API shows (fp_worker_state) is derived: fp__worker_shown_state().
 */
enum fp_worker_life {
	FP_LIFE_STARTING,
	FP_LIFE_STANDBY,
	FP_LIFE_IDLE,
	FP_LIFE_BUSY,
	FP_LIFE_LEAVING,
	FP_LIFE_STOPPING,
	FP_LIFE_EXITED,
};

enum fp_kill_reason {
	FP_KILL_NONE = 0,
	FP_KILL_TIMEOUT,
	FP_KILL_CANCEL,
	FP_KILL_SHUTDOWN,
	FP_KILL_PROTOCOL,
};

struct fp_slot {
	uint64_t generation;
	unsigned start_failures;   /* consecutive deaths before READY */
	fp_timer respawn;          /* backoff after start failures */
	struct fp_group *group;
	unsigned index;
};

/* worker.c */
/* The one way w's life changes: a standby it had takes over when w stops being able. */
void fp__worker_set_life(struct fp_worker *w, enum fp_worker_life life);
/* w takes no more work (recycling, retirement, quit); nothing if it is stopping or gone. */
void fp__worker_leave(struct fp_worker *w);
/* The state the API shows for w (fp_pool_workers()). */
fp_worker_state fp__worker_shown_state(const struct fp_worker *w);
/* What a new worker of pool p runs with (its shared page aside), in the master or a zygote. */
struct fp_worker_args fp__worker_args(struct fp_group *g, unsigned slot, uint64_t generation,
				     uint64_t task_limit, int fd);
int fp__spawn(struct fp_group *g, unsigned slot);
void fp__spawn_successor(struct fp_worker *w);
/* Start w's successor as a standby once half of w's task budget is given out. */
void fp__spawn_standby(struct fp_worker *w);
/* w was sent a chunk of `tasks` tasks: recycle it when that spends its budget. */
void fp__worker_gave(struct fp_worker *w, uint64_t tasks);
/* Its answer said it leaves after it (FP_FRAME_RETIRE): its successor starts. */
void fp__worker_retiring(struct fp_worker *w);
/* READY came: note how long the start took; the pool is available again. */
void fp__worker_ready(struct fp_worker *w);
void fp__reap(fp_signal *sig, int signum);
void fp__worker_kill(struct fp_worker *w, int signum, enum fp_kill_reason why);
void fp__worker_quit(struct fp_worker *w);
void fp__worker_maybe_free(struct fp_worker *w);
void fp__worker_read_done(struct fp_worker *w);
void fp__describe_status(int status, char *buf, size_t len);
/* The worker's pid, learned from its zygote; delivers a kill asked for meanwhile. */
void fp__worker_set_pid(struct fp_worker *w, pid_t pid);
/* Learn the pid from the shared page if it is not known yet; false if not there. */
bool fp__worker_learn_pid(struct fp_worker *w);
/* No process was made for w (lost: its zygote died first, so ask again). */
void fp__worker_unforked(struct fp_worker *w, bool lost);
/* Stop the loop once a stopping pool has no worker and no zygote left. */
void fp__pool_check_stopped(fp_pool *p);

/* worker_exit.c */
/*
 * A worker is gone (reaped and its stream read): count its end, and settle
 * the items it held.
 */
void fp__worker_account_exit(struct fp_worker *w);

#endif
