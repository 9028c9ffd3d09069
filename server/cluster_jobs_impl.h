/*
 * Shared by cluster_jobs.c (the object, submissions, reads, cancel),
 * cluster_run.c (pulling and running chunks) and cluster_follow.c (result
 * streams): the object and the key names.
 */
#ifndef FP_SERVER_CLUSTER_JOBS_IMPL_H
#define FP_SERVER_CLUSTER_JOBS_IMPL_H

#include "cluster_chunk.h"
#include "cluster_jobs.h"
#include "redis.h"
#include "sbuf.h"

#define CJ_GROUP "workers"

struct cj_run;
struct fp_cluster_follow;

struct fp_cluster_jobs {
	fp_loop *loop;
	fp_pool *pool;
	struct fp_dlog *log;
	char *prefix, *name;
	char *work_key, *cancel_channel;
	char *seq_key, *jobs_key, *job_prefix;     /* P seq, P jobs, P job: */
	uint64_t ttl_ms, visibility_ms, tick_ms;

	fp_redis *cmd;       /* commands: submissions, reads, outcomes, claims */
	fp_redis *pull;      /* XREADGROUP ... BLOCK */
	fp_redis *sub;       /* SUBSCRIBE P cancel */
	fp_redis *follow;    /* XREAD ... BLOCK for every follower */

	/* cluster_run.c */
	bool leaving;
	bool pulling;              /* an XREADGROUP is out */
	bool group_made;           /* XGROUP CREATE answered on this connection */
	bool claiming;             /* an XAUTOCLAIM is out */
	uint64_t ready_at;         /* monotonic ms the command connection came up; 0: down */
	struct cj_run *runs;       /* chunks taken: fetched, running or writing */
	unsigned nruns;
	fp_timer tick, retry;
	struct fp_cluster_jobs_stats stats;

	/* cluster_follow.c */
	struct fp_cluster_follow *followers;
	bool following;            /* an XREAD is out */
	bool unblocking;           /* a CLIENT UNBLOCK is out */
	long long follow_client;   /* CLIENT ID of the follow connection; 0: unknown */
	struct cj_round *round;    /* what the XREAD out asked */
	unsigned round_seq;
	fp_timer follow_soon;
};

/* PREFIX + a + b + c, malloc'd; NULL on ENOMEM. */
char *fp__cj_key(const fp_cluster_jobs *cj, const char *a, const char *b, const char *c);

/* Close the four connections: what they had pending is answered -ECANCELED now. */
void fp__cj_close(fp_cluster_jobs *cj);

/* Close the four connections: what they had pending is answered -ECANCELED now. */
void fp__cj_close(fp_cluster_jobs *cj);

/* cluster_run.c */
void fp__cj_run_ready(fp_cluster_jobs *cj);          /* pull or cmd connection up */
void fp__cj_run_cancel(fp_cluster_jobs *cj, const char *id, size_t len);
void fp__cj_run_free(fp_cluster_jobs *cj);
void fp__cj_run_tick(fp_timer *t);

/* cluster_follow.c */
void fp__cj_follow_ready(fp_cluster_jobs *cj);       /* follow connection up */
void fp__cj_follow_lost(fp_cluster_jobs *cj);
void fp__cj_follow_free(fp_cluster_jobs *cj);

#endif
