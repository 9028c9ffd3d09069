/*
 * Cluster-wide concurrency limits (issue 18, --cluster): a named limit's
 * (`--limit`) or a task's own (`--task-concurrency`) max holds across every
 * node, as a semaphore in Redis whose places are held by live nodes.
 *
 * Key P limit:NAME under the cluster's prefix P, a hash:
 *   h:NODE   the places NODE holds (what it may be running)
 *   w:NODE   how many it wants (its running and queued items, up to max)
 *   t:NODE   since when it has wanted more than it holds
 * A hold counts only while NODE's heartbeat key (P node:NODE, cluster.h)
 * lives: a dead node's places come back within the heartbeat TTL, and the
 * next node to ask removes its fields. No hold outlives its holder.
 *
 * Each node asks with one script for all its limits, every SYNC_MS while it
 * wants more or holds more than it wants, else every heartbeat. The script
 * grants at most max minus the live others' holds, less what the nodes
 * that have waited longer want of a fair share (max over the nodes that
 * want some), so that one busy node does not keep a limit from the others. The pool is lent what
 * was granted (fp_pool_limit_lend()): items past it wait in the node's
 * queue without holding a worker. The hold recorded is never below what
 * the node may be running, so a shrinking grant is safe: the node starts
 * nothing until it runs fewer than its new grant, and says so next time.
 *
 * A job's "concurrency" is a limit of the same kind, "job:ID", which
 * cluster_run.c makes while the job's chunks run here and then drops: a
 * limit gone from the pool is asked for once more with nothing wanted, so
 * that its hold is given back, and forgotten.
 *
 * Redis away: the node starts no item under a limit (lends 0) until it is
 * back; items running go on (they are not stopped). Every node should be
 * given the same limits: each applies its own max.
 */
#ifndef FP_SERVER_CLUSTER_LIMIT_H
#define FP_SERVER_CLUSTER_LIMIT_H

#include "cluster.h"
#include "forkpool.h"

typedef struct fp_cluster_limits fp_cluster_limits;

/* Lends the pool none of its limits' places until Redis grants them. -ENOMEM. */
int fp_cluster_limits_new(fp_cluster_limits **out, fp_loop *loop, fp_pool *pool,
			  fp_cluster *c);
/* No more asking; before the cluster's connection closes. Accepts NULL. */
void fp_cluster_limits_stop(fp_cluster_limits *l);
/* After the cluster's connection is closed (what was out is answered). Accepts NULL. */
void fp_cluster_limits_free(fp_cluster_limits *l);

#endif
