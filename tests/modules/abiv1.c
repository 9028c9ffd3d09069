/*
 * A module as it was built for task ABI 1, before fp_emit() and
 * fp_module.generators: its descriptor is the ABI-1 layout written out by
 * hand, so it ends where ABI 1 ended. The host must load it, run it, and
 * never read past its end (ASan would see that).
 */
#include <stdint.h>
#include <stdio.h>

#include "forkpool/task.h"

/* struct fp_module as task.h declared it at ABI 1. */
struct fp_module_abi1 {
	uint32_t abi_version;
	const char *name;
	const struct fp_task *tasks;
	int (*load)(void);
	int (*worker_init)(void);
	void (*worker_fini)(void);
	void (*unload)(void);
};

/* n -> 2n, through the ABI-1 host functions only. */
static int v1_twice(fp_task_ctx *ctx, const char *args, size_t len)
{
	long long n;
	char buf[32];
	int l;

	if (sscanf(args, " %lld", &n) != 1)
		return fp_task_error(ctx, "v1.twice: expected an integer");
	l = snprintf(buf, sizeof(buf), "%lld", n * 2);
	return fp_task_return(ctx, buf, (size_t)l);
}

static const struct fp_task tasks[] = {
	{ "v1.twice", v1_twice, "n -> 2n (a module built for ABI 1)" },
	{ NULL, NULL, NULL },
};

__attribute__((visibility("default")))
const struct fp_module_abi1 fp_module = {
	.abi_version = 1,
	.name = "abiv1",
	.tasks = tasks,
};
