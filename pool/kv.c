/*
 * The shared values' store (kv.h): a chained hash table that doubles as it
 * fills, keyed by SipHash-1-3 under a random key, because keys come from
 * HTTP clients and tasks and a fixed hash lets one client make every key
 * collide. Expired entries are dropped when they are looked at, and by
 * fp__kv_sweep() for the ones nobody looks at again.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "kv.h"

struct kv_ent {
	struct kv_ent *next;
	uint64_t hash;
	uint64_t expires_ms;       /* 0: never */
	char *val;
	uint32_t klen, vlen;
	char key[];
};

struct fp_kv {
	struct kv_ent **buckets;
	size_t nbuckets;           /* a power of two */
	size_t keys, bytes;
	size_t sweep_at;           /* the bucket fp__kv_sweep() goes on from */
	uint64_t expired;
	uint64_t k0, k1;           /* the hash key */
	struct fp_kv_limits lim;
};

/* SipHash-1-3 (Aumasson and Bernstein): one compression round, three finalization rounds. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                          \
	do {                                                                              \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                 \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                    \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                    \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                 \
	} while (0)

static uint64_t load_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t siphash13(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
	const unsigned char *p = data, *end = p + (len & ~(size_t)7);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t b = (uint64_t)len << 56, m;

	for (; p < end; p += 8) {
		m = load_le64(p);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

fp_kv *fp__kv_new(const struct fp_kv_limits *lim)
{
	fp_kv *kv = calloc(1, sizeof(*kv));
	uint64_t seed[2];

	if (!kv)
		return NULL;
	if (lim)
		kv->lim = *lim;
	if (!kv->lim.max_key)
		kv->lim.max_key = FP_KV_MAX_KEY;
	if (!kv->lim.max_value)
		kv->lim.max_value = FP_KV_MAX_VALUE;
	if (!kv->lim.max_bytes)
		kv->lim.max_bytes = FP_KV_MAX_BYTES;
	kv->nbuckets = 64;
	kv->buckets = calloc(kv->nbuckets, sizeof(*kv->buckets));
	if (!kv->buckets) {
		free(kv);
		return NULL;
	}
	/* Without the kernel's randomness (very early boot) the clock still keeps the key unknown to a client. */
	if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)kv;
		seed[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)(uintptr_t)&ts;
	}
	kv->k0 = seed[0];
	kv->k1 = seed[1];
	return kv;
}

static void ent_free(struct kv_ent *e)
{
	free(e->val);
	free(e);
}

void fp__kv_free(fp_kv *kv)
{
	if (!kv)
		return;
	for (size_t i = 0; i < kv->nbuckets; i++) {
		struct kv_ent *e = kv->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			ent_free(e);
		}
	}
	free(kv->buckets);
	free(kv);
}

static size_t ent_cost(size_t klen, size_t vlen)
{
	return klen + vlen + FP_KV_ENTRY_OVERHEAD;
}

static bool expired(const struct kv_ent *e, uint64_t now_ms)
{
	return e->expires_ms && e->expires_ms <= now_ms;
}

static void unlink_ent(fp_kv *kv, struct kv_ent **link)
{
	struct kv_ent *e = *link;

	*link = e->next;
	kv->keys--;
	kv->bytes -= ent_cost(e->klen, e->vlen);
	ent_free(e);
}

/*
 * The link that points at `key`'s entry (*link NULL when there is none);
 * an expired entry met on the way is dropped.
 */
static struct kv_ent **find(fp_kv *kv, const char *key, size_t klen, uint64_t hash,
			    uint64_t now_ms)
{
	struct kv_ent **link = &kv->buckets[hash & (kv->nbuckets - 1)];

	while (*link) {
		struct kv_ent *e = *link;
		if (e->hash == hash && e->klen == klen && memcmp(e->key, key, klen) == 0) {
			if (!expired(e, now_ms))
				return link;
			/* Keys are unique: what follows it is not `key`; go on to the chain's end. */
			kv->expired++;
			unlink_ent(kv, link);
			continue;
		}
		link = &e->next;
	}
	return link;
}

static int check_key(const fp_kv *kv, size_t klen)
{
	return klen == 0 || klen > kv->lim.max_key ? -ENAMETOOLONG : 0;
}

/* At most a load of 1; failing to grow only makes chains longer. */
static void grow(fp_kv *kv)
{
	size_t n = kv->nbuckets * 2;
	struct kv_ent **b;

	if (kv->keys < kv->nbuckets)
		return;
	b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < kv->nbuckets; i++) {
		struct kv_ent *e = kv->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(kv->buckets);
	kv->buckets = b;
	kv->nbuckets = n;
	kv->sweep_at = 0;
}

