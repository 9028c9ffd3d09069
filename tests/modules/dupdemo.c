/* A module whose task `square` clashes with the built-in demo module's. */
#include "forkpool/task.h"

static int dupdemo_square(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, "0", 1);
}

static const struct fp_task tasks[] = {
	{ "dupdemo.ok", dupdemo_square, NULL },
	{ "square", dupdemo_square, NULL },
	{ NULL, NULL, NULL },
};

FP_MODULE("dupdemo", tasks);
