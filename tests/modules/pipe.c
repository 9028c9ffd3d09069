/*
 * Tasks for the pipeline tests: one that crashes on a given input, a slow
 * one for back-pressure, a generator, and tasks that break the generator
 * rules on purpose.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "forkpool/task.h"

/* n -> n, except 13: the worker dies of SIGKILL (no handler can catch it). */
static int pipe_crash13(fp_task_ctx *ctx, const char *args, size_t len)
{
	long long n;

	if (sscanf(args, " %lld", &n) != 1)
		return fp_task_error(ctx, "pipe.crash13: expected an integer");
	if (n == 13)
		kill(getpid(), SIGKILL);
	return fp_task_return(ctx, args, len);
}

/* n -> n + 1. */
static int pipe_inc(fp_task_ctx *ctx, const char *args, size_t len)
{
	long long n;
	char buf[32];
	int l;

	if (sscanf(args, " %lld", &n) != 1)
		return fp_task_error(ctx, "pipe.inc: expected an integer");
	l = snprintf(buf, sizeof(buf), "%lld", n + 1);
	return fp_task_return(ctx, buf, (size_t)l);
}

/* x -> x, after 2 ms: a stage slower than the one before it. */
static int pipe_slow(fp_task_ctx *ctx, const char *args, size_t len)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	return fp_task_return(ctx, args, len);
}

/* x -> emits x twice. */
static int pipe_twice(fp_task_ctx *ctx, const char *args, size_t len)
{
	if (fp_emit(ctx, args, len) < 0)
		return 0;
	return fp_emit(ctx, args, len);
}

/* Emits, then returns a value too: against the rules. */
static int pipe_both(fp_task_ctx *ctx, const char *args, size_t len)
{
	fp_emit(ctx, "1", 1);
	return fp_task_return(ctx, "2", 1);
}

/* Emits one good output, then text that is not JSON. */
static int pipe_badjson(fp_task_ctx *ctx, const char *args, size_t len)
{
	fp_emit(ctx, "1", 1);
	fp_emit(ctx, "not json", 8);
	return 0;
}

/* x -> emits x twice, without being declared a generator. */
static int pipe_dup(fp_task_ctx *ctx, const char *args, size_t len)
{
	if (fp_emit(ctx, args, len) < 0)
		return 0;
	return fp_emit(ctx, args, len);
}

/* A generator that emits nothing. */
static int pipe_none(fp_task_ctx *ctx, const char *args, size_t len)
{
	return 0;
}

static const struct fp_task tasks[] = {
	{ "pipe.crash13", pipe_crash13, "n -> n; the worker dies on 13" },
	{ "pipe.inc", pipe_inc, "n -> n + 1" },
	{ "pipe.slow", pipe_slow, "x -> x after 2 ms" },
	{ "pipe.twice", pipe_twice, "x -> emits x twice" },
	{ "pipe.both", pipe_both, "emits and returns: an error" },
	{ "pipe.badjson", pipe_badjson, "emits 1, then text that is not JSON" },
	{ "pipe.none", pipe_none, "a generator that emits nothing" },
	{ "pipe.dup", pipe_dup, "x -> emits x twice (not declared a generator)" },
	{ NULL, NULL, NULL },
};

static const char *const generators[] = { "pipe.twice", "pipe.none", NULL };

FP_MODULE("pipe", tasks, .generators = generators);
