/*
 * fuzz-ndjson: NDJSON bodies (server/ndjson.c), cut into items and checked
 * by hand where a line is a plain value. The hand check promises to refuse
 * a body exactly when jansson refuses one of its lines, and to cut it as a
 * line-by-line reading would: each input is held against that reading.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "fuzz_util.h"
#include "ndjson.h"

static bool is_trim(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static bool jansson_accepts(const char *s, size_t len)
{
	json_error_t err;
	json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &err);

	json_decref(j);
	return j != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly the input's size: a read past it is a finding. */
	char *body = malloc(size ? size : 1);
	const char *p, *end, *nl, *s, *e;
	struct fp_ndjson_error err;
	struct fp_buf *items;
	size_t n, k = 0, line = 0, bad = 0;
	bool ok;
	int r;

	FUZZ_CHECK(body);
	memcpy(body, data, size);
	r = fp_ndjson_split(body, size, &items, &n, &err);
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	/* The same body, a line at a time, each judged by jansson. */
	for (p = body, end = body + size; p < end && !bad; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		line++;
		for (s = p; s < nl && is_trim(*s); s++)
			;
		for (e = nl; e > s && is_trim(e[-1]); e--)
			;
		if (s == e)
			continue;
		ok = jansson_accepts(s, (size_t)(e - s));
		/* What the hand check calls plain, jansson must take. */
		FUZZ_CHECK(ok || !fp_json_plain_scalar(s, (size_t)(e - s)));
		if (!ok) {
			bad = line;
			break;
		}
		if (r == 0) {
			FUZZ_CHECK(k < n);
			FUZZ_CHECK(items[k].base == s && items[k].len == (size_t)(e - s));
		}
		k++;
	}
	if (bad) {
		FUZZ_CHECK(r == -EINVAL);
		FUZZ_CHECK(items == NULL && n == 0);
		FUZZ_CHECK(err.line == bad);
		FUZZ_CHECK(err.text[0] != '\0');
	} else {
		FUZZ_CHECK(r == 0);
		FUZZ_CHECK(n == k);
		fp_ndjson_free(items);
	}
	free(body);
	return 0;
}
