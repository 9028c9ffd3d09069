/*
 * The worker process: what runs after fork(). The master and a worker share
 * one page (a memfd mapped by both) through which the worker says
 * which item it is running and since when, and the master asks it to stop.
 * The frame stream carries results; this page carries the facts the master
 * needs when the stream stops short: when a worker dies or overruns, the
 * master reads here which item it was running.
 */
#ifndef FP_WORKER_H
#define FP_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "module.h"

struct fp_worker_shm {
	_Atomic uint64_t current;     /* item id being run, 0 between tasks */
	_Atomic uint64_t started_ns;  /* CLOCK_MONOTONIC when it started */
	_Atomic uint32_t quit;        /* master: exit before the next task */
	_Atomic int32_t pid;          /* the worker's, written by it and its zygote */
};

struct fp_worker_args {
	struct fp_registry *registry;
	int fd;                       /* the worker's end of the socketpair */
	struct fp_worker_shm *shm;
	unsigned slot;
	uint64_t generation;
	uint64_t task_limit;          /* 0: none */
	size_t max_rss_bytes;         /* 0: none */
	size_t max_payload;
};

/* Exit statuses a worker uses on purpose; anything else is a crash. */
enum {
	FP_WORKER_EXIT_OK = 0,        /* retired, told to quit, or master gone */
	FP_WORKER_EXIT_INIT = 70,     /* worker_init failed (after INITFAIL) */
	FP_WORKER_EXIT_PROTOCOL = 71, /* the master sent something unreadable */
};

/* Run tasks until told to stop; never returns. */
_Noreturn void fp_worker_main(const struct fp_worker_args *args);

#endif
