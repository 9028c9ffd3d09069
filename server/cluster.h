/*
 * The cluster's node registry (issue 15, its foundation): each node keeps a
 * heartbeat in Redis under the cluster's prefix, and reads everyone's back,
 * so /v1/health and /v1/workers on any node list every live node. Jobs are
 * not shared yet: each node runs what it took (docs/CLUSTER.md).
 *
 * Keys, under the prefix P (default "forkpool:"):
 *   P node:NAME   the node's document (JSON), SET with PX = the TTL, every
 *                 heartbeat; gone within the TTL after the node dies
 *   P nodes       sorted set of names, scored by the writer's last
 *                 heartbeat (ms since the epoch): how a reader finds the
 *                 keys without SCAN; names silent for a minute are pruned
 */
#ifndef FP_SERVER_CLUSTER_H
#define FP_SERVER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlog.h"
#include "forkpool/loop.h"

typedef struct fp_cluster fp_cluster;

/* What this node says of its workers at each heartbeat. */
struct fp_cluster_load {
	unsigned workers, busy, able;
};

struct fp_cluster_options {
	const char *url;              /* --cluster */
	const char *password;         /* from --cluster-auth-file; NULL: none */
	const char *prefix;           /* --cluster-prefix (default "forkpool:") */
	const char *node_name;        /* --node-name */
	const char *address;          /* where clients reach this node */
	const char *backend;          /* the loop's backend name */
	uint64_t heartbeat_ms;        /* default 1000 */
	uint64_t ttl_ms;              /* default 3 heartbeats */
	struct fp_dlog *log;
	void (*load)(void *data, struct fp_cluster_load *out);
	/* Connected (true) or not, at every change; may be NULL. */
	void (*on_connected)(void *data, bool connected, const char *why);
	void *data;
};

void fp_cluster_options_init(struct fp_cluster_options *o);

/* A node as the registry last said; `self` is this one. */
struct fp_cluster_node {
	char name[256];
	char address[256];
	char backend[16];
	long pid;
	uint64_t started_at_ms;       /* wall clock, ms since the epoch */
	uint64_t age_ms;              /* since its last heartbeat, as Redis tells */
	struct fp_cluster_load load;
	bool self;
};

/*
 * Parse the URL, resolve it, start connecting (see redis.h). -EINVAL with
 * one line in `err` for a bad URL, prefix or name; -ENOMEM.
 */
int fp_cluster_new(fp_cluster **out, fp_loop *loop, const struct fp_cluster_options *o,
		   char *err, size_t errlen);

bool fp_cluster_connected(const fp_cluster *c);
const char *fp_cluster_last_error(const fp_cluster *c);
const char *fp_cluster_node_name(const fp_cluster *c);
/* Its key prefix, and its command connection, for others' keys under it (cluster_kv.c). */
const char *fp_cluster_prefix(const fp_cluster *c);
struct fp_redis *fp_cluster_redis(fp_cluster *c);
uint64_t fp_cluster_reconnects(const fp_cluster *c);

/*
 * The live nodes (this one always among them, first), sorted by name after
 * it; valid until the loop runs again. While disconnected only this one.
 */
size_t fp_cluster_nodes(const fp_cluster *c, const struct fp_cluster_node **out);

/*
 * Clean shutdown: stop the heartbeat and delete this node's key, then close.
 * fp_cluster_settled() is true once that is answered (or cannot be) and
 * the connection's socket is released; fp_cluster_free() after.
 */
void fp_cluster_leave(fp_cluster *c);
bool fp_cluster_settled(const fp_cluster *c);
void fp_cluster_free(fp_cluster *c);

/* The default --node-name: hostname:port. */
void fp_cluster_default_name(char *out, size_t len, const char *bound_addr);

/* a followed by b in a fresh string (malloc'd), or NULL: a key under a prefix, say. */
char *fp__cluster_cat(const char *a, const char *b);

#endif
