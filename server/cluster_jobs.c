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
		fp_cluster_list_cb list;
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

/*
 * A submission in one script, so that the idempotency key's check and the
 * job's writing are one atomic step (as MULTI/EXEC would write it, but
 * MULTI cannot write only when a key is free). KEYS: the job's hash, its
 * results stream, the work stream, the idempotency key ("" for none), the
 * submission counter and the list of jobs (P seq, P jobs: the job's place
 * in submission order, the list's cursor), and P pending (the cluster's
 * unfinished items).
 * ARGV: id, the key's value ("ID HASH"), the key's TTL, the job's TTL, the
 * number of hash fields, the fields and values, the number of chunks, per
 * chunk its first item, its count and its items, then the job's items and
 * the most the cluster may hold unfinished ("0": no bound). Chunk K's key
 * is the hash's + ":chunk:K". Answers nil when written, the key's value
 * when a job still kept holds it (a key whose job is gone is taken over),
 * or -1 when the cluster's queue has no room for the items (--max-queue:
 * then nothing is written, the key not taken).
 */
static const char submit_script[] =
	"if KEYS[4] ~= '' then\n"
	"  local old = redis.call('GET', KEYS[4])\n"
	"  if old then\n"
	"    local j = string.match(old, '^(%x+) ')\n"
	"    local base = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])\n"
	"    if j and redis.call('EXISTS', base .. j) == 1 then return old end\n"
	"  end\n"
	"end\n"
	"local items, qmax = tonumber(ARGV[#ARGV - 1]), tonumber(ARGV[#ARGV])\n"
	"if qmax > 0 then\n"
	"  local q = math.max(tonumber(redis.call('GET', KEYS[7]) or '0'), 0)\n"
	"  if items > qmax - math.min(q, qmax) then return -1 end\n"
	"end\n"
	"if items > 0 then redis.call('INCRBY', KEYS[7], items) end\n"
	"if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3]) end\n"
	"local nf = tonumber(ARGV[5])\n"
	"local h = {}\n"
	"for i = 1, nf * 2 do h[i] = ARGV[5 + i] end\n"
	"redis.call('HSET', KEYS[1], unpack(h))\n"
	"local seq = redis.call('INCR', KEYS[5])\n"
	"redis.call('HSET', KEYS[1], 'seq', seq)\n"
	"redis.call('ZADD', KEYS[6], seq, ARGV[1])\n"
	"local at = 6 + nf * 2\n"
	"local nc = tonumber(ARGV[at])\n"
	"for k = 0, nc - 1 do\n"
	"  local b = at + 1 + k * 3\n"
	"  redis.call('SET', KEYS[1] .. ':chunk:' .. k, ARGV[b + 2])\n"
	"  redis.call('XADD', KEYS[3], '*', 'job', ARGV[1], 'chunk', tostring(k),"
	" 'first', ARGV[b], 'n', ARGV[b + 1])\n"
	"end\n"
	"if nc == 0 then\n"
	"  redis.call('XADD', KEYS[2], '*', 'end', 'done')\n"
	"  redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
	"  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
	"end\n"
	"return false\n";

/* An idempotency key outlives its job's TTL by this much (a key whose job is gone is free). */
#define IDEM_EXTRA_MS (24u * 3600 * 1000)

static void submit_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct fp_cluster_op *op = data;
	struct fp_cluster_held held = { 0 };
	const char *id = op->id;

	(void)r;
	if (status == 0 && reply->type == REDIS_REPLY_STRING) {
		/* "ID HASH": the job that holds the key. */
		char *sp = memchr(reply->str, ' ', reply->len);

		if (sp && (size_t)(sp - reply->str) <= FP_CLUSTER_ID_MAX) {
			memcpy(op->id, reply->str, (size_t)(sp - reply->str));
			op->id[sp - reply->str] = '\0';
			held.held = true;
			held.hash = strtoull(sp + 1, NULL, 16);
		} else {
			status = -EIO;
		}
	} else if (status == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer == -1) {
		status = -EBUSY;               /* --max-queue: the cluster's queue is full */
	} else if (status == 0 && reply->type != REDIS_REPLY_NIL) {
		/* Refused: Redis out of memory under noeviction, say. */
		if (op->cj->log)
			fp_dlog_error(op->cj->log, "cluster: Redis refused a submission: %s",
				      reply->type == REDIS_REPLY_ERROR ? reply->str : "(not an answer)");
		status = -EIO;
	}
	if (!op->dropped && op->cb.submit)
		op->cb.submit(op->data, status, id, &held);
	free(op);
}

