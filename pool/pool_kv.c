/*
 * The pool's shared values as the embedding API gives them (fp_pool_kv in
 * <forkpool.h>): the rules every caller shares — what a key may be, that a
 * value is JSON — checked once here, over the root pool's store (kv.c), so
 * that HTTP clients, the embedding program and tasks see one store with one
 * set of rules.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kv.h"
#include "forkpool/loop.h"
#include "pool_impl.h"

static fp_kv *store(fp_pool *pool)
{
	fp_pool *root = pool->root ? pool->root : pool;

	if (!root->kv)
		root->kv = fp__kv_new(NULL);
	return root->kv;
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
	out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
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

int fp_pool_kv(fp_pool *pool, const struct fp_kv_request *req, fp_kv_cb cb, void *data)
{
	fp_kv *kv = store(pool);
	struct fp_kv_reply r = { 0 };
	uint64_t now = fp_now_ms();
	char num[24], *val = NULL, *expect = NULL;
	int rc;

	if (!kv)
		return -ENOMEM;
	if (!key_ok(req->key, req->key_len)) {
		r.err = -EINVAL;
		goto out;
	}
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
			r.value_len = (size_t)snprintf(num, sizeof(num), "%lld", (long long)r.number);
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
	cb(pool, &r, data);
	free(val);
	free(expect);
	return 0;
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
	default:
		return "shared value error";
	}
}
