/*
 * A submission on the cluster (fp_cluster_jobs_submit): the job's hash, its
 * chunks and their work entries written by one script, the idempotency key
 * taken in the same step.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

#include "cluster_jobs_impl.h"

static uint64_t wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

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
 * A submission is one transaction: MSET of the chunks' items (plain
 * command: Redis's Lua copies every string it is given, ~1 us a KiB, and a
 * big map's items are megabytes), then this script, so that the
 * idempotency key's check and the job's writing are one atomic step (MULTI
 * alone cannot write only when a key is free). KEYS: the job's hash, its
 * results stream, the work stream, the idempotency key ("" for none), the
 * submission counter and the list of jobs (P seq, P jobs: the job's place
 * in submission order, the list's cursor).
 * ARGV: id, the key's value ("ID HASH"), the key's TTL, the job's TTL, the
 * number of hash fields, the fields and values, the number of chunks, and
 * per chunk its first item and its count, then for a job of one small item
 * (an apply, mostly) its task, timeout_ms, retries, retry_on, chunksize and
 * chunk text, which its work entry carries too: the node that reads it
 * starts at once, without a fetch's round trip (cluster_run.c,
 * start_from_entry). Chunk K's key is the hash's +
 * ":chunk:K". Answers nil when written, or the key's value when a job still
 * kept holds it (a key whose job is gone is taken over); the chunks the
 * MSET wrote are then deleted.
 */
static const char submit_script[] =
	"local nf = tonumber(ARGV[5])\n"
	"local at = 6 + nf * 2\n"
	"local nc = tonumber(ARGV[at])\n"
	"if KEYS[4] ~= '' then\n"
	"  local old = redis.call('GET', KEYS[4])\n"
	"  if old then\n"
	"    local j = string.match(old, '^(%x+) ')\n"
	"    local base = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])\n"
	"    if j and redis.call('EXISTS', base .. j) == 1 then\n"
	"      for k = 0, nc - 1 do redis.call('DEL', KEYS[1] .. ':chunk:' .. k) end\n"
	"      return old\n"
	"    end\n"
	"  end\n"
	"  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])\n"
	"end\n"
	"local h = {}\n"
	"for i = 1, nf * 2 do h[i] = ARGV[5 + i] end\n"
	"redis.call('HSET', KEYS[1], unpack(h))\n"
	"local seq = redis.call('INCR', KEYS[5])\n"
	"redis.call('HSET', KEYS[1], 'seq', seq)\n"
	"redis.call('ZADD', KEYS[6], seq, ARGV[1])\n"
	"local x = at + 1 + nc * 2\n"
	"for k = 0, nc - 1 do\n"
	"  local b = at + 1 + k * 2\n"
	"  if ARGV[x] then\n"
	"    redis.call('XADD', KEYS[3], '*', 'job', ARGV[1], 'chunk', tostring(k),"
	" 'first', ARGV[b], 'n', ARGV[b + 1], 'task', ARGV[x], 'timeout_ms', ARGV[x + 1],"
	" 'retries', ARGV[x + 2], 'retry_on', ARGV[x + 3], 'chunksize', ARGV[x + 4],"
	" 'items', ARGV[x + 5])\n"
	"  else\n"
	"    redis.call('XADD', KEYS[3], '*', 'job', ARGV[1], 'chunk', tostring(k),"
	" 'first', ARGV[b], 'n', ARGV[b + 1])\n"
	"  end\n"
	"end\n"
"if nc == 0 then\n"
	"  redis.call('XADD', KEYS[2], '*', 'end', 'done')\n"
	"  redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
	"  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
	"end\n"
	"return false\n";

/* A one-item job's chunk text up to this size rides in its work entry. */
#define ENTRY_ITEMS_MAX 4096

/* An idempotency key outlives its job's TTL by this much (a key whose job is gone is free). */
#define IDEM_EXTRA_MS (24u * 3600 * 1000)

static void submit_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct fp_cluster_op *op = data;
	struct fp_cluster_held held = { 0 };
	const char *id = op->id;

	(void)r;
	/* EXEC's answer: [MSET's,] the script's. */
	if (status == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements)
		reply = reply->element[reply->elements - 1];
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

