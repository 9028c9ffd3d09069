/*
 * Reading a journal back: the file header, then each record in order,
 * deciding what damage means. Owns that decision and nothing about what
 * the records say (the caller's callback) or how the file is opened.
 *
 * Damage is one of two things:
 *  - a torn tail: the last record was being written when the process or
 *    the machine died. It is cut off (the caller truncates the file at
 *    `end`) and reported with its offset. A damaged record counts as the
 *    tail exactly when no valid record follows it anywhere in the file: a
 *    write that was cut short leaves garbage or zeros after the last good
 *    record, never another good one.
 *  - a damaged record in the middle: a valid record follows it, so bytes
 *    that were once good have changed (a disk, a filesystem or a person).
 *    That is refused, naming the file and the offset, unless `recover` is
 *    set: then the damaged bytes are skipped (up to the next valid
 *    record), counted, and every valid record is delivered.
 */
#ifndef FP_SERVER_JOURNAL_READ_H
#define FP_SERVER_JOURNAL_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal_format.h"

struct fp_journal_skip {
	uint64_t off, len;
};

struct fp_journal_scan {
	/* In. */
	bool recover;
	/* Each valid record in order; a negative return stops the scan with
	 * that error (the callback may write its message into err). */
	int (*record)(void *data, const struct fp_jrec *r, uint64_t off);
	void *data;

	/* Out. */
	uint32_t version;
	uint32_t salt;              /* the file's (journal_format.h) */
	bool empty;                 /* no header yet: the caller writes one */
	uint64_t records;           /* delivered */
	uint64_t end;               /* after the last valid record */
	uint64_t size;              /* the file's size */
	bool torn;                  /* [end, size) is a torn tail */
	uint64_t skipped;           /* damaged regions skipped (recover) */
	uint64_t skipped_bytes;
	struct fp_journal_skip first_skip;
	char err[320];              /* why a scan failed, naming file and offset */
};

/*
 * Scan buf[0..len), the contents of `path` (named in messages). 0, or a
 * negative errno with s->err set: -EBADMSG not a journal or damaged in the
 * middle (without recover), -ENOTSUP an unknown format version, or what
 * the callback returned.
 */
int fp_journal_scan_mem(const void *buf, size_t len, const char *path,
			struct fp_journal_scan *s);

/* The same for an open file, mapped read-only for the scan. */
int fp_journal_scan_fd(int fd, const char *path, struct fp_journal_scan *s);

#endif
