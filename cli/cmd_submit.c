/*
 * map, apply and pipeline: the items (streamed from a file or stdin, or one
 * argument) submitted as a job, then its results followed to stdout; or,
 * with --detach, its id printed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "follow.h"
#include "http.h"
#include "progress.h"
#include "upload.h"

/* The bar shows bytes sent this often while the items upload. */
#define UPLOAD_STEP_MS 100
/* After Ctrl-C with the body sent, the answer naming the job is awaited this long. */
#define ANSWER_WAIT_MS 2000

/* The job's id in a submission's answer (a new string), or NULL. */
static char *answer_id(struct cli_req *r)
{
	json_t *doc = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	const char *id = json_string_value(json_object_get(doc, "id"));
	char *copy = id ? strdup(id) : NULL;

	json_decref(doc);
	return copy;
}

/*
 * Ctrl-C once the whole body was sent: the job is the server's already, so
 * its answer is awaited a moment (not past a second Ctrl-C) to name the job
 * that goes on.
 */
static int interrupted_after_sending(struct cli_http *h, struct cli_req *r, const char *cmd)
{
	int64_t until = cli_now_ms() + ANSWER_WAIT_MS;
	char *id = NULL;
	int rc;

	while (!r->done && cli_now_ms() < until && cli_http_step(h, UPLOAD_STEP_MS, -1) == 0)
		;
	if (r->done && r->result == CURLE_OK && r->status == 202)
		id = answer_id(r);
	cli_req_abort(r);
	rc = cli_http_stopped(h, -EINTR, cmd, id);
	free(id);
	return rc;
}

/*
 * POST the request r is set up for (its body in r->upload or r->post) and
 * take the job's id from the answer into *id. Returns 0 or an exit status.
 */
static int submit(struct cli_http *h, struct cli_req *r, const char *cmd, const char *path,
		  const char *ctype, bool quiet, char **id)
{
	struct cli_progress bar;
	int err = 0;

	*id = NULL;
	cli_progress_init(&bar, quiet || !r->upload);
	if (cli_req_start(r, "POST", path, ctype) < 0) {
		fprintf(stderr, "forkpool %s: out of memory\n", cmd);
		return CLI_EXIT_LOCAL;
	}
	while (!r->done) {
		if ((err = cli_http_step(h, UPLOAD_STEP_MS, -1)) < 0)
			break;
		if (r->upload)
			cli_progress_sent(&bar, r->upload->sent);
	}
	cli_progress_clear(&bar);
	if (err == -EINTR && (!r->upload || r->upload->eof))
		return interrupted_after_sending(h, r, cmd);
	if (err < 0) {
		cli_req_abort(r);
		return cli_http_stopped(h, err, cmd, NULL);
	}
	if (r->upload && r->upload->err) {
		fprintf(stderr, "forkpool %s: cannot read the items from %s: %s\n", cmd,
			r->upload->name, strerror(-r->upload->err));
		return CLI_EXIT_LOCAL;
	}
	if ((err = cli_req_check(r, cmd)) != 0)
		return err;
	if (!(*id = answer_id(r))) {
		fprintf(stderr, "forkpool %s: the server's answer names no job: %.200s\n", cmd,
			r->body ? r->body : "");
		return CLI_EXIT_SERVER;
	}
	return 0;
}

/* After the submission: the id alone (--detach), or the results. */
static int follow(struct cli_http *h, const struct cli_args *a, const char *cmd, const char *id,
		  const char *order, bool values, bool quiet)
{
	struct cli_follow f = { .cmd = cmd, .id = id, .order = order, .values = values,
				.quiet = quiet };

	if (a->detach) {
		printf("%s\n", id);
		return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
	}
	return cli_follow_results(h, &f);
}

/* The options map and pipeline share, in the query. */
static int common_query(const struct cli_args *a, char **path)
{
	if (a->task_timeout_ms >= 0 && cli_path_addi(path, "timeout_ms", a->task_timeout_ms) < 0)
		return -ENOMEM;
	if (a->retries >= 0 && cli_path_addi(path, "retries", a->retries) < 0)
		return -ENOMEM;
	if (a->concurrency >= 0 && cli_path_addi(path, "concurrency", a->concurrency) < 0)
		return -ENOMEM;
	return 0;
}

