/*
 * Result streams of cluster jobs (cluster_jobs.h, fp_cluster_follow_*):
 * every follower of this node is served by one blocking XREAD on one
 * connection, naming each followed stream with the last entry its follower
 * has seen. A follower that asks for more, or a new one, while that read is
 * blocked wakes it with CLIENT UNBLOCK (from the command connection), so
 * the next read names it too. Nothing polls: an idle read waits in Redis
 * until an outcome lands or its block time passes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_jobs_impl.h"

/* Entries one follower gets a read at most; streams one read names at most. */
#define FOLLOW_COUNT "64"
#define ROUND_MAX 512
#define FOLLOW_BLOCK_MS "5000"

struct fp_cluster_follow {
	fp_cluster_jobs *cj;
	struct fp_cluster_follow *prev, *next;
	char *key;
	char last[48];                 /* the last entry id given ("0": none yet) */
	bool want, ended;
	unsigned seen;                 /* the round that served it last */
	fp_cluster_follow_cb cb;
	void *data;
};

struct cj_round {
	unsigned seq;
	size_t n;
	char *key[ROUND_MAX];
	char last[ROUND_MAX][48];
};

static void pump(fp_cluster_jobs *cj);

static void round_free(struct cj_round *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n; i++)
		free(r->key[i]);
	free(r);
}

static void unblock_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_jobs *cj = data;

	(void)r;
	(void)status;
	(void)reply;
	cj->unblocking = false;
}

/* Wake the blocked read, so that the next one names what was added. */
static void wake(fp_cluster_jobs *cj)
{
	char id[24];

	if (!cj->following || cj->unblocking || !cj->follow_client ||
	    fp_redis_state(cj->cmd) != FP_REDIS_READY)
		return;
	snprintf(id, sizeof(id), "%lld", cj->follow_client);
	{
		const char *argv[] = { "CLIENT", "UNBLOCK", id };
		size_t argl[] = { 6, 7, strlen(id) };

		if (fp_redis_command(cj->cmd, unblock_cb, cj, 3, argv, argl) == 0)
			cj->unblocking = true;
	}
}

static void soon_cb(fp_timer *t)
{
	pump(t->data);
}

static void later(fp_cluster_jobs *cj)
{
	if (cj->following)
		wake(cj);
	else if (!cj->leaving)
		fp_timer_start(cj->loop, &cj->follow_soon, 0, soon_cb);
}

/* The follower the round asked for with (key, last) and not yet served in it. */
static struct fp_cluster_follow *find(fp_cluster_jobs *cj, const struct cj_round *rd,
				      const char *key, size_t keylen, const char *last)
{
	struct fp_cluster_follow *f;

	for (f = cj->followers; f; f = f->next)
		if (f->want && !f->ended && f->seen != rd->seq && strlen(f->key) == keylen &&
		    !memcmp(f->key, key, keylen) && !strcmp(f->last, last))
			return f;
	return NULL;
}

static const redisReply *field(const redisReply *fields, const char *name)
{
	size_t i;

	for (i = 0; i + 1 < fields->elements; i += 2)
		if (fields->element[i]->type == REDIS_REPLY_STRING &&
		    !strcmp(fields->element[i]->str, name))
			return fields->element[i + 1];
	return NULL;
}

/*
 * The document an end entry carries (land_script's "d:" fields), for the
 * job whose results stream is `key`. -ENOENT: an end without it (an empty
 * job's, written at submission).
 */
static int end_doc(const fp_cluster_jobs *cj, const redisReply *key, const redisReply *fields,
		   struct fp_cluster_doc *d)
{
	size_t skip = strlen(cj->prefix) + sizeof("results:") - 1, i;
	redisReply *e[FP_CJ_DOC_FIELDS];
	char id[FP_CLUSTER_ID_MAX + 1], name[32];

