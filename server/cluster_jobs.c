/*
 * The cluster's jobs (cluster_jobs.h): the object and its connections, and
 * what a request asks of Redis: a submission written, a job's document
 * read, a cancel. Running chunks is cluster_run.c, result streams
 * cluster_follow.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

#include "cluster_jobs_impl.h"

struct fp_cluster_op {
	fp_cluster_jobs *cj;
	union {
		fp_cluster_submit_cb submit;
		fp_cluster_doc_cb doc;
		fp_cluster_status_cb status;
	} cb;
	void *data;
	bool dropped;
	char id[FP_CLUSTER_ID_MAX + 1];
};

static uint64_t wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

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

static struct fp_cluster_op *op_new(fp_cluster_jobs *cj, void *data)
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
	(void)r;
	(void)why;
	if (st == FP_REDIS_READY)
		fp__cj_run_ready(data);
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
	free(cj->cancel_channel);
	free(cj->work_key);
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
	cj->tick.data = cj->retry.data = cj->follow_soon.data = cj;
	cj->prefix = strdup(o->prefix);
	cj->name = strdup(o->node_name);
	if (!cj->prefix || !cj->name)
		goto err_nomem;
	cj->work_key = fp__cj_key(cj, "work", NULL, NULL);
	cj->cancel_channel = fp__cj_key(cj, "cancel", NULL, NULL);
	if (!cj->work_key || !cj->cancel_channel)
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

static void new_id(char out[33])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t i, got = 0;

	while (got < sizeof(b)) {
		ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
		if (r > 0)
			got += (size_t)r;
	}
	for (i = 0; i < 16; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[32] = '\0';
}

static void exec_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct fp_cluster_op *op = data;

	(void)r;
	if (status == 0 && (reply->type != REDIS_REPLY_ARRAY))
		status = -EIO;        /* EXECABORT: a command was refused */
	if (!op->dropped && op->cb.submit)
		op->cb.submit(op->data, status, op->id);
	free(op);
}

/* One command of a MULTI, arguments as strings: what it sends is queued. */
static int cmdv(fp_redis *r, int argc, const char **argv, const size_t *lens)
{
	return fp_redis_command(r, NULL, NULL, argc, argv, lens);
}

