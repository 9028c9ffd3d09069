/*
 * When this node takes the cluster's chunks (cluster_jobs.h): the pull by
 * capacity (a blocking XREADGROUP on its own connection), the tick that
 * keeps the chunks taken here fresh in the group while the node lives and
 * takes over those of nodes that died, and the leave. What happens to a
 * chunk once taken is cluster_run.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_jobs_impl.h"

/* Chunks taken beyond one per able worker: the next one is here when a worker frees. */
#define PREFETCH 1
/* Reads block this long at most, so a node that went idle notices a leave. */
#define PULL_BLOCK_MS "2000"

static void refresh(fp_cluster_jobs *cj);

static bool ready(const fp_cluster_jobs *cj)
{
	return fp_redis_state(cj->cmd) == FP_REDIS_READY;
}

/* --- pulling ---------------------------------------------------------------- */

/*
 * Chunks that hold a place: being fetched or run. One that only waits for
 * its outcomes to be written holds none, so the next one is pulled while
 * they go (a round trip less between two chunks on a worker).
 */
static unsigned taking(const fp_cluster_jobs *cj)
{
	const struct cj_run *run;
	unsigned n = 0;

	for (run = cj->runs; run; run = run->next)
		n += run->state == RUN_FETCHING || run->state == RUN_REFETCH ||
		     run->state == RUN_RUNNING;
	return n;
}

static unsigned capacity(fp_cluster_jobs *cj)
{
	struct fp_pool_stats st;

	fp_pool_stats(cj->pool, &st);
	return (st.able ? st.able : 1) + PREFETCH;
}

static void retry_cb(fp_timer *t)
{
	fp__cj_pull(t->data);
}

static void pull_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_jobs *cj = data;
	size_t i;

	(void)r;
	cj->pulling = false;
	if (status < 0)
		return;                        /* the connection's READY pulls again */
	if (reply->type == REDIS_REPLY_ERROR) {
		/* NOGROUP: Redis lost the group (restarted without persistence). */
		cj->group_made = false;
		fp_timer_start(cj->loop, &cj->retry, 200, retry_cb);
		return;
	}
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
	    reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
		const redisReply *entries = reply->element[0]->element[1];

		for (i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++)
			fp__cj_take(cj, entries->element[i], true);
	}
	fp__cj_pull(cj);
}

static void group_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_jobs *cj = data;

	(void)r;
	cj->pulling = false;
	if (status < 0)
		return;
	/* OK, or BUSYGROUP: it was there already. */
	cj->group_made = reply->type != REDIS_REPLY_ERROR || !strncmp(reply->str, "BUSYGROUP", 9);
	if (cj->group_made)
		fp__cj_pull(cj);
	else
		fp_timer_start(cj->loop, &cj->retry, 1000, retry_cb);
}

void fp__cj_pull(fp_cluster_jobs *cj)
{
	char count[16];
	unsigned cap, busy;

	if (cj->leaving || cj->pulling || fp_redis_state(cj->pull) != FP_REDIS_READY ||
	    !ready(cj))
		return;
	if (!cj->group_made) {
		/* From the stream's start: entries written before the group are work too. */
		const char *argv[] = { "XGROUP", "CREATE", cj->work_key, CJ_GROUP, "0", "MKSTREAM" };
		size_t argl[] = { 6, 6, strlen(cj->work_key), sizeof(CJ_GROUP) - 1, 1, 8 };

		if (fp_redis_command(cj->pull, group_cb, cj, 6, argv, argl) == 0)
			cj->pulling = true;
		return;
	}
	cap = capacity(cj);
	busy = taking(cj);
	if (busy >= cap)
		return;
	snprintf(count, sizeof(count), "%u", cap - busy);
	{
		const char *argv[] = { "XREADGROUP", "GROUP", CJ_GROUP, cj->name, "COUNT", count,
				       "BLOCK", PULL_BLOCK_MS, "STREAMS", cj->work_key, ">" };
		size_t argl[] = { 10, 5, sizeof(CJ_GROUP) - 1, strlen(cj->name), 5, strlen(count),
				  5, strlen(PULL_BLOCK_MS), 7, strlen(cj->work_key), 1 };

		if (fp_redis_command(cj->pull, pull_cb, cj, 11, argv, argl) == 0)
			cj->pulling = true;
	}
}

