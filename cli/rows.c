/* Rows shared by commands: see rows.h. */
#include <stdio.h>

#include "json.h"
#include "rows.h"

#define WORKER_COLUMNS "%-5s  %-8s  %-8s  %-5s  %-8s  %13s  %8s  %s"

void cli_worker_head(char *out, size_t len)
{
	snprintf(out, len, WORKER_COLUMNS, "SLOT", "PID", "POOL", "GEN", "STATE", "TASKS/LIMIT",
		 "RSS(MB)", "TASK");
}

void cli_worker_row(json_t *w, char *out, size_t len)
{
	char slot[24], pid[24], gen[24], tasks[48], rss[32];

	snprintf(slot, sizeof(slot), "%lld", cli_json_int(w, "slot"));
	/* A slot between a worker's exit and its replacement has no pid. */
	if (json_is_integer(json_object_get(w, "pid")))
		snprintf(pid, sizeof(pid), "%lld", cli_json_int(w, "pid"));
	else
		snprintf(pid, sizeof(pid), "-");
	snprintf(gen, sizeof(gen), "%lld", cli_json_int(w, "generation"));
	snprintf(tasks, sizeof(tasks), "%lld/%lld", cli_json_int(w, "tasks_done"),
		 cli_json_int(w, "tasks_limit"));
	snprintf(rss, sizeof(rss), "%.1f", (double)cli_json_int(w, "rss_bytes") / 1048576.0);
	snprintf(out, len, WORKER_COLUMNS, slot, pid, cli_json_str(w, "pool", "-"), gen,
		 cli_json_str(w, "state", "?"), tasks, rss, cli_json_str(w, "task", "-"));
}

void cli_job_counts(json_t *job, long long *finished, long long *total)
{
	*finished = cli_json_int(job, "done") + cli_json_int(job, "failed");
	*total = cli_json_int(job, "total");
}
