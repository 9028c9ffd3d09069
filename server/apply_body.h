/*
 * The body of POST /v1/apply that clients mostly send,
 *
 *   {"task":"square","args":7}
 *
 * read without building a JSON tree: a jansson parse, json_dumps() of the
 * args and the tree's free were a quarter of the master's instructions per
 * apply under many clients (docs/PROFILE-http-apply.md).
 *
 * Only a strict subset is taken: an object whose members are "task" (a
 * string of printable ASCII without escapes) and optionally "args" (an
 * integer of at most 18 digits other than -0, a string of printable ASCII
 * without escapes, true, false or null), each once, with JSON whitespace
 * between tokens. For those, the args text is exactly what json_dumps()
 * would make of jansson's value. Anything else returns false, and the
 * handler parses the body with jansson as before, errors included
 * (tests/test-apply-body.c holds the two side by side).
 */
#ifndef FP_SERVER_APPLY_BODY_H
#define FP_SERVER_APPLY_BODY_H

#include <stdbool.h>
#include <stddef.h>

/* Task names longer than this take jansson's way. */
#define FP_APPLY_TASK_MAX 255

struct fp_apply_body {
	char task[FP_APPLY_TASK_MAX + 1];   /* NUL-terminated */
	const char *args;                   /* into the body, or "null" */
	size_t args_len;
};

/* True when `body` is of the subset above; *out then says what it holds. */
bool fp_apply_body_plain(const char *body, size_t len, struct fp_apply_body *out);

#endif
