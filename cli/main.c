/*
 * forkpool, the command-line client of forkpoold: main() finds the
 * subcommand, parses its arguments and runs it. Every subcommand's own
 * options and help are in its table entry (commands.h).
 */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "commands.h"
#include <forkpool.h>

static const struct cli_command *const commands[] = {
	&cli_cmd_map, &cli_cmd_apply, &cli_cmd_pipeline,
	&cli_cmd_jobs, &cli_cmd_status, &cli_cmd_wait, &cli_cmd_results, &cli_cmd_cancel,
	&cli_cmd_workers, &cli_cmd_tasks, &cli_cmd_health, &cli_cmd_top,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void help(FILE *f)
{
	fprintf(f, "Usage: forkpool COMMAND [ARG...] [OPTION...]\n"
		"The command-line client of forkpoold, the process-pool job service.\n\n"
		"Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char head[48];
		snprintf(head, sizeof(head), "%s %s", commands[i]->name, commands[i]->synopsis);
		fprintf(f, "  %-30s %s\n", head, commands[i]->summary);
	}
	fprintf(f, "\n"
		"Every command takes --url URL (default $FORKPOOL_URL, else http://127.0.0.1:8080;\n"
		"unix:/path for a unix socket), --token-file PATH (default $FORKPOOL_TOKEN_FILE)\n"
		"and --timeout DURATION. `forkpool COMMAND --help` tells the rest.\n\n"
		"  printf '1\\n2\\n3\\n' | forkpool map square   {\"index\":0,\"value\":1} ...\n"
		"  forkpool apply square 7                    49\n"
		"  forkpool pipeline words,lower --reduce count lines.ndjson\n\n"
		"Exit status: 0 success, 1 some items failed (or the job did), 2 a usage error,\n"
		"3 the server could not be reached, refused, or --timeout passed, 4 the items\n"
		"could not be read or the results written, 130 interrupted (the job goes on).\n");
}

int main(int argc, char **argv)
{
	const struct cli_command *cmd = NULL;
	struct cli_args a;
	int rc;

	if (argc < 2) {
		help(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		help(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("forkpool %s\n", fp_version());
		return CLI_EXIT_OK;
	}
	/* `forkpool help map` as `forkpool map --help`. */
	if (!strcmp(argv[1], "help") && argc == 2) {
		help(stdout);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(argv[1], commands[i]->name) ||
		    (!strcmp(argv[1], "help") && argc > 2 && !strcmp(argv[2], commands[i]->name)))
			cmd = commands[i];
	if (!cmd) {
		fprintf(stderr, "forkpool: unknown command '%s'; commands:", argv[1]);
		for (size_t i = 0; i < NCOMMANDS; i++)
			fprintf(stderr, "%s %s", i ? "," : "", commands[i]->name);
		fprintf(stderr, " (see forkpool --help)\n");
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help")) {
		cli_args_help(cmd, stdout);
		return CLI_EXIT_OK;
	}
	rc = cli_args_parse(cmd, argc - 2, argv + 2, &a);
	if (rc)
		return rc == 1 ? CLI_EXIT_OK : rc;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "forkpool: cannot set up libcurl\n");
		return CLI_EXIT_LOCAL;
	}
	rc = cmd->run(&a);
	curl_global_cleanup();
	return rc;
}
