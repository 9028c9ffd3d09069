/*
 * A new process between fork (or the zygote's clone) and its main function:
 * the set-up every worker gets, whoever forked it, and the pieces the zygote
 * uses for itself.
 */
#ifndef FP_CHILD_H
#define FP_CHILD_H

#include <sys/types.h>

#include "worker.h"

/* What a new worker process needs to become one. */
struct fp_child {
	pid_t master_pid;          /* PDEATHSIG is checked against it */
	int log_fd;                /* becomes stdout and stderr */
	struct fp_worker_args args;   /* args.fd: its end of the socketpair */
};

/*
 * Run in a new worker process: record its pid in the shared page, reset
 * signal handlers, die with the master, point stdout/stderr at log_fd, close
 * every close-on-exec fd but the socket, take its title, unblock signals and
 * run fp_worker_main(). Never returns. A worker that should exec another
 * program instead would do so here, after the same set-up.
 */
_Noreturn void fp__child_worker(const struct fp_child *c);

/*
 * Reset every handler, set PDEATHSIG, and check the parent is still the
 * master (else _exit(0): it died before PDEATHSIG was armed). stdin becomes
 * /dev/null.
 */
void fp__child_detach(pid_t master_pid);

/*
 * Close what the master opened for itself (all of it close-on-exec) except
 * `keep`; fds a module opened without the flag, for its workers, stay.
 */
void fp__child_close_cloexec(int keep);

/* Name the process for ps (title) and top (comm, at most 15 bytes). */
void fp__child_set_title(const char *title, const char *comm);

#endif
