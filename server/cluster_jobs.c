/*
 * The cluster's jobs (cluster_jobs.h): the object, its four connections and
 * what they do when Redis comes and goes. What a request asks of Redis is in
 * cluster_submit.c (a submission written), cluster_read.c (a job's document,
 * the list) and cluster_cancel.c; running chunks is cluster_run.c, result
 * streams cluster_follow.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_jobs_impl.h"

void fp_cluster_jobs_options_init(struct fp_cluster_jobs_options *o)
{
	memset(o, 0, sizeof(*o));
	o->prefix = "forkpool:";
	o->ttl_ms = 600000;
	o->visibility_ms = 5000;
	o->tick_ms = 1000;
}

char *fp__cj_key(const fp_cluster_jobs *cj, const char *a, const char *b, const char *c)
{
	size_t lp = strlen(cj->prefix), la = strlen(a), lb = b ? strlen(b) : 0,
	       lc = c ? strlen(c) : 0;
	char *k = malloc(lp + la + lb + lc + 1);

	if (!k)
		return NULL;
	memcpy(k, cj->prefix, lp);
	memcpy(k + lp, a, la);
	if (lb)
		memcpy(k + lp + la, b, lb);
	if (lc)
		memcpy(k + lp + la + lb, c, lc);
	k[lp + la + lb + lc] = '\0';
	return k;
}

bool fp_cluster_jobs_ready(const fp_cluster_jobs *cj)
{
	return cj && !cj->leaving && fp_redis_state(cj->cmd) == FP_REDIS_READY;
}

void fp_cluster_jobs_stats(const fp_cluster_jobs *cj, struct fp_cluster_jobs_stats *out)
{
	*out = cj->stats;
	out->running = cj->nruns;
}

void fp_cluster_op_drop(struct fp_cluster_op *op)
{
	if (op)
		op->dropped = true;
}

struct fp_cluster_op *fp__cj_op_new(fp_cluster_jobs *cj, void *data)
{
	struct fp_cluster_op *op = calloc(1, sizeof(*op));

	if (op) {
		op->cj = cj;
		op->data = data;
	}
	return op;
}

/* --- connections ------------------------------------------------------------ */

static void on_cmd_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	fp_cluster_jobs *cj = data;

	(void)r;
	(void)why;
	if (st == FP_REDIS_READY)
		fp__cj_run_ready(cj);
	else
		cj->ready_at = 0;
}

static void on_pull_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	fp_cluster_jobs *cj = data;

	(void)r;
	(void)why;
	if (st != FP_REDIS_READY) {
		cj->pulling = false;
		cj->group_made = false;
		return;
	}
	fp__cj_run_ready(cj);
}

static void cancel_message(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_jobs *cj = data;

	(void)r;
	if (status < 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
		return;
	if (reply->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(reply->element[0]->str, "message") != 0 ||
	    reply->element[2]->type != REDIS_REPLY_STRING)
		return;
	fp__cj_run_cancel(cj, reply->element[2]->str, reply->element[2]->len);
}

static void on_sub_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	fp_cluster_jobs *cj = data;

	(void)why;
	if (st == FP_REDIS_READY && !cj->leaving)
		fp_redis_subscribe(r, cj->cancel_channel, cancel_message, cj);
}

static void on_follow_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	(void)r;
	(void)why;
	if (st == FP_REDIS_READY)
		fp__cj_follow_ready(data);
	else
		fp__cj_follow_lost(data);
}

static int connect_one(fp_cluster_jobs *cj, fp_redis **out, const struct fp_cluster_jobs_options *o,
		       fp_redis_state_cb cb, char *err, size_t errlen)
{
	struct fp_redis_options ro;

	fp_redis_options_init(&ro);
	ro.url = o->url;
	ro.password = o->password;
	/* The registry's connection logs Redis coming and going: once is enough. */
	ro.log = NULL;
	ro.on_state = cb;
	ro.data = cj;
	return fp_redis_new(out, cj->loop, &ro, err, errlen);
}

void fp__cj_close(fp_cluster_jobs *cj)
{
	cj->leaving = true;
	fp_timer_stop(&cj->tick);
	fp_timer_stop(&cj->retry);
	fp_timer_stop(&cj->follow_soon);
	fp_redis_close(cj->cmd);
	fp_redis_close(cj->pull);
	fp_redis_close(cj->sub);
	fp_redis_close(cj->follow);
}

void fp_cluster_jobs_free(fp_cluster_jobs *cj)
{
	if (!cj)
		return;
	fp__cj_close(cj);
	fp__cj_run_free(cj);
	fp__cj_follow_free(cj);
	fp_redis_free(cj->cmd);
	fp_redis_free(cj->pull);
	fp_redis_free(cj->sub);
	fp_redis_free(cj->follow);
	free(cj->job_prefix);
	free(cj->jobs_key);
	free(cj->seq_key);
	free(cj->cancel_channel);
	free(cj->work_key);
	free(cj->pending_key);
	free(cj->name);
	free(cj->prefix);
	free(cj);
}

int fp_cluster_jobs_new(fp_cluster_jobs **out, fp_loop *loop, fp_pool *pool,
			const struct fp_cluster_jobs_options *o, char *err, size_t errlen)
{
	fp_cluster_jobs *cj;
	int r;

	*out = NULL;
	cj = calloc(1, sizeof(*cj));
	if (!cj)
		return -ENOMEM;
	cj->loop = loop;
	cj->pool = pool;
	cj->log = o->log;
	cj->ttl_ms = o->ttl_ms ? o->ttl_ms : 600000;
	cj->visibility_ms = o->visibility_ms ? o->visibility_ms : 5000;
	cj->tick_ms = o->tick_ms ? o->tick_ms : 1000;
	cj->max_queue = o->max_queue;
	cj->buffer_max = o->buffer_max ? o->buffer_max : 64u << 20;
	cj->tick.data = cj->retry.data = cj->follow_soon.data = cj;
	cj->prefix = strdup(o->prefix);
	cj->name = strdup(o->node_name);
	if (!cj->prefix || !cj->name)
		goto err_nomem;
	cj->work_key = fp__cj_key(cj, "work", NULL, NULL);
	cj->cancel_channel = fp__cj_key(cj, "cancel", NULL, NULL);
	cj->seq_key = fp__cj_key(cj, "seq", NULL, NULL);
	cj->jobs_key = fp__cj_key(cj, "jobs", NULL, NULL);
	cj->job_prefix = fp__cj_key(cj, "job:", NULL, NULL);
	cj->pending_key = fp__cj_key(cj, "pending", NULL, NULL);
	if (!cj->work_key || !cj->cancel_channel || !cj->seq_key || !cj->jobs_key ||
	    !cj->job_prefix || !cj->pending_key)
		goto err_nomem;
	if ((r = connect_one(cj, &cj->cmd, o, on_cmd_state, err, errlen)) < 0 ||
	    (r = connect_one(cj, &cj->pull, o, on_pull_state, err, errlen)) < 0 ||
	    (r = connect_one(cj, &cj->sub, o, on_sub_state, err, errlen)) < 0 ||
	    (r = connect_one(cj, &cj->follow, o, on_follow_state, err, errlen)) < 0)
		goto err_free;
	fp_timer_start(loop, &cj->tick, cj->tick_ms, fp__cj_run_tick);
	*out = cj;
	return 0;

err_nomem:
	r = -ENOMEM;
err_free:
	fp_cluster_jobs_free(cj);
	return r;
}

/* --- submission ------------------------------------------------------------- */