	if (key->len <= skip || key->len - skip > FP_CLUSTER_ID_MAX)
		return -ENOENT;
	memcpy(id, key->str + skip, key->len - skip);
	id[key->len - skip] = '\0';
	for (i = 0; i < FP_CJ_DOC_FIELDS; i++) {
		const redisReply *v;

		snprintf(name, sizeof(name), "d:%s", fp__cj_doc_fields[i]);
		if (!(v = field(fields, name)) || v->type != REDIS_REPLY_STRING)
			return -ENOENT;
		e[i] = (redisReply *)v;
	}
	return fp__cj_doc_parse(e, id, d);
}

/* Give a stream's entries to every follower that asked for them. */
static void deliver(fp_cluster_jobs *cj, const struct cj_round *rd, const redisReply *stream)
{
	const redisReply *key = stream->element[0], *entries = stream->element[1];
	struct fp_cluster_landed *l;
	const char *asked = NULL, *state = NULL, *last_id = NULL;
	struct fp_cluster_follow *f;
	struct fp_cluster_doc doc;
	size_t i, n = 0;
	bool end = false, have_doc = false;

	if (key->type != REDIS_REPLY_STRING || entries->type != REDIS_REPLY_ARRAY)
		return;
	for (i = 0; i < rd->n; i++)
		if (strlen(rd->key[i]) == key->len && !memcmp(rd->key[i], key->str, key->len))
			asked = rd->last[i];
	if (!asked || !(l = calloc(entries->elements ? entries->elements : 1, sizeof(*l))))
		return;
	for (i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i], *fields, *v;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		last_id = e->element[0]->str;
		fields = e->element[1];
		if (fields->type != REDIS_REPLY_ARRAY)
			continue;
		if ((v = field(fields, "end")) && v->type == REDIS_REPLY_STRING) {
			end = true;
			state = v->str;
			have_doc = end_doc(cj, key, fields, &doc) == 0;
			break;
		}
		if (!(v = field(fields, "o")) || v->type != REDIS_REPLY_STRING)
			continue;
		l[n].lines = v->str;
		l[n].len = v->len;
		if ((v = field(fields, "a")) && v->type == REDIS_REPLY_STRING) {
			l[n].attempts = v->str;
			l[n].attempts_len = v->len;
		}
		l[n].chunk = (v = field(fields, "chunk")) ? strtoull(v->str, NULL, 10) : 0;
		l[n].first = (v = field(fields, "first")) ? strtoull(v->str, NULL, 10) : 0;
		n++;
	}
	/* Every follower at that point gets the batch; each callback may stop any. */
	while (last_id && (f = find(cj, rd, key->str, key->len, asked))) {
		f->seen = rd->seq;
		f->want = false;
		snprintf(f->last, sizeof(f->last), "%s", last_id);
		if (end)
			f->ended = true;
		f->cb(f, l, n, end, state, have_doc ? &doc : NULL, f->data);
	}
	free(l);
}

static void read_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_jobs *cj = data;
	struct cj_round *rd = cj->round;
	size_t i;

	(void)r;
	cj->following = false;
	cj->round = NULL;
	if (status == 0 && rd && reply->type == REDIS_REPLY_ARRAY)
		for (i = 0; i < reply->elements; i++)
			if (reply->element[i]->type == REDIS_REPLY_ARRAY &&
			    reply->element[i]->elements == 2)
				deliver(cj, rd, reply->element[i]);
	round_free(rd);
	/* Lost: the connection's READY pumps again. */
	if (status == 0)
		pump(cj);
}

