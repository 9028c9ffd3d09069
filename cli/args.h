/*
 * forkpool's command line: the options every subcommand may take, each
 * subcommand's table of the ones it does take, and their parsing into one
 * struct cli_args. Knows nothing of HTTP or of what a command does.
 */
#ifndef FORKPOOL_CLI_ARGS_H
#define FORKPOOL_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses, as issue 17 and `forkpool --help` define them. */
enum {
	CLI_EXIT_OK = 0,          /* every item succeeded (or the command did what it says) */
	CLI_EXIT_FAILED = 1,      /* some items failed; their errors went to stderr */
	CLI_EXIT_USAGE = 2,       /* a mistake on the command line */
	CLI_EXIT_SERVER = 3,      /* the server could not be reached, refused, or --timeout passed */
	CLI_EXIT_LOCAL = 4,       /* the items could not be read or the results written */
};

/* Every option any subcommand knows; a subcommand lists those it takes. */
enum cli_opt {
	OPT_END = 0,
	OPT_HELP,
	OPT_URL,
	OPT_TOKEN_FILE,
	OPT_TIMEOUT,
	OPT_IDEMPOTENCY_KEY,
	OPT_QUIET,
	OPT_DETACH,
	OPT_COMPLETION,
	OPT_VALUES,
	OPT_TASK_TIMEOUT,
	OPT_RETRIES,
	OPT_CHUNKSIZE,
	OPT_CONCURRENCY,
	OPT_REDUCE,
	OPT_BATCH,
	OPT_WORKERS,
	OPT_BUFFER,
	OPT_STATE,
	OPT_LIMIT,
	OPT_JSON,
	OPT_INTERVAL,
	OPT_COUNT_
};

#define CLI_POS_MAX 4

struct cli_args {
	const char *url;              /* --url, FORKPOOL_URL, or the default */
	const char *token_file;       /* --token-file, FORKPOOL_TOKEN_FILE, or NULL */
	int64_t timeout_ms;           /* --timeout; -1: none */
	const char *idempotency_key;
	bool quiet, detach, completion, values, json;
	int64_t task_timeout_ms;      /* -1: the server's */
	int64_t retries, chunksize, batch, limit, concurrency;   /* -1: not given */
	const char *reduce, *workers, *buffer, *state;
	int64_t interval_ms;
	const char *pos[CLI_POS_MAX]; /* positional arguments */
	int npos;
};

struct cli_command {
	const char *name;
	const char *synopsis;         /* after the name: "TASK [FILE]" */
	const char *summary;          /* one line, for `forkpool --help` */
	const char *description;      /* paragraphs, for `forkpool NAME --help` */
	int min_pos, max_pos;
	const enum cli_opt *opts;     /* ends with OPT_END; the common ones are implied */
	int (*run)(const struct cli_args *a);
};

/*
 * Parse argv (after the subcommand's name) for `cmd`. Returns 0, 1 when
 * --help was printed, or CLI_EXIT_USAGE after printing what was wrong.
 */
int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a);
void cli_args_help(const struct cli_command *cmd, FILE *f);
void cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "500ms", "30s", "10m", "1h", or a bare number of `bare_unit_ms`. -EINVAL if not. */
int cli_parse_duration(const char *s, int64_t bare_unit_ms, int64_t *out_ms);

#endif