int fp_cluster_jobs_submit(fp_cluster_jobs *cj, enum fp_job_kind kind, const char *task,
			   const struct fp_buf *items, size_t n, const fp_call_options *co,
			   fp_cluster_submit_cb cb, void *data, struct fp_cluster_op **opp)
{
	char id[33], total[24], nchunks[24], created[24], timeout[24], retries[24],
	     retry_on[24], ttl[24], kbuf[24], fbuf[24], nbuf[24];
	size_t chunks = fp_cluster_chunk_count(items, n, FP_CLUSTER_CHUNK_ITEMS,
					       FP_CLUSTER_CHUNK_BYTES);
	char *job_key = NULL, *results_key = NULL, *chunk_prefix = NULL;
	struct fp_cluster_op *op;
	struct sbuf body;
	uint64_t now = wall_ms();
	size_t first, k;
	int r = -ENOMEM;

	if (!fp_cluster_jobs_ready(cj))
		return -ENOTCONN;
	new_id(id);
	op = op_new(cj, data);
	job_key = fp__cj_key(cj, "job:", id, NULL);
	results_key = fp__cj_key(cj, "results:", id, NULL);
	chunk_prefix = fp__cj_key(cj, "job:", id, ":chunk:");
	if (!op || !job_key || !results_key || !chunk_prefix)
		goto out;
	memcpy(op->id, id, sizeof(id));
	op->cb.submit = cb;
	snprintf(total, sizeof(total), "%zu", n);
	snprintf(nchunks, sizeof(nchunks), "%zu", chunks);
	snprintf(created, sizeof(created), "%" PRIu64, now);
	snprintf(timeout, sizeof(timeout), "%" PRId64, co->timeout_ms);
	snprintf(retries, sizeof(retries), "%u", co->retries);
	snprintf(retry_on, sizeof(retry_on), "%u", co->retry_on);
	snprintf(ttl, sizeof(ttl), "%" PRIu64, cj->ttl_ms);

	{
		const char *multi[] = { "MULTI" };
		size_t multil[] = { 5 };
		const char *kname = fp_job_kind_name(kind);
		const char *state = n ? "queued" : "done";
		const char *hset[] = { "HSET", job_key, "kind", kname, "task", task,
				       "state", state, "total", total, "done", "0", "failed", "0",
				       "chunks", nchunks, "created_at", created,
				       "timeout_ms", timeout, "retries", retries,
				       "retry_on", retry_on, "ttl_ms", ttl, "node", cj->name,
				       "finished_at", n ? "0" : created };
		size_t hsetl[sizeof(hset) / sizeof(hset[0])];

		for (k = 0; k < sizeof(hset) / sizeof(hset[0]); k++)
			hsetl[k] = strlen(hset[k]);
		if ((r = cmdv(cj->cmd, 1, multi, multil)) < 0 ||
		    (r = cmdv(cj->cmd, (int)(sizeof(hset) / sizeof(hset[0])), hset, hsetl)) < 0)
			goto out;
	}
	sbuf_init(&body);
	for (first = 0, k = 0; first < n; k++) {
		size_t cnt = fp_cluster_chunk_next(items, n, first, FP_CLUSTER_CHUNK_ITEMS,
						   FP_CLUSTER_CHUNK_BYTES);
		char *chunk_key;

		sbuf_reset(&body);
		fp_cluster_chunk_encode(&body, items + first, cnt);
		snprintf(kbuf, sizeof(kbuf), "%zu", k);
		snprintf(fbuf, sizeof(fbuf), "%zu", first);
		snprintf(nbuf, sizeof(nbuf), "%zu", cnt);
		chunk_key = malloc(strlen(chunk_prefix) + strlen(kbuf) + 1);
		if (!chunk_key || body.oom) {
			free(chunk_key);
			sbuf_free(&body);
			r = -ENOMEM;
			goto out;
		}
		sprintf(chunk_key, "%s%s", chunk_prefix, kbuf);
		{
			const char *set[] = { "SET", chunk_key, body.data };
			size_t setl[] = { 3, strlen(chunk_key), body.len };
			const char *xadd[] = { "XADD", cj->work_key, "*", "job", id,
					       "chunk", kbuf, "first", fbuf, "n", nbuf };
			size_t xaddl[] = { 4, strlen(cj->work_key), 1, 3, 32, 5, strlen(kbuf),
					   5, strlen(fbuf), 1, strlen(nbuf) };

			r = cmdv(cj->cmd, 3, set, setl);
			if (r == 0)
				r = cmdv(cj->cmd, 11, xadd, xaddl);
		}
		free(chunk_key);
		if (r < 0) {
			sbuf_free(&body);
			goto out;
		}
		first += cnt;
	}
	sbuf_free(&body);
	if (n == 0) {
		/* Nothing to run: finished as it is written, and expiring. */
		const char *xadd[] = { "XADD", results_key, "*", "end", "done" };
		size_t xaddl[] = { 4, strlen(results_key), 1, 3, 4 };
		const char *pe1[] = { "PEXPIRE", job_key, ttl };
		const char *pe2[] = { "PEXPIRE", results_key, ttl };
		size_t pel1[] = { 7, strlen(job_key), strlen(ttl) };
		size_t pel2[] = { 7, strlen(results_key), strlen(ttl) };

		if ((r = cmdv(cj->cmd, 5, xadd, xaddl)) < 0 || (r = cmdv(cj->cmd, 3, pe1, pel1)) < 0 ||
		    (r = cmdv(cj->cmd, 3, pe2, pel2)) < 0)
			goto out;
	}
	{
		const char *exec[] = { "EXEC" };
		size_t execl[] = { 4 };

		r = fp_redis_command(cj->cmd, exec_cb, op, 1, exec, execl);
	}
	if (r == 0) {
		*opp = op;
		op = NULL;
	}
out:
	/*
	 * A failure after MULTI went out leaves a transaction open on the
	 * connection only if the connection is still there, which a failed
	 * command says it is not (or memory ran out: DISCARD then).
	 */
	if (r < 0 && fp_redis_state(cj->cmd) == FP_REDIS_READY) {
		const char *discard[] = { "DISCARD" };
		size_t discardl[] = { 7 };

		cmdv(cj->cmd, 1, discard, discardl);
	}
	free(op);
	free(chunk_prefix);
	free(results_key);
	free(job_key);
	return r;
}

/* --- reading a job ---------------------------------------------------------- */

static const char *const doc_fields[] = {
	"kind", "task", "state", "total", "done", "failed", "chunks",
	"created_at", "started_at", "finished_at", "o",
};
#define DOC_FIELDS (sizeof(doc_fields) / sizeof(doc_fields[0]))

static uint64_t reply_u64(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
}

static int doc_parse(const redisReply *reply, const char *id, struct fp_cluster_doc *d)
{
	const redisReply *const *e = (const redisReply *const *)reply->element;

	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != DOC_FIELDS)
		return -EIO;
	if (e[0]->type != REDIS_REPLY_STRING || e[2]->type != REDIS_REPLY_STRING)
		return -ENOENT;        /* no hash: no such job (or it expired) */
	memset(d, 0, sizeof(*d));
	snprintf(d->id, sizeof(d->id), "%s", id);
	d->kind = !strcmp(e[0]->str, "apply") ? FP_JOB_APPLY : FP_JOB_MAP;
	if (e[1]->type == REDIS_REPLY_STRING)
		snprintf(d->task, sizeof(d->task), "%s", e[1]->str);
	if (fp_job_state_parse(e[2]->str, &d->state) < 0)
		return -EIO;
	d->total = reply_u64(e[3]);
	d->done = reply_u64(e[4]);
	d->failed = reply_u64(e[5]);
	d->chunks = reply_u64(e[6]);
	d->created_at = reply_u64(e[7]);
	d->started_at = reply_u64(e[8]);
	d->finished_at = reply_u64(e[9]);
	/* Cancelled but with chunks still to account for: not finished yet. */
	if (e[10]->type == REDIS_REPLY_STRING) {
		d->outcome = e[10]->str;
		d->outcome_len = e[10]->len;
	}
	return 0;
}

