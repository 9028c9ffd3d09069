/*
 * Running the cluster's chunks on this node (cluster_jobs.h): a chunk
 * taken (cluster_pull.c decides when) is fetched with its job's options,
 * run in the local pool, and its outcomes written back.
 *
 * A chunk's life here: XREADGROUP (or XAUTOCLAIM) gives its entry; one
 * transaction (fetch_script, then GET of the chunk's items) reads the job's
 * task, options and state and the items, and marks the job running;
 * fp_pool_map_async() runs the items; one transaction (XADD of the outcome
 * lines to the job's results stream, then land_script) streams them,
 * counts them, acknowledges and deletes the entry, and finishes the job
 * when its counts reach its total. That script is where "exactly once"
 * holds: a chunk whose outcomes landed already (its c:K field set: it ran
 * twice, its first node taken for dead too early) has its stream entry
 * taken out again and is only acknowledged, so its items are counted and
 * streamed once. One round trip each way: big strings never pass through
 * Lua (see land_script).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cluster_jobs_impl.h"
#include "ndjson.h"

/* Outcome bytes kept for Redis while it is away, at most (see land_cb). */
#define UNWRITTEN_MAX (64u * 1024 * 1024)

/*
 * KEYS: job, chunk, work. ARGV: K, now, the entry's id, this node's name.
 * nil: the job is gone; {'landed'}: ran before; else state, task,
 * timeout_ms, retries, retry_on, "" (the items' place: they are read by
 * a GET in the same transaction, out of Lua, see land_script), how many
 * nodes read the
 * chunk to run it, one after the other (f:K, counted here when r:K, the
 * last reader, is another node: its attempt), and the map's chunksize
 * (items a worker is handed at a time; 0: the pool's). Not the entry's delivery
 * count: an entry whose XREADGROUP answer was lost with the connection is
 * delivered again without having run anywhere; and a node reading again a
 * chunk whose first answer it lost (Redis went away) is not a new attempt.
 */
static const char fetch_script[] =
	"local h = redis.call('HMGET', KEYS[1], 'task', 'timeout_ms', 'retries', 'retry_on',"
	" 'state', 'c:' .. ARGV[1], 'cancel', 'chunksize')\n"
	"if not h[1] then return false end\n"
	"if h[6] then return {'landed'} end\n"
	"if h[7] then h[5] = 'cancelled'\n"
	"elseif h[5] == 'queued' then redis.call('HSET', KEYS[1], 'state', 'running',"
	" 'started_at', ARGV[2]) end\n"
	"local d = 1\n"
	"if h[5] ~= 'cancelled' then\n"
	"  if redis.call('HGET', KEYS[1], 'r:' .. ARGV[1]) ~= ARGV[4] then\n"
	"    d = redis.call('HINCRBY', KEYS[1], 'f:' .. ARGV[1], 1)\n"
	"    redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[4])\n"
	"  else\n"
	"    d = tonumber(redis.call('HGET', KEYS[1], 'f:' .. ARGV[1]) or '1')\n"
	"  end\n"
	"end\n"
	"return {h[5], h[1], h[2] or '-1', h[3] or '0', h[4] or '0', '', tostring(d),"
	" h[8] or '0'}\n";

/*
 * A chunk lands as one transaction: XADD of its outcome lines to the job's
 * results stream, then land_script. The lines stay out of the script:
 * Redis's Lua copies every string it is given or reads, which cost ~1 us
 * a KiB (285 us for a 3,125-item chunk, against 8 us for a plain XADD).
 * Being one transaction, the entry just added is the stream's last when
 * the script runs; a landing that is not the chunk's first takes it out.
 *
 * KEYS: job, results, work, chunk. ARGV: K, ok, failed, entry id, now, and
 * for a one-item chunk its outcome line and attempts (an apply's document
 * keeps them; "" otherwise). -1: the job is gone; 0: landed before
 * (acknowledged only); 1: landed; 2: landed and the job finished. The
 * stream's end entry carries the job's document as it ended ("d:" and
 * fp__cj_doc_fields' names, "" for none), so that a reader waiting for the
 * end (an apply's ?wait=) answers without reading the hash again.
 */
