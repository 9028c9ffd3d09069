/*
 * The fork server ("zygote"): a small process forked from the master right
 * after the modules are loaded, before the master grows, which forks workers
 * when the master asks. A fork in the master costs the master far more than
 * the fork itself (copy-on-write faults on everything it writes afterwards,
 * TLB shootdowns), and the master is what every task waits on; a fork in the
 * zygote costs a small process that does nothing else.
 *
 * The zygote clones each worker with CLONE_PARENT, so the worker is still
 * the master's child: waitpid, SIGCHLD, PDEATHSIG and exit statuses are as
 * if the master had forked it. The master asks over a socket (the worker's
 * fds travel with SCM_RIGHTS) and never waits for the answer: the pid comes
 * back through the loop, and the worker's socket works before it does.
 */
#ifndef FP_ZYGOTE_H
#define FP_ZYGOTE_H

#include <stdbool.h>

#include "forkpool.h"

struct fp_group;
struct fp_worker;
struct fp_zygote;

/*
 * Fork a zygote holding the pool's current registry; it becomes the one the
 * pool asks, and the one before it (if any) is retired. Watches its answers
 * if the pool has a loop already (else call fp__zygote_watch() once it has).
 * 0, or -errno with nothing changed but the old one retired.
 */
int fp__zygote_start(fp_pool *p);
/* Read the current zygote's answers from the pool's loop. */
int fp__zygote_watch(fp_pool *p);
/*
 * Ask the current zygote for worker w, handing it the child's ends of its
 * socket and log pipe and its shared page. 0: asked, the pid comes later and
 * the caller closes its copies of the fds; < 0: not asked, fork directly.
 */
int fp__zygote_spawn(struct fp_group *g, struct fp_worker *w, int sock, int log_wr, int shm_fd);
/*
 * Before the zygote is watched: wait up to timeout_ms for the answers to
 * what it was asked, so that a new pool's workers have their pids when
 * fp_pool_new() returns (it forked them itself before the zygote).
 */
void fp__zygote_collect(fp_pool *p, int timeout_ms);
/* Ask nothing more of the current zygote: it answers what it was asked, then exits. */
void fp__zygote_retire(fp_pool *p);
/* SIGKILL every zygote not reaped yet (shutdown deadline). */
void fp__zygote_kill_all(fp_pool *p);
/* Collect exited zygotes (from the pool's SIGCHLD handler). */
void fp__zygote_reap(fp_pool *p);
/* Take down zygotes the loop never watched (fp_pool_new failing): blocking. */
void fp__zygote_free_all(fp_pool *p);
/* Whether FORKPOOL_ZYGOTE allows a zygote (unset, or anything but 0/off/no). */
bool fp__zygote_wanted(void);

#endif
