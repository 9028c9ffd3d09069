/*
 * Shared by cluster_jobs.c (the object and its connections),
 * cluster_submit.c, cluster_read.c and cluster_cancel.c (what a request
 * asks), cluster_pull.c (when chunks are taken), cluster_run.c (running
 * them) and cluster_follow.c (result streams): the object, a request in
 * flight, its runs, the key names.
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

	/* cluster_pull.c and cluster_run.c */
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

/* A request in flight on the command connection; dropped: answered to no one. */
struct fp_cluster_op {
	fp_cluster_jobs *cj;
	union {
		fp_cluster_submit_cb submit;
		fp_cluster_doc_cb doc;
		fp_cluster_status_cb status;
		fp_cluster_list_cb list;
	} cb;
	void *data;
	bool dropped;
	char id[FP_CLUSTER_ID_MAX + 1];
};

/* A request for DATA's caller, its callback still to be set; NULL on ENOMEM. */
struct fp_cluster_op *fp__cj_op_new(fp_cluster_jobs *cj, void *data);

/* A chunk taken by this node: cluster_run.c's, listed in cj->runs. */
/*
 * RUN_REFETCH: taken, but Redis went away before the chunk could be read:
 * kept (and refreshed) to be read again on reconnect, rather than left to
 * be claimed later, which would count an attempt for items that never ran.
 */
enum run_state { RUN_FETCHING, RUN_REFETCH, RUN_RUNNING, RUN_WRITING, RUN_UNWRITTEN };

struct cj_run {
	fp_cluster_jobs *cj;           /* NULL: orphaned, the pool's done frees it */
	struct cj_run *prev, *next;
	enum run_state state;
	char entry_id[48];
	struct fp_cluster_entry e;
	uint64_t call_id;
	bool calling;                  /* the pool call is not done yet */
	bool left;                     /* cancelled by a leave: not to be written */
	bool marking;                  /* started from its entry: the mark (fetch_script) is out */
	bool skip;                     /* its job gone or the chunk landed elsewhere: not written */
	char *body;                    /* the chunk's items (fp_ndjson_split points into it) */
	struct fp_buf *items;
	struct sbuf raw;               /* the outcome lines as they came, one after the other */
	size_t *offs, *lens;           /* per item, its line in raw (len 0: none yet) */
	unsigned *attempts;            /* per item, how many times it was started */
	uint64_t nok, nfailed;
	struct sbuf out;               /* the lines, joined, once all are in */
	struct sbuf att;               /* the attempts, "1,1,2,...", in the same order */
};

/*
 * cluster_read.c: the job hash's fields a document is made of, and the
 * document made of their values (e: FP_CJ_DOC_FIELDS replies in that
 * order). -ENOENT: no job (its kind or state missing).
 */
#define FP_CJ_DOC_FIELDS 12
extern const char *const fp__cj_doc_fields[FP_CJ_DOC_FIELDS];
int fp__cj_doc_parse(redisReply *const *e, const char *id, struct fp_cluster_doc *d);

/* cluster_run.c: a chunk's life once taken. */
/* An entry XREADGROUP (fresh: never delivered before) or XAUTOCLAIM gave. */
void fp__cj_take(fp_cluster_jobs *cj, const redisReply *entry, bool fresh);
void fp__cj_fetch(struct cj_run *run);
void fp__cj_land_send(struct cj_run *run);
void fp__cj_run_cancel(fp_cluster_jobs *cj, const char *id, size_t len);
void fp__cj_run_free(fp_cluster_jobs *cj);

/* cluster_pull.c: when chunks are taken. */
void fp__cj_pull(fp_cluster_jobs *cj);
void fp__cj_run_ready(fp_cluster_jobs *cj);          /* pull or cmd connection up */
void fp__cj_run_tick(fp_timer *t);

/* cluster_follow.c */
void fp__cj_follow_ready(fp_cluster_jobs *cj);       /* follow connection up */
void fp__cj_follow_lost(fp_cluster_jobs *cj);
void fp__cj_follow_free(fp_cluster_jobs *cj);

#endif