static const char land_script[] =
	"local function ack() redis.call('XACK', KEYS[3], '" CJ_GROUP "', ARGV[4])"
	" redis.call('XDEL', KEYS[3], ARGV[4]) end\n"
	"local function unadd() local e = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)"
	" if e[1] then redis.call('XDEL', KEYS[2], e[1][1]) end end\n"
	"if redis.call('EXISTS', KEYS[1]) == 0 then\n"
	"  unadd() ack()\n"
	"  if redis.call('XLEN', KEYS[2]) == 0 then redis.call('DEL', KEYS[2]) end\n"
	"  return -1\n"
	"end\n"
	"if redis.call('HSETNX', KEYS[1], 'c:' .. ARGV[1], 1) == 0 then unadd() ack() return 0 end\n"
	"local done = redis.call('HINCRBY', KEYS[1], 'done', ARGV[2])\n"
	"local failed = redis.call('HINCRBY', KEYS[1], 'failed', ARGV[3])\n"
	"ack()\n"
	"redis.call('DEL', KEYS[4])\n"
	"local h = redis.call('HMGET', KEYS[1], 'total', 'cancel', 'kind', 'ttl_ms')\n"
	"if h[3] == 'apply' then redis.call('HSET', KEYS[1], 'o', ARGV[6], 'a', ARGV[7]) end\n"
	"if done + failed < tonumber(h[1]) then return 1 end\n"
	"local st = 'done'\n"
	"if h[2] then st = 'cancelled' elseif failed > 0 then st = 'failed' end\n"
	"redis.call('HSET', KEYS[1], 'state', st, 'finished_at', ARGV[5])\n"
	"local names = {'kind', 'task', 'state', 'total', 'done', 'failed', 'chunks', 'created_at',"
	" 'started_at', 'finished_at', 'o', 'a'}\n"
	"local v = redis.call('HMGET', KEYS[1], unpack(names))\n"
	"local e = {'end', st}\n"
	"for i = 1, #names do e[#e + 1] = 'd:' .. names[i] e[#e + 1] = v[i] or '' end\n"
	"redis.call('XADD', KEYS[2], '*', unpack(e))\n"
	"redis.call('PEXPIRE', KEYS[1], h[4])\n"
	"redis.call('PEXPIRE', KEYS[2], h[4])\n"
	"return 2\n";

static void land(struct cj_run *run);

static uint64_t wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* --- a run's life ------------------------------------------------------------- */

static void run_unlink(struct cj_run *run)
{
	fp_cluster_jobs *cj = run->cj;

	if (!cj)
		return;
	if (run->prev)
		run->prev->next = run->next;
	else
		cj->runs = run->next;
	if (run->next)
		run->next->prev = run->prev;
	run->prev = run->next = NULL;
	cj->nruns--;
	run->cj = NULL;
}

static void run_free(struct cj_run *run)
{
	run_unlink(run);
	sbuf_free(&run->raw);
	free(run->offs);
	free(run->attempts);
	free(run->lens);
	fp_ndjson_free(run->items);
	free(run->body);
	sbuf_free(&run->out);
	sbuf_free(&run->att);
	free(run);
}

/* Done with a run: freed now, or by the pool's done callback if it has one out. */
static void run_end(struct cj_run *run)
{
	fp_cluster_jobs *cj = run->cj;

	if (run->calling || run->marking) {
		run_unlink(run);
		return;
	}
	run_free(run);
	if (cj)
		fp__cj_pull(cj);
}

/* Acknowledge and delete an entry that is not to run (not ours, its job gone, landed). */
static void ack(fp_cluster_jobs *cj, const char *entry_id)
{
	const char *xack[] = { "XACK", cj->work_key, CJ_GROUP, entry_id };
	size_t xackl[] = { 4, strlen(cj->work_key), sizeof(CJ_GROUP) - 1, strlen(entry_id) };
	const char *xdel[] = { "XDEL", cj->work_key, entry_id };
	size_t xdell[] = { 4, strlen(cj->work_key), strlen(entry_id) };

	fp_redis_command(cj->cmd, NULL, NULL, 4, xack, xackl);
	fp_redis_command(cj->cmd, NULL, NULL, 3, xdel, xdell);
}

