/*
 * The demo module's coordination tasks (issue 18): shared values (incr,
 * get) and cooperative cancel (watch), for the tests, the README and
 * `scripts/bench kv`; written against include/forkpool/task.h only, as any
 * module's would be.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "module.h"

/*
 * The key in `args`: a JSON string, or {"key": string, "by": integer} (by
 * may be left out: 1). Fails the item naming what was wrong, and returns
 * -1, when it is neither.
 */
static int key_args(fp_task_ctx *ctx, const char *task, const char *args, size_t len,
		    char *key, size_t keycap, int64_t *by)
{
	json_t *v = json_loadb(args, len, JSON_DECODE_ANY, NULL), *k = v, *b = NULL;
	char msg[160];
	int rc = -1;

	*by = 1;
	if (json_is_object(v)) {
		k = json_object_get(v, "key");
		b = json_object_get(v, "by");
	}
	if (!json_is_string(k) || (b && !json_is_integer(b))) {
		snprintf(msg, sizeof(msg),
			 "%s: expected a key (a JSON string) or {\"key\": string, \"by\": integer}",
			 task);
		fp_task_error(ctx, msg);
		goto out;
	}
	if (json_string_length(k) >= keycap || strlen(json_string_value(k)) != json_string_length(k)) {
		snprintf(msg, sizeof(msg), "%s: %s", task, fp_kv_errmsg(ctx, -EINVAL));
		fp_task_error(ctx, msg);
		goto out;
	}
	memcpy(key, json_string_value(k), json_string_length(k) + 1);
	if (b)
		*by = (int64_t)json_integer_value(b);
	rc = 0;
out:
	json_decref(v);
	return rc;
}

/* Fail the item with "<task> <key>: <what the error means>". */
static int kv_failed(fp_task_ctx *ctx, const char *task, const char *key, int err)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s %s: %s", task, key, fp_kv_errmsg(ctx, err));
	return fp_task_error(ctx, msg);
}

int fp__demo_incr(fp_task_ctx *ctx, const char *args, size_t len)
{
	char key[FP_KV_KEY_MAX + 1], out[24];
	int64_t by, now;
	int err;

	if (key_args(ctx, "incr", args, len, key, sizeof(key), &by))
		return 0;
	err = fp_kv_incr(ctx, key, by, &now);
	if (err)
		return kv_failed(ctx, "incr", key, err);
	return fp_task_return(ctx, out, (size_t)snprintf(out, sizeof(out), "%" PRId64, now));
}

