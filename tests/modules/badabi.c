/* A module that claims a future ABI version (7): it must be refused unread. */
#include "forkpool/task.h"

static int badabi_nop(fp_task_ctx *ctx, const char *args, size_t len)
{
	return 0;
}

static const struct fp_task tasks[] = {
	{ "badabi.nop", badabi_nop, NULL },
	{ NULL, NULL, NULL },
};

__attribute__((visibility("default")))
const struct fp_module fp_module = {
	.abi_version = 7,
	.name = "badabi",
	.tasks = tasks,
};
