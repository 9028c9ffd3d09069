/*
 * The progress bar on stderr: done/total, failed, items a second, ETA, or
 * the bytes sent while the items upload. Drawn only when stderr is a
 * terminal and --quiet was not given, at most ten times a second.
 */
#ifndef FORKPOOL_CLI_PROGRESS_H
#define FORKPOOL_CLI_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cli_progress {
	bool on;
	bool drawn;              /* a bar is on the terminal's last line */
	int64_t start_ms;        /* the first count of the job's items */
	int64_t upload_start_ms;
	int64_t last_ms;         /* the last redraw */
	size_t done, failed, total;
	uint64_t sent;           /* bytes uploaded, while uploading */
	bool uploading;
};

void cli_progress_init(struct cli_progress *p, bool quiet);
void cli_progress_sent(struct cli_progress *p, uint64_t bytes);
void cli_progress_update(struct cli_progress *p, size_t done, size_t failed, size_t total);
/* Draw the last counts, whatever the time, and end the line. */
void cli_progress_finish(struct cli_progress *p);
/* Take the bar off the line, so that a message can be written there. */
void cli_progress_clear(struct cli_progress *p);

#endif
