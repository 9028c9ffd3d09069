/*
 * The journal: an append-only file in the data directory (--data-dir)
 * that keeps what forkpoold accepted across a crash or a restart. This
 * header is its whole interface; what the records mean is the job store's
 * business (journal_format.h gives the framing).
 *
 * Writing (journal.c) goes through the event loop and never blocks it:
 * records are built in memory and written by fp_io_pwrite() at the end of
 * the file, one write at a time, so every record appended while a write is
 * in flight goes out together in the next one (group commit). An append
 * may carry a waiter, called once the record is as safe as the policy
 * makes it:
 *
 *   always    written and fsynced: survives a power loss. One fsync
 *             covers every record written before it started, so under
 *             load many answers share one.
 *   interval  written to the kernel (survives SIGKILL of forkpoold); an
 *             fsync every fsync_interval_ms while anything is unsynced, so
 *             a power loss costs at most about that much.
 *   never     written to the kernel; fsync left to the kernel.
 *
 * A failed write (ENOSPC, EIO) fails the waiters of the records it held,
 * cuts the file back to where it was, and later appends try again: a full
 * disk refuses what is submitted meanwhile, then recovers by itself. A
 * failed fsync is different (the kernel may have dropped the dirty pages,
 * so what is on the disk is unknown): the journal refuses every later
 * append with that error until forkpoold is restarted, as PostgreSQL does.
 *
 * Opening (journal_dir.c) creates the directory if missing, takes its lock
 * (flock on DIR/lock: one forkpoold per directory), replays DIR/journal
 * (journal_read.h: torn tails cut, damage refused or skipped), and leaves
 * the writer at its end.
 */
#ifndef FP_SERVER_JOURNAL_H
#define FP_SERVER_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal_format.h"
#include "dlog.h"
#include "forkpool/loop.h"
#include "sbuf.h"

typedef struct fp_journal fp_journal;

enum fp_fsync_policy { FP_FSYNC_ALWAYS, FP_FSYNC_INTERVAL, FP_FSYNC_NEVER };

/* "always", "interval", "never"; -EINVAL otherwise. */
int fp_fsync_policy_parse(const char *name, enum fp_fsync_policy *out);
const char *fp_fsync_policy_name(enum fp_fsync_policy p);

#define FP_JOURNAL_FSYNC_INTERVAL_MS 50

struct fp_journal_options {
	const char *dir;
	enum fp_fsync_policy fsync;
	uint64_t fsync_interval_ms;     /* interval: 0 means the default */
	bool recover;                   /* skip damage instead of refusing */
	/*
	 * Each replayed record, in order, before fp_journal_open() returns; a
	 * negative return fails the open, with the sentence it wrote in err.
	 */
	int (*replay)(void *data, const struct fp_jrec *r, uint64_t off,
		      char *err, size_t errlen);
	void *data;
	struct fp_dlog *log;            /* torn tails, skipped damage; may be NULL */
};

/* What opening found, for the log, /metrics and tests. */
struct fp_journal_report {
	uint64_t records;               /* replayed */
	uint64_t size;                  /* the file's size before any cut */
	bool torn;
	uint64_t torn_at, torn_bytes;   /* the cut tail */
	uint64_t skipped, skipped_bytes;
	uint64_t first_skip_at;
	bool created;                   /* a new journal */
};

/*
 * Open the journal in opts->dir on `loop`. 0 and *out, or a negative errno
 * with err[0..errlen) saying what is wrong in a sentence that names the
 * directory or file (not writable, locked by another forkpoold, full,
 * damaged, an unknown format version). report may be NULL.
 */
int fp_journal_open(fp_journal **out, fp_loop *loop,
		    const struct fp_journal_options *opts,
		    struct fp_journal_report *report, char *err, size_t errlen);

/*
 * Flush what was appended, fsync, release the directory and free the
 * journal, then call cb (from the loop; the journal is gone by then).
 * Waiters still queued get their callbacks first, as the writes end.
 */
void fp_journal_close(fp_journal *j, void (*cb)(void *data), void *data);

