/*
 * Replaying a journal: header, records, torn tails and damage in the middle
 * (journal_read.h says how each is told apart and what is done).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "journal_read.h"

/* The first offset in [from, len) where a whole valid record starts. */
static uint64_t next_valid(const unsigned char *p, size_t len, size_t from,
			   uint32_t salt)
{
	struct fp_jrec r;
	size_t off;

	for (off = from; off + FP_JREC_HDR_LEN <= len; off++)
		if (fp_jrec_parse(p + off, len - off, salt, &r) == 0)
			return off;
	return len;
}

static const char *damage_name(int r)
{
	switch (r) {
	case -EILSEQ:
		return "bad payload checksum";
	case -EBADMSG:
		return "bad record header";
	default:
		return "truncated record";
	}
}

int fp_journal_scan_mem(const void *buf, size_t len, const char *path,
			struct fp_journal_scan *s)
{
	const unsigned char *p = buf;
	struct fp_jrec rec;
	uint64_t next;
	size_t off;
	int r;

	s->version = 0;
	s->empty = false;
	s->records = 0;
	s->end = 0;
	s->size = len;
	s->torn = false;
	s->skipped = 0;
	s->skipped_bytes = 0;
	s->first_skip.off = s->first_skip.len = 0;
	s->err[0] = '\0';

	s->salt = 0;
	r = fp_journal_header_check(p, len, &s->version, &s->salt);
	if (r == -ENODATA) {
		/* Created but its header never completed: as good as new. */
		s->empty = true;
		s->torn = len > 0;
		return 0;
	}
	if (r == -EBADMSG) {
		snprintf(s->err, sizeof(s->err),
			 "%s is not a forkpool journal (bad magic or header checksum)",
			 path);
		return r;
	}
	if (r == -ENOTSUP) {
		snprintf(s->err, sizeof(s->err),
			 "%s has journal format version %" PRIu32
			 "; this forkpoold reads version %d only",
			 path, s->version, FP_JOURNAL_VERSION);
		return r;
	}

	off = FP_JOURNAL_HDR_LEN;
	s->end = off;
	while (off < len) {
		r = fp_jrec_parse(p + off, len - off, s->salt, &rec);
		if (r == 0) {
			if (s->record && (r = s->record(s->data, &rec, off)) < 0)
				return r;
			s->records++;
			off += rec.size;
			s->end = off;
			continue;
		}
		next = next_valid(p, len, off + 1, s->salt);
		if (next >= len) {
			/* Nothing valid after it: the tail of a cut write. */
			s->torn = true;
			return 0;
		}
		if (!s->recover) {
			snprintf(s->err, sizeof(s->err),
				 "%s: %s in the record at byte offset %zu, with valid "
				 "records after it (from offset %" PRIu64 "): the journal "
				 "is damaged; --journal-recover keeps every valid record "
				 "and skips the damage",
				 path, damage_name(r), off, next);
			return -EBADMSG;
		}
		if (!s->skipped) {
			s->first_skip.off = off;
			s->first_skip.len = next - off;
		}
		s->skipped++;
		s->skipped_bytes += next - off;
		off = next;
	}
	return 0;
}

int fp_journal_scan_fd(int fd, const char *path, struct fp_journal_scan *s)
{
	struct stat st;
	void *map;
	int r;

	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(s->err, sizeof(s->err), "%s: %s", path, strerror(-r));
		return r;
	}
	if (st.st_size == 0)
		return fp_journal_scan_mem("", 0, path, s);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		r = -errno;
		snprintf(s->err, sizeof(s->err), "%s: cannot map it: %s", path,
			 strerror(-r));
		return r;
	}
	madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
	r = fp_journal_scan_mem(map, (size_t)st.st_size, path, s);
	munmap(map, (size_t)st.st_size);
	return r;
}
