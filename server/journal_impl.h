/*
 * The journal object, shared by the writer (journal.c) and the code that
 * opens a data directory and replays it (journal_dir.c), and nothing else.
 */
#ifndef FP_SERVER_JOURNAL_IMPL_H
#define FP_SERVER_JOURNAL_IMPL_H

#include "journal.h"

struct fp_journal {
	fp_loop *loop;
	int fd;                         /* DIR/journal */
	int dirfd, lockfd;              /* DIR, and DIR/lock (flocked) */
	enum fp_fsync_policy policy;
	uint64_t interval_ms;

	/*
	 * Records are built in `pend`; a write takes the whole of it (the
	 * buffers swap), so what is appended meanwhile waits for the next.
	 * Positions are counted in bytes appended since open ("logical"), so
	 * that a batch whose write failed and was dropped leaves them in
	 * order; file_end is where the next write goes.
	 */
	struct sbuf pend, flight;
	uint64_t file_end;
	uint64_t appended;              /* logical end of what was appended */
	uint64_t written;               /* ... of what is written (or failed) */
	uint64_t synced;                /* ... of what an fsync covered */
	uint64_t batch_end;             /* ... of the write in flight */
	uint64_t sync_target;           /* ... of the fsync in flight */
	fp_io wio, sio;
	fp_timer interval;              /* the next fsync under `interval` */
	fp_timer soon;                  /* work deferred to the loop */
	int deferred_err;               /* a write that could not start */

	struct fp_journal_wait *wh, *wt;
	int broken;                     /* a failed fsync's error */
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
	struct fp_journal_stats st;
};

/* A writer for fd, whose valid bytes end at `end`. */
int fp__journal_new(fp_journal **out, fp_loop *loop, int fd, uint64_t end,
		    enum fp_fsync_policy policy, uint64_t interval_ms);

#endif
