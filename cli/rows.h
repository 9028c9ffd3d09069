/*
 * Table rows that more than one command prints: a worker of /v1/workers
 * (`workers` and `top`) and a job's progress counts (`jobs` and `top`), so
 * the columns cannot drift apart between them.
 */
#ifndef FORKPOOL_CLI_ROWS_H
#define FORKPOOL_CLI_ROWS_H

#include <stddef.h>

#include <jansson.h>

/* The header of the workers table, and one worker as a row of it (no newline). */
void cli_worker_head(char *out, size_t len);
void cli_worker_row(json_t *w, char *out, size_t len);

/* A job's items finished (done + failed) and total, from its document. */
void cli_job_counts(json_t *job, long long *finished, long long *total);

#endif
