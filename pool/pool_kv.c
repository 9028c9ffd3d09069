/*
 * The pool's shared values as the embedding API gives them (fp_pool_kv in
 * <forkpool.h>): the rules every caller shares — what a key may be, that a
 * value is JSON — checked once here, over the pool's store (kv.c), so
 * that HTTP clients, the embedding program and tasks see one store with one
 * set of rules.
 *
 * With a persister (fp_pool_kv_persist: forkpoold's journal) a write's
 * reply waits for its change to be kept, as a job's acceptance waits for its
 * record: the change is the key's value afterwards with its expiry on the
 * wall clock, read back from the store, so that replaying it is idempotent
 * and an INCR's or a CAS's outcome is recorded, not their arithmetic.
 *
 * With a backend (fp_pool_kv_backend: forkpoold's Redis on a cluster) the
 * rules are still checked here, then the operation goes to it instead.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "kv.h"
#include "forkpool/loop.h"
#include "pool_impl.h"

static fp_kv *store(fp_pool *pool)
{
	if (!pool->kv)
		pool->kv = fp__kv_new(NULL);
	return pool->kv;
}

static bool key_ok(const char *key, size_t len)
{
	if (!key || len == 0 || len > FP_KV_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == ':' || c == '@' || c == '-'))
			return false;
	}
	return true;
}

/*
 * `text` in the one spelling the store keeps (jansson's compact form), so
 * that CAS compares values rather than spellings: NULL when it is not JSON
 * (-EBADMSG) or on ENOMEM (-ENOMEM). Free it.
 */
static char *canon(const char *text, size_t len, int *err)
{
	json_error_t jerr;
	json_t *v = text ? json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr) : NULL;
	char *out;

	if (!v) {
		*err = -EBADMSG;
		return NULL;
	}
	/* Members sorted: {"a":1,"b":2} and {"b":2,"a":1} are one value. */
	out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	json_decref(v);
	if (!out)
		*err = -ENOMEM;
	return out;
}

