/*
 * A new process between fork (or the zygote's clone) and its main function:
 * the set-up every worker gets, whoever forked it, and the pieces the zygote
 * uses for itself.
 */
#ifndef FP_CHILD_H
#define FP_CHILD_H

#include <stdbool.h>
#include <sys/types.h>

#include "worker_main.h"

/* Where the kernel reports the process's arguments (/proc/PID/cmdline). */
struct fp_title_area {
	unsigned long start, end;  /* both 0: unknown, no title */
};

/* What a new worker process needs to become one. */
struct fp_child {
	pid_t master_pid;          /* PDEATHSIG is checked against it */
	int log_fd;                /* becomes stdout and stderr */
	struct fp_worker_args args;   /* args.fd: its end of the socketpair */
	/*
	 * Forked by the zygote, which did once what every child would do
	 * again: handlers reset, stdin on /dev/null, the master's fds closed,
	 * the title area found. Then shm_fd is the page to map (args.shm is
	 * NULL), and these fds are the only ones to close.
	 */
	const struct fp_zygote_child {
		int shm_fd;
		int close_fds[2];
		struct fp_title_area title;
	} *zygote;
};

/*
 * fork() for a worker or the zygote: buffered output is flushed first (else
 * it would be written twice, once by each process) and every signal is
 * blocked across it, so that no handler runs in the child before the child
 * has reset them. 0 in the child, its signals still blocked; in the parent,
 * the old mask back and the pid, or -errno.
 */
pid_t fp__child_fork(void);

/*
 * Run in a new worker process: record its pid in the shared page, reset
 * signal handlers, die with the master, point stdout/stderr at log_fd, close
 * every close-on-exec fd but the socket, take its title, unblock signals and
 * run fp_worker_main(). Never returns. A worker that should exec another
 * program instead would do so here, after the same set-up.
 */
_Noreturn void fp__child_worker(const struct fp_child *c);

/*
 * Leave the master's process group for one of our own (a terminal's SIGINT
 * to the master's group must not reach workers: child.c says why), reset
 * every handler, set PDEATHSIG, and check the parent is still the master
 * (else _exit(0): it died before PDEATHSIG was armed). stdin becomes
 * /dev/null. Called with every signal blocked.
 */
void fp__child_detach(pid_t master_pid);

/*
 * Close what the master opened for itself (all of it close-on-exec) except
 * `keep`; fds a module opened without the flag, for its workers, stay.
 */
void fp__child_close_cloexec(int keep);

/* Find the process's argument area; false when /proc does not say. */
bool fp__child_title_area(struct fp_title_area *a);
/* Name the process for ps (title, in area a) and top (comm, at most 15 bytes). */
void fp__child_set_title(const struct fp_title_area *a, const char *title, const char *comm);

#endif