int fp__demo_get(fp_task_ctx *ctx, const char *args, size_t len)
{
	char key[FP_KV_KEY_MAX + 1];
	const char *val;
	size_t vlen;
	int64_t by;
	int err;

	if (key_args(ctx, "get", args, len, key, sizeof(key), &by))
		return 0;
	err = fp_kv_get(ctx, key, &val, &vlen);
	if (err == -ENOENT)
		return fp_task_return(ctx, "null", 4);
	if (err)
		return kv_failed(ctx, "get", key, err);
	return fp_task_return(ctx, val, vlen);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * {"ms": N, "key": K}: sets shared value K (when given) to "running", then
 * burns CPU for up to N ms, asking fp_cancelled() every millisecond or so.
 * Given up on meanwhile, it sets K to "cancelled" and returns "cancelled"
 * (an item given up on ends as the master meant, timeout or cancelled: the
 * shared value is what shows the task saw it in time); else returns N.
 */
int fp__demo_watch(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_t *v = json_loadb(args, len, JSON_DECODE_ANY, NULL);
	json_t *ms = json_is_object(v) ? json_object_get(v, "ms") : v;
	json_t *key = json_is_object(v) ? json_object_get(v, "key") : NULL;
	char out[24];
	uint64_t end, next = 0;
	int rc;

	if (!json_is_integer(ms) || json_integer_value(ms) < 0 || (key && !json_is_string(key))) {
		json_decref(v);
		return fp_task_error(ctx, "watch: expected milliseconds, or {\"ms\": integer, \"key\": string}");
	}
	/*
	 * Asked once before it says it runs: from here a SIGTERM only marks
	 * it cancelled, so one sent as soon as "running" is seen cannot kill
	 * it before its first look.
	 */
	(void)fp_cancelled(ctx);
	if (key && (rc = fp_kv_set(ctx, json_string_value(key), "\"running\"", 9, 0))) {
		json_decref(v);
		return fp_task_error(ctx, fp_kv_errmsg(ctx, rc));
	}
	end = now_ms() + (uint64_t)json_integer_value(ms);
	for (;;) {
		uint64_t t = now_ms();

		if (t >= end)
			break;
		if (t >= next) {
			next = t + 1;
			if (fp_cancelled(ctx)) {
				if (key && (rc = fp_kv_set(ctx, json_string_value(key), "\"cancelled\"", 11, 0)))
					rc = fp_task_error(ctx, fp_kv_errmsg(ctx, rc));
				else
					rc = fp_task_return(ctx, "\"cancelled\"", 11);
				json_decref(v);
				return rc;
			}
		}
	}
	rc = fp_task_return(ctx, out, (size_t)snprintf(out, sizeof(out), "%" JSON_INTEGER_FORMAT,
							json_integer_value(ms)));
	json_decref(v);
	return rc;
}

/*
 * {"name": L, "timeout_ms": T, "hold_ms": H, "key": K, "keep": bool}: takes
 * lock L (waiting up to T ms, default 10 s), sets shared value K (when
 * given) to its worker's pid, holds the lock H ms (default 0) or until
 * fp_cancelled(), then gives it back, unless keep (the task's end gives it
 * back then). Returns the pid. Refused in time: an error naming the timeout.
 */
int fp__demo_lock(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_t *v = json_loadb(args, len, 0, NULL);
	json_t *name = json_object_get(v, "name"), *to = json_object_get(v, "timeout_ms");
	json_t *hold = json_object_get(v, "hold_ms"), *key = json_object_get(v, "key");
	uint64_t timeout = 10000, end;
	char msg[FP_KV_KEY_MAX + 128], pid[24];
	int rc, n;

	if (!json_is_string(name) || (to && !json_is_integer(to)) || (hold && !json_is_integer(hold)) ||
	    (key && !json_is_string(key))) {
		json_decref(v);
		return fp_task_error(ctx, "lock: expected {\"name\": string, \"timeout_ms\": integer, "
				     "\"hold_ms\": integer, \"key\": string, \"keep\": boolean}");
	}
	if (to)
		timeout = (uint64_t)json_integer_value(to);
	rc = fp_lock(ctx, json_string_value(name), timeout);
	if (rc == -ETIMEDOUT) {
		snprintf(msg, sizeof(msg), "lock %s was not free within %llu ms",
			 json_string_value(name), (unsigned long long)timeout);
		goto fail;
	}
	if (rc) {
		snprintf(msg, sizeof(msg), "lock %s: %s", json_string_value(name), strerror(-rc));
		goto fail;
	}
	/* Armed before it says it holds the lock, as watch is (above). */
	(void)fp_cancelled(ctx);
	n = snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (key && (rc = fp_kv_set(ctx, json_string_value(key), pid, (size_t)n, 0))) {
		snprintf(msg, sizeof(msg), "lock: %s", fp_kv_errmsg(ctx, rc));
		goto fail;
	}
	end = now_ms() + (hold ? (uint64_t)json_integer_value(hold) : 0);
	while (now_ms() < end && !fp_cancelled(ctx)) {
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL);
	}
	if (!json_is_true(json_object_get(v, "keep")))
		fp_unlock(ctx, json_string_value(name));
	json_decref(v);
	return fp_task_return(ctx, pid, (size_t)n);
fail:
	json_decref(v);
	return fp_task_error(ctx, msg);
}
