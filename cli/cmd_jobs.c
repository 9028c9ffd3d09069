/*
 * The job commands: jobs (the list), status, wait, results and cancel of a
 * job by its id.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "commands.h"
#include "follow.h"
#include "http.h"
#include "json.h"
#include "rows.h"

#define REQUEST_TIMEOUT_MS 30000
/* A DELETE of a running job waits up to 5 s on the server for it to settle. */
#define CANCEL_TIMEOUT_MS 40000

/* GET or DELETE path into r: 0, or an exit status with the reason printed. */
static int request(struct cli_req *r, const char *cmd, const char *method, const char *path)
{
	int err;

	if (!r->timeout_ms)
		r->timeout_ms = REQUEST_TIMEOUT_MS;
	if ((err = cli_req_call(r, method, path)) < 0)
		return cli_http_stopped(r->http, err, cmd, NULL);
	return cli_req_check(r, cmd);
}

/* The answer as the server wrote it, on its own line. */
static int print_raw(const struct cli_req *r)
{
	fwrite(r->body ? r->body : "", 1, r->len, stdout);
	if (!r->len || r->body[r->len - 1] != '\n')
		putchar('\n');
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
}

/* A job id goes into a path: refuse what the server could never have made. */
static int check_id(const struct cli_command *cmd, const char *id)
{
	if (!*id || strspn(id, "0123456789abcdefABCDEF") != strlen(id) || strlen(id) > 64) {
		cli_usage_error(cmd, "'%s' is not a job id (32 hex digits, as map --detach prints)",
				id);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

/* --- jobs ---------------------------------------------------------------- */

static int run_jobs(const struct cli_args *a)
{
	struct cli_http h;
	struct cli_req r;
	char *path;
	json_t *doc = NULL, *jobs, *j;
	size_t i;
	int rc;

	static const char *const states[] = { "queued", "running", "done", "failed", "cancelled" };
	bool known = !a->state;

	for (i = 0; a->state && i < sizeof(states) / sizeof(states[0]); i++)
		known |= strcmp(a->state, states[i]) == 0;
	if (!known) {
		cli_usage_error(&cli_cmd_jobs, "--state is queued, running, done, failed or"
				" cancelled, not '%s'", a->state);
		return CLI_EXIT_USAGE;
	}
	if (a->limit > 1000) {
		cli_usage_error(&cli_cmd_jobs, "--limit is at most 1000");
		return CLI_EXIT_USAGE;
	}
	path = strdup("/v1/jobs");
	if (!path || (a->state && cli_path_add(&path, "state", a->state) < 0) ||
	    (a->limit > 0 && cli_path_addi(&path, "limit", a->limit) < 0)) {
		free(path);
		return CLI_EXIT_LOCAL;
	}
	if ((rc = cli_http_init(&h, a, "jobs")) != 0) {
		free(path);
		return rc;
	}
	cli_req_init(&r, &h);
	if ((rc = request(&r, "jobs", "GET", path)) != 0)
		goto out;
	if (a->json) {
		rc = print_raw(&r);
		goto out;
	}
	if (!(doc = cli_req_json(&r, "jobs"))) {
		rc = CLI_EXIT_SERVER;
		goto out;
	}
	jobs = json_object_get(doc, "jobs");
	printf("%-32s  %-8s  %-9s  %15s  %7s  %-24s  %s\n", "ID", "KIND", "STATE", "DONE/TOTAL",
	       "FAILED", "CREATED", "TASK");
	json_array_foreach(jobs, i, j) {
		long long fin, total;
		char counts[48];

		cli_job_counts(j, &fin, &total);
		snprintf(counts, sizeof(counts), "%lld/%lld", fin, total);
		printf("%-32s  %-8s  %-9s  %15s  %7lld  %-24s  %s\n", cli_json_str(j, "id", "-"),
		       cli_json_str(j, "kind", "-"), cli_json_str(j, "state", "-"), counts,
		       cli_json_int(j, "failed"), cli_json_str(j, "created_at", "-"),
		       cli_json_str(j, "task", "-"));
	}
	if (!json_is_null(json_object_get(doc, "next")) && isatty(STDOUT_FILENO))
		fprintf(stderr, "(more: --limit N shows up to 1000)\n");
	rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
out:
	json_decref(doc);
	cli_req_deinit(&r);
	cli_http_deinit(&h);
	free(path);
	return rc;
}

/* --- status, cancel ------------------------------------------------------ */

static int one_request(const struct cli_command *cmd, const struct cli_args *a,
		       const char *method)
{
	struct cli_http h;
	struct cli_req r;
	char *path;
	int rc;

	if ((rc = check_id(cmd, a->pos[0])) != 0)
		return rc;
	if (asprintf(&path, "/v1/jobs/%s", a->pos[0]) < 0)
		return CLI_EXIT_LOCAL;
	if ((rc = cli_http_init(&h, a, cmd->name)) != 0) {
		free(path);
		return rc;
	}
	cli_req_init(&r, &h);
	if (!strcmp(method, "DELETE"))
		r.timeout_ms = CANCEL_TIMEOUT_MS;
	rc = request(&r, cmd->name, method, path);
	if (rc == 0 && r.status == 204)
		fprintf(stderr, "forkpool %s: job %s had finished: forgotten\n", cmd->name,
			a->pos[0]);
	else if (rc == 0)
		rc = print_raw(&r);
	cli_req_deinit(&r);
	cli_http_deinit(&h);
	free(path);
	return rc;
}

static int run_status(const struct cli_args *a)
{
	return one_request(&cli_cmd_status, a, "GET");
}

static int run_cancel(const struct cli_args *a)
{
	return one_request(&cli_cmd_cancel, a, "DELETE");
}

/* --- wait, results ------------------------------------------------------- */

static int run_wait(const struct cli_args *a)
{
	struct cli_follow f = { .cmd = "wait", .id = a->pos[0], .quiet = a->quiet };
	struct cli_http h;
	json_t *doc;
	char *raw;
	int rc;

	if ((rc = check_id(&cli_cmd_wait, a->pos[0])) != 0 ||
	    (rc = cli_http_init(&h, a, "wait")) != 0)
		return rc;
	rc = cli_follow_wait(&h, &f, &doc, &raw);
	if (rc == 0) {
		fputs(raw, stdout);
		if (!*raw || raw[strlen(raw) - 1] != '\n')
			putchar('\n');
		rc = strcmp(json_string_value(json_object_get(doc, "state")), "done") == 0 ?
			CLI_EXIT_OK : CLI_EXIT_FAILED;
		if (fflush(stdout) != 0)
			rc = CLI_EXIT_LOCAL;
	}
	json_decref(doc);
	free(raw);
	cli_http_deinit(&h);
	return rc;
}

static int run_results(const struct cli_args *a)
{
	/* No --completion: the job's own order (a pipeline's was chosen when it was submitted). */
	struct cli_follow f = { .cmd = "results", .id = a->pos[0], .values = a->values,
				.quiet = a->quiet, .order = a->completion ? "completion" : NULL };
	struct cli_http h;
	int rc;

	if ((rc = check_id(&cli_cmd_results, a->pos[0])) != 0 ||
	    (rc = cli_http_init(&h, a, "results")) != 0)
		return rc;
	rc = cli_follow_results(&h, &f);
	cli_http_deinit(&h);
	return rc;
}

static const enum cli_opt jobs_opts[] = { OPT_STATE, OPT_LIMIT, OPT_JSON, OPT_END };
static const enum cli_opt no_opts[] = { OPT_END };
static const enum cli_opt wait_opts[] = { OPT_QUIET, OPT_END };
static const enum cli_opt results_opts[] = { OPT_COMPLETION, OPT_VALUES, OPT_QUIET, OPT_END };

const struct cli_command cli_cmd_jobs = {
	.name = "jobs",
	.synopsis = "",
	.summary = "list the jobs the server keeps, newest first",
	.description = "Lists the jobs the server keeps (finished ones for --job-ttl), newest first:\n"
		"id, kind, state, items finished of all, failed, when created, task.",
	.min_pos = 0, .max_pos = 0,
	.opts = jobs_opts,
	.run = run_jobs,
};

const struct cli_command cli_cmd_status = {
	.name = "status",
	.synopsis = "ID",
	.summary = "print a job's document (state, counts, times)",
	.description = "Prints job ID's document as the server gives it (JSON): kind, task, state,\n"
		"total, done, failed, created_at, finished_at, and an apply's result or error.",
	.min_pos = 1, .max_pos = 1,
	.opts = no_opts,
	.run = run_status,
};

const struct cli_command cli_cmd_wait = {
	.name = "wait",
	.synopsis = "ID",
	.summary = "wait for a job to finish and print its document",
	.description = "Waits until job ID has finished, with a progress bar on a terminal, then\n"
		"prints its document. Exit status 0 when it is done, 1 when it failed or was\n"
		"cancelled.",
	.min_pos = 1, .max_pos = 1,
	.opts = wait_opts,
	.run = run_wait,
};

const struct cli_command cli_cmd_results = {
	.name = "results",
	.synopsis = "ID",
	.summary = "stream a job's results to stdout, as map prints them",
	.description = "Streams job ID's results to stdout as they come, as map prints them (in the\n"
		"job's order unless --completion; a pipeline's order was chosen at submission),\n"
		"failed items named on stderr.",
	.min_pos = 1, .max_pos = 1,
	.opts = results_opts,
	.run = run_results,
};

const struct cli_command cli_cmd_cancel = {
	.name = "cancel",
	.synopsis = "ID",
	.summary = "cancel a running job, or forget a finished one",
	.description = "Cancels job ID if it runs (its running tasks are killed, its other items end\n"
		"cancelled) and prints its document; forgets it if it had finished.",
	.min_pos = 1, .max_pos = 1,
	.opts = no_opts,
	.run = run_cancel,
};