/* The value `key` holds now, into the reply (NULL when none). */
static void current(fp_kv *kv, const struct fp_kv_request *req, uint64_t now,
		    struct fp_kv_reply *r)
{
	if (fp__kv_get(kv, req->key, req->key_len, now, &r->value, &r->value_len) != 0) {
		r->value = NULL;
		r->value_len = 0;
	}
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether a successful operation changed the store. */
static bool changed(const struct fp_kv_request *req, const struct fp_kv_reply *r)
{
	return req->op == FP_KV_SET || req->op == FP_KV_DEL || req->op == FP_KV_INCR ||
	       (req->op == FP_KV_CAS && r->swapped);
}

/* A reply held until its change is kept: a copy of it, with its value. */
struct kv_pending {
	fp_pool *pool;
	fp_kv_cb cb;
	void *data;
	struct fp_kv_reply r;
	char value[];
};

static void persisted(void *token, int status)
{
	struct kv_pending *p = token;

	if (status < 0) {
		p->r.err = -EIO;
		p->r.value = NULL;
		p->r.value_len = 0;
	}
	p->cb(p->pool, &p->r, p->data);
	free(p);
}

/*
 * Hands the change `req` made to the persister (when there is one) and
 * replies once it is kept.
 */
static int persist(fp_pool *pool, const struct fp_kv_request *req, const struct fp_kv_reply *r,
		   fp_kv_cb cb, void *data, uint64_t now)
{
	struct fp_kv_change c = { .key = req->key, .key_len = req->key_len };
	struct kv_pending *p;
	uint64_t exp = 0;
	int rc;

	if (!pool->kv_persist) {
		cb(pool, r, data);
		return 0;
	}
	p = malloc(sizeof(*p) + r->value_len + 1);
	if (!p)
		return -ENOMEM;
	p->pool = pool;
	p->cb = cb;
	p->data = data;
	p->r = *r;
	if (r->value) {
		memcpy(p->value, r->value, r->value_len);
		p->value[r->value_len] = '\0';
		p->r.value = p->value;
	}
	if (req->op != FP_KV_DEL &&
	    fp__kv_get(pool->kv, req->key, req->key_len, now, &c.value, &c.value_len) == 0 &&
	    fp__kv_expiry(pool->kv, req->key, req->key_len, now, &exp) == 0 && exp)
		c.expires_ms = wall_ms() + (exp > now ? exp - now : 0);
	rc = pool->kv_persist(pool->kv_persist_data, &c, persisted, p);
	if (rc < 0)
		persisted(p, rc);
	return 0;
}

/* `req` with its values in canonical form, to the backend; the rules' refusals answered here. */
static int to_backend(fp_pool *pool, const struct fp_kv_request *req, fp_kv_cb cb, void *data)
{
	struct fp_kv_request c = *req;
	struct fp_kv_reply r = { 0 };
	char *val = NULL, *expect = NULL;
	int rc = 0;

	if (req->op == FP_KV_SET || req->op == FP_KV_CAS) {
		val = canon(req->value, req->value_len, &r.err);
		if (val && req->op == FP_KV_CAS && req->expect)
			expect = canon(req->expect, req->expect_len, &r.err);
		if (val && strlen(val) > FP_KV_MAX_VALUE)
			r.err = -E2BIG;
		if (r.err == 0) {
			c.value = val;
			c.value_len = strlen(val);
			c.expect = expect;
			c.expect_len = expect ? strlen(expect) : 0;
		}
	}
	if (r.err == 0)
		rc = pool->kv_backend->run(pool->kv_backend_data, pool, &c, cb, data);
	else
		cb(pool, &r, data);
	free(val);
	free(expect);
	return rc;
}

void fp_pool_kv_backend(fp_pool *pool, const struct fp_kv_backend *b, void *data)
{

	pool->kv_backend = b;
	pool->kv_backend_data = data;
}

void fp_pool_kv_persist(fp_pool *pool, fp_kv_persist_fn fn, void *data)
{

	pool->kv_persist = fn;
	pool->kv_persist_data = data;
}

int fp_pool_kv_restore(fp_pool *pool, const struct fp_kv_change *c)
{
	fp_kv *kv = store(pool);
	uint64_t now = fp_now_ms(), wall = wall_ms();
	int rc;

	if (!kv)
		return -ENOMEM;
	if (!key_ok(c->key, c->key_len))
		return -EINVAL;
	if (!c->value || (c->expires_ms && c->expires_ms <= wall)) {
		rc = fp__kv_del(kv, c->key, c->key_len, now);
		return rc == -ENOENT ? 0 : rc;
	}
	return fp__kv_set(kv, c->key, c->key_len, c->value, c->value_len,
			  c->expires_ms ? c->expires_ms - wall : 0, now);
}

void fp_pool_kv_usage(fp_pool *pool, size_t *keys, size_t *bytes)
{
	fp_kv *kv = store(pool);
	struct fp_kv_stats st = { 0 };

	if (kv)
		fp__kv_stats(kv, &st);
	*keys = st.keys;
	*bytes = st.bytes;
}

int fp_pool_kv(fp_pool *pool, const struct fp_kv_request *req, fp_kv_cb cb, void *data)
{
	fp_kv *kv = store(pool);
	struct fp_kv_reply r = { 0 };
	uint64_t now = fp_now_ms();
	char num[FP_KV_INT_TEXT], *val = NULL, *expect = NULL;
	int rc;

	if (!kv)
		return -ENOMEM;
	if (!key_ok(req->key, req->key_len)) {
		r.err = -EINVAL;
		goto out;
	}
	if (pool->kv_backend)
		return to_backend(pool, req, cb, data);
	switch (req->op) {
	case FP_KV_GET:
		r.err = fp__kv_get(kv, req->key, req->key_len, now, &r.value, &r.value_len);
		break;
	case FP_KV_SET:
		val = canon(req->value, req->value_len, &r.err);
		if (val)
			r.err = fp__kv_set(kv, req->key, req->key_len, val, strlen(val),
					   req->ttl_ms, now);
		break;
	case FP_KV_DEL:
		r.err = fp__kv_del(kv, req->key, req->key_len, now);
		break;
	case FP_KV_INCR:
		r.err = fp__kv_incr(kv, req->key, req->key_len, req->by, now, &r.number);
		if (r.err == 0) {
			r.value_len = fp__kv_int_text(r.number, num);
			r.value = num;
		}
		break;
	case FP_KV_CAS:
		val = canon(req->value, req->value_len, &r.err);
		if (val && req->expect)
			expect = canon(req->expect, req->expect_len, &r.err);
		if (!val || (req->expect && !expect))
			break;
		rc = fp__kv_cas(kv, req->key, req->key_len, expect, expect ? strlen(expect) : 0,
				val, strlen(val), req->ttl_ms, now);
		if (rc < 0) {
			r.err = rc;
			break;
		}
		r.swapped = rc;
		current(kv, req, now, &r);
		break;
	default:
		r.err = -EINVAL;
	}
out:
	if (r.err == 0 && changed(req, &r))
		rc = persist(pool, req, &r, cb, data, now);
	else
		rc = (cb(pool, &r, data), 0);
	free(val);
	free(expect);
	return rc;
}

struct list_ctx {
	struct fp_kv_entry *e;
	size_t n, max;
	bool more;
	uint64_t now;
};

static int list_one(void *arg, const char *key, size_t klen, const char *val, size_t vlen,
		    uint64_t expires_ms)
{
	struct list_ctx *c = arg;

	if (c->n == c->max) {
		c->more = true;
		return 1;
	}
	c->e[c->n++] = (struct fp_kv_entry){ key, klen, val, vlen,
					     expires_ms ? expires_ms - c->now : 0 };
	return 0;
}

int fp_pool_kv_list(fp_pool *pool, const char *prefix, size_t prefix_len, size_t max,
		    fp_kv_list_cb cb, void *data)
{
	fp_kv *kv = store(pool);
	struct fp_kv_stats st;
	struct list_ctx c = { .now = fp_now_ms() };
	int rc;

	if (pool->kv_backend)
		return pool->kv_backend->list(pool->kv_backend_data, pool, prefix, prefix_len, max,
					      cb, data);
	if (!kv)
		return -ENOMEM;
	fp__kv_stats(kv, &st);
	c.max = max;
	/* One slot more than can be filled, so that malloc(0) never decides anything. */
	c.e = malloc(((max < st.keys ? max : st.keys) + 1) * sizeof(*c.e));
	if (!c.e)
		return -ENOMEM;
	rc = fp__kv_each(kv, prefix, prefix_len, c.now, list_one, &c);
	if (rc < 0) {
		free(c.e);
		return rc;
	}
	cb(pool, 0, c.e, c.n, c.more, data);
	free(c.e);
	return 0;
}

const char *fp_kv_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case -ENOENT:
		return "no such key";
	case -EINVAL:
		return "a key is 1 to 256 characters of A-Z a-z 0-9 _ . : @ -";
	case -EBADMSG:
		return "the value is not JSON text";
	case -EDOM:
		return "incr needs a value that is an integer";
	case -E2BIG:
		return "the value is over the 64 KiB a shared value may hold";
	case -ENOSPC:
		return "the shared values are full (64 MiB): delete keys or give them a ttl";
	case -ERANGE:
		return "the increment takes the value past a 64-bit integer";
	case -ENOMEM:
		return "out of memory";
	case -ENOTCONN:
		return "the cluster's store (Redis) cannot be reached; nothing was done (retry later)";
	case -EIO:
		return "the change could not be kept: the data directory's journal cannot be written";
	default:
		return "shared value error";
	}
}