/* The link to `key`'s live entry: -ENAMETOOLONG (a bad key) or -ENOENT. */
static int lookup(fp_kv *kv, const char *key, size_t klen, uint64_t now_ms,
		  struct kv_ent ***link)
{
	int rc = check_key(kv, klen);

	if (rc)
		return rc;
	*link = find(kv, key, klen, siphash13(kv->k0, kv->k1, key, klen), now_ms);
	return **link ? 0 : -ENOENT;
}

int fp__kv_get(fp_kv *kv, const char *key, size_t klen, uint64_t now_ms,
	       const char **val, size_t *vlen)
{
	struct kv_ent **link;
	int rc = lookup(kv, key, klen, now_ms, &link);

	if (rc)
		return rc;
	*val = (*link)->val;
	*vlen = (*link)->vlen;
	return 0;
}

int fp__kv_expiry(fp_kv *kv, const char *key, size_t klen, uint64_t now_ms,
		  uint64_t *expires_ms)
{
	struct kv_ent **link;
	int rc = lookup(kv, key, klen, now_ms, &link);

	if (rc)
		return rc;
	*expires_ms = (*link)->expires_ms;
	return 0;
}

/*
 * Puts `val` at *link (an entry of `key`, or the end of its chain), with
 * `expires_ms`. The caller checked the key.
 */
static int store(fp_kv *kv, struct kv_ent **link, const char *key, size_t klen, uint64_t hash,
		 const char *val, size_t vlen, uint64_t expires_ms)
{
	struct kv_ent *e = *link;
	size_t old = e ? ent_cost(klen, e->vlen) : 0;
	char *copy;

	if (vlen > kv->lim.max_value)
		return -E2BIG;
	if (kv->bytes - old + ent_cost(klen, vlen) > kv->lim.max_bytes)
		return -ENOSPC;
	/* One byte more, so that a value is NUL-terminated for whoever parses it. */
	copy = malloc(vlen + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, val, vlen);
	copy[vlen] = '\0';
	if (!e) {
		e = malloc(sizeof(*e) + klen);
		if (!e) {
			free(copy);
			return -ENOMEM;
		}
		e->next = NULL;
		e->hash = hash;
		e->klen = (uint32_t)klen;
		e->val = NULL;
		e->vlen = 0;
		memcpy(e->key, key, klen);
		*link = e;
		kv->keys++;
	}
	free(e->val);
	e->val = copy;
	e->vlen = (uint32_t)vlen;
	e->expires_ms = expires_ms;
	kv->bytes = kv->bytes - old + ent_cost(klen, vlen);
	grow(kv);
	return 0;
}

/*
 * Expired entries nobody read again still count against max_bytes: before
 * a write a few buckets are swept (so memory comes back as the store is
 * used), and a write that finds the store full sweeps it all and tries
 * once more if that freed anything (put()).
 */
#define SWEEP_PER_WRITE 2

/* store(), and once more after a whole sweep when expired entries filled the store. */
static int put(fp_kv *kv, struct kv_ent **link, const char *key, size_t klen, uint64_t hash,
	       const char *val, size_t vlen, uint64_t expires_ms, uint64_t now_ms)
{
	int rc = store(kv, link, key, klen, hash, val, vlen, expires_ms);

	if (rc == -ENOSPC && fp__kv_sweep(kv, now_ms, kv->nbuckets) > 0)
		rc = store(kv, find(kv, key, klen, hash, now_ms), key, klen, hash, val, vlen,
			   expires_ms);
	return rc;
}

static uint64_t expiry(uint64_t ttl_ms, uint64_t now_ms)
{
	return ttl_ms ? now_ms + ttl_ms : 0;
}

int fp__kv_set(fp_kv *kv, const char *key, size_t klen, const char *val, size_t vlen,
	       uint64_t ttl_ms, uint64_t now_ms)
{
	uint64_t hash;
	int rc = check_key(kv, klen);

	if (rc)
		return rc;
	hash = siphash13(kv->k0, kv->k1, key, klen);
	fp__kv_sweep(kv, now_ms, SWEEP_PER_WRITE);
	return put(kv, find(kv, key, klen, hash, now_ms), key, klen, hash, val, vlen,
		   expiry(ttl_ms, now_ms), now_ms);
}

int fp__kv_del(fp_kv *kv, const char *key, size_t klen, uint64_t now_ms)
{
	struct kv_ent **link;
	int rc = lookup(kv, key, klen, now_ms, &link);

	if (rc)
		return rc;
	unlink_ent(kv, link);
	return 0;
}