static void pump(fp_cluster_jobs *cj)
{
	const char **argv = NULL;
	size_t *argl = NULL, i, n = 0;
	struct fp_cluster_follow *f;
	struct cj_round *rd;

	if (cj->following || cj->leaving || fp_redis_state(cj->follow) != FP_REDIS_READY)
		return;
	if (!(rd = calloc(1, sizeof(*rd))))
		return;
	rd->seq = ++cj->round_seq;
	for (f = cj->followers; f && rd->n < ROUND_MAX; f = f->next) {
		bool dup = false;

		if (!f->want || f->ended)
			continue;
		/* A stream once a read: a second follower of it waits for the next. */
		for (i = 0; i < rd->n && !dup; i++)
			dup = !strcmp(rd->key[i], f->key);
		if (dup || !(rd->key[rd->n] = strdup(f->key)))
			continue;
		snprintf(rd->last[rd->n], sizeof(rd->last[0]), "%s", f->last);
		rd->n++;
	}
	if (rd->n == 0)
		goto out;
	argv = calloc(6 + 2 * rd->n, sizeof(*argv));
	argl = calloc(6 + 2 * rd->n, sizeof(*argl));
	if (!argv || !argl)
		goto out;
	argv[n++] = "XREAD";
	argv[n++] = "COUNT";
	argv[n++] = FOLLOW_COUNT;
	argv[n++] = "BLOCK";
	argv[n++] = FOLLOW_BLOCK_MS;
	argv[n++] = "STREAMS";
	for (i = 0; i < rd->n; i++)
		argv[n++] = rd->key[i];
	for (i = 0; i < rd->n; i++)
		argv[n++] = rd->last[i];
	for (i = 0; i < n; i++)
		argl[i] = strlen(argv[i]);
	if (fp_redis_command(cj->follow, read_cb, cj, (int)n, argv, argl) == 0) {
		cj->following = true;
		cj->round = rd;
		rd = NULL;
	}
out:
	free(argl);
	free(argv);
	round_free(rd);
}

static void client_id_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster_jobs *cj = data;

	(void)r;
	if (status == 0 && reply->type == REDIS_REPLY_INTEGER)
		cj->follow_client = reply->integer;
}

void fp__cj_follow_ready(fp_cluster_jobs *cj)
{
	const char *argv[] = { "CLIENT", "ID" };
	size_t argl[] = { 6, 2 };

	cj->follow_client = 0;
	fp_redis_command(cj->follow, client_id_cb, cj, 2, argv, argl);
	pump(cj);
}

void fp__cj_follow_lost(fp_cluster_jobs *cj)
{
	cj->following = false;
	cj->follow_client = 0;
	round_free(cj->round);
	cj->round = NULL;
}

int fp_cluster_follow_start(fp_cluster_jobs *cj, const char *id, fp_cluster_follow_cb cb,
			    void *data, struct fp_cluster_follow **out)
{
	struct fp_cluster_follow *f;

	if (!fp_cluster_id_valid(id, strlen(id)))
		return -ENOENT;
	if (!(f = calloc(1, sizeof(*f))))
		return -ENOMEM;
	if (!(f->key = fp__cj_key(cj, "results:", id, NULL))) {
		free(f);
		return -ENOMEM;
	}
	f->cj = cj;
	f->cb = cb;
	f->data = data;
	f->want = true;
	snprintf(f->last, sizeof(f->last), "0");
	f->next = cj->followers;
	if (cj->followers)
		cj->followers->prev = f;
	cj->followers = f;
	later(cj);
	*out = f;
	return 0;
}

void fp_cluster_follow_more(struct fp_cluster_follow *f)
{
	if (!f || f->ended || f->want)
		return;
	f->want = true;
	if (f->cj)
		later(f->cj);
}

void fp_cluster_follow_stop(struct fp_cluster_follow *f)
{
	fp_cluster_jobs *cj;

	if (!f)
		return;
	if ((cj = f->cj)) {
		if (f->prev)
			f->prev->next = f->next;
		else
			cj->followers = f->next;
		if (f->next)
			f->next->prev = f->prev;
	}
	free(f->key);
	free(f);
}

void fp__cj_follow_free(fp_cluster_jobs *cj)
{
	struct fp_cluster_follow *f;

	/* Followers belong to their callers: they are only cut loose here. */
	for (f = cj->followers; f; f = f->next)
		f->cj = NULL;
	cj->followers = NULL;
	round_free(cj->round);
	cj->round = NULL;
}
