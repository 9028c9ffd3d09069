/*
 * NDJSON request bodies (a map's or a pipeline's items, one JSON value a
 * line): cut into items in place and check that each one is JSON.
 *
 * A million-item body is a million checks, so the values a client mostly
 * sends (numbers, short plain strings, true/false/null) are checked by hand;
 * anything else goes to jansson. The hand check accepts only what jansson
 * accepts too, so a body is refused exactly when jansson would refuse it
 * (tests/test-ndjson.c holds the two side by side).
 */
#ifndef FP_SERVER_NDJSON_H
#define FP_SERVER_NDJSON_H

#include <stdbool.h>
#include <stddef.h>

#include "forkpool.h"

/* Where a body is not NDJSON: its line (from 1), jansson's column and text. */
struct fp_ndjson_error {
	size_t line;
	int column;
	char text[160];
};

/*
 * Split `body` at '\n'; each line is trimmed of spaces, tabs and CRs, and
 * empty lines are skipped. On success *out holds *n items pointing into
 * `body` (release with fp_ndjson_free(); it is fp_mem_alloc() memory, so a job may
 * take it: fp_jobs_submit_map_taking()). -EINVAL with `err` filled when a
 * line is not JSON, -ENOMEM; *out is NULL then.
 */
int fp_ndjson_split(const char *body, size_t len, struct fp_buf **out, size_t *n,
		    struct fp_ndjson_error *err);
void fp_ndjson_free(struct fp_buf *items);

/*
 * True when `s` (trimmed already) is an integer of at most 18 digits, a number
 * with a fraction and no exponent of at most 24 characters, true, false, null,
 * or a string of printable ASCII without escapes: JSON for certain, and
 * within what jansson reads without overflow. False says nothing.
 */
bool fp_json_plain_scalar(const char *s, size_t len);

#endif