void fp__cj_run_ready(fp_cluster_jobs *cj)
{
	struct cj_run *run, *next;

	if (ready(cj) && cj->ready_at == 0) {
		/*
		 * Back (or first) on the command connection: ours are made young
		 * at once, and nothing is claimed for one visibility period, so
		 * that every live node that lost Redis too has refreshed its own
		 * first (their idle times may have run on while Redis was away).
		 */
		cj->ready_at = fp_now_ms();
		refresh(cj);
	}
	/* Outcomes that waited for Redis go first, then chunks taken and not read. */
	if (ready(cj))
		for (run = cj->runs; run; run = next) {
			next = run->next;
			if (run->state == RUN_UNWRITTEN)
				fp__cj_land_send(run);
			else if (run->state == RUN_REFETCH)
				fp__cj_fetch(run);
		}
	fp__cj_pull(cj);
}

/* --- the tick: refresh ours, claim the dead's ----------------------------- */

static void claim_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_jobs *cj = data;
	size_t i;

	(void)r;
	cj->claiming = false;
	if (status < 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
		return;
	reply = reply->element[1];
	for (i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
		if (cj->leaving)
			break;
		const redisReply *e = reply->element[i];

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		cj->stats.chunks_claimed++;
		if (cj->log)
			fp_dlog_info(cj->log, "cluster: took over work entry %s (its node stopped"
				     " refreshing it)", e->element[0]->str);
		fp__cj_take(cj, e, false);
	}
}

static void refresh(fp_cluster_jobs *cj)
{
	const char **argv;
	size_t *argl, n = 0;
	struct cj_run *run;

	for (run = cj->runs; run; run = run->next)
		n++;
	if (!n)
		return;
	argv = calloc(n + 6, sizeof(*argv));
	argl = calloc(n + 6, sizeof(*argl));
	if (argv && argl) {
		argv[0] = "XCLAIM";
		argv[1] = cj->work_key;
		argv[2] = CJ_GROUP;
		argv[3] = cj->name;
		argv[4] = "0";
		n = 5;
		for (run = cj->runs; run; run = run->next)
			argv[n++] = run->entry_id;
		argv[n++] = "JUSTID";
		for (size_t i = 0; i < n; i++)
			argl[i] = strlen(argv[i]);
		fp_redis_command(cj->cmd, NULL, NULL, (int)n, argv, argl);
	}
	free(argl);
	free(argv);
}

void fp__cj_run_tick(fp_timer *t)
{
	fp_cluster_jobs *cj = t->data;
	char idle[24], count[16];
	unsigned cap, busy;

	if (cj->leaving)
		return;
	fp_timer_start(cj->loop, &cj->tick, cj->tick_ms, fp__cj_run_tick);
	if (!ready(cj) || !cj->group_made)
		return;
	/* Ours stay young while we live, so nobody takes them from a live node. */
	refresh(cj);
	cap = capacity(cj);
	busy = taking(cj);
	if (cj->claiming || busy >= cap || fp_now_ms() - cj->ready_at < cj->visibility_ms)
		return;
	snprintf(idle, sizeof(idle), "%" PRIu64, cj->visibility_ms);
	snprintf(count, sizeof(count), "%u", cap - busy);
	{
		const char *argv[] = { "XAUTOCLAIM", cj->work_key, CJ_GROUP, cj->name, idle, "0-0",
				       "COUNT", count };
		size_t argl[] = { 10, strlen(cj->work_key), sizeof(CJ_GROUP) - 1, strlen(cj->name),
				  strlen(idle), 3, 5, strlen(count) };

		if (fp_redis_command(cj->cmd, claim_cb, cj, 8, argv, argl) == 0)
			cj->claiming = true;
	}
}

/* --- leaving ---------------------------------------------------------------- */

void fp_cluster_jobs_leave(fp_cluster_jobs *cj)
{
	if (!cj || cj->leaving)
		return;
	cj->leaving = true;
	fp_timer_stop(&cj->tick);
	fp_timer_stop(&cj->retry);
}

/*
 * Settled once the chunks taken here have landed (or can only wait for a
 * Redis that is away: their entries stay pending for another node); then
 * the connections close, and it is settled once their sockets are released.
 */
bool fp_cluster_jobs_settled(fp_cluster_jobs *cj)
{
	const struct cj_run *run;

	if (!cj)
		return true;
	for (run = cj->runs; run; run = run->next)
		if (run->state != RUN_UNWRITTEN && run->state != RUN_REFETCH)
			return false;
	fp__cj_close(cj);
	return fp_redis_settled(cj->cmd) && fp_redis_settled(cj->pull) &&
	       fp_redis_settled(cj->sub) && fp_redis_settled(cj->follow);
}

