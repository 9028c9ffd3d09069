/*
 * The fixture the pool's suites share (test-pool, test-pipeline, test-zygote,
 * test-exec, and the job store's through fp_test_jobs.c): a pool with the
 * tests' options whose log is kept for checks, results collected from async
 * calls, and the skip for a backend this machine cannot run.
 */
#ifndef FP_TEST_POOL_H
#define FP_TEST_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "forkpool.h"

/*
 * Options for a test's pool of `workers`: a short kill grace, debug level,
 * and every log line kept (shown on stderr too with FP_TEST_VERBOSE). Tests
 * run one at a time, so one log serves them all; this empties it.
 */
void fp_test_options(fp_options *o, unsigned workers);

/* A pool with options `o`, or the test fails naming why not. */
fp_pool *fp_test_pool_with(fp_options *o);

/* fp_test_pool_with(fp_test_options(workers)). */
fp_pool *fp_test_pool(unsigned workers);

/* What the pool made last has logged so far, one line each. */
const char *fp_test_log(void);

/* 1 when the log holds `text`; fp_test_log_says is the same for fp_test_run_until. */
int fp_test_log_has(const char *text);
int fp_test_log_says(void *text);

/* $FP_TEST_MODULE_DIR/name, to free(); the test fails without the variable. */
char *fp_test_module_path(const char *name);

/*
 * Apply `task` (one that answers its process's pid) to null and return that
 * pid; the result's own pid (the pool worker's) goes to *answered_by.
 */
pid_t fp_test_apply_pid(fp_pool *p, const char *task, pid_t *answered_by);

/* For fp_test_run_until: every worker of pool `p` has its pid (none still being cloned). */
int fp_test_pids_known(void *p);

/*
 * Wait for child `pid` of this process (a worker or zygote orphaned to it, a
 * subreaper) to end, at most 10 s by the watchdog alarm, and check it did not
 * outlive its master: killed by PDEATHSIG's SIGKILL, or exited 0 on seeing
 * its socket close first.
 */
void fp_test_assert_died_with_master(pid_t pid);

/* The parent of live process pid (/proc/PID/stat), or -1 if gone or a zombie. */
pid_t fp_test_parent_of(pid_t pid);
/* A small file's text, NUL-terminated, into buf; -1 if it cannot be read. */
int fp_test_read_text(const char *path, char *buf, size_t len);
/* Live children of `parent` named fp-zygote, up to max of them in out; how many. */
size_t fp_test_zygotes_of(pid_t parent, pid_t *out, size_t max);
/* The pool's one zygote, waited for (running the pool's loop) until it has its name. */
pid_t fp_test_zygote(fp_pool *p);

/* 1 when FORKPOOL_LOOP's backend cannot run here (main() then exits 77). */
int fp_test_backend_missing(void);

/* The results of one async call, each a copy the collector owns. */
struct fp_test_collect {
	fp_pool *pool;
	size_t n;
	struct fp_result *r;        /* r[index]: the last result for that item */
	unsigned *seen;             /* how many results each index had */
	int done;
	struct fp_call_summary summary;
	/* Called after each item is kept, when set. */
	void (*each)(struct fp_test_collect *c, const struct fp_result *r);
	void *data;
};

/* For a call of n items on p: pass fp_test_collect_item/_done and c. */
void fp_test_collect_init(struct fp_test_collect *c, fp_pool *p, size_t n);
void fp_test_collect_item(fp_pool *p, uint64_t id, const struct fp_result *r, void *data);
void fp_test_collect_done(fp_pool *p, const struct fp_call_summary *s, void *data);
/* Run the pool until the call is done; the test fails after 60 s. */
void fp_test_collect_wait(struct fp_test_collect *c);
/* A condition for fp_test_run_until: the call is done. */
int fp_test_collected(void *c);
void fp_test_collect_free(struct fp_test_collect *c);

#endif
