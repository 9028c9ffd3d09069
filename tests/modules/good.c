/*
 * A well-formed module with every hook and a few tasks. The hooks log to
 * FP_TEST_HOOK_LOG (see hooklog.h) and count calls in this process, which
 * `good.state` reports: in a worker it shows that load ran in the master
 * before the fork and worker_init ran in the worker itself.
 */
#include <errno.h>
#include <stdio.h>

#include "forkpool/task.h"
#include "hooklog.h"

/*
 * Hooks take no arguments, so their counts can only live in the module's
 * globals; each process (master, worker) has its own copy after fork.
 */
static int n_load, n_worker_init, n_worker_fini, n_unload;

static int good_load(void)
{
	n_load++;
	hook_log("good", "load");
	return 0;
}

static int good_worker_init(void)
{
	n_worker_init++;
	hook_log("good", "worker_init");
	return 0;
}

static void good_worker_fini(void)
{
	n_worker_fini++;
	hook_log("good", "worker_fini");
}

static void good_unload(void)
{
	n_unload++;
	hook_log("good", "unload");
}

/* [a, b] -> a + b, for integers. */
static int good_add(fp_task_ctx *ctx, const char *args, size_t len)
{
	long long a, b;
	char buf[64];
	int n;

	if (sscanf(args, " [ %lld , %lld ]", &a, &b) != 2)
		return fp_task_error(ctx, "good.add: expected [a, b]");
	n = snprintf(buf, sizeof(buf), "%lld", a + b);
	return fp_task_return(ctx, buf, (size_t)n);
}

static int good_state(fp_task_ctx *ctx, const char *args, size_t len)
{
	char buf[128];
	int n;

	n = snprintf(buf, sizeof(buf),
		     "{\"load\":%d,\"worker_init\":%d,\"worker_fini\":%d,\"unload\":%d}",
		     n_load, n_worker_init, n_worker_fini, n_unload);
	return fp_task_return(ctx, buf, (size_t)n);
}

/* Returns a negative errno without answering: the host reports it. */
static int good_enoent(fp_task_ctx *ctx, const char *args, size_t len)
{
	return -ENOENT;
}

/* Writes its argument to stdout and stderr: the master logs both. */
static int good_say(fp_task_ctx *ctx, const char *args, size_t len)
{
	printf("said %s\n", args);
	fflush(stdout);
	fprintf(stderr, "complained %s\n", args);
	return fp_task_return(ctx, "true", 4);
}

/* Answers with text that is not JSON. */
static int good_badjson(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, "{not json", 9);
}

static const struct fp_task tasks[] = {
	{ "good.add", good_add, "[a, b] -> a + b" },
	{ "good.state", good_state, "counts of this module's hooks run in this process" },
	{ "good.enoent", good_enoent, "returns -ENOENT without answering" },
	{ "good.say", good_say, "prints its argument to stdout and stderr" },
	{ "good.badjson", good_badjson, "answers with text that is not JSON" },
	{ NULL, NULL, NULL },
};

FP_MODULE("good", tasks,
	.load = good_load,
	.worker_init = good_worker_init,
	.worker_fini = good_worker_fini,
	.unload = good_unload);
