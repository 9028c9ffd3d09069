/*
 * forkpool task ABI: everything a task module is written against.
 *
 * A module is a shared object that exports one symbol, `fp_module`, of type
 * `const struct fp_module`. Use FP_MODULE() to define it. The master dlopen()s
 * the module before forking the workers, checks `abi_version` against
 * FP_TASK_ABI_VERSION, and runs tasks in the workers.
 *
 * A task is a C function: JSON text in (its arguments), JSON text out (its
 * value, or zero or more outputs for a generator task), or an error with a
 * message. The worker calls it with an fp_task_ctx
 * through which it answers; the host's functions are reached through a table
 * in the context, so a module links against nothing of forkpool's.
 *
 * This header is the whole ABI: a module must include nothing else of forkpool.
 */
#ifndef FORKPOOL_TASK_H
#define FORKPOOL_TASK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The ABI this header describes. Structures only ever grow at their end, and
 * a field added in version N is read only from modules that declare N or
 * later, so a module built for any version from FP_TASK_ABI_MIN on still
 * loads:
 *   1  tasks that return one value
 *   2  fp_emit() (generator tasks) and fp_module.generators
 *   3  shared values: fp_kv_get(), fp_kv_set(), fp_kv_del(), fp_kv_incr(),
 *      fp_kv_cas(); fp_lock(), fp_unlock(); fp_cancelled()
 */
#define FP_TASK_ABI_VERSION 3
#define FP_TASK_ABI_MIN 1

typedef struct fp_task_ctx fp_task_ctx;

/*
 * A task. `args` is `args_len` bytes of JSON text, NUL-terminated for
 * convenience (the NUL is not counted), owned by the worker and valid for the
 * call. The task answers with one value (fp_task_return()), or with zero or
 * more outputs (fp_emit(), once per output: a generator, or flat-map), or
 * fails (fp_task_error()), and returns 0. A task that returns a value and
 * also emits fails its item with an error saying so. A task that returns a
 * negative errno without answering fails its item with that error's message.
 * A task that answers nothing and returns 0 returns JSON `null`, or no
 * outputs (`[]` in map and apply) when it is declared a generator.
 *
 * How the outputs travel depends on the call: in map and apply an item's
 * outputs come back as one JSON array (gathered in the worker); in a
 * pipeline each output is sent to the master as soon as it is emitted and
 * becomes an item of the next stage at once. An emitting task may block in
 * fp_emit() while the stage after it is full (back-pressure).
 */
typedef int (*fp_task_fn)(fp_task_ctx *ctx, const char *args, size_t args_len);

struct fp_task {
	const char *name;       /* [A-Za-z0-9_.-]+, unique across loaded modules */
	fp_task_fn fn;
	const char *doc;        /* one line for `GET /v1/tasks`; may be NULL */
};

struct fp_module {
	uint32_t abi_version;   /* FP_TASK_ABI_VERSION */
	const char *name;       /* for logs and errors */
	const struct fp_task *tasks;   /* terminated by an entry whose name is NULL */
	/*
	 * Optional hooks. Each returns 0, or a negative errno to fail.
	 * load: in the master, once, before any fork: data it builds is shared
	 *       copy-on-write by every worker. Failing it stops the pool starting.
	 * worker_init: in each worker after fork, before its first task
	 *       (Python's Pool initializer). Failing it kills that worker, and
	 *       repeated failures mark the pool unhealthy.
	 * worker_fini: in each worker before it exits normally (recycling or
	 *       shutdown); not called when the worker is killed.
	 * unload: in the master when the pool is freed.
	 */
	int (*load)(void);
	int (*worker_init)(void);
	void (*worker_fini)(void);
	void (*unload)(void);

	/* --- ABI 2 and later: read only when abi_version >= 2 ------------- */

