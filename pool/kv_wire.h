/*
 * A task's shared-value call on the wire (issue 18): the payload of the
 * FP_FRAME_KV frame a worker sends the master, and of the FP_FRAME_KV_REPLY
 * the master answers with. Both ends are the same binary, so the structs go
 * as they are, in host byte order. The worker side is worker_kv.c, the
 * master's kv_serve.c.
 *
 *   KV        id = the worker's call number; payload = struct fp_kv_wire_req,
 *             then the key, the value and the expected value, each of the
 *             length the struct gives (no NULs)
 *   KV_REPLY  id = the call's; payload = struct fp_kv_wire_reply, then the
 *             value (when has_value)
 *
 * A worker has at most one call outstanding: it waits for the answer.
 */
#ifndef FP_KV_WIRE_H
#define FP_KV_WIRE_H

#include <stdint.h>

/*
 * Operations besides fp_kv_op's, for locks (locks.h): the key is the lock's
 * name; LOCK's ttl_ms is how long it may wait. UNLOCK_ALL (no key) gives
 * back what the task still holds when it ends. A lock's refusal carries its
 * message as the value.
 */
enum {
	FP_KV_WIRE_LOCK = 100,
	FP_KV_WIRE_UNLOCK,
	FP_KV_WIRE_UNLOCK_ALL,
};

struct fp_kv_wire_req {
	uint32_t op;            /* fp_kv_op, or one of the above */
	uint32_t key_len;
	uint32_t value_len;
	uint32_t expect_len;
	uint32_t has_expect;    /* CAS: 0 means "only if the key does not exist" */
	uint32_t unused;
	int64_t by;             /* INCR */
	uint64_t ttl_ms;        /* SET, CAS */
};

struct fp_kv_wire_reply {
	int32_t err;            /* 0 or a negative errno, as fp_kv_strerror() names */
	int32_t swapped;        /* CAS */
	int64_t number;         /* INCR */
	uint32_t has_value;
	uint32_t value_len;
};

#endif
