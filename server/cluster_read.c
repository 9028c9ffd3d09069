/*
 * Reading the cluster's jobs: one job's document (fp_cluster_jobs_get) and
 * the list in submission order (fp_cluster_jobs_list), both from the jobs'
 * hashes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_jobs_impl.h"

const char *const fp__cj_doc_fields[FP_CJ_DOC_FIELDS] = {
	"kind", "task", "state", "total", "done", "failed", "chunks",
	"created_at", "started_at", "finished_at", "o", "a",
};
#define DOC_FIELDS FP_CJ_DOC_FIELDS

static uint64_t reply_u64(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
}

/* A job's fields (fp__cj_doc_fields' order) into *d. -ENOENT: no hash (no such job, or expired). */
int fp__cj_doc_parse(redisReply *const *e, const char *id, struct fp_cluster_doc *d)
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
	return fp__cj_doc_parse(reply->element, id, d);
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
		argv[2 + i] = fp__cj_doc_fields[i];
		lens[2 + i] = strlen(fp__cj_doc_fields[i]);
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
	if (!(op = fp__cj_op_new(cj, data)))
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

/*
 * KEYS: P jobs. ARGV: the cursor (0: from the newest; a number: jobs before
 * that place; a job id: jobs before it), how many, a state ("" any), the
 * jobs' key prefix. Answers -1 for an id no job has, else a flat array:
 * per job its id, its place, and fp__cj_doc_fields' values ("" for none). Names
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
			    fp__cj_doc_parse(e + 2, e[0]->str, &docs[i]) < 0)
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
	if (!(op = fp__cj_op_new(cj, data)))
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