/*
 * Item i's line, just written at the end of raw from `start`: kept where it
 * is (one buffer for the chunk, not an allocation per item); joined in
 * item order when the chunk lands.
 */
static int set_line(struct cj_run *run, size_t i, size_t start)
{
	if (run->raw.oom)
		return -ENOMEM;
	run->offs[i] = start;
	run->lens[i] = run->raw.len - start;
	return 0;
}

/* Every item of the run ends with one error: it could not run (or was cancelled first). */
static void fail_all(struct cj_run *run, fp_item_status status, const char *message)
{
	size_t i, start;

	for (i = 0; i < run->e.n; i++) {
		if (run->lens[i])
			continue;
		start = run->raw.len;
		fp_cluster_outcome_error(&run->raw, run->e.first + i, status, message);
		set_line(run, i, start);
		run->nfailed++;
	}
	land(run);
}

/* --- running ---------------------------------------------------------------- */

static void on_item(fp_pool *pool, uint64_t call_id, const struct fp_result *r, void *data)
{
	struct cj_run *run = data;
	size_t start;

	(void)pool;
	(void)call_id;
	if (!run->cj || r->index >= run->e.n || run->lens[r->index])
		return;
	start = run->raw.len;
	fp_cluster_outcome_line(&run->raw, run->e.first + r->index, r);
	run->attempts[r->index] = r->attempts;
	if (set_line(run, r->index, start) == 0) {
		if (r->status == FP_ITEM_OK)
			run->nok++;
		else
			run->nfailed++;
	}
}

static void on_done(fp_pool *pool, const struct fp_call_summary *s, void *data)
{
	struct cj_run *run = data;

	(void)pool;
	(void)s;
	run->calling = false;
	if (!run->cj || run->left) {
		/* Orphaned, or stopped by this node's leave: the entry stays pending. */
		fp_cluster_jobs *cj = run->cj;

		run_unlink(run);
		if (!run->marking)
			run_free(run);           /* else mark_cb frees it */
		if (cj)
			fp__cj_pull(cj);
		return;
	}
	if (run->skip) {
		ack(run->cj, run->entry_id);
		run->cj->stats.chunks_skipped++;
		run_end(run);
		return;
	}
	run->cj->stats.chunks_run++;
	run->cj->stats.items_run += run->e.n;
	/* Items the pool never answered (out of memory) fail by name, not silently. */
	fail_all(run, FP_ITEM_CRASH, "no outcome was recorded for this item");
}

static bool elem_is(const redisReply *e, const char *s)
{
	return e->type == REDIS_REPLY_STRING && e->len == strlen(s) && !memcmp(e->str, s, e->len);
}

static int64_t elem_i64(const redisReply *e, int64_t dflt)
{
	return e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : dflt;
}