	/*
	 * Names of this module's tasks that are generators (NULL-terminated;
	 * NULL: none). A generator that emits nothing answers `[]` in map and
	 * apply rather than `null`, and GET /v1/tasks calls it a generator.
	 * Any task may call fp_emit(); this only says what "no answer" means.
	 */
	const char *const *generators;
};

/*
 * The host's side, reached through the context. Use the inline wrappers.
 * Both copy what they are given; the task keeps ownership of its buffers.
 */
struct fp_task_host {
	uint32_t abi_version;
	/* Set the task's value: `len` bytes of JSON text. */
	int (*ret)(fp_task_ctx *ctx, const char *json, size_t len);
	/* Fail the item with a task error whose message is `msg` (UTF-8 text). */
	int (*error)(fp_task_ctx *ctx, const char *msg);
	/* The worker's slot (0..N-1) and generation, for logging or sharding. */
	int (*worker_slot)(fp_task_ctx *ctx);

	/* --- ABI 2 and later ---------------------------------------------- */

	/*
	 * One output of a generator task: `len` bytes of JSON text, checked
	 * and copied. Returns 0, or a negative errno after which the item has
	 * already failed (output over the size limit, not JSON, returned a
	 * value before): the task should stop emitting and return.
	 */
	int (*emit)(fp_task_ctx *ctx, const char *json, size_t len);

	/* --- ABI 3 and later: shared values (see fp_kv_get() below) -------- */
	int (*kv_get)(fp_task_ctx *ctx, const char *key, const char **json, size_t *len);
	int (*kv_set)(fp_task_ctx *ctx, const char *key, const char *json, size_t len,
		      uint64_t ttl_ms);
	int (*kv_del)(fp_task_ctx *ctx, const char *key);
	int (*kv_incr)(fp_task_ctx *ctx, const char *key, int64_t by, int64_t *out);
	int (*kv_cas)(fp_task_ctx *ctx, const char *key, const char *expect, size_t expect_len,
		      const char *json, size_t len, uint64_t ttl_ms);
	const char *(*kv_errmsg)(int err);
	/* Whether the task should stop: see fp_cancelled(). */
	int (*cancelled)(fp_task_ctx *ctx);
	/* Named locks: see fp_lock(). */
	int (*lock)(fp_task_ctx *ctx, const char *name, uint64_t timeout_ms);
	int (*unlock)(fp_task_ctx *ctx, const char *name);
};

struct fp_task_ctx {
	const struct fp_task_host *host;
};

static inline int fp_task_return(fp_task_ctx *ctx, const char *json, size_t len)
{
	return ctx->host->ret(ctx, json, len);
}

static inline int fp_task_error(fp_task_ctx *ctx, const char *msg)
{
	return ctx->host->error(ctx, msg);
}

/* Emit one output (ABI 2): see fp_task_host.emit. */
static inline int fp_emit(fp_task_ctx *ctx, const char *json, size_t len)
{
	return ctx->host->emit(ctx, json, len);
}

/*
 * Shared values (ABI 3): small JSON values by key that every task of the
 * pool sees, the same store as the HTTP API's /v1/kv (what Python's
 * multiprocessing.Manager().dict() gives its processes). Each call is one
 * round trip to the master, atomic there. A key is 1 to 256 characters of
 * A-Z a-z 0-9 _ . : @ -, NUL-terminated here; a value is JSON text of at
 * most 64 KiB, kept in its compact form.
 *
 * Each returns 0 or a negative errno that fp_kv_errmsg() puts in words:
 * -ENOENT no such key, -EINVAL a bad key, -EBADMSG a value that is not JSON,
 * -EDOM incr of a value that is not an integer, -ERANGE incr past int64,
 * -E2BIG a value over the cap, -ENOSPC the store is full, -ENOMEM.
 */

/*
 * The value of `key`: *json (NUL-terminated, *len bytes) is the worker's,
 * valid until the next fp_kv_* call or the task's end.
 */
