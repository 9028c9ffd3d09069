/*
 * Jobs shared by the nodes of a cluster through Redis (issue 15, the job
 * flow of docs/CLUSTER.md): a submission written as a job hash and chunks
 * on a work stream, chunks pulled by capacity and run in this node's pool,
 * outcomes written back per chunk, job documents and results read by any
 * node, cancel broadcast to every node. Knows the pool and the job keys in
 * Redis; nothing of HTTP (api_cluster.c answers requests with it).
 *
 * Keys, under the prefix P:
 *   P job:J            hash: kind task state total done failed chunks
 *                      created_at started_at finished_at timeout_ms retries
 *                      retry_on ttl_ms node idem; o (an apply's outcome
 *                      line); c:K for each chunk whose outcomes landed
 *   P job:J:chunk:K    string: chunk K's items, NDJSON; deleted as it lands
 *   P work             stream: one entry a chunk (job, chunk, first, n),
 *                      consumer group "workers", each node a consumer
 *   P results:J        stream: one entry a chunk landed (chunk, first, o:
 *                      its outcome lines), then one "end" entry (the state)
 *   P cancel           channel: the id of a job cancelled
 *   P idem:KEY         "ID HASH": the job an Idempotency-Key made
 *   P seq, P jobs      the submission counter, and the jobs by it (sorted
 *                      set): GET /v1/jobs's order and cursor
 * A finished job's hash and results expire with its TTL (PEXPIRE).
 *
 * Four connections, each for what would block the others: commands,
 * the blocking XREADGROUP of the pull, the pub/sub of cancels, and the
 * blocking XREAD that serves every result follower of this node at once.
 */
#ifndef FP_SERVER_CLUSTER_JOBS_H
#define FP_SERVER_CLUSTER_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"
#include "jobs.h"
#include "dlog.h"
#include "forkpool/loop.h"

typedef struct fp_cluster_jobs fp_cluster_jobs;

struct fp_cluster_jobs_options {
	const char *url;
	const char *password;
	const char *prefix;
	const char *node_name;
	uint64_t ttl_ms;              /* a finished job's keys expire after it */
	/*
	 * A chunk pending in the group this long without its node refreshing
	 * it (XCLAIM JUSTID at every tick, while the node lives) is taken by
	 * another node (XAUTOCLAIM): its node died.
	 */
	uint64_t visibility_ms;       /* default 5000 */
	uint64_t tick_ms;             /* refresh and claim period (default 1000) */
	struct fp_dlog *log;
};

void fp_cluster_jobs_options_init(struct fp_cluster_jobs_options *o);

/* Connect its four connections (the URL was checked by fp_cluster_new()). */
int fp_cluster_jobs_new(fp_cluster_jobs **out, fp_loop *loop, fp_pool *pool,
			const struct fp_cluster_jobs_options *o, char *err, size_t errlen);
/*
 * Stop pulling; chunks running go on and their outcomes are written while
 * the loop runs; fp_cluster_jobs_settled() is true once they are (or can
 * no longer be: the entries stay pending for another node) and the
 * connections are closed. Then fp_cluster_jobs_free().
 */
void fp_cluster_jobs_leave(fp_cluster_jobs *cj);
bool fp_cluster_jobs_settled(fp_cluster_jobs *cj);
void fp_cluster_jobs_free(fp_cluster_jobs *cj);

/* Submissions are taken (the command connection is up). */
bool fp_cluster_jobs_ready(const fp_cluster_jobs *cj);

/* Chunks run here, and outcome batches waiting for Redis, for /metrics and tests. */
struct fp_cluster_jobs_stats {
	uint64_t chunks_run, items_run, chunks_claimed, chunks_skipped;
	unsigned running;
};
void fp_cluster_jobs_stats(const fp_cluster_jobs *cj, struct fp_cluster_jobs_stats *out);

/*
 * An asynchronous request's handle: fp_cluster_op_drop() before its
 * callback says the caller is gone (its callback will not run).
 */
struct fp_cluster_op;
void fp_cluster_op_drop(struct fp_cluster_op *op);

/* A job as its hash says. */
struct fp_cluster_doc {
	char id[65];
	enum fp_job_kind kind;
	char task[256];
	enum fp_job_state state;
	uint64_t total, done, failed, chunks;
	uint64_t created_at, started_at, finished_at;
	char *outcome;                /* an apply's outcome line, or NULL */
	size_t outcome_len;
	unsigned attempts;            /* an apply's item's, once it has an outcome */
};

