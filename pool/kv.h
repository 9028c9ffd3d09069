/*
 * The pool's shared values (issue 18): small values by key, kept in the
 * master, that every task of the pool can read and change (what
 * multiprocessing.Manager().dict() gives Python's processes). This is the
 * store itself: a table with expiry, byte caps and the atomic operations;
 * how tasks and HTTP clients reach it is said where they do.
 *
 * Keys and values are bytes (the layers above check that a value is JSON;
 * fp__kv_incr() reads and writes a JSON integer). Time is passed in, in
 * milliseconds on any monotonic clock, so the store never reads a clock.
 * Errors are negative errnos:
 *   -ENAMETOOLONG  the key is empty or longer than max_key
 *   -E2BIG         the value is longer than max_value
 *   -ENOSPC        the store would pass max_bytes
 *   -ENOENT        no such key (or it expired)
 *   -EDOM          fp__kv_incr() on a value that is not an integer
 *   -ERANGE        fp__kv_incr() would overflow int64
 *   -ENOMEM
 */
#ifndef FP_KV_H
#define FP_KV_H

#include <stddef.h>
#include <stdint.h>

/* Room for any int64_t's decimal text: a sign and 19 digits. */
#define FP_KV_INT_TEXT 20

typedef struct fp_kv fp_kv;

struct fp_kv_limits {
	size_t max_key;     /* bytes; 0 = FP_KV_MAX_KEY */
	size_t max_value;   /* bytes; 0 = FP_KV_MAX_VALUE */
	size_t max_bytes;   /* keys + values + a per-entry overhead; 0 = FP_KV_MAX_BYTES */
};

#define FP_KV_MAX_KEY 256
#define FP_KV_MAX_VALUE (64 * 1024)
#define FP_KV_MAX_BYTES (64 * 1024 * 1024)

/* What one entry costs against max_bytes besides its key and value. */
#define FP_KV_ENTRY_OVERHEAD 64

/* NULL on ENOMEM. `lim` may be NULL for the defaults. */
fp_kv *fp__kv_new(const struct fp_kv_limits *lim);
void fp__kv_free(fp_kv *kv);

/*
 * The value of `key`: *val points into the store, valid until the next call
 * that changes it. -ENOENT.
 */
int fp__kv_get(fp_kv *kv, const char *key, size_t klen, uint64_t now_ms,
	       const char **val, size_t *vlen);

/* When `key` expires (*expires_ms 0: never), on the clock of now_ms. -ENOENT. */
int fp__kv_expiry(fp_kv *kv, const char *key, size_t klen, uint64_t now_ms,
		  uint64_t *expires_ms);

/* Sets `key` to `val`; ttl_ms 0 keeps it until deleted. */
int fp__kv_set(fp_kv *kv, const char *key, size_t klen, const char *val, size_t vlen,
	       uint64_t ttl_ms, uint64_t now_ms);

/* 0, or -ENOENT when there was nothing to delete. */
int fp__kv_del(fp_kv *kv, const char *key, size_t klen, uint64_t now_ms);

/*
 * Adds `by` to the integer at `key` (a missing key counts as 0 and is
 * created without expiry; an existing key keeps its expiry) and gives the
 * new value in *out.
 */
int fp__kv_incr(fp_kv *kv, const char *key, size_t klen, int64_t by, uint64_t now_ms,
		int64_t *out);

/*
 * `v` as the JSON integer fp__kv_incr() stores, into `out` (not
 * NUL-terminated): its length. A task's increment is formatted on every
 * call, and snprintf's format parsing was a fifth of the master's share of
 * it (issue 18's profile).
 */
size_t fp__kv_int_text(int64_t v, char out[FP_KV_INT_TEXT]);

/*
 * Compare and set: sets `key` to `val` only if its value is now the bytes
 * `expect` (expect NULL: only if the key does not exist). 1 when it was
 * set, 0 when the value differed (nothing changed), or an error.
 */
int fp__kv_cas(fp_kv *kv, const char *key, size_t klen, const char *expect, size_t elen,
	       const char *val, size_t vlen, uint64_t ttl_ms, uint64_t now_ms);

/*
 * Calls `fn` for every live key starting with `prefix` (plen 0: every key),
 * in byte order of the keys, until it returns non-zero (that is returned).
 * The store must not be changed from `fn`. -ENOMEM.
 */
typedef int (*fp_kv_each_fn)(void *arg, const char *key, size_t klen, const char *val,
			     size_t vlen, uint64_t expires_ms);
int fp__kv_each(fp_kv *kv, const char *prefix, size_t plen, uint64_t now_ms,
		fp_kv_each_fn fn, void *arg);

/*
 * Drops expired entries, looking at no more than `budget` buckets from where
 * the last call stopped, so that a periodic timer reclaims the memory of
 * keys nobody reads again without a pause. Returns how many it dropped.
 */
size_t fp__kv_sweep(fp_kv *kv, uint64_t now_ms, size_t budget);

struct fp_kv_stats {
	size_t keys, bytes;
	uint64_t expired;   /* dropped because their time passed */
};
void fp__kv_stats(const fp_kv *kv, struct fp_kv_stats *st);

#endif
