/*
 * The shared values in Redis (cluster_kv.h): the pool's kv backend, one
 * command (or script) per operation on the cluster's command connection,
 * answered from its reply.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_kv.h"
#include "redis.h"

/* Past this many keys a listing is refused rather than sorted in memory. */
#define LIST_MAX_KEYS 100000

struct fp_cluster_kv {
	fp_pool *pool;
	fp_cluster *c;
	char *prefix;              /* P kv: */
	size_t prefix_len;
};

/*
 * CAS: KEYS[1] the key; ARGV[1] "1" when a value is expected (ARGV[2]),
 * "0" when the key must be absent; ARGV[3] the new value; ARGV[4] the ttl in
 * ms, "0" for none. {1, new} when set, {0, current} or {0} when not.
 */
static const char cas_script[] =
	"local cur = redis.call('GET', KEYS[1])\n"
	"if ARGV[1] == '1' then\n"
	"  if cur ~= ARGV[2] then if cur then return {0, cur} end return {0} end\n"
	"elseif cur then return {0, cur} end\n"
	"if ARGV[4] ~= '0' then redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])\n"
	"else redis.call('SET', KEYS[1], ARGV[3]) end\n"
	"return {1, ARGV[3]}\n";

/* Values and PTTLs of KEYS, in pairs (a value false: gone since the SCAN). */
static const char fetch_script[] =
	"local out = {}\n"
	"for i, k in ipairs(KEYS) do\n"
	"  out[#out + 1] = redis.call('GET', k) or false\n"
	"  out[#out + 1] = redis.call('PTTL', k)\n"
	"end\n"
	"return out\n";

struct kv_op {
	fp_cluster_kv *k;
	fp_pool *pool;
	fp_kv_op op;
	fp_kv_cb cb;
	void *data;
};

static char *key_of(const fp_cluster_kv *k, const char *key, size_t len, size_t *out_len)
{
	char *s = malloc(k->prefix_len + len + 1);

	if (!s)
		return NULL;
	memcpy(s, k->prefix, k->prefix_len);
	memcpy(s + k->prefix_len, key, len);
	s[k->prefix_len + len] = '\0';
	*out_len = k->prefix_len + len;
	return s;
}

/* What an error reply from Redis means for an operation. */
static int redis_error(const fp_kv_op op, const redisReply *rep)
{
	if (op == FP_KV_INCR && strstr(rep->str, "overflow"))
		return -ERANGE;
	if (op == FP_KV_INCR && strstr(rep->str, "not an integer"))
		return -EDOM;
	return -EPROTO;
}

static void op_done(fp_redis *redis, int status, redisReply *rep, void *data)
{
	struct kv_op *o = data;
	struct fp_kv_reply r = { 0 };
	char num[24];

	(void)redis;
	if (status < 0)
		r.err = -ENOTCONN;
	else if (rep->type == REDIS_REPLY_ERROR)
		r.err = redis_error(o->op, rep);
	else
		switch (o->op) {
		case FP_KV_GET:
			if (rep->type == REDIS_REPLY_STRING) {
				r.value = rep->str;
				r.value_len = rep->len;
			} else {
				r.err = -ENOENT;
			}
			break;
		case FP_KV_SET:
			break;
		case FP_KV_DEL:
			if (rep->type != REDIS_REPLY_INTEGER || rep->integer == 0)
				r.err = -ENOENT;
			break;
		case FP_KV_INCR:
			r.number = rep->integer;
			r.value_len = (size_t)snprintf(num, sizeof(num), "%" PRId64, r.number);
			r.value = num;
			break;
		case FP_KV_CAS:
			if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
				r.err = -EPROTO;
				break;
			}
			r.swapped = rep->element[0]->integer == 1;
			if (rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING) {
				r.value = rep->element[1]->str;
				r.value_len = rep->element[1]->len;
			}
			break;
		}
	o->cb(o->pool, &r, o->data);
	free(o);
}

