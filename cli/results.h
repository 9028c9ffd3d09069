/*
 * A job's results as the client prints them: the server's NDJSON lines
 * passed on to stdout byte for byte (or, with --values, each value alone),
 * and each failed item named on stderr by index, type and message. Lines
 * arrive in pieces of any size and are put together here.
 */
#ifndef FORKPOOL_CLI_RESULTS_H
#define FORKPOOL_CLI_RESULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct cli_progress;

struct cli_results {
	const char *cmd;            /* for messages: "map" */
	bool values;                /* --values */
	FILE *out;
	struct cli_progress *bar;   /* cleared before a message; may be NULL */
	bool out_tty;               /* out is the bar's terminal too: cleared before each line */
	char *line;                 /* a line not ended yet */
	size_t len, cap;
	size_t lines, failed;
	int err;                    /* -EPIPE etc. writing out, -EPROTO for a line not JSON */
};

void cli_results_init(struct cli_results *res, const char *cmd, bool values, FILE *out,
		      struct cli_progress *bar);
void cli_results_deinit(struct cli_results *res);
/* Returns 0, or res->err once writing failed. */
int cli_results_feed(struct cli_results *res, const char *data, size_t len);
/* The stream ended: a last line without its newline is taken too; stdout flushed. */
int cli_results_end(struct cli_results *res);

#endif