/* s (malloc'd, or NULL: ENOMEM), kept until the arguments are freed. */
static int arg_own(struct args *a, char *s)
{
	char **o;

	if (!s || !(o = realloc(a->owned, (a->nowned + 1) * sizeof(*o)))) {
		free(s);
		return -ENOMEM;
	}
	a->owned = o;
	a->owned[a->nowned++] = s;
	return arg_s(a, s);
}

/* A number. */
static int arg_u64(struct args *a, uint64_t v)
{
	char *s;

	return arg_own(a, asprintf(&s, "%" PRIu64, v) < 0 ? NULL : s);
}

/* Chunk K's key: the job's + ":chunk:K". */
static int arg_chunk_key(struct args *a, const char *job_key, size_t k)
{
	char *s;

	return arg_own(a, asprintf(&s, "%s:chunk:%zu", job_key, k) < 0 ? NULL : s);
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
	size_t per = fp_cluster_chunk_items(n, co->chunksize);
	size_t chunks = fp_cluster_chunk_count(items, n, per, FP_CLUSTER_CHUNK_BYTES);
	char id[33], timeout[24], idem_value[64], *idem_key = NULL;
	char *job_key = NULL, *results_key = NULL;
	struct fp_cluster_op *op;
	struct args a = { 0 }, m = { 0 };        /* the script's, MSET's */
	struct sbuf body;
	uint64_t now = wall_ms();
	size_t first, k, cnt, *ends = NULL;
	int r = -ENOMEM;

	if (!fp_cluster_jobs_ready(cj))
		return -ENOTCONN;
	new_id(id);
	sbuf_init(&body);
	op = fp__cj_op_new(cj, data);
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
		cnt = fp_cluster_chunk_next(items, n, first, per, FP_CLUSTER_CHUNK_BYTES);
		fp_cluster_chunk_encode(&body, items + first, cnt);
		ends[k] = body.len;
	}
	if (body.oom)
		goto out;
	if (arg_s(&a, "EVAL") || arg(&a, submit_script, sizeof(submit_script) - 1) ||
	    arg_s(&a, "6") || arg_s(&a, job_key) || arg_s(&a, results_key) ||
	    arg_s(&a, cj->work_key) || arg_s(&a, idem_key ? idem_key : "") ||
	    arg_s(&a, cj->seq_key) || arg_s(&a, cj->jobs_key) ||
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
	    arg_s(&a, "chunksize") || arg_u64(&a, co->chunksize) ||
	    arg_s(&a, "ttl_ms") || arg_u64(&a, cj->ttl_ms) ||
	    arg_s(&a, "node") || arg_s(&a, cj->name) ||
	    arg_s(&a, "idem") || arg_s(&a, idem_key ? idem_key : "") ||
	    arg_u64(&a, chunks))
		goto out;
	if (arg_s(&m, "MSET"))
		goto out;
	for (first = 0, k = 0; k < chunks; k++) {
		size_t from = k ? ends[k - 1] : 0;

		cnt = fp_cluster_chunk_next(items, n, first, per, FP_CLUSTER_CHUNK_BYTES);
		if (arg_u64(&a, first) || arg_u64(&a, cnt) || arg_chunk_key(&m, job_key, k) ||
		    arg(&m, body.data + from, ends[k] - from))
			goto out;
		first += cnt;
	}
	/* One small item: it travels in its work entry too (the script's ARGV[x]). */
	if (n == 1 && body.len <= ENTRY_ITEMS_MAX &&
	    (arg_s(&a, task) || arg_s(&a, timeout) || arg_u64(&a, co->retries) ||
	     arg_u64(&a, co->retry_on) || arg_u64(&a, co->chunksize) ||
	     arg(&a, body.data, body.len)))
		goto out;
	{
		const struct fp_redis_cmdv cmds[] = { { (int)m.n, m.v, m.len },
						      { (int)a.n, a.v, a.len } };

		/* No chunks (an empty map): no MSET, which wants a key. */
		r = fp_redis_transaction(cj->cmd, submit_cb, op, chunks ? 2 : 1,
					 chunks ? cmds : cmds + 1);
	}
	if (r == 0) {
		*opp = op;
		op = NULL;
	}
out:
	args_free(&m);
	args_free(&a);
	sbuf_free(&body);
	free(ends);
	free(op);
	free(idem_key);
	free(results_key);
	free(job_key);
	return r;
}
