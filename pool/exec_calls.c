/* An exec program's calls during a task (exec_calls.h says the lines). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_calls.h"

#define LOCK_TIMEOUT_MS 10000u   /* a lock call's wait when it names none */

static const char *errno_name(int err)
{
	switch (-err) {
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case EBADMSG: return "EBADMSG";
	case EDOM: return "EDOM";
	case E2BIG: return "E2BIG";
	case ENOSPC: return "ENOSPC";
	case ERANGE: return "ERANGE";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EDEADLK: return "EDEADLK";
	case ENOMEM: return "ENOMEM";
	default: return "EIO";
	}
}

static json_t *failed(uint64_t id, int err, const char *msg)
{
	return json_pack("{sIsbssss}", "id", (json_int_t)id, "ok", 0, "error", msg,
			 "errno", errno_name(err));
}

static json_t *done(uint64_t id, json_t *value)
{
	return json_pack("{sIsbso}", "id", (json_int_t)id, "ok", 1, "value",
			 value ? value : json_null());
}

/* A value the store gave back, as JSON (it keeps only JSON text). */
static json_t *stored(const char *text, size_t len)
{
	return text ? json_loadb(text, len, JSON_DECODE_ANY, NULL) : json_null();
}

/* An optional non-negative integer member: 0 when fine (*out set or left), else -EINVAL. */
static int opt_uint(json_t *line, const char *name, uint64_t *out)
{
	json_t *v = json_object_get(line, name);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EINVAL;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* The answer line to call `id`, from the store's reply to its `op`. */
static json_t *reply(uint64_t id, fp_kv_op op, const struct fp_kv_reply *r)
{
	if (r->err)
		return failed(id, r->err, fp_kv_strerror(r->err));
	switch (op) {
	case FP_KV_GET:
		return done(id, stored(r->value, r->value_len));
	case FP_KV_INCR:
		return done(id, json_integer((json_int_t)r->number));
	case FP_KV_CAS:
		return done(id, json_pack("{sbso}", "swapped", r->swapped, "value",
					  stored(r->value, r->value_len)));
	default:
		return done(id, NULL);
	}
}

json_t *fp__exec_call(struct fp_worker_kv *kv, struct fp_worker_shm *shm, uint64_t id,
		      json_t *line)
{
	const char *op = json_string_value(json_object_get(line, "call"));
	json_t *key = json_object_get(line, "key"), *value = json_object_get(line, "value");
	json_t *expect = json_object_get(line, "expect"), *by = json_object_get(line, "by");
	struct fp_kv_request req = { 0 };
	struct fp_kv_reply r;
	char msg[160], *vtext = NULL, *etext = NULL;
	const char *lmsg = NULL;
	uint64_t ms = 0;
	int err;

	if (!op)
		return failed(id, -EINVAL, "a call is {\"id\":ID,\"call\":NAME,...}: NAME must be a string");
	if (!strcmp(op, "cancelled"))
		return done(id, json_boolean(atomic_load_explicit(&shm->cancel, memory_order_acquire) == id));
	if (!json_is_string(key)) {
		snprintf(msg, sizeof(msg), "call %.40s needs \"key\", a string", op);
		return failed(id, -EINVAL, msg);
	}
	if (!strcmp(op, "lock") || !strcmp(op, "unlock")) {
		ms = LOCK_TIMEOUT_MS;
		if (opt_uint(line, "timeout_ms", &ms))
			return failed(id, -EINVAL, "call lock: \"timeout_ms\" must be a non-negative integer");
		err = op[0] == 'l' ? fp__worker_lock(kv, json_string_value(key), ms, &lmsg)
				   : fp__worker_unlock(kv, json_string_value(key), &lmsg);
		return err ? failed(id, err, lmsg ? lmsg : strerror(-err)) : done(id, NULL);
	}
	req.key = json_string_value(key);
	req.key_len = json_string_length(key);
	if (opt_uint(line, "ttl_ms", &req.ttl_ms))
		return failed(id, -EINVAL, "\"ttl_ms\" must be a non-negative integer");
	if (!strcmp(op, "get")) {
		req.op = FP_KV_GET;
	} else if (!strcmp(op, "del")) {
		req.op = FP_KV_DEL;
	} else if (!strcmp(op, "incr")) {
		req.op = FP_KV_INCR;
		req.by = 1;
		if (by && !json_is_integer(by))
			return failed(id, -EINVAL, "call incr: \"by\" must be an integer");
		if (by)
			req.by = (int64_t)json_integer_value(by);
	} else if (!strcmp(op, "set") || !strcmp(op, "cas")) {
		req.op = op[0] == 's' ? FP_KV_SET : FP_KV_CAS;
		if (!value) {
			snprintf(msg, sizeof(msg), "call %s needs \"value\"", op);
			return failed(id, -EINVAL, msg);
		}
		vtext = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
		if (expect && req.op == FP_KV_CAS)
			etext = json_dumps(expect, JSON_ENCODE_ANY | JSON_COMPACT);
		if (!vtext || (expect && req.op == FP_KV_CAS && !etext)) {
			free(vtext);
			free(etext);
			return NULL;
		}
		req.value = vtext;
		req.value_len = strlen(vtext);
		req.expect = etext;
		req.expect_len = etext ? strlen(etext) : 0;
	} else {
		snprintf(msg, sizeof(msg), "unknown call '%.40s': the calls are get, set, del, incr, "
			 "cas, lock, unlock, cancelled", op);
		return failed(id, -EINVAL, msg);
	}
	err = fp__worker_kv_call(kv, &req, &r);
	free(vtext);
	free(etext);
	if (err)
		return NULL;
	return reply(id, req.op, &r);
}