/* map and pipeline: NDJSON items from a file or stdin, streamed. */
static int run_items(const struct cli_args *a, const char *cmd, char *path, const char *file,
		     const char *order)
{
	struct cli_upload up;
	struct cli_http h;
	struct cli_req r;
	char *id = NULL;
	int rc, err;

	if ((err = cli_upload_open(&up, file)) < 0) {
		fprintf(stderr, "forkpool %s: cannot open %s: %s\n", cmd, file, strerror(-err));
		free(path);
		return CLI_EXIT_USAGE;
	}
	if ((rc = cli_http_init(&h, a, cmd)) != 0) {
		cli_upload_deinit(&up);
		free(path);
		return rc;
	}
	cli_req_init(&r, &h);
	r.upload = &up;
	rc = submit(&h, &r, cmd, path, "application/x-ndjson", a->quiet, &id);
	cli_req_deinit(&r);
	cli_upload_deinit(&up);
	if (rc == 0)
		rc = follow(&h, a, cmd, id, order, a->values, a->quiet);
	free(id);
	free(path);
	cli_http_deinit(&h);
	return rc;
}

static int run_map(const struct cli_args *a)
{
	char *path = strdup("/v1/map");

	if (!path || cli_path_add(&path, "task", a->pos[0]) < 0 || common_query(a, &path) < 0 ||
	    (a->chunksize >= 0 && cli_path_addi(&path, "chunksize", a->chunksize) < 0)) {
		free(path);
		fprintf(stderr, "forkpool map: out of memory\n");
		return CLI_EXIT_LOCAL;
	}
	return run_items(a, "map", path, a->npos > 1 ? a->pos[1] : NULL,
			 a->completion ? "completion" : "input");
}

static int run_pipeline(const struct cli_args *a)
{
	char *path = strdup("/v1/pipelines");

	if (!*a->pos[0] || a->pos[0][strlen(a->pos[0]) - 1] == ',' || a->pos[0][0] == ',' ||
	    strstr(a->pos[0], ",,")) {
		cli_usage_error(&cli_cmd_pipeline, "STAGES is TASK,TASK,... with no empty stage,"
				" not '%s'", a->pos[0]);
		free(path);
		return CLI_EXIT_USAGE;
	}
	/* The order is the pipeline's own, chosen here: input order unless --completion. */
	if (!path || cli_path_add(&path, "stages", a->pos[0]) < 0 ||
	    cli_path_add(&path, "ordered", a->completion ? "false" : "true") < 0 ||
	    common_query(a, &path) < 0 ||
	    (a->reduce && cli_path_add(&path, "reduce", a->reduce) < 0) ||
	    (a->batch >= 0 && cli_path_addi(&path, "batch", a->batch) < 0) ||
	    (a->workers && cli_path_add(&path, "workers", a->workers) < 0) ||
	    (a->buffer && cli_path_add(&path, "buffer", a->buffer) < 0)) {
		free(path);
		fprintf(stderr, "forkpool pipeline: out of memory\n");
		return CLI_EXIT_LOCAL;
	}
	return run_items(a, "pipeline", path, a->npos > 1 ? a->pos[1] : NULL, NULL);
}

