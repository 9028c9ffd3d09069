/*
 * Following a submitted job to its end: its results streamed from
 * GET /v1/jobs/ID/results to stdout while the job's document, polled,
 * drives the progress bar; or the document alone, long-polled until the job
 * finishes. Each returns the command's exit status.
 */
#ifndef FORKPOOL_CLI_FOLLOW_H
#define FORKPOOL_CLI_FOLLOW_H

#include <stdbool.h>

#include <jansson.h>

#include "args.h"
#include "http.h"

struct cli_follow {
	const char *cmd;
	const char *id;
	const char *order;      /* "input", "completion", or NULL: the job's own */
	bool values;
	bool quiet;
};

/* 0 when every item succeeded, 1 when some failed, else as cli_req_check(). */
int cli_follow_results(struct cli_http *h, const struct cli_follow *f);

/*
 * Until the job finishes: its last document in *doc (a new reference) and
 * 0, or an exit status with the reason printed.
 */
int cli_follow_wait(struct cli_http *h, const struct cli_follow *f, json_t **doc, char **raw);

/* A job's document has finished: done, failed or cancelled. */
bool cli_job_finished(json_t *doc);

#endif