/* The work's arguments: a growing array of pointers and lengths. */
struct args {
	const char **v;
	size_t *len;
	size_t n, cap;
	char **owned;             /* strings made here, freed with the array */
	size_t nowned;
};

static int arg(struct args *a, const char *s, size_t len)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 64;
		const char **v = realloc(a->v, cap * sizeof(*v));
		size_t *l;

		if (!v)
			return -ENOMEM;
		a->v = v;
		if (!(l = realloc(a->len, cap * sizeof(*l))))
			return -ENOMEM;
		a->len = l;
		a->cap = cap;
	}
	a->v[a->n] = s;
	a->len[a->n++] = len;
	return 0;
}

static int arg_s(struct args *a, const char *s)
{
	return arg(a, s, strlen(s));
}

/* A number, kept until the arguments are freed. */
static int arg_u64(struct args *a, uint64_t v)
{
	char buf[24], *s, **o;

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	if (!(s = strdup(buf)))
		return -ENOMEM;
	if (!(o = realloc(a->owned, (a->nowned + 1) * sizeof(*o)))) {
		free(s);
		return -ENOMEM;
	}
	a->owned = o;
	a->owned[a->nowned++] = s;
	return arg_s(a, s);
}

static void args_free(struct args *a)
{
	size_t i;

	for (i = 0; i < a->nowned; i++)
		free(a->owned[i]);
	free(a->owned);
	free(a->v);
	free(a->len);
}

int fp_cluster_jobs_submit(fp_cluster_jobs *cj, enum fp_job_kind kind, const char *task,
			   const struct fp_buf *items, size_t n, const fp_call_options *co,
			   const struct fp_job_idem *idem, fp_cluster_submit_cb cb, void *data,
			   struct fp_cluster_op **opp)
{
	size_t chunks = fp_cluster_chunk_count(items, n, FP_CLUSTER_CHUNK_ITEMS,
					       FP_CLUSTER_CHUNK_BYTES);
	char id[33], timeout[24], idem_value[64], *idem_key = NULL;
	char *job_key = NULL, *results_key = NULL;
	struct fp_cluster_op *op;
	struct args a = { 0 };
	struct sbuf body;
	uint64_t now = wall_ms();
	size_t first, k, cnt, *ends = NULL;
	int r = -ENOMEM;

	if (!fp_cluster_jobs_ready(cj))
		return -ENOTCONN;
	new_id(id);
	sbuf_init(&body);
	op = op_new(cj, data);
	job_key = fp__cj_key(cj, "job:", id, NULL);
	results_key = fp__cj_key(cj, "results:", id, NULL);
	if (idem && idem->key) {
		if ((idem_key = malloc(strlen(cj->prefix) + 5 + idem->len + 1))) {
			sprintf(idem_key, "%sidem:", cj->prefix);
			memcpy(idem_key + strlen(idem_key), idem->key, idem->len);
			idem_key[strlen(cj->prefix) + 5 + idem->len] = '\0';
		}
	}
	ends = calloc(chunks ? chunks : 1, sizeof(*ends));
	if (!op || !job_key || !results_key || !ends || (idem && idem->key && !idem_key))
		goto out;
	memcpy(op->id, id, sizeof(id));
	op->cb.submit = cb;
	snprintf(timeout, sizeof(timeout), "%" PRId64, co->timeout_ms);
	snprintf(idem_value, sizeof(idem_value), "%s %016" PRIx64, id, idem ? idem->hash : 0);

