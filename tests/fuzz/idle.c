/*
 * The module of the fuzz targets that run the daemon's front: its workers
 * never say ready. worker_init waits until the master goes (the worker's
 * PDEATHSIG ends it then), so whatever a fuzzed request submits stays
 * queued: no task runs, nothing depends on timing, and a cancel has no
 * worker to kill and replace. Its one task gives submissions a name from a
 * module besides the built-in demo's.
 */
#include <unistd.h>

#include "forkpool/task.h"

static int idle_worker_init(void)
{
	for (;;)
		pause();
	return 0;
}

static int idle_nop(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, "null", 4);
}

static const struct fp_task tasks[] = {
	{ "idle.nop", idle_nop, "never runs: the workers never say ready" },
	{ NULL, NULL, NULL },
};

FP_MODULE("idle", tasks, .worker_init = idle_worker_init);