static void doc_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct fp_cluster_op *op = data;
	struct fp_cluster_doc d;

	(void)r;
	if (status == 0)
		status = doc_parse(reply, op->id, &d);
	if (!op->dropped)
		op->cb.doc(op->data, status, status == 0 ? &d : NULL);
	free(op);
}

static int send_doc(fp_cluster_jobs *cj, struct fp_cluster_op *op)
{
	const char *argv[2 + DOC_FIELDS];
	size_t lens[2 + DOC_FIELDS], i;
	char *key = fp__cj_key(cj, "job:", op->id, NULL);
	int r;

	if (!key)
		return -ENOMEM;
	argv[0] = "HMGET";
	lens[0] = 5;
	argv[1] = key;
	lens[1] = strlen(key);
	for (i = 0; i < DOC_FIELDS; i++) {
		argv[2 + i] = doc_fields[i];
		lens[2 + i] = strlen(doc_fields[i]);
	}
	r = fp_redis_command(cj->cmd, doc_cb, op, (int)(2 + DOC_FIELDS), argv, lens);
	free(key);
	return r;
}

int fp_cluster_jobs_get(fp_cluster_jobs *cj, const char *id, fp_cluster_doc_cb cb,
			void *data, struct fp_cluster_op **opp)
{
	struct fp_cluster_op *op;
	int r;

	if (!fp_cluster_id_valid(id, strlen(id)))
		return -ENOENT;
	if (fp_redis_state(cj->cmd) != FP_REDIS_READY)
		return -ENOTCONN;
	if (!(op = op_new(cj, data)))
		return -ENOMEM;
	snprintf(op->id, sizeof(op->id), "%s", id);
	op->cb.doc = cb;
	if ((r = send_doc(cj, op)) < 0) {
		free(op);
		return r;
	}
	*opp = op;
	return 0;
}

/* --- cancel ----------------------------------------------------------------- */

/*
 * A finished job (finished_at set) is forgotten; an unfinished one is
 * marked cancelled and announced. The state and the message go together,
 * so a node that pulls a chunk of it after the message reads the state.
 */
static const char cancel_script[] =
	"local h = redis.call('HMGET', KEYS[1], 'state', 'finished_at')\n"
	"if not h[1] then return -1 end\n"
	"if h[2] and h[2] ~= '0' then redis.call('DEL', KEYS[1], KEYS[2]); return 0 end\n"
	"redis.call('HSET', KEYS[1], 'state', 'cancelled')\n"
	"redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
	"return 1\n";

static void cancel_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct fp_cluster_op *op = data;

	(void)r;
	if (status == 0)
		status = reply->type != REDIS_REPLY_INTEGER ? -EIO :
			 reply->integer < 0 ? -ENOENT : (int)reply->integer;
	if (!op->dropped)
		op->cb.status(op->data, status);
	free(op);
}

int fp_cluster_jobs_cancel(fp_cluster_jobs *cj, const char *id, fp_cluster_status_cb cb,
			   void *data, struct fp_cluster_op **opp)
{
	char *job_key, *results_key;
	struct fp_cluster_op *op;
	int r = -ENOMEM;

	if (!fp_cluster_id_valid(id, strlen(id)))
		return -ENOENT;
	if (fp_redis_state(cj->cmd) != FP_REDIS_READY)
		return -ENOTCONN;
	op = op_new(cj, data);
	job_key = fp__cj_key(cj, "job:", id, NULL);
	results_key = fp__cj_key(cj, "results:", id, NULL);
	if (op && job_key && results_key) {
		const char *argv[] = { "EVAL", cancel_script, "2", job_key, results_key,
				       cj->cancel_channel, id };
		size_t lens[] = { 4, sizeof(cancel_script) - 1, 1, strlen(job_key),
				  strlen(results_key), strlen(cj->cancel_channel), strlen(id) };

		snprintf(op->id, sizeof(op->id), "%s", id);
		op->cb.status = cb;
		r = fp_redis_command(cj->cmd, cancel_cb, op, 7, argv, lens);
	}
	if (r == 0)
		*opp = op;
	else
		free(op);
	free(results_key);
	free(job_key);
	return r;
}