/* A JSON integer (blanks around it allowed), into *out: -EDOM, -ERANGE. */
static int parse_int(const char *s, size_t len, int64_t *out)
{
	const char *end = s + len;
	bool neg = false;
	uint64_t v = 0, limit;

	while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		end--;
	if (s < end && *s == '-') {
		neg = true;
		s++;
	}
	if (s == end || (*s == '0' && end - s > 1))
		return -EDOM;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; s < end; s++) {
		unsigned d = (unsigned char)*s - '0';
		if (d > 9)
			return -EDOM;
		if (v > (limit - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

size_t fp__kv_int_text(int64_t v, char out[FP_KV_INT_TEXT])
{
	char digits[FP_KV_INT_TEXT];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, len = 0;

	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		out[len++] = '-';
	while (n)
		out[len++] = digits[--n];
	return len;
}

int fp__kv_incr(fp_kv *kv, const char *key, size_t klen, int64_t by, uint64_t now_ms,
		int64_t *out)
{
	struct kv_ent **link;
	uint64_t hash, expires = 0;
	int64_t v = 0;
	char text[FP_KV_INT_TEXT];
	int rc = check_key(kv, klen);
	size_t n;

	if (rc)
		return rc;
	hash = siphash13(kv->k0, kv->k1, key, klen);
	fp__kv_sweep(kv, now_ms, SWEEP_PER_WRITE);
	link = find(kv, key, klen, hash, now_ms);
	if (*link) {
		rc = parse_int((*link)->val, (*link)->vlen, &v);
		if (rc)
			return rc;
		expires = (*link)->expires_ms;
	}
	if ((by > 0 && v > INT64_MAX - by) || (by < 0 && v < INT64_MIN - by))
		return -ERANGE;
	v += by;
	n = fp__kv_int_text(v, text);
	rc = put(kv, link, key, klen, hash, text, n, expires, now_ms);
	if (rc == 0)
		*out = v;
	return rc;
}

int fp__kv_cas(fp_kv *kv, const char *key, size_t klen, const char *expect, size_t elen,
	       const char *val, size_t vlen, uint64_t ttl_ms, uint64_t now_ms)
{
	struct kv_ent **link;
	uint64_t hash;
	int rc = check_key(kv, klen);

	if (rc)
		return rc;
	hash = siphash13(kv->k0, kv->k1, key, klen);
	fp__kv_sweep(kv, now_ms, SWEEP_PER_WRITE);
	link = find(kv, key, klen, hash, now_ms);
	if (!expect ? *link != NULL
		    : !*link || (*link)->vlen != elen || memcmp((*link)->val, expect, elen) != 0)
		return 0;
	rc = put(kv, link, key, klen, hash, val, vlen, expiry(ttl_ms, now_ms), now_ms);
	return rc ? rc : 1;
}

static int key_cmp(const void *a, const void *b)
{
	const struct kv_ent *x = *(struct kv_ent *const *)a, *y = *(struct kv_ent *const *)b;
	int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);

	return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

int fp__kv_each(fp_kv *kv, const char *prefix, size_t plen, uint64_t now_ms,
		fp_kv_each_fn fn, void *arg)
{
	struct kv_ent **all;
	size_t n = 0;
	int rc = 0;

	if (!kv->keys)
		return 0;
	all = malloc(kv->keys * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (size_t i = 0; i < kv->nbuckets; i++)
		for (struct kv_ent *e = kv->buckets[i]; e; e = e->next)
			if (!expired(e, now_ms) && e->klen >= plen && memcmp(e->key, prefix, plen) == 0)
				all[n++] = e;
	qsort(all, n, sizeof(*all), key_cmp);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = fn(arg, all[i]->key, all[i]->klen, all[i]->val, all[i]->vlen,
			all[i]->expires_ms);
	free(all);
	return rc;
}

size_t fp__kv_sweep(fp_kv *kv, uint64_t now_ms, size_t budget)
{
	size_t dropped = 0;

	if (budget > kv->nbuckets)
		budget = kv->nbuckets;
	while (budget--) {
		struct kv_ent **link = &kv->buckets[kv->sweep_at];
		while (*link) {
			if (expired(*link, now_ms)) {
				unlink_ent(kv, link);
				dropped++;
			} else {
				link = &(*link)->next;
			}
		}
		kv->sweep_at = (kv->sweep_at + 1) & (kv->nbuckets - 1);
	}
	kv->expired += dropped;
	return dropped;
}

void fp__kv_stats(const fp_kv *kv, struct fp_kv_stats *st)
{
	st->keys = kv->keys;
	st->bytes = kv->bytes;
	st->expired = kv->expired;
}