/*
 * Write a job: its hash, its chunks and their work entries, in one script
 * (atomic: all or nothing); cb(status 0, id) once Redis answered. With an
 * idempotency key (`idem` not NULL, its key set) the key is taken in the
 * same step, P idem:KEY = "ID HASH", for the job's TTL and a day; when a
 * job still kept holds it already nothing is written and cb gets that
 * job's id with held->held set and its request hash. -ENOTCONN at once when
 * Redis is not there (nothing was written). status < 0 later: the
 * connection was lost before the answer (the job was written whole, or not
 * at all; which is unknown).
 */
struct fp_cluster_held {
	bool held;
	uint64_t hash;
};
typedef void (*fp_cluster_submit_cb)(void *data, int status, const char *id,
				     const struct fp_cluster_held *held);
int fp_cluster_jobs_submit(fp_cluster_jobs *cj, enum fp_job_kind kind, const char *task,
			   const struct fp_buf *items, size_t n, const fp_call_options *co,
			   const struct fp_job_idem *idem, fp_cluster_submit_cb cb, void *data,
			   struct fp_cluster_op **op);

/* Read job `id`'s document: cb(0, doc) or cb(-ENOENT, NULL), or another error. */
typedef void (*fp_cluster_doc_cb)(void *data, int status, const struct fp_cluster_doc *doc);
int fp_cluster_jobs_get(fp_cluster_jobs *cj, const char *id, fp_cluster_doc_cb cb,
			void *data, struct fp_cluster_op **op);

/*
 * DELETE: an unfinished job is cancelled everywhere (its state, then a
 * message to every node: those running its chunks cancel those calls, and
 * chunks pulled later end as cancelled without running): cb(1). A finished
 * one is forgotten (its keys deleted): cb(0). -ENOENT: no such job.
 */
typedef void (*fp_cluster_status_cb)(void *data, int status);
int fp_cluster_jobs_cancel(fp_cluster_jobs *cj, const char *id, fp_cluster_status_cb cb,
			   void *data, struct fp_cluster_op **op);

/*
 * The jobs of the cluster newest first (by their place in submission
 * order, P seq), up to `max`, only those in `state` (its name; NULL: any),
 * after the cursor `after` (NULL or "0": from the newest; a place; a job's
 * id). cb(0, docs, places, n); -ENOENT: `after` is an id no kept job has.
 */
typedef void (*fp_cluster_list_cb)(void *data, int status, const struct fp_cluster_doc *docs,
				   const uint64_t *places, size_t n);
int fp_cluster_jobs_list(fp_cluster_jobs *cj, const char *after, size_t max,
			 const char *state, fp_cluster_list_cb cb, void *data,
			 struct fp_cluster_op **op);

/*
 * Follow a job's results stream from its start: batches of landed chunks,
 * in the order they landed, each given once. After each batch the follower
 * asks for more with fp_cluster_follow_more() when it can take it (a slow
 * HTTP client slows the reading, nothing piles up). The last batch has the
 * end (`end` set, the job's final state, and `doc` its document as it
 * ended, when the landing that ended it wrote it: NULL otherwise, and
 * valid during the callback only). Reads block in Redis: no
 * polling. fp_cluster_follow_stop() frees the follower (not from inside
 * another follower's callback... it may be its own).
 */
struct fp_cluster_landed {
	uint64_t chunk, first;
	const char *lines;            /* outcome lines, each ending in '\n' */
	size_t len;
	const char *attempts;         /* each line's item's attempts, "1,1,2" (NULL: none) */
	size_t attempts_len;
};
struct fp_cluster_follow;
typedef void (*fp_cluster_follow_cb)(struct fp_cluster_follow *f,
				     const struct fp_cluster_landed *l, size_t n,
				     bool end, const char *state,
				     const struct fp_cluster_doc *doc, void *data);
int fp_cluster_follow_start(fp_cluster_jobs *cj, const char *id, fp_cluster_follow_cb cb,
			    void *data, struct fp_cluster_follow **out);
void fp_cluster_follow_more(struct fp_cluster_follow *f);
void fp_cluster_follow_stop(struct fp_cluster_follow *f);

#endif
