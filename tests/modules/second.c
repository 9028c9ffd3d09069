/* A second well-formed module, to see hooks run across modules in order. */
#include "forkpool/task.h"
#include "hooklog.h"

static int second_load(void)
{
	hook_log("second", "load");
	return 0;
}

static int second_worker_init(void)
{
	hook_log("second", "worker_init");
	return 0;
}

static void second_worker_fini(void)
{
	hook_log("second", "worker_fini");
}

static void second_unload(void)
{
	hook_log("second", "unload");
}

static int second_hello(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, "\"hello\"", 7);
}

static const struct fp_task tasks[] = {
	{ "second.hello", second_hello, "returns \"hello\"" },
	{ NULL, NULL, NULL },
};

FP_MODULE("second", tasks,
	.load = second_load,
	.worker_init = second_worker_init,
	.worker_fini = second_worker_fini,
	.unload = second_unload);
