/*
 * forkpool task ABI: everything a task module is written against.
 *
 * A module is a shared object that exports one symbol, `fp_module`, of type
 * `const struct fp_module`. Use FP_MODULE() to define it. The master dlopen()s
 * the module before forking the workers, checks `abi_version` against
 * FP_TASK_ABI_VERSION, and runs tasks in the workers.
 *
 * A task is a C function: JSON text in (its arguments), JSON text out (its
 * value), or an error with a message. The worker calls it with an fp_task_ctx
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

/* Bumped on any incompatible change to the structures below. */
#define FP_TASK_ABI_VERSION 1

typedef struct fp_task_ctx fp_task_ctx;

/*
 * A task. `args` is `args_len` bytes of JSON text, NUL-terminated for
 * convenience (the NUL is not counted), owned by the worker and valid for the
 * call. The task answers with exactly one of fp_task_return() or
 * fp_task_error() and returns 0; a task that returns a negative errno without
 * answering fails its item with that error's message. A task that answers
 * nothing and returns 0 returns JSON `null`.
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

/* Define the module's exported descriptor. */
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
