/*
 * The shared values of a cluster (issue 18, --cluster): the pool's store
 * replaced by Redis (fp_pool_kv_backend), so that every node, its HTTP
 * clients and its tasks see one store. Key P kv:KEY under the cluster's
 * prefix P, a Redis string holding the value's compact JSON text.
 *
 *   get    GET
 *   set    SET, with PX for a ttl
 *   del    DEL (0 deleted: no such key)
 *   incr   INCRBY: a JSON integer's compact text is Redis's decimal integer,
 *          so the value stays JSON and Redis does the arithmetic atomically,
 *          keeps the TTL, refuses a non-integer (-EDOM) and an overflow
 *          (-ERANGE) as the local store does
 *   cas    a Lua script comparing the stored text with the canonical JSON of
 *          `expect` (both compact, so values compare as values), then SET
 *   list   SCAN MATCH P kv:PREFIX* to the end (at most 100,000 keys, or
 *          -E2BIG, answered 400), sorted here, then the first `max` read by one script
 *          (value and PTTL of each); not a snapshot, as SCAN is not
 *
 * Redis away: -ENOTCONN (503 store_unavailable over HTTP). The 64 MiB cap
 * of the local store does not apply: Redis's maxmemory does.
 */
#ifndef FP_SERVER_CLUSTER_KV_H
#define FP_SERVER_CLUSTER_KV_H

#include "cluster.h"
#include "forkpool.h"

typedef struct fp_cluster_kv fp_cluster_kv;

/* Installs itself as `pool`'s store. -ENOMEM. */
int fp_cluster_kv_new(fp_cluster_kv **out, fp_pool *pool, fp_cluster *c);
/* Gives the pool its own store back; commands still out are answered by the connection's close. */
void fp_cluster_kv_stop(fp_cluster_kv *k);
/* After the cluster's connection is closed. Accepts NULL. */
void fp_cluster_kv_free(fp_cluster_kv *k);

#endif