static void start(struct cj_run *run, redisReply *const *f)
{
	fp_cluster_jobs *cj = run->cj;
	fp_call_options co = FP_CALL_OPTIONS_DEFAULT;
	struct fp_ndjson_error nerr;
	char task[256], label[96];
	int64_t deliveries;
	size_t n = 0;
	int r;

	if (elem_is(f[0], "cancelled")) {
		fail_all(run, FP_ITEM_CANCELLED, "the job was cancelled");
		return;
	}
	if (f[1]->type != REDIS_REPLY_STRING || f[5]->type != REDIS_REPLY_STRING ||
	    f[1]->len >= sizeof(task)) {
		fail_all(run, FP_ITEM_UNKNOWN_TASK, "the job's record in Redis is damaged");
		return;
	}
	memcpy(task, f[1]->str, f[1]->len);
	task[f[1]->len] = '\0';
	run->body = malloc(f[5]->len + 1);
	if (!run->body) {
		fail_all(run, FP_ITEM_CRASH, "out of memory for the chunk's items");
		return;
	}
	memcpy(run->body, f[5]->str, f[5]->len);
	run->body[f[5]->len] = '\0';
	if (fp_ndjson_split(run->body, f[5]->len, &run->items, &n, &nerr) < 0 || n != run->e.n) {
		fail_all(run, FP_ITEM_UNKNOWN_TASK, "the chunk's items in Redis are damaged or gone");
		return;
	}
	co.timeout_ms = elem_i64(f[2], -1);
	co.retries = (unsigned)elem_i64(f[3], 0);
	co.retry_on = (unsigned)elem_i64(f[4], 0);
	co.chunksize = (size_t)elem_i64(f[7], 0);
	/*
	 * Read to run before: the node that had it stopped refreshing it
	 * (killed, cut off) and its items may have been running there, as a
	 * worker's are when it dies. Each such read is an attempt, counted
	 * against the job's retries like a crash (for a retry_on that retries
	 * crashes).
	 */
	deliveries = elem_i64(f[6], 1);
	if (deliveries > 1) {
		int64_t extra = deliveries - 1;

		if (!(co.retry_on ? co.retry_on & FP_RETRY_CRASH : true) ||
		    extra > (int64_t)co.retries) {
			char why[160];

			snprintf(why, sizeof(why), "the node running this item's chunk stopped (killed"
				 " or cut off) %" PRId64 " time(s); retries: %u", extra, co.retries);
			fail_all(run, FP_ITEM_CRASH, why);
			return;
		}
		co.retries -= (unsigned)extra;
	}
	snprintf(label, sizeof(label), "job %s chunk %" PRIu64, run->e.job, run->e.chunk);
	co.label = label;
	r = fp_pool_map_async(cj->pool, task, run->items, n, &co, on_item, on_done, run,
			      &run->call_id);
	if (r < 0) {
		fail_all(run, r == FP_EUNKNOWN_TASK ? FP_ITEM_UNKNOWN_TASK : FP_ITEM_START_FAILURE,
			 fp_strerror(r));
		return;
	}
	run->calling = true;
	run->state = RUN_RUNNING;
}

static void fetch_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct cj_run *run = data;
	fp_cluster_jobs *cj = run->cj;
	redisReply *f[8], *body = NULL;

	(void)r;
	if (!cj) {
		run_free(run);
		return;
	}
	if (status < 0) {
		run->state = RUN_REFETCH;      /* read again when Redis is back */
		return;
	}
	/* EXEC's answer: [the script's, the GET's]; the items go in the script's slot 5. */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
		body = reply->element[1];
		reply = reply->element[0];
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		/* Not taken after all: pending, and claimed again once it idles. */
		if (cj->log)
			fp_dlog_warn(cj->log, "cluster: chunk %" PRIu64 " of job %s: %s",
				     run->e.chunk, run->e.job, reply->str);
		run_end(run);
		return;
	}
	if (reply->type == REDIS_REPLY_NIL) {
		ack(cj, run->entry_id);        /* its job is gone: deleted or expired */
		cj->stats.chunks_skipped++;
		run_end(run);
		return;
	}
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
		ack(cj, run->entry_id);        /* landed before: ran elsewhere */
		cj->stats.chunks_skipped++;
		run_end(run);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 8) {
		run_end(run);
		return;
	}
	memcpy(f, reply->element, sizeof(f));
	if (body && body->type == REDIS_REPLY_STRING)
		f[5] = body;
	start(run, f);
}

/*
 * A run started from its entry (an apply's chunk carries its items and
 * options): fetch_script's answer only says whether it should stop. The
 * run is freed here when it was orphaned meanwhile and its pool call is
 * done (on_done left it to this answer).
 */
static void mark_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct cj_run *run = data;

	(void)r;
	run->marking = false;
	if (!run->cj) {
		if (!run->calling)
			run_free(run);
		return;
	}
	if (status < 0 || !run->calling)
		return;         /* landing already: land_script sorts out gone and landed */
	if (reply->type == REDIS_REPLY_NIL ||
	    (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1)) {
		run->skip = true;              /* gone, or ran elsewhere: acknowledged when done */
		fp_pool_cancel(run->cj->pool, run->call_id);
	} else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 8 &&
		   elem_is(reply->element[0], "cancelled")) {
		fp_pool_cancel(run->cj->pool, run->call_id);
	}
}

/*
 * Read the chunk and its job's options (fetch_script, then GET of the
 * items), and mark the job running; or, for a run started from its entry
 * (mark_only), the script alone.
 */
