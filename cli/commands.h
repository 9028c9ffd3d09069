/*
 * forkpool's subcommands: each one's table entry (name, synopsis, options,
 * help) and its run function, in the file of its group.
 */
#ifndef FORKPOOL_CLI_COMMANDS_H
#define FORKPOOL_CLI_COMMANDS_H

#include "args.h"

/* cmd_submit.c: map, apply, pipeline. */
extern const struct cli_command cli_cmd_map, cli_cmd_apply, cli_cmd_pipeline;
/* cmd_jobs.c: jobs, status, wait, results, cancel. */
extern const struct cli_command cli_cmd_jobs, cli_cmd_status, cli_cmd_wait, cli_cmd_results,
	cli_cmd_cancel;
/* cmd_info.c: workers, tasks, health. */
extern const struct cli_command cli_cmd_workers, cli_cmd_tasks, cli_cmd_health;
/* top.c */
extern const struct cli_command cli_cmd_top;

#endif
