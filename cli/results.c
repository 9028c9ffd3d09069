/* Results lines to stdout and stderr (results.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "progress.h"
#include "results.h"

void cli_results_init(struct cli_results *res, const char *cmd, bool values, FILE *out,
		      struct cli_progress *bar)
{
	memset(res, 0, sizeof(*res));
	res->cmd = cmd;
	res->values = values;
	res->out = out;
	res->bar = bar;
	res->out_tty = isatty(fileno(out));
}

void cli_results_deinit(struct cli_results *res)
{
	free(res->line);
	res->line = NULL;
	res->len = res->cap = 0;
}

/*
 * The value of `{"index":N,"value":V}` as the server writes every value's
 * line (server/api_jobs.c value_line()): V's bytes exactly as the task made
 * them, which re-encoding with jansson would not keep (0.1 would come back
 * as 0.10000000000000001). NULL for any other line.
 */
static const char *plain_value(const char *s, size_t len, size_t *vlen)
{
	const char *p = s, *end = s + len;

	if (len < 20 || memcmp(p, "{\"index\":", 9) != 0)
		return NULL;
	p += 9;
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	if ((size_t)(end - p) < 10 || memcmp(p, ",\"value\":", 9) != 0 || end[-1] != '}')
		return NULL;
	p += 9;
	*vlen = (size_t)(end - 1 - p);
	return p;
}

static void item_failed(struct cli_results *res, json_t *line)
{
	json_t *e = json_object_get(line, "error"), *stage = json_object_get(line, "stage");
	const char *type = json_string_value(json_object_get(e, "type"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	json_int_t index = json_integer_value(json_object_get(line, "index"));

	res->failed++;
	if (res->bar)
		cli_progress_clear(res->bar);
	if (json_is_integer(stage))
		fprintf(stderr, "forkpool %s: item %lld (stage %lld): %s: %s\n", res->cmd,
			(long long)index, (long long)json_integer_value(stage),
			type ? type : "error", msg ? msg : "");
	else
		fprintf(stderr, "forkpool %s: item %lld: %s: %s\n", res->cmd, (long long)index,
			type ? type : "error", msg ? msg : "");
}

static int put(struct cli_results *res, const char *data, size_t len)
{
	if (res->out_tty && res->bar)
		cli_progress_clear(res->bar);
	if (fwrite(data, 1, len, res->out) != len || putc('\n', res->out) == EOF) {
		res->err = errno ? -errno : -EIO;
		return res->err;
	}
	return 0;
}

static int take_line(struct cli_results *res, const char *s, size_t len)
{
	const char *v;
	size_t vlen;
	json_error_t je;
	json_t *line;
	int rc = 0;

	if (len && s[len - 1] == '\r')
		len--;
	if (!len)
		return 0;
	res->lines++;
	if ((v = plain_value(s, len, &vlen)))
		return res->values ? put(res, v, vlen) : put(res, s, len);
	line = json_loadb(s, len, 0, &je);
	if (!json_is_object(line)) {
		if (res->bar)
			cli_progress_clear(res->bar);
		fprintf(stderr, "forkpool %s: the server sent a result line that is not a JSON"
			" object: %.80s\n", res->cmd, s);
		json_decref(line);
		res->err = -EPROTO;
		return res->err;
	}
	if (json_object_get(line, "error"))
		item_failed(res, line);
	if (!res->values) {
		rc = put(res, s, len);
	} else if (json_object_get(line, "value")) {
		char *text = json_dumps(json_object_get(line, "value"), JSON_ENCODE_ANY | JSON_COMPACT);
		rc = text ? put(res, text, strlen(text)) : -ENOMEM;
		free(text);
	}
	json_decref(line);
	if (rc)
		res->err = rc;
	return rc;
}

int cli_results_feed(struct cli_results *res, const char *data, size_t len)
{
	const char *end = data + len, *nl;

	if (res->err)
		return res->err;
	while (data < end) {
		nl = memchr(data, '\n', (size_t)(end - data));
		if (!nl) {
			/* Keep the piece for the next call. */
			if (res->len + (size_t)(end - data) > res->cap) {
				size_t cap = res->cap ? res->cap : 4096;
				char *p;
				while (cap < res->len + (size_t)(end - data))
					cap *= 2;
				if (!(p = realloc(res->line, cap)))
					return res->err = -ENOMEM;
				res->line = p;
				res->cap = cap;
			}
			memcpy(res->line + res->len, data, (size_t)(end - data));
			res->len += (size_t)(end - data);
			break;
		}
		if (res->len) {
			/* The end of a line begun in an earlier piece. */
			int rc;
			size_t n = (size_t)(nl - data);
			if (res->len + n > res->cap) {
				char *p = realloc(res->line, res->len + n);
				if (!p)
					return res->err = -ENOMEM;
				res->line = p;
				res->cap = res->len + n;
			}
			memcpy(res->line + res->len, data, n);
			rc = take_line(res, res->line, res->len + n);
			res->len = 0;
			if (rc)
				return rc;
		} else if (take_line(res, data, (size_t)(nl - data))) {
			return res->err;
		}
		data = nl + 1;
	}
	return res->err;
}

int cli_results_end(struct cli_results *res)
{
	if (!res->err && res->len) {
		take_line(res, res->line, res->len);
		res->len = 0;
	}
	if (!res->err && fflush(res->out) == EOF)
		res->err = errno ? -errno : -EIO;
	return res->err;
}
