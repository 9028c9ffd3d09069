/*
 * A module whose worker_init always fails with -EIO: every worker it is
 * loaded into dies before its first task (the pool's crash-storm test).
 * Its load hook succeeds, so the pool does start.
 */
#include <errno.h>

#include "forkpool/task.h"
#include "hooklog.h"

static int initfail_worker_init(void)
{
	hook_log("initfail", "worker_init");
	return -EIO;
}

static void initfail_worker_fini(void)
{
	hook_log("initfail", "worker_fini");
}

static int initfail_nop(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, "null", 4);
}

static const struct fp_task tasks[] = {
	{ "initfail.nop", initfail_nop, NULL },
	{ NULL, NULL, NULL },
};

FP_MODULE("initfail", tasks,
	.worker_init = initfail_worker_init,
	.worker_fini = initfail_worker_fini);
