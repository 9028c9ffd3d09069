/*
 * Task modules: the built-in `demo` module and shared objects loaded with
 * dlopen(). The registry maps task names to functions; it is built in the
 * master before the workers fork, so workers inherit it as it is.
 */
#ifndef FP_MODULE_H
#define FP_MODULE_H

#include <stddef.h>

#include "forkpool.h"
#include "forkpool/task.h"

struct fp_registry_task {
	const char *name;
	fp_task_fn fn;
	const char *doc;
	unsigned module;            /* index into fp_registry.modules */
	int generator;              /* named in its module's `generators` (ABI >= 2) */
};

struct fp_registry_module {
	const struct fp_module *def;
	void *handle;               /* dlopen handle; NULL for built-in */
	int memfd;                  /* the private copy it was loaded from, or -1 */
	char *path;                 /* "(built-in)" for built-in */
	const char *name;           /* def->name, or the path when that is NULL */
	int loaded;                 /* its load hook ran and succeeded (or it has none) */
	/*
	 * Set in a worker's copy of the registry once worker_init succeeded, so
	 * that worker_fini runs exactly for the modules that were initialised.
	 */
	int worker_inited;
};

struct fp_registry {
	struct fp_registry_module *modules;
	size_t nmodules;
	struct fp_registry_task *tasks;   /* sorted by name for lookup */
	size_t ntasks;
	struct fp_task_info *info;        /* in load order, for fp_pool_tasks() */
};

/* The built-in demo module (demo.c). */
extern const struct fp_module fp__demo_module;
/* Its generator and pipeline tasks (demo_pipe.c). */
int fp__demo_range(fp_task_ctx *ctx, const char *args, size_t len);
int fp__demo_words(fp_task_ctx *ctx, const char *args, size_t len);
int fp__demo_lower(fp_task_ctx *ctx, const char *args, size_t len);
int fp__demo_sum(fp_task_ctx *ctx, const char *args, size_t len);
int fp__demo_count(fp_task_ctx *ctx, const char *args, size_t len);
/* demo_kv.c: shared values (issue 18) */
int fp__demo_incr(fp_task_ctx *ctx, const char *args, size_t len);
int fp__demo_get(fp_task_ctx *ctx, const char *args, size_t len);
int fp__demo_watch(fp_task_ctx *ctx, const char *args, size_t len);
int fp__demo_lock(fp_task_ctx *ctx, const char *args, size_t len);

/* Zero the registry; a zeroed registry is valid and empty. */
void fp_registry_init(struct fp_registry *reg);
/*
 * Add a module: the built-in when `path` is NULL and `def` is given, else
 * dlopen(path) and look up `fp_module`. Errors (missing file, missing
 * symbol, wrong ABI version, bad or duplicate task names) return FP_EMODULE
 * and write a message naming the module and the problem into errbuf; out of
 * memory is -ENOMEM. On any error the registry is left as it was. A path
 * without a '/' is searched for as dlopen() does (LD_LIBRARY_PATH, ld.so
 * cache), not in the current directory. errbuf may be NULL.
 */
int fp_registry_add(struct fp_registry *reg, const char *path,
		    const struct fp_module *def, char *errbuf, size_t errlen);
/*
 * Load every module of `old` again from its file, into `reg`, as objects of
 * their own (the old ones stay loaded until `old` is deinit'ed), and run
 * their load hooks. On error `reg` is left empty and `old` untouched.
 */
int fp_registry_reload(struct fp_registry *reg, const struct fp_registry *old,
		       char *errbuf, size_t errlen);
/*
 * Run the load hook of every module not loaded yet, in the order they were
 * added; stops at the first failure with FP_EMODULE and a message. Modules
 * loaded before the failure stay loaded: fp_registry_deinit() unloads them.
 */
int fp_registry_load(struct fp_registry *reg, char *errbuf, size_t errlen);
/*
 * Unload hooks (for the modules that loaded), in reverse order, then dlclose;
 * the registry is empty after. Accepts a zeroed registry.
 */
void fp_registry_deinit(struct fp_registry *reg);

/* Binary search by name; NULL when no module has that task. */
const struct fp_registry_task *fp_registry_find(const struct fp_registry *reg,
						const char *name);

/*
 * In a worker: every module's worker_init, in order. On failure FP_EMODULE
 * with the message in errbuf, after running worker_fini (in reverse) for the
 * modules already initialised, so the caller only has to exit.
 */
int fp_registry_worker_init(struct fp_registry *reg, char *errbuf, size_t errlen);
/* worker_fini of every initialised module, in reverse order; idempotent. */
void fp_registry_worker_fini(struct fp_registry *reg);

#endif
