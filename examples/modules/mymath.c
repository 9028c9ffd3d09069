/*
 * A task module: C functions that forkpoold (--module) or an embedding
 * program (opts.modules) runs in its workers. JSON text in, JSON text out;
 * the arguments are read here with jansson, as any JSON library would do.
 *
 * Build and run (from the source tree; see the README, "Task modules"):
 *   cc -shared -fPIC -Iinclude examples/modules/mymath.c -ljansson -o libmymath.so
 *   build/server/forkpoold --listen 127.0.0.1:8081 --module ./libmymath.so
 *   curl -s -X POST '127.0.0.1:8081/v1/apply?wait=5' \
 *        -H 'Content-Type: application/json' -d '{"task":"add","args":[2,3]}'
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <forkpool/task.h>
#include <jansson.h>

/* [a, b] -> a + b: an array of two integers. */
static int add(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_int_t a, b;
	json_error_t err;
	json_t *in = json_loadb(args, len, 0, &err);
	char out[32];
	int n;

	if (!in || json_unpack(in, "[II!]", &a, &b) < 0) {
		json_decref(in);
		return fp_task_error(ctx, "add: expected [a, b], two integers");
	}
	json_decref(in);
	n = snprintf(out, sizeof(out), "%lld", (long long)(a + b));
	return fp_task_return(ctx, out, (size_t)n);
}

/* {"name": "Ada", "excited": true} -> "Hello, Ada!": an object, one member optional. */
static int greet(fp_task_ctx *ctx, const char *args, size_t len)
{
	const char *name;
	int excited = 0, rc = -ENOMEM;
	json_error_t err;
	json_t *in = json_loadb(args, len, 0, &err);
	json_t *value;
	char *out;

	if (!in || json_unpack_ex(in, &err, 0, "{s:s, s?b}", "name", &name, "excited", &excited) < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "greet: expected {\"name\": string, \"excited\": bool}: %s",
			 err.text);
		json_decref(in);
		return fp_task_error(ctx, msg);
	}
	/* The value is JSON text too: json_dumps quotes and escapes the string. */
	value = json_sprintf("Hello, %s%s", name, excited ? "!" : ".");
	out = value ? json_dumps(value, JSON_ENCODE_ANY) : NULL;
	if (out)
		rc = fp_task_return(ctx, out, strlen(out));
	free(out);
	json_decref(value);
	json_decref(in);
	return rc; /* -ENOMEM fails the item with "Cannot allocate memory" */
}

/* n -> each decimal digit of n, one output each: a generator (fp_emit). */
static int digits(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_t *in = json_loadb(args, len, JSON_DECODE_ANY, NULL);
	char text[32];

	if (!json_is_integer(in) || json_integer_value(in) < 0) {
		json_decref(in);
		return fp_task_error(ctx, "digits: expected a non-negative integer");
	}
	snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(in));
	json_decref(in);
	for (const char *p = text; *p; p++) {
		int rc = fp_emit(ctx, p, 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static const struct fp_task tasks[] = {
	{ "add", add, "[a, b] -> a + b" },
	{ "greet", greet, "{name, excited?} -> a greeting" },
	{ "digits", digits, "n -> emits each decimal digit" },
	{ NULL },
};

FP_MODULE("mymath", tasks, .generators = (const char *const[]){ "digits", NULL });
