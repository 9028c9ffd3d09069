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
};

struct fp_registry_module {
	const struct fp_module *def;
	void *handle;               /* dlopen handle; NULL for built-in */
	char *path;                 /* "(built-in)" for built-in */
	int loaded;                 /* its load hook ran and succeeded */
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

void fp_registry_init(struct fp_registry *reg);
/*
 * Add a module: the built-in when `path` is NULL and `def` is given, else
 * dlopen(path) and look up `fp_module`. Errors (missing file, missing
 * symbol, wrong ABI version, bad or duplicate task names) return FP_EMODULE
 * and write a message naming the module and the problem into errbuf.
 */
int fp_registry_add(struct fp_registry *reg, const char *path,
		    const struct fp_module *def, char *errbuf, size_t errlen);
/* Run every module's load hook, in order; FP_EMODULE with a message. */
int fp_registry_load(struct fp_registry *reg, char *errbuf, size_t errlen);
/* Unload hooks (for those that loaded) and dlclose; the registry is empty after. */
void fp_registry_deinit(struct fp_registry *reg);

const struct fp_registry_task *fp_registry_find(const struct fp_registry *reg,
						const char *name);

/* In a worker: every module's worker_init; on failure the message is in errbuf. */
int fp_registry_worker_init(struct fp_registry *reg, char *errbuf, size_t errlen);
void fp_registry_worker_fini(struct fp_registry *reg);

#endif