static inline int fp_kv_get(fp_task_ctx *ctx, const char *key, const char **json, size_t *len)
{
	return ctx->host->kv_get(ctx, key, json, len);
}

/* Set `key` to `len` bytes of JSON text; it goes after ttl_ms (0: never). */
static inline int fp_kv_set(fp_task_ctx *ctx, const char *key, const char *json, size_t len,
			    uint64_t ttl_ms)
{
	return ctx->host->kv_set(ctx, key, json, len, ttl_ms);
}

/* Delete `key`: 0, or -ENOENT when it did not exist. */
static inline int fp_kv_del(fp_task_ctx *ctx, const char *key)
{
	return ctx->host->kv_del(ctx, key);
}

/*
 * Add `by` to the integer at `key` (a missing key counts as 0) and give the
 * new value in *out (out may be NULL).
 */
static inline int fp_kv_incr(fp_task_ctx *ctx, const char *key, int64_t by, int64_t *out)
{
	return ctx->host->kv_incr(ctx, key, by, out);
}

/*
 * Compare and set: set `key` to `json` only if its value now equals the
 * JSON `expect` (compared as values, not spellings; expect NULL: only if the
 * key does not exist). 1 when it was set, 0 when the value differed.
 */
static inline int fp_kv_cas(fp_task_ctx *ctx, const char *key, const char *expect,
			    size_t expect_len, const char *json, size_t len, uint64_t ttl_ms)
{
	return ctx->host->kv_cas(ctx, key, expect, expect_len, json, len, ttl_ms);
}

/* What a shared-value error means, naming the limit it broke. */
static inline const char *fp_kv_errmsg(fp_task_ctx *ctx, int err)
{
	return ctx->host->kv_errmsg(err);
}

/*
 * Named locks (ABI 3), held in the master: at most one task of the pool
 * holds `name` (1 to 256 bytes) at a time. fp_lock() waits up to timeout_ms
 * (0: not at all) for it; waiters have it in the order they asked. Returns
 * 0, -ETIMEDOUT when it was not free in time (the item's error should say
 * so: "lock NAME was not free within N ms"), -EDEADLK when this task holds
 * it already (locks are not re-entrant), -EINVAL for a bad name.
 * fp_unlock() gives it back: 0, or -ENOENT when this task does not hold it.
 * No lock outlives its holder: what a task still holds when it returns is
 * given back then, and what a worker held when it died (crash, SIGKILL,
 * timeout) is free at once.
 */
static inline int fp_lock(fp_task_ctx *ctx, const char *name, uint64_t timeout_ms)
{
	return ctx->host->lock(ctx, name, timeout_ms);
}

static inline int fp_unlock(fp_task_ctx *ctx, const char *name)
{
	return ctx->host->unlock(ctx, name);
}

/*
 * Cooperative cancel (ABI 3): 1 when the running item was given up on (its
 * job cancelled, or past its timeout) or the worker is being stopped, else
 * 0. A load from memory the master writes, cheap enough to poll in a loop.
 * The worker is SIGKILLed after the pool's grace (2 s by default) whatever
 * the task does; a task that polls this should clean up and return within
 * it. A task that has called it once is not ended by the SIGTERM that starts
 * the grace; one that never calls it is, as before.
 */
static inline int fp_cancelled(fp_task_ctx *ctx)
{
	return ctx->host->cancelled(ctx);
}

/*
 * Define the module's exported descriptor. Optional fields follow as
 * designated initialisers, e.g.
 *   FP_MODULE("words", tasks, .generators = (const char *const[]){ "split", NULL });
 */
#define FP_MODULE(modname, task_table, ...) \
	__attribute__((visibility("default"))) \
	const struct fp_module fp_module = { \
		.abi_version = FP_TASK_ABI_VERSION, \
		.name = (modname), \
		.tasks = (task_table), \
		__VA_ARGS__ \
	}

#ifdef __cplusplus
}
#endif

#endif
