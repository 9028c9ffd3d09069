/*
 * The worker process: what runs after fork(). The master and a worker share
 * one page (a memfd mapped by both) through which the worker says
 * which item it is running and since when, and the master asks it to stop.
 * The frame stream carries results; this page carries the facts the master
 * needs when the stream stops short: when a worker dies or overruns, the
 * master reads here which item it was running.
 */
#ifndef FP_WORKER_MAIN_H
#define FP_WORKER_MAIN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "module.h"

struct fp_worker_shm {
	_Atomic uint64_t current;     /* item id being run, 0 between tasks */
	_Atomic uint32_t hop;         /* in a chain (frame.h): which of its tasks runs */
	/*
	 * CLOCK_MONOTONIC when it started, or up to started_slack_ns before
	 * (quick items are timed in runs: worker_main.c, struct clock_run); never
	 * after its start.
	 */
	_Atomic uint64_t started_ns;
	_Atomic uint32_t started_slack_ns;
	_Atomic uint32_t quit;        /* master: exit before the next task */
	_Atomic int32_t pid;          /* the worker's, written by it and its zygote */
	/*
	 * Exec pools (exec_worker.c): the program the worker runs, and, when
	 * the worker leaves because of the program, what happened to it. The
	 * master reports these rather than the worker process's own fate.
	 */
	_Atomic int32_t program_pid;
	_Atomic uint32_t fate_status; /* fp_item_status for the running item */
	char fate[256];               /* NUL-terminated; written before fate_status */
	/*
	 * Cooperative cancel (cancel.h): the item id the master gave up on
	 * (its call cancelled, or past its timeout), written before the
	 * SIGTERM that starts the grace; fp_cancelled() reads it.
	 */
	_Atomic uint64_t cancel;
};

struct fp_exec;

struct fp_worker_args {
	struct fp_registry *registry;
	int fd;                       /* the worker's end of the socketpair */
	struct fp_worker_shm *shm;
	unsigned slot;
	uint64_t generation;
	uint64_t task_limit;          /* 0: none */
	size_t max_rss_bytes;         /* 0: none */
	size_t max_payload;
	const struct fp_exec *exec;   /* an exec pool's worker; NULL for C tasks */
};

/* Exit statuses a worker uses on purpose; anything else is a crash. */
enum {
	FP_WORKER_EXIT_OK = 0,        /* retired, told to quit, or master gone */
	FP_WORKER_EXIT_INIT = 70,     /* worker_init failed (after INITFAIL) */
	FP_WORKER_EXIT_PROTOCOL = 71, /* the master sent something unreadable */
	FP_WORKER_EXIT_PROGRAM = 72,  /* an exec worker's program failed (see fate) */
};

/*
 * Write all of buf to the master's socket; when the master is gone (or broke
 * the socket) there is nothing to answer to, and the worker exits.
 */
void fp__worker_send_all(int fd, const void *buf, size_t len);

/*
 * Resident set size in KiB from an open /proc/PID/statm (read at offset 0,
 * so one fd serves every reading); 0 when it cannot be read or fd is -1.
 */
size_t fp__rss_kib(int statm_fd);

/*
 * Wait until the master's socket is readable, in poll() rather than in a
 * blocking read(): a reader blocked in a unix stream read() waits on the
 * socket's queue with a wake function that ignores the event, so each time
 * the master consumes an answer of ours (freeing send space:
 * unix_write_space) the kernel woke the worker for nothing and it slept
 * again, two context switches and a wake-up paid by the master per round
 * trip (Linux 6.18; perf put unix_write_space under the master's recv at
 * about 5% of its samples under HTTP apply load). poll() waits with a
 * wake function that lets a write-space wake-up pass by a reader asking
 * for POLLIN only. Returns -1 on EINTR, else 0 (readable, hung up, or an
 * error that the read() after it reports).
 */
int fp__worker_wait_readable(int fd);

/* Run tasks until told to stop; never returns. */
_Noreturn void fp_worker_main(const struct fp_worker_args *args);
/* The same for an exec pool's worker: run the program, relay its answers. */
_Noreturn void fp_exec_worker_main(const struct fp_worker_args *args);

#endif
