/* A module with a task name outside [A-Za-z0-9_.-]. */
#include "forkpool/task.h"

static int badname_nop(fp_task_ctx *ctx, const char *args, size_t len)
{
	return 0;
}

static const struct fp_task tasks[] = {
	{ "badname.fine", badname_nop, NULL },
	{ "bad name/1", badname_nop, NULL },
	{ NULL, NULL, NULL },
};

FP_MODULE("badname", tasks);