static int run(void *data, fp_pool *pool, const struct fp_kv_request *req, fp_kv_cb cb,
	       void *cb_data)
{
	fp_cluster_kv *k = data;
	struct kv_op *o = malloc(sizeof(*o));
	const char *argv[8];
	size_t lens[8], klen;
	char *key = key_of(k, req->key, req->key_len, &klen), by[24], ttl[24];
	int argc = 0, rc;

	if (!o || !key) {
		free(o);
		free(key);
		return -ENOMEM;
	}
	*o = (struct kv_op){ k, pool, req->op, cb, cb_data };
	snprintf(ttl, sizeof(ttl), "%" PRIu64, req->ttl_ms);
#define ARG(s, n) (argv[argc] = (s), lens[argc++] = (n))
	switch (req->op) {
	case FP_KV_GET:
		ARG("GET", 3);
		ARG(key, klen);
		break;
	case FP_KV_SET:
		ARG("SET", 3);
		ARG(key, klen);
		ARG(req->value, req->value_len);
		if (req->ttl_ms) {
			ARG("PX", 2);
			ARG(ttl, strlen(ttl));
		}
		break;
	case FP_KV_DEL:
		ARG("DEL", 3);
		ARG(key, klen);
		break;
	case FP_KV_INCR:
		snprintf(by, sizeof(by), "%" PRId64, req->by);
		ARG("INCRBY", 6);
		ARG(key, klen);
		ARG(by, strlen(by));
		break;
	case FP_KV_CAS:
		ARG("EVAL", 4);
		ARG(cas_script, sizeof(cas_script) - 1);
		ARG("1", 1);
		ARG(key, klen);
		ARG(req->expect ? "1" : "0", 1);
		ARG(req->expect ? req->expect : "", req->expect_len);
		ARG(req->value, req->value_len);
		ARG(ttl, strlen(ttl));
		break;
	}
#undef ARG
	rc = fp_redis_command(fp_cluster_redis(k->c), op_done, o, argc, argv, lens);
	free(key);
	if (rc < 0)
		op_done(NULL, -ENOTCONN, NULL, o);
	return 0;
}

/* --- listing ----------------------------------------------------------- */

struct kv_list {
	fp_cluster_kv *k;
	fp_pool *pool;
	size_t max;
	fp_kv_list_cb cb;
	void *data;
	char *match;
	size_t match_len;
	char cursor[24];
	char **keys;
	size_t *lens;
	size_t n, cap;
};

static void list_free(struct kv_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->keys[i]);
	free(l->keys);
	free(l->lens);
	free(l->match);
	free(l);
}

static void list_fail(struct kv_list *l, int err)
{
	l->cb(l->pool, err, NULL, 0, 0, l->data);
	list_free(l);
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void fetched(fp_redis *redis, int status, redisReply *rep, void *data)
{
	struct kv_list *l = data;
	size_t take = l->n < l->max ? l->n : l->max, n = 0;
	struct fp_kv_entry *e;

	(void)redis;
	if (status < 0)
		return list_fail(l, -ENOTCONN);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 * take)
		return list_fail(l, -EPROTO);
	e = calloc(take ? take : 1, sizeof(*e));
	if (!e)
		return list_fail(l, -ENOMEM);
	for (size_t i = 0; i < take; i++) {
		redisReply *v = rep->element[2 * i], *t = rep->element[2 * i + 1];

		if (v->type != REDIS_REPLY_STRING)
			continue;
		e[n++] = (struct fp_kv_entry){ l->keys[i] + l->k->prefix_len,
					       l->lens[i] - l->k->prefix_len, v->str, v->len,
					       t->integer > 0 ? (uint64_t)t->integer : 0 };
	}
	l->cb(l->pool, 0, e, n, l->n > take, l->data);
	free(e);
	list_free(l);
}

static void fetch(struct kv_list *l)
{
	size_t take = l->n < l->max ? l->n : l->max;
	const char **argv = malloc((take + 3) * sizeof(*argv));
	size_t *lens = malloc((take + 3) * sizeof(*lens));
	char nkeys[24];
	int rc;

	if (!argv || !lens) {
		free(argv);
		free(lens);
		return list_fail(l, -ENOMEM);
	}
	for (size_t i = 0; i < l->n; i++)
		l->lens[i] = strlen(l->keys[i]);
	snprintf(nkeys, sizeof(nkeys), "%zu", take);
	argv[0] = "EVAL", lens[0] = 4;
	argv[1] = fetch_script, lens[1] = sizeof(fetch_script) - 1;
	argv[2] = nkeys, lens[2] = strlen(nkeys);
	for (size_t i = 0; i < take; i++)
		argv[3 + i] = l->keys[i], lens[3 + i] = l->lens[i];
	rc = fp_redis_command(fp_cluster_redis(l->k->c), fetched, l, (int)take + 3, argv, lens);
	free(argv);
	free(lens);
	if (rc < 0)
		list_fail(l, -ENOTCONN);
}

static void scan_next(struct kv_list *l);