/*
 * Free at once, without flushing: only for a journal with nothing in
 * flight (fp_journal_busy() false), such as after a failed start-up;
 * otherwise its memory is left to the operations that still use it.
 */
void fp_journal_free(fp_journal *j);
bool fp_journal_busy(const fp_journal *j);

/* A caller waiting for a record to be safe. */
struct fp_journal_wait {
	void (*cb)(struct fp_journal_wait *w, int status);  /* 0 or -errno */
	void *data;

	/* Private. */
	fp_journal *j;
	uint64_t upto;
	bool sync;                      /* waits for an fsync whatever the policy */
	struct fp_journal_wait *prev, *next;
};

/*
 * Appending a record: build it in fp_journal_buf() between begin and end
 * with the fp_jrec_put_*() functions (nothing else may touch the buffer in
 * between), then end queues it. end returns 0, or -E2BIG / -ENOMEM (the
 * record is dropped), or the error that broke the journal (-EIO); the
 * waiter, when given and end returned 0, is called once, later, from the
 * loop.
 */
struct sbuf *fp_journal_buf(fp_journal *j);
size_t fp_journal_begin(fp_journal *j);
/* The file's salt, for records built elsewhere (a compaction's snapshot). */
uint32_t fp_journal_salt(const fp_journal *j);
int fp_journal_end(fp_journal *j, size_t start, uint16_t type,
		   struct fp_journal_wait *w);

/* Forget a waiter without a callback (its requester went away). */
void fp_journal_wait_cancel(struct fp_journal_wait *w);

/*
 * Call w once everything appended so far is as safe as the policy makes
 * it (written; and fsynced under `always`): a caller that appended its
 * record through others' code (the job store) waits for it this way.
 */
void fp_journal_wait_appended(fp_journal *j, struct fp_journal_wait *w);

/* Take back a record begun but not ended (its caller gave it up). */
void fp_journal_drop(fp_journal *j, size_t start);

/* 0, or the error every append now gets (a failed fsync, closing). */
int fp_journal_error(const fp_journal *j);

/* Call w once everything appended so far is written and fsynced. */
void fp_journal_flush(fp_journal *j, struct fp_journal_wait *w);

/*
 * Compaction: rewrite the journal from the live state, so that its size
 * follows what is kept, not the history. snapshot(data, b) appends records
 * that say the whole live state to b, a slice per call, and returns 1 while
 * there is more, 0 after the last slice, or a negative errno to give up;
 * it is called once per loop turn at most, and each slice is written
 * before the next is asked for, so a large state never stalls the loop.
 * Records appended meanwhile go to the journal as usual and are also kept,
 * to follow the snapshot in the new file: they may repeat what a later
 * slice says, which replay must take calmly (journal_jobs.h). When the
 * snapshot is written, appends wait while the new file gets what came
 * meanwhile, is fsynced, renamed over DIR/journal and the directory
 * fsynced; then done(data, 0) and the writer goes on in the new file. On
 * any failure journal.new is removed, the journal goes on as it was, and
 * done gets the error. -EBUSY while one runs, -ENOTSUP without a
 * directory (a writer made by hand), -ESHUTDOWN after close or breakage.
 */
int fp_journal_compact(fp_journal *j, int (*snapshot)(void *data, struct sbuf *b),
		       void (*done)(void *data, int status), void *data);
bool fp_journal_compacting(const fp_journal *j);

struct fp_journal_stats {
	uint64_t records;               /* appended since open */
	uint64_t bytes;                 /* written since open */
	uint64_t writes, fsyncs;
	uint64_t write_errors;
	int last_error;                 /* 0 or -errno of the last failure */
	int broken;                     /* a failed fsync: appends refused */
	uint64_t size;                  /* the file's valid length */
	uint64_t compactions;           /* finished */
	uint64_t compacted_from, compacted_to;  /* the last one's sizes */
	enum fp_fsync_policy fsync;
};

void fp_journal_stats_get(const fp_journal *j, struct fp_journal_stats *out);

#endif