static int run_apply(const struct cli_args *a)
{
	json_error_t je;
	json_t *args = NULL, *body;
	struct cli_http h;
	struct cli_req r;
	char *id = NULL;
	int rc;

	if (a->npos > 1) {
		args = json_loads(a->pos[1], JSON_DECODE_ANY, &je);
		if (!args) {
			cli_usage_error(&cli_cmd_apply, "ARGS-JSON is not JSON (column %d): %s",
					je.column, je.text);
			return CLI_EXIT_USAGE;
		}
	}
	body = json_pack("{s:s, s:o}", "task", a->pos[0], "args", args ? args : json_null());
	if (body && a->task_timeout_ms >= 0)
		json_object_set_new(body, "timeout_ms", json_integer(a->task_timeout_ms));
	if (body && a->retries >= 0)
		json_object_set_new(body, "retries", json_integer(a->retries));
	if (body && a->concurrency >= 0)
		json_object_set_new(body, "concurrency", json_integer(a->concurrency));
	if ((rc = cli_http_init(&h, a, "apply")) != 0) {
		json_decref(body);
		return rc;
	}
	cli_req_init(&r, &h);
	if (!body || !(r.post = json_dumps(body, JSON_COMPACT))) {
		fprintf(stderr, "forkpool apply: out of memory\n");
		rc = CLI_EXIT_LOCAL;
	} else {
		rc = submit(&h, &r, "apply", "/v1/apply", "application/json", true, &id);
	}
	json_decref(body);
	cli_req_deinit(&r);
	/* The value as the task made it, from the results stream (never re-encoded); one item needs no bar. */
	if (rc == 0)
		rc = follow(&h, a, "apply", id, NULL, true, true);
	free(id);
	cli_http_deinit(&h);
	return rc;
}

static const enum cli_opt map_opts[] = {
	OPT_COMPLETION, OPT_VALUES, OPT_QUIET, OPT_DETACH, OPT_TASK_TIMEOUT, OPT_RETRIES,
	OPT_CHUNKSIZE, OPT_CONCURRENCY, OPT_IDEMPOTENCY_KEY, OPT_END
};

const struct cli_command cli_cmd_map = {
	.name = "map",
	.synopsis = "TASK [FILE]",
	.summary = "run TASK on every item of FILE (NDJSON; - or none: stdin), results to stdout",
	.description =
		"Runs TASK on each item of FILE, one JSON value a line (NDJSON; FILE - or no FILE:\n"
		"stdin). The items are streamed to the server as they are read, never held in\n"
		"memory. Results go to stdout as the server's NDJSON lines, {\"index\":I,\"value\":V}\n"
		"or {\"index\":I,\"error\":{\"type\",\"message\"}}, in input order (--completion: as\n"
		"items finish); each failed item is also named on stderr: its index, error type\n"
		"and message. On a terminal, a progress bar on stderr.",
	.min_pos = 1, .max_pos = 2,
	.opts = map_opts,
	.run = run_map,
};

static const enum cli_opt pipeline_opts[] = {
	OPT_COMPLETION, OPT_VALUES, OPT_QUIET, OPT_DETACH, OPT_REDUCE, OPT_BATCH, OPT_WORKERS,
	OPT_BUFFER, OPT_TASK_TIMEOUT, OPT_RETRIES, OPT_CONCURRENCY, OPT_IDEMPOTENCY_KEY, OPT_END
};

const struct cli_command cli_cmd_pipeline = {
	.name = "pipeline",
	.synopsis = "STAGE,STAGE... [FILE]",
	.summary = "run the items of FILE through tasks one after the other",
	.description =
		"Every output of a stage is an item of the next one as soon as it exists (a\n"
		"generator stage gives zero or more outputs per item). Items and results as for\n"
		"map; a result's index is the input it came from, and a failure names its stage.\n"
		"With --reduce TASK every output is folded into one result.",
	.min_pos = 1, .max_pos = 2,
	.opts = pipeline_opts,
	.run = run_pipeline,
};

static const enum cli_opt apply_opts[] = {
	OPT_DETACH, OPT_TASK_TIMEOUT, OPT_RETRIES, OPT_CONCURRENCY, OPT_IDEMPOTENCY_KEY, OPT_END
};

const struct cli_command cli_cmd_apply = {
	.name = "apply",
	.synopsis = "TASK [ARGS-JSON]",
	.summary = "run TASK once on ARGS-JSON (default null) and print its value",
	.description =
		"Runs TASK once with ARGS-JSON (one JSON value, default null) and prints its value\n"
		"on stdout as the task made it; a failure is named on stderr (exit status 1).",
	.min_pos = 1, .max_pos = 2,
	.opts = apply_opts,
	.run = run_apply,
};
