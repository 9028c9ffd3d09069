/*
 * A worker's calls to the master's shared values (issue 18), for C tasks
 * (worker_main.c) and exec programs (exec_worker.c) alike: one KV frame out,
 * one KV_REPLY frame back, on the worker's one socket.
 *
 * The master may already have written the worker's next TASK frames when a
 * task calls, so the answer can arrive behind them. The call reads the
 * socket on its own until the answer is whole, picks the KV_REPLY out, and
 * keeps every other byte, in order, for the worker's main loop, which takes
 * them (fp__worker_kv_take()) before it reads the socket again. The frames
 * the main loop already holds stay in its reader untouched: the running
 * task's arguments point into that buffer.
 */
#ifndef FP_WORKER_KV_H
#define FP_WORKER_KV_H

#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"
#include "frame_reader.h"

struct fp_worker_kv {
	int fd;
	struct fp_frame_reader *reader; /* the main loop's */
	char *held;                     /* bytes read past the reader's, not yet its */
	size_t held_len, held_cap;
	char *out;                      /* the request being sent */
	size_t out_cap;
	char *value;                    /* the last answer's value, NUL-terminated */
	size_t value_cap;
	uint64_t seq;                   /* calls made */
	unsigned locks;                 /* held by the running task (a count: the master knows which) */
};

void fp__worker_kv_init(struct fp_worker_kv *k, int fd, struct fp_frame_reader *reader);
void fp__worker_kv_deinit(struct fp_worker_kv *k);

/*
 * One call: fills *out as fp_pool_kv() would (out->value, NUL-terminated,
 * is valid until the next call). Returns 0, or -ENOMEM; a master that is
 * gone or that answers garbage ends the worker, as any broken stream does.
 */
int fp__worker_kv_call(struct fp_worker_kv *k, const struct fp_kv_request *req,
		       struct fp_kv_reply *out);

/*
 * Hand the bytes a call read past the reader to the reader (fp_frame_reader_feed()):
 * 1 when there were some, 0 when none, -ENOMEM. Only between tasks.
 */
int fp__worker_kv_take(struct fp_worker_kv *k);

/*
 * The task ABI's shared-value calls (include/forkpool/task.h, ABI 3) over
 * fp__worker_kv_call(): the same arguments and returns as fp_kv_get() and
 * the rest. `key` is NUL-terminated.
 */
int fp__worker_kv_get(struct fp_worker_kv *k, const char *key, const char **json, size_t *len);
int fp__worker_kv_set(struct fp_worker_kv *k, const char *key, const char *json, size_t len,
		      uint64_t ttl_ms);
int fp__worker_kv_del(struct fp_worker_kv *k, const char *key);
int fp__worker_kv_incr(struct fp_worker_kv *k, const char *key, int64_t by, int64_t *out);
int fp__worker_kv_cas(struct fp_worker_kv *k, const char *key, const char *expect,
		      size_t expect_len, const char *json, size_t len, uint64_t ttl_ms);

/*
 * Locks (locks.h): 0, or -ETIMEDOUT (not free within timeout_ms), -EDEADLK
 * (held by this task already), -EINVAL (a bad name), -ENOENT (unlock of a
 * lock the task does not hold). *msg (may be NULL) is then the master's
 * words for it, valid until the next call.
 */
int fp__worker_lock(struct fp_worker_kv *k, const char *name, uint64_t timeout_ms,
		    const char **msg);
int fp__worker_unlock(struct fp_worker_kv *k, const char *name, const char **msg);
/* The task ended: give back what it still holds (one round trip, only then). */
void fp__worker_kv_task_end(struct fp_worker_kv *k);

#endif
