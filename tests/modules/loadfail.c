/* A module whose load hook fails with -EACCES; its unload must never run. */
#include <errno.h>

#include "forkpool/task.h"
#include "hooklog.h"

static int loadfail_load(void)
{
	hook_log("loadfail", "load");
	return -EACCES;
}

static void loadfail_unload(void)
{
	hook_log("loadfail", "unload");
}

static int loadfail_nop(fp_task_ctx *ctx, const char *args, size_t len)
{
	return 0;
}

static const struct fp_task tasks[] = {
	{ "loadfail.nop", loadfail_nop, NULL },
	{ NULL, NULL, NULL },
};

FP_MODULE("loadfail", tasks,
	.load = loadfail_load,
	.unload = loadfail_unload);