	/* Every chunk's text in one buffer (the arguments point into it once it stops moving). */
	for (first = 0, k = 0; first < n; k++, first += cnt) {
		cnt = fp_cluster_chunk_next(items, n, first, FP_CLUSTER_CHUNK_ITEMS,
					    FP_CLUSTER_CHUNK_BYTES);
		fp_cluster_chunk_encode(&body, items + first, cnt);
		ends[k] = body.len;
	}
	if (body.oom)
		goto out;
	if (arg_s(&a, "EVAL") || arg(&a, submit_script, sizeof(submit_script) - 1) ||
	    arg_s(&a, "7") || arg_s(&a, job_key) || arg_s(&a, results_key) ||
	    arg_s(&a, cj->work_key) || arg_s(&a, idem_key ? idem_key : "") ||
	    arg_s(&a, cj->seq_key) || arg_s(&a, cj->jobs_key) || arg_s(&a, cj->pending_key) ||
	    arg_s(&a, id) || arg_s(&a, idem_value) || arg_u64(&a, cj->ttl_ms + IDEM_EXTRA_MS) ||
	    arg_u64(&a, cj->ttl_ms) || arg_s(&a, "17") ||
	    arg_s(&a, "kind") || arg_s(&a, fp_job_kind_name(kind)) ||
	    arg_s(&a, "task") || arg_s(&a, task) ||
	    arg_s(&a, "state") || arg_s(&a, n ? "queued" : "done") ||
	    arg_s(&a, "total") || arg_u64(&a, n) ||
	    arg_s(&a, "done") || arg_s(&a, "0") || arg_s(&a, "failed") || arg_s(&a, "0") ||
	    arg_s(&a, "chunks") || arg_u64(&a, chunks) ||
	    arg_s(&a, "created_at") || arg_u64(&a, now) ||
	    arg_s(&a, "started_at") || arg_s(&a, "0") ||
	    arg_s(&a, "finished_at") || (n ? arg_s(&a, "0") : arg_u64(&a, now)) ||
	    arg_s(&a, "timeout_ms") || arg_s(&a, timeout) ||
	    arg_s(&a, "retries") || arg_u64(&a, co->retries) ||
	    arg_s(&a, "retry_on") || arg_u64(&a, co->retry_on) ||
	    arg_s(&a, "concurrency") || arg_u64(&a, co->concurrency) ||
	    arg_s(&a, "ttl_ms") || arg_u64(&a, cj->ttl_ms) ||
	    arg_s(&a, "node") || arg_s(&a, cj->name) ||
	    arg_s(&a, "idem") || arg_s(&a, idem_key ? idem_key : "") ||
	    arg_u64(&a, chunks))
		goto out;
	for (first = 0, k = 0; k < chunks; k++) {
		size_t from = k ? ends[k - 1] : 0;

		cnt = fp_cluster_chunk_next(items, n, first, FP_CLUSTER_CHUNK_ITEMS,
					    FP_CLUSTER_CHUNK_BYTES);
		if (arg_u64(&a, first) || arg_u64(&a, cnt) ||
		    arg(&a, body.data + from, ends[k] - from))
			goto out;
		first += cnt;
	}
	if (arg_u64(&a, n) || arg_u64(&a, cj->max_queue))
		goto out;
	r = fp_redis_command(cj->cmd, submit_cb, op, (int)a.n, a.v, a.len);
	if (r == 0) {
		*opp = op;
		op = NULL;
	}
out:
	args_free(&a);
	sbuf_free(&body);
	free(ends);
	free(op);
	free(idem_key);
	free(results_key);
	free(job_key);
	return r;
}

/* --- reading a job ---------------------------------------------------------- */

static const char *const doc_fields[] = {
	"kind", "task", "state", "total", "done", "failed", "chunks",
	"created_at", "started_at", "finished_at", "o", "a",
};
#define DOC_FIELDS (sizeof(doc_fields) / sizeof(doc_fields[0]))

static uint64_t reply_u64(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
}

/* A job's fields (doc_fields' order) into *d. -ENOENT: no hash (no such job, or expired). */
static int fields_parse(redisReply *const *e, const char *id, struct fp_cluster_doc *d)
{
	if (e[0]->type != REDIS_REPLY_STRING || e[2]->type != REDIS_REPLY_STRING)
		return -ENOENT;
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
	if (e[10]->type == REDIS_REPLY_STRING && e[10]->len) {
		d->outcome = e[10]->str;
		d->outcome_len = e[10]->len;
	}
	d->attempts = (unsigned)reply_u64(e[11]);
	return 0;
}

static int doc_parse(const redisReply *reply, const char *id, struct fp_cluster_doc *d)
{
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != DOC_FIELDS)
		return -EIO;
	return fields_parse(reply->element, id, d);
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
 * marked (cancel) and announced. The mark and the message go together, so
 * a node that pulls a chunk of it after the message reads the mark. The
 * state becomes "cancelled" when the last chunk lands (land_script), every
 * item accounted for, as a single node's cancelled job is.
 */
static const char cancel_script[] =
	"local h = redis.call('HMGET', KEYS[1], 'state', 'finished_at')\n"
	"if not h[1] then return -1 end\n"
	"if h[2] and h[2] ~= '0' then redis.call('DEL', KEYS[1], KEYS[2])"
	" redis.call('ZREM', KEYS[3], ARGV[2]) return 0 end\n"
	"redis.call('HSET', KEYS[1], 'cancel', '1')\n"
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
		const char *argv[] = { "EVAL", cancel_script, "3", job_key, results_key,
				       cj->jobs_key, cj->cancel_channel, id };
		size_t lens[] = { 4, sizeof(cancel_script) - 1, 1, strlen(job_key),
				  strlen(results_key), strlen(cj->jobs_key),
				  strlen(cj->cancel_channel), strlen(id) };

		snprintf(op->id, sizeof(op->id), "%s", id);
		op->cb.status = cb;
		r = fp_redis_command(cj->cmd, cancel_cb, op, 8, argv, lens);
	}
	if (r == 0)
		*opp = op;
	else
		free(op);
	free(results_key);
	free(job_key);
	return r;
}