static void scanned(fp_redis *redis, int status, redisReply *rep, void *data)
{
	struct kv_list *l = data;
	redisReply *keys;

	(void)redis;
	if (status < 0)
		return list_fail(l, -ENOTCONN);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING ||
	    rep->element[1]->type != REDIS_REPLY_ARRAY)
		return list_fail(l, -EPROTO);
	keys = rep->element[1];
	if (l->n + keys->elements > LIST_MAX_KEYS)
		return list_fail(l, -E2BIG);
	if (l->n + keys->elements > l->cap) {
		size_t cap = (l->n + keys->elements) * 2;
		char **k = realloc(l->keys, cap * sizeof(*k));

		if (k)
			l->keys = k;
		if (!k || !(l->lens = realloc(l->lens, cap * sizeof(*l->lens))))
			return list_fail(l, -ENOMEM);
		l->cap = cap;
	}
	for (size_t i = 0; i < keys->elements; i++) {
		/* SCAN may give a key twice (the table grew meanwhile): once is enough. */
		char *s = strndup(keys->element[i]->str, keys->element[i]->len);

		if (!s)
			return list_fail(l, -ENOMEM);
		l->keys[l->n++] = s;
	}
	snprintf(l->cursor, sizeof(l->cursor), "%.*s", (int)rep->element[0]->len,
		 rep->element[0]->str);
	if (strcmp(l->cursor, "0") != 0)
		return scan_next(l);
	/* In byte order (strcmp: keys hold no NUL), duplicates out; none: no array at all. */
	if (l->n)
		qsort(l->keys, l->n, sizeof(*l->keys), key_cmp);
	size_t w = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (w && strcmp(l->keys[w - 1], l->keys[i]) == 0)
			free(l->keys[i]);
		else
			l->keys[w++] = l->keys[i];
	}
	l->n = w;
	fetch(l);
}

static void scan_next(struct kv_list *l)
{
	const char *argv[] = { "SCAN", l->cursor, "MATCH", l->match, "COUNT", "1000" };
	size_t lens[] = { 4, strlen(l->cursor), 5, l->match_len, 5, 4 };

	if (fp_redis_command(fp_cluster_redis(l->k->c), scanned, l, 6, argv, lens) < 0)
		list_fail(l, -ENOTCONN);
}

/* The glob that matches exactly the keys starting with P kv:PREFIX. */
static char *glob_of(const fp_cluster_kv *k, const char *prefix, size_t plen, size_t *len)
{
	char *g = malloc(2 * (k->prefix_len + plen) + 2), *w = g;

	if (!g)
		return NULL;
	for (size_t i = 0; i < k->prefix_len + plen; i++) {
		char ch = i < k->prefix_len ? k->prefix[i] : prefix[i - k->prefix_len];

		if (strchr("*?[]\\", ch))
			*w++ = '\\';
		*w++ = ch;
	}
	*w++ = '*';
	*w = '\0';
	*len = (size_t)(w - g);
	return g;
}

static int list(void *data, fp_pool *pool, const char *prefix, size_t plen, size_t max,
		fp_kv_list_cb cb, void *cb_data)
{
	fp_cluster_kv *k = data;
	struct kv_list *l = calloc(1, sizeof(*l));

	if (!l || !(l->match = glob_of(k, prefix, plen, &l->match_len))) {
		free(l);
		return -ENOMEM;
	}
	l->k = k;
	l->pool = pool;
	l->max = max;
	l->cb = cb;
	l->data = cb_data;
	strcpy(l->cursor, "0");
	scan_next(l);
	return 0;
}

static const struct fp_kv_backend redis_backend = { run, list };

int fp_cluster_kv_new(fp_cluster_kv **out, fp_pool *pool, fp_cluster *c)
{
	fp_cluster_kv *k = calloc(1, sizeof(*k));
	const char *p = fp_cluster_prefix(c);

	if (!k)
		return -ENOMEM;
	k->prefix_len = strlen(p) + 3;
	k->prefix = malloc(k->prefix_len + 1);
	if (!k->prefix) {
		free(k);
		return -ENOMEM;
	}
	snprintf(k->prefix, k->prefix_len + 1, "%skv:", p);
	k->pool = pool;
	k->c = c;
	fp_pool_kv_backend(pool, &redis_backend, k);
	*out = k;
	return 0;
}

void fp_cluster_kv_stop(fp_cluster_kv *k)
{
	if (k)
		fp_pool_kv_backend(k->pool, NULL, NULL);
}

void fp_cluster_kv_free(fp_cluster_kv *k)
{
	if (!k)
		return;
	free(k->prefix);
	free(k);
}
