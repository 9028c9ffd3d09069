/*
 * Exec pools from the master's side (exec.c): the program a pool runs as its
 * workers, and the tasks it announced. The worker's side is exec_worker.c.
 */
#ifndef FP_EXEC_H
#define FP_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

/* A task an exec pool's program announced in its ready line. */
struct fp_exec_task {
	char *name;                /* without the NAME. prefix */
	char *doc;                 /* NULL: none given */
	bool generator;            /* declared: zero or more outputs (emit) per item */
};

/*
 * An exec pool's program and what it said it can do. Made in the master
 * before any fork, so its workers inherit it.
 */
struct fp_exec {
	char *name;
	size_t name_len;
	char **argv;               /* NULL-terminated, for execvp() */
	char *argv_block;          /* the strings argv points into */
	uint64_t startup_timeout_ms;
	/* Announced by the most recent worker to say ready; NULL before. */
	struct fp_exec_task *tasks;
	size_t ntasks;
	char prefix[80];           /* "exec pool NAME: ", for the log */
};

int fp__exec_new(struct fp_exec **out, const fp_exec_options *o, char *errbuf, size_t errlen);
void fp__exec_free(struct fp_exec *x);
/*
 * Turn `opts` (a copy of the root's) into exec pool o's: its own max tasks
 * per child, jitter, RSS limit and timeout where it has them. -EINVAL, with
 * a message naming the pool, for a value fp_options cannot hold.
 */
int fp__exec_limits(const fp_exec_options *o, fp_options *opts, char *errbuf, size_t errlen);
/*
 * A READY frame's task list: a JSON array whose entries are names or
 * {"name":..,"generator":..,"doc":..} objects (the shim checked them);
 * -EPROTO if it is not one.
 */
int fp__exec_set_tasks(struct fp_exec *x, const char *json, size_t len);
/* -1: tasks not known yet; 0: not announced; 1: announced. `task` without prefix. */
int fp__exec_has_task(const struct fp_exec *x, const char *task);
/* The announced task `task` (without prefix), or NULL (not announced, or not known yet). */
const struct fp_exec_task *fp__exec_task(const struct fp_exec *x, const char *task);

#endif
