/*
 * The journal object, shared by the writer (journal.c) and the code that
 * opens a data directory and replays it (journal_dir.c), and nothing else.
 */
#ifndef FP_SERVER_JOURNAL_IMPL_H
#define FP_SERVER_JOURNAL_IMPL_H

#include "journal.h"

/* Compaction's steps (journal_compact.c). */
enum {
	C_IDLE,
	C_SNAP,                         /* the live state into journal.new */
	C_WANT_FINAL,                   /* ... done: waiting for the writer to idle */
	C_FINAL_WRITE,                  /* what was appended meanwhile */
	C_FINAL_SYNC,                   /* journal.new fsynced */
	C_FINAL_DIRSYNC,                /* renamed over journal; the directory fsynced */
};

struct fp_journal_compaction {
	int state;
	int fd, old_fd;
	uint64_t end;                   /* journal.new's size so far */
	uint64_t l_w, l_f;              /* written, appended when FINAL began */
	uint64_t old_size;
	struct sbuf snap;               /* one slice of the live state */
	struct sbuf tail;               /* every record appended since it began */
	bool snap_done;
	int err;                        /* to abort with, from the loop */
	fp_io io;
	int (*snapshot)(void *data, struct sbuf *b);
	void (*done)(void *data, int status);
	void *data;
	int fail_step;                  /* tests: this step's I/O fails, EIO */
};

struct fp_journal {
	fp_loop *loop;
	int fd;                         /* DIR/journal */
	int dirfd, lockfd;              /* DIR, and DIR/lock (flocked) */
	enum fp_fsync_policy policy;
	uint64_t interval_ms;
	uint32_t salt;                  /* the file's (journal_format.h) */

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
	struct fp_journal_compaction c;
};

/* journal.c: drive the writer again after compaction changed its state. */
void fp__journal_progress(fp_journal *j);
void fp__journal_soon(fp_journal *j);
void fp__journal_release(fp_journal *j);

/* journal_compact.c: the next step, if one can be taken; the tail. */
void fp__journal_compact_step(fp_journal *j);
void fp__journal_compact_appended(fp_journal *j, const char *rec, size_t len);
void fp__journal_compact_abort(fp_journal *j, int err);
void fp__journal_compact_free(fp_journal *j);

/* A writer for fd, whose valid bytes end at `end`. */
int fp__journal_new(fp_journal **out, fp_loop *loop, int fd, uint64_t end,
		    uint32_t salt, enum fp_fsync_policy policy,
		    uint64_t interval_ms);

#endif