/* --- the list --------------------------------------------------------------- */

/*
 * KEYS: P jobs. ARGV: the cursor (0: from the newest; a number: jobs before
 * that place; a job id: jobs before it), how many, a state ("" any), the
 * jobs' key prefix. Answers -1 for an id no job has, else a flat array:
 * per job its id, its place, and doc_fields' values ("" for none). Names
 * of jobs gone (expired) are dropped from the list on the way.
 */
static const char list_script[] =
	"local before = ARGV[1]\n"
	"if string.len(before) == 32 then\n"
	"  before = redis.call('HGET', ARGV[4] .. before, 'seq')\n"
	"  if not before then return -1 end\n"
	"end\n"
	"local max = (before == '0') and '+inf' or ('(' .. before)\n"
	"local want, got, out = tonumber(ARGV[2]), 0, {}\n"
	"while got < want do\n"
	"  local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], max, '-inf', 'WITHSCORES',"
	" 'LIMIT', 0, 200)\n"
	"  if #ids == 0 then break end\n"
	"  for i = 1, #ids, 2 do\n"
	"    max = '(' .. ids[i + 1]\n"
	"    local h = redis.call('HMGET', ARGV[4] .. ids[i], 'kind', 'task', 'state', 'total',"
	" 'done', 'failed', 'chunks', 'created_at', 'started_at', 'finished_at', 'o', 'a')\n"
	"    if not h[3] then redis.call('ZREM', KEYS[1], ids[i])\n"
	"    elseif ARGV[3] == '' or h[3] == ARGV[3] then\n"
	"      got = got + 1\n"
	"      out[#out + 1] = ids[i]\n"
	"      out[#out + 1] = ids[i + 1]\n"
	"      for k = 1, 12 do out[#out + 1] = h[k] or '' end\n"
	"      if got >= want then break end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return out\n";

static void list_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct fp_cluster_op *op = data;
	struct fp_cluster_doc *docs = NULL;
	uint64_t *seqs = NULL;
	size_t n = 0, i, per = 2 + DOC_FIELDS;

	(void)r;
	if (status == 0 && reply->type == REDIS_REPLY_INTEGER)
		status = -ENOENT;
	else if (status == 0 && (reply->type != REDIS_REPLY_ARRAY || reply->elements % per))
		status = -EIO;
	if (status == 0 && reply->elements) {
		n = reply->elements / per;
		docs = calloc(n, sizeof(*docs));
		seqs = calloc(n, sizeof(*seqs));
		if (!docs || !seqs)
			status = -ENOMEM;
		for (i = 0; status == 0 && i < n; i++) {
			redisReply *const *e = reply->element + i * per;

			if (e[0]->type != REDIS_REPLY_STRING || e[0]->len > FP_CLUSTER_ID_MAX ||
			    fields_parse(e + 2, e[0]->str, &docs[i]) < 0)
				status = -EIO;
			seqs[i] = reply_u64(e[1]);
		}
	}
	if (!op->dropped)
		op->cb.list(op->data, status, docs, seqs, status == 0 ? n : 0);
	free(seqs);
	free(docs);
	free(op);
}

int fp_cluster_jobs_list(fp_cluster_jobs *cj, const char *after, size_t max,
			 const char *state, fp_cluster_list_cb cb, void *data,
			 struct fp_cluster_op **opp)
{
	struct fp_cluster_op *op;
	char count[24];
	int r;

	if (fp_redis_state(cj->cmd) != FP_REDIS_READY)
		return -ENOTCONN;
	if (!(op = op_new(cj, data)))
		return -ENOMEM;
	op->cb.list = cb;
	snprintf(count, sizeof(count), "%zu", max);
	{
		const char *argv[] = { "EVAL", list_script, "1", cj->jobs_key, after ? after : "0",
				       count, state ? state : "", cj->job_prefix };
		size_t argl[8];

		for (size_t i = 0; i < 8; i++)
			argl[i] = i == 1 ? sizeof(list_script) - 1 : strlen(argv[i]);
		r = fp_redis_command(cj->cmd, list_cb, op, 8, argv, argl);
	}
	if (r < 0) {
		free(op);
		return r;
	}
	*opp = op;
	return 0;
}
