/* A module that defines the same task name twice. */
#include "forkpool/task.h"

static int dup_one(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, "1", 1);
}

static int dup_two(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, "2", 1);
}

static const struct fp_task tasks[] = {
	{ "dup.same", dup_one, NULL },
	{ "dup.other", dup_one, NULL },
	{ "dup.same", dup_two, NULL },
	{ NULL, NULL, NULL },
};

FP_MODULE("dupname", tasks);
