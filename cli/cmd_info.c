/* What the server tells about itself: workers, tasks, health. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "http.h"
#include "json.h"
#include "rows.h"

#define REQUEST_TIMEOUT_MS 30000

/*
 * GET path; the answer printed raw (--json, health) or handed to `table`.
 * `ok_statuses`: a non-2xx status that is an answer too (health's 503).
 */
static int get_and_print(const struct cli_args *a, const char *cmd, const char *path,
			 void (*table)(json_t *doc), long also_ok, int *status_out)
{
	struct cli_http h;
	struct cli_req r;
	json_t *doc;
	int rc, err;

	if ((rc = cli_http_init(&h, a, cmd)) != 0)
		return rc;
	cli_req_init(&r, &h);
	r.timeout_ms = REQUEST_TIMEOUT_MS;
	if ((err = cli_req_call(&r, "GET", path)) < 0) {
		rc = cli_http_stopped(&h, err, cmd, NULL);
		goto out;
	}
	if (!(r.result == CURLE_OK && also_ok && r.status == also_ok) &&
	    (rc = cli_req_check(&r, cmd)) != 0)
		goto out;
	if (status_out)
		*status_out = (int)r.status;
	if (!table || a->json) {
		fwrite(r.body ? r.body : "", 1, r.len, stdout);
		if (!r.len || r.body[r.len - 1] != '\n')
			putchar('\n');
	} else if ((doc = cli_req_json(&r, cmd))) {
		table(doc);
		json_decref(doc);
	} else {
		rc = CLI_EXIT_SERVER;
		goto out;
	}
	rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
out:
	cli_req_deinit(&r);
	cli_http_deinit(&h);
	return rc;
}

static void workers_table(json_t *doc)
{
	json_t *w, *p = json_object_get(doc, "pool");
	size_t i;
	char row[512];

	cli_worker_head(row, sizeof(row));
	puts(row);
	json_array_foreach(json_object_get(doc, "workers"), i, w) {
		cli_worker_row(w, row, sizeof(row));
		puts(row);
	}
	printf("pool: %lld workers, %lld alive, %lld able; %lld queued, %lld running; %lld done,"
	       " %lld failed; %lld crashes, %lld timeouts, %lld recycles; %s\n",
	       cli_json_int(p, "workers"), cli_json_int(p, "alive"), cli_json_int(p, "able"),
	       cli_json_int(p, "queued"), cli_json_int(p, "running"), cli_json_int(p, "done"),
	       cli_json_int(p, "failed"), cli_json_int(p, "crashes"), cli_json_int(p, "timeouts"),
	       cli_json_int(p, "recycles"),
	       json_is_true(json_object_get(p, "healthy")) ? "healthy" : "unhealthy");
}

static void tasks_table(json_t *doc)
{
	json_t *t;
	size_t i;

	printf("%-20s  %-12s  %-9s  %s\n", "TASK", "MODULE", "GENERATOR", "DOC");
	json_array_foreach(json_object_get(doc, "tasks"), i, t)
		printf("%-20s  %-12s  %-9s  %s\n", cli_json_str(t, "name", "?"), cli_json_str(t, "module", "?"),
		       json_is_true(json_object_get(t, "generator")) ? "yes" : "no",
		       cli_json_str(t, "doc", ""));
}

static int run_workers(const struct cli_args *a)
{
	return get_and_print(a, "workers", "/v1/workers", workers_table, 0, NULL);
}

static int run_tasks(const struct cli_args *a)
{
	return get_and_print(a, "tasks", "/v1/tasks", tasks_table, 0, NULL);
}

/* 503 is health's answer when no worker can run or the server drains: exit status 1. */
static int run_health(const struct cli_args *a)
{
	int status = 0, rc = get_and_print(a, "health", "/v1/health", NULL, 503, &status);

	return rc == 0 && status != 200 ? CLI_EXIT_FAILED : rc;
}

static const enum cli_opt json_opts[] = { OPT_JSON, OPT_END };
static const enum cli_opt no_opts[] = { OPT_END };

const struct cli_command cli_cmd_workers = {
	.name = "workers",
	.synopsis = "",
	.summary = "list the worker processes and the pool's counters",
	.description = "Lists each worker: slot, pid, exec pool (- for C tasks), generation, state,\n"
		"tasks done of its limit (0: none), RSS, the task it runs; then the pool's counters.",
	.min_pos = 0, .max_pos = 0,
	.opts = json_opts,
	.run = run_workers,
};

const struct cli_command cli_cmd_tasks = {
	.name = "tasks",
	.synopsis = "",
	.summary = "list the tasks the server can run",
	.description = "Lists the tasks: name, module (or exec pool), whether it is a generator, doc.",
	.min_pos = 0, .max_pos = 0,
	.opts = json_opts,
	.run = run_tasks,
};

const struct cli_command cli_cmd_health = {
	.name = "health",
	.synopsis = "",
	.summary = "print the server's health; exit status 1 unless it is ok",
	.description = "Prints /v1/health (JSON: status, backend, workers, able, queued, running,\n"
		"version, uptime). Exit status 0 when the status is ok, 1 when the server answers\n"
		"that it is unhealthy or draining, 3 when it cannot be reached.",
	.min_pos = 0, .max_pos = 0,
	.opts = no_opts,
	.run = run_health,
};