static void send_fetch(struct cj_run *run, bool mark_only)
{
	fp_cluster_jobs *cj = run->cj;
	char kbuf[24], now[24];
	char *job_key = fp__cj_key(cj, "job:", run->e.job, NULL);
	char *chunk_key;
	int r = -ENOMEM;

	if (!mark_only)
		run->state = RUN_FETCHING;
	snprintf(kbuf, sizeof(kbuf), "%" PRIu64, run->e.chunk);
	snprintf(now, sizeof(now), "%" PRIu64, wall_ms());
	chunk_key = job_key ? fp__cj_key(cj, "job:", run->e.job, ":chunk:") : NULL;
	if (chunk_key) {
		char *k = malloc(strlen(chunk_key) + strlen(kbuf) + 1);

		if (k)
			sprintf(k, "%s%s", chunk_key, kbuf);
		free(chunk_key);
		chunk_key = k;
	}
	if (job_key && chunk_key) {
		const char *argv[] = { "EVAL", fetch_script, "3", job_key, chunk_key,
				       cj->work_key, kbuf, now, run->entry_id, cj->name };
		size_t argl[] = { 4, sizeof(fetch_script) - 1, 1, strlen(job_key),
				  strlen(chunk_key), strlen(cj->work_key), strlen(kbuf),
				  strlen(now), strlen(run->entry_id), strlen(cj->name) };
		const char *get[] = { "GET", chunk_key };
		size_t getl[] = { 3, strlen(chunk_key) };
		const struct fp_redis_cmdv cmds[] = { { 10, argv, argl }, { 2, get, getl } };

		if (mark_only)
			r = fp_redis_command(cj->cmd, mark_cb, run, 10, argv, argl);
		else
			r = fp_redis_transaction(cj->cmd, fetch_cb, run, 2, cmds);
	}
	free(chunk_key);
	free(job_key);
	if (mark_only)
		run->marking = r == 0;   /* unmarked (Redis away): it runs; a claim counts no attempt */
	else if (r == -ENOTCONN)
		run->state = RUN_REFETCH;
	else if (r < 0)
		run_free(run);        /* out of memory: pending, claimed again later */
}

void fp__cj_fetch(struct cj_run *run)
{
	send_fetch(run, false);
}

static const redisReply *entry_field(const redisReply *fields, const char *name)
{
	size_t i;

	for (i = 0; i + 1 < fields->elements; i += 2)
		if (elem_is(fields->element[i], name))
			return fields->element[i + 1]->type == REDIS_REPLY_STRING ?
			       fields->element[i + 1] : NULL;
	return NULL;
}

/*
 * A fresh entry that carries its items and options (an apply's: see
 * cluster_submit.c) starts at once, without waiting for the fetch's round
 * trip; the mark goes meanwhile (mark_cb). Never for a claimed entry: its
 * attempts are counted by the fetch first. False: not such an entry.
 */
static bool start_from_entry(struct cj_run *run, const redisReply *fields)
{
	static const char *const names[] = { "task", "timeout_ms", "retries", "retry_on",
					     "chunksize", "items" };
	const redisReply *v[6];
	char queued[] = "queued", one[] = "1";
	redisReply q = { .type = REDIS_REPLY_STRING, .str = queued, .len = 6 };
	redisReply d = { .type = REDIS_REPLY_STRING, .str = one, .len = 1 };
	redisReply *f[8];
	size_t i;

	for (i = 0; i < 6; i++)
		if (!(v[i] = entry_field(fields, names[i])))
			return false;
	f[0] = &q;
	f[1] = (redisReply *)v[0];
	f[2] = (redisReply *)v[1];
	f[3] = (redisReply *)v[2];
	f[4] = (redisReply *)v[3];
	f[5] = (redisReply *)v[5];
	f[6] = &d;
	f[7] = (redisReply *)v[4];
	/* The mark goes first: a landing (sent after it) finds the job marked running. */
	send_fetch(run, true);
	start(run, f);
	return true;
}

