/* POST /v1/apply's usual body read by hand (apply_body.h says which bodies). */
#include <string.h>

#include "apply_body.h"
#include "ndjson.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* A string of printable ASCII without escapes at p: its end past the quote, or NULL. */
static const char *plain_string(const char *p, const char *end)
{
	if (p == end || *p != '"')
		return NULL;
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			return p + 1;
		if (c < 0x20 || c > 0x7e || c == '\\')
			return NULL;
	}
	return NULL;
}

/*
 * The value at p up to the next ',', '}' or whitespace: its end when it is a
 * value whose text json_dumps() gives back unchanged, else NULL. A plain
 * number with a fraction is not one (1.50 comes back as 1.5), nor is -0.
 */
static const char *plain_args(const char *p, const char *end)
{
	const char *e;

	if (p < end && *p == '"')
		return plain_string(p, end);
	for (e = p; e < end && *e != ',' && *e != '}' && *e != ' ' && *e != '\t' &&
	     *e != '\n' && *e != '\r'; e++)
		if (*e == '.')
			return NULL;
	if (e - p == 2 && p[0] == '-' && p[1] == '0')
		return NULL;
	return fp_json_plain_scalar(p, (size_t)(e - p)) ? e : NULL;
}

bool fp_apply_body_plain(const char *body, size_t len, struct fp_apply_body *out)
{
	const char *p = body, *end = body + len, *k, *v;
	bool have_task = false, have_args = false;
	size_t klen;

	out->args = "null";
	out->args_len = 4;
	p = skip_ws(p, end);
	if (p == end || *p++ != '{')
		return false;
	for (;;) {
		p = skip_ws(p, end);
		k = p;
		if (!(p = plain_string(p, end)))
			return false;
		klen = (size_t)(p - k) - 2;
		p = skip_ws(p, end);
		if (p == end || *p++ != ':')
			return false;
		p = skip_ws(p, end);
		v = p;
		if (klen == 4 && !memcmp(k + 1, "task", 4) && !have_task) {
			if (!(p = plain_string(p, end)) || (size_t)(p - v) - 2 > FP_APPLY_TASK_MAX)
				return false;
			memcpy(out->task, v + 1, (size_t)(p - v) - 2);
			out->task[(p - v) - 2] = '\0';
			have_task = true;
		} else if (klen == 4 && !memcmp(k + 1, "args", 4) && !have_args) {
			if (!(p = plain_args(p, end)))
				return false;
			out->args = v;
			out->args_len = (size_t)(p - v);
			have_args = true;
		} else {
			return false;
		}
		p = skip_ws(p, end);
		if (p == end)
			return false;
		if (*p == '}')
			break;
		if (*p++ != ',')
			return false;
	}
	return have_task && skip_ws(p + 1, end) == end;
}