/* An entry XREADGROUP or XAUTOCLAIM gave: [id, [field, value, ...]]. */
void fp__cj_take(fp_cluster_jobs *cj, const redisReply *entry, bool fresh)
{
	const char *fv[32];
	size_t lens[32], i, nf;
	struct cj_run *run;
	const redisReply *fields;

	if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
	    entry->element[0]->type != REDIS_REPLY_STRING ||
	    entry->element[0]->len >= sizeof(run->entry_id))
		return;
	fields = entry->element[1];
	run = calloc(1, sizeof(*run));
	if (!run)
		return;                        /* pending: claimed again later */
	memcpy(run->entry_id, entry->element[0]->str, entry->element[0]->len);
	nf = fields->type == REDIS_REPLY_ARRAY ? fields->elements : 0;
	for (i = 0; i < nf && i < 32; i++) {
		fv[i] = fields->element[i]->type == REDIS_REPLY_STRING ? fields->element[i]->str : "";
		lens[i] = fields->element[i]->type == REDIS_REPLY_STRING ? fields->element[i]->len : 0;
	}
	if (fp_cluster_entry_parse(fv, lens, i, &run->e) < 0) {
		if (cj->log)
			fp_dlog_warn(cj->log, "cluster: work entry %s is not a chunk; acknowledged",
				     run->entry_id);
		ack(cj, run->entry_id);
		free(run);
		return;
	}
	run->offs = calloc(run->e.n, sizeof(*run->offs));
	run->lens = calloc(run->e.n, sizeof(*run->lens));
	run->attempts = calloc(run->e.n, sizeof(*run->attempts));
	sbuf_init(&run->raw);
	sbuf_init(&run->out);
	sbuf_init(&run->att);
	if (!run->offs || !run->lens || !run->attempts) {
		run_free(run);
		return;
	}
	run->cj = cj;
	run->next = cj->runs;
	if (cj->runs)
		cj->runs->prev = run;
	cj->runs = run;
	cj->nruns++;
	if (!fresh || !start_from_entry(run, fields))
		fp__cj_fetch(run);
}

/* --- landing ---------------------------------------------------------------- */

static uint64_t unwritten_bytes(const fp_cluster_jobs *cj)
{
	const struct cj_run *run;
	uint64_t n = 0;

	for (run = cj->runs; run; run = run->next)
		if (run->state == RUN_UNWRITTEN)
			n += run->out.len;
	return n;
}

static void land_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct cj_run *run = data;
	fp_cluster_jobs *cj = run->cj;

	(void)r;
	if (!cj) {
		run_free(run);
		return;
	}
	if (status < 0) {
		/*
		 * Redis went away with the outcomes unanswered: kept, and written
		 * again when it returns (the script makes a second landing an
		 * acknowledgement only). Past the bound they go, loudly: the entry
		 * stays pending and the chunk runs again, here or elsewhere.
		 */
		if (unwritten_bytes(cj) + run->out.len > UNWRITTEN_MAX) {
			if (cj->log)
				fp_dlog_error(cj->log, "cluster: Redis is away and %u MiB of outcomes wait"
					      " already: chunk %" PRIu64 " of job %s is dropped here and"
					      " will run again (store_unavailable)",
					      UNWRITTEN_MAX >> 20, run->e.chunk, run->e.job);
			run_end(run);
			return;
		}
		run->state = RUN_UNWRITTEN;
		return;
	}
	/* EXEC's answer: [the XADD's, the script's]; either may be Redis's refusal. */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	    reply->element[0]->type != REDIS_REPLY_ERROR)
		reply = reply->element[1];
	else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2)
		reply = reply->element[0];
	if (reply->type == REDIS_REPLY_ERROR && cj->log)
		fp_dlog_error(cj->log, "cluster: the outcomes of chunk %" PRIu64 " of job %s were"
			      " refused: %s", run->e.chunk, run->e.job, reply->str);
	run_end(run);
}

void fp__cj_land_send(struct cj_run *run)
{
	fp_cluster_jobs *cj = run->cj;
	char kbuf[24], ok[24], failed[24], now[24], first[24];
	char *job_key = fp__cj_key(cj, "job:", run->e.job, NULL);
	char *results_key = fp__cj_key(cj, "results:", run->e.job, NULL);
	char *chunk_prefix = fp__cj_key(cj, "job:", run->e.job, ":chunk:");
	char *chunk_key = NULL;
	int r = -ENOMEM;

	snprintf(kbuf, sizeof(kbuf), "%" PRIu64, run->e.chunk);
	snprintf(ok, sizeof(ok), "%" PRIu64, run->nok);
	snprintf(failed, sizeof(failed), "%" PRIu64, run->nfailed);
	snprintf(now, sizeof(now), "%" PRIu64, wall_ms());
	snprintf(first, sizeof(first), "%" PRIu64, run->e.first);
	if (chunk_prefix && (chunk_key = malloc(strlen(chunk_prefix) + strlen(kbuf) + 1)))
		sprintf(chunk_key, "%s%s", chunk_prefix, kbuf);
	run->state = RUN_WRITING;
	if (job_key && results_key && chunk_key) {
		bool one = run->e.n == 1;
		const char *xadd[] = { "XADD", results_key, "*", "chunk", kbuf, "first", first,
				       "o", run->out.data, "a", run->att.data };
		size_t xaddl[] = { 4, strlen(results_key), 1, 5, strlen(kbuf), 5, strlen(first),
				   1, run->out.len, 1, run->att.len };
		const char *eval[] = { "EVAL", land_script, "4", job_key, results_key, cj->work_key,
				       chunk_key, kbuf, ok, failed, run->entry_id, now,
				       one ? run->out.data : "", one ? run->att.data : "" };
		size_t evall[] = { 4, sizeof(land_script) - 1, 1, strlen(job_key),
				   strlen(results_key), strlen(cj->work_key), strlen(chunk_key),
				   strlen(kbuf), strlen(ok), strlen(failed), strlen(run->entry_id),
				   strlen(now), one ? run->out.len : 0, one ? run->att.len : 0 };
		const struct fp_redis_cmdv cmds[] = { { 11, xadd, xaddl }, { 14, eval, evall } };

		r = fp_redis_transaction(cj->cmd, land_cb, run, 2, cmds);
	}
	if (r == -ENOTCONN)
		run->state = RUN_UNWRITTEN;      /* written when Redis returns */
	else if (r < 0)
		run_end(run);
	else
		fp__cj_pull(cj);                        /* its place is free while it is written */
	free(chunk_key);
	free(chunk_prefix);
	free(results_key);
	free(job_key);
}

/* The lines joined in item order, and the attempts ("1,1,2,..."), each written in one go. */
static void land(struct cj_run *run)
{
	char *o, *a, *o0, *a0;
	size_t i;

	sbuf_reset(&run->out);
	sbuf_reset(&run->att);
	o = o0 = run->raw.oom ? NULL : sbuf_reserve(&run->out, run->raw.len + run->e.n);
	a = a0 = sbuf_reserve(&run->att, 21 * run->e.n);
	if (!o || !a) {
		run_end(run);
		return;
	}
	for (i = 0; i < run->e.n; i++) {
		memcpy(o, run->raw.data + run->offs[i], run->lens[i]);
		o += run->lens[i];
		*o++ = '\n';
		if (i)
			*a++ = ',';
		a = sbuf_put_uint(a, run->attempts[i]);
	}
	sbuf_commit(&run->out, (size_t)(o - o0));
	sbuf_commit(&run->att, (size_t)(a - a0));
	/* The joined text is what is sent (and kept while Redis is away): raw is done with. */
	sbuf_free(&run->raw);
	sbuf_init(&run->raw);
	fp__cj_land_send(run);
}

void fp__cj_run_cancel(fp_cluster_jobs *cj, const char *id, size_t len)
{
	struct cj_run *run;

	for (run = cj->runs; run; run = run->next)
		if (run->calling && strlen(run->e.job) == len && !memcmp(run->e.job, id, len))
			fp_pool_cancel(cj->pool, run->call_id);
}

void fp__cj_run_free(fp_cluster_jobs *cj)
{
	while (cj->runs) {
		struct cj_run *run = cj->runs;

		if (run->calling) {
			/* The pool's done callback frees it, now or when the pool goes. */
			run->left = true;
			fp_pool_cancel(cj->pool, run->call_id);
		}
		run_end(run);
	}
}
