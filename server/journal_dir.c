/*
 * Opening a data directory: create it when missing, lock it (one
 * forkpoold per directory), open DIR/journal, check there is room, replay
 * it through journal_read.c, cut a torn tail, rewrite a journal whose
 * damage was skipped, and hand the file to the writer (journal.c).
 * Everything here runs once, at start-up, before the loop: it may block.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal_impl.h"
#include "journal_read.h"

/* Room the journal must be able to grow by at start. */
#define SPACE_CHECK_BYTES (1u << 20)

struct opener {
	const struct fp_journal_options *o;
	char path[4096];                /* DIR/journal */
	int dirfd, lockfd, fd;
	char *err;
	size_t errlen;
};

/* An opener's failure: its message in op->err, the one errbuf helper's way. */
#define fail(op, r, ...) fp_errbuf_printf((op)->err, (op)->errlen, (r), __VA_ARGS__)

static int open_dir(struct opener *op)
{
	const char *dir = op->o->dir;
	int r;

	op->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (op->dirfd < 0 && errno == ENOENT) {
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			r = -errno;
			return fail(op, r, "cannot create data directory %s: %s",
				    dir, strerror(-r));
		}
		op->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (op->dirfd < 0) {
		r = -errno;
		return fail(op, r, "cannot open data directory %s: %s", dir,
			    strerror(-r));
	}
	return 0;
}

static int take_lock(struct opener *op)
{
	const char *dir = op->o->dir;
	char pid[32] = "";
	ssize_t n;
	int r, len;

	op->lockfd = openat(op->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (op->lockfd < 0) {
		r = -errno;
		if (r == -EACCES || r == -EROFS || r == -EPERM)
			return fail(op, r, "data directory %s is not writable: %s",
				    dir, strerror(-r));
		return fail(op, r, "cannot open %s/lock: %s", dir, strerror(-r));
	}
	if (flock(op->lockfd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		if (r != -EWOULDBLOCK)
			return fail(op, r, "cannot lock %s/lock: %s", dir,
				    strerror(-r));
		n = pread(op->lockfd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		return fail(op, -EBUSY,
			    "data directory %s is in use by another forkpoold (pid %s)",
			    dir, *pid ? pid : "unknown");
	}
	/* For the message above, seen by the next one to try. */
	len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	errno = 0;
	if (ftruncate(op->lockfd, 0) < 0 ||
	    pwrite(op->lockfd, pid, (size_t)len, 0) != len) {
		r = errno ? -errno : -EIO;
		if (r == -ENOSPC || r == -EDQUOT)
			return fail(op, r, "data directory %s is full: %s", dir,
				    strerror(-r));
		return fail(op, r, "cannot write %s/lock: %s", dir, strerror(-r));
	}
	return 0;
}

static int open_journal(struct opener *op)
{
	const char *dir = op->o->dir;
	struct stat st;
	int r;

	op->fd = openat(op->dirfd, "journal", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (op->fd < 0) {
		r = -errno;
		if (r == -EACCES || r == -EROFS || r == -EPERM)
			return fail(op, r, "journal %s is not writable: %s",
				    op->path, strerror(-r));
		return fail(op, r, "cannot open journal %s: %s", op->path,
			    strerror(-r));
	}
	if (fstat(op->fd, &st) < 0)
		return fail(op, -errno, "cannot stat %s: %s", op->path,
			    strerror(errno));
	/*
	 * Reserve room past the end without changing the size: a full disk
	 * is a clear start-up error, not the first submission's 507.
	 */
	if (fallocate(op->fd, FALLOC_FL_KEEP_SIZE, st.st_size,
		      SPACE_CHECK_BYTES) < 0) {
		r = -errno;
		if (r == -ENOSPC || r == -EDQUOT)
			return fail(op, r, "data directory %s is full: %s", dir,
				    strerror(-r));
		/* EOPNOTSUPP and the like: no check on this filesystem. */
	}
	return 0;
}

/* A new journal's header, and the directory entry, made durable. */
static int write_header(struct opener *op, int fd, uint32_t salt)
{
	unsigned char h[FP_JOURNAL_HDR_LEN];
	int r;

	fp_journal_header_put(h, salt);
	errno = 0;
	if (ftruncate(fd, 0) < 0 || pwrite(fd, h, sizeof(h), 0) != sizeof(h) ||
	    fdatasync(fd) < 0 || fsync(op->dirfd) < 0) {
		r = errno ? -errno : -EIO;
		if (r == -ENOSPC || r == -EDQUOT)
			return fail(op, r, "data directory %s is full: %s",
				    op->o->dir, strerror(-r));
		return fail(op, r, "cannot write the journal header of %s: %s",
			    op->path, strerror(-r));
	}
	return 0;
}

struct replayer {
	struct opener *op;
	struct fp_journal_scan *scan;
};

static int replay_cb(void *data, const struct fp_jrec *rec, uint64_t off)
{
	struct replayer *rp = data;
	const struct fp_journal_options *o = rp->op->o;

	if (!o->replay)
		return 0;
	return o->replay(o->data, rec, off, rp->scan->err, sizeof(rp->scan->err));
}

/* Copies each valid record into the new journal (recovery). */
struct copier {
	int fd;
	uint64_t off;
	int err;
};

static int copy_cb(void *data, const struct fp_jrec *rec, uint64_t off)
{
	struct copier *c = data;
	const unsigned char *p = rec->payload - FP_JREC_HDR_LEN;
	size_t left = rec->size;
	ssize_t n;

	while (left) {
		n = pwrite(c->fd, p, left, (off_t)c->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return c->err = n < 0 ? -errno : -EIO;
		p += n;
		left -= (size_t)n;
		c->off += (uint64_t)n;
	}
	return 0;
}

/*
 * After --journal-recover skipped damage: write the valid records to
 * journal.new, keep the damaged file as journal.damaged-TIME for whoever
 * wants to look, and put the new one in its place, so the next start does
 * not meet the same damage.
 */
static int rewrite(struct opener *op, struct fp_journal_scan *s, char *kept,
		   size_t keptlen)
{
	struct fp_journal_scan s2 = { 0 };
	struct copier c = { .fd = -1, .off = FP_JOURNAL_HDR_LEN };
	int r;

	c.fd = openat(op->dirfd, "journal.new",
		      O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c.fd < 0) {
		r = -errno;
		return fail(op, r, "cannot create %s.new: %s", op->path,
			    strerror(-r));
	}
	r = write_header(op, c.fd, s->salt);
	if (r < 0)
		goto out;
	s2.recover = true;
	s2.record = copy_cb;
	s2.data = &c;
	r = fp_journal_scan_fd(op->fd, op->path, &s2);
	if (r < 0 || (r = c.err) < 0 || (fdatasync(c.fd) < 0 && (r = -errno))) {
		fail(op, r, "cannot write %s.new: %s", op->path, strerror(-r));
		goto out;
	}
	snprintf(kept, keptlen, "journal.damaged-%lld", (long long)time(NULL));
	if (renameat(op->dirfd, "journal", op->dirfd, kept) < 0 ||
	    renameat(op->dirfd, "journal.new", op->dirfd, "journal") < 0 ||
	    fsync(op->dirfd) < 0) {
		r = -errno;
		fail(op, r, "cannot put the recovered journal in place of %s: %s",
		     op->path, strerror(-r));
		goto out;
	}
	close(op->fd);
	op->fd = c.fd;
	s->end = c.off;
	return 0;
out:
	close(c.fd);
	unlinkat(op->dirfd, "journal.new", 0);
	return r;
}

static void say(const struct fp_journal_options *o, fp_log_level level,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(const struct fp_journal_options *o, fp_log_level level,
		const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (!o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fp_dlog(o->log, level, "%s", line);
}

/* What the scan found, for the report; a torn last record is worth a warning. */
static void report_scan(const struct opener *op, const struct fp_journal_scan *s,
			struct fp_journal_report *rep)
{
	const struct fp_journal_options *o = op->o;

	rep->records = s->records;
	rep->size = s->size;
	rep->skipped = s->skipped;
	rep->skipped_bytes = s->skipped_bytes;
	rep->first_skip_at = s->first_skip.off;
	if (s->torn && !s->empty) {
		rep->torn = true;
		rep->torn_at = s->end;
		rep->torn_bytes = s->size - s->end;
		say(o, FP_LOG_WARN,
		    "journal %s: cut a torn last record at byte offset %" PRIu64
		    " (%" PRIu64 " bytes; the process or the machine stopped while writing it)",
		    op->path, rep->torn_at, rep->torn_bytes);
	}
}

/*
 * Leave the file ready for appends at s->end: rewritten without the damage
 * (--journal-recover), given a header with a fresh salt (new), or cut after
 * its last whole record (torn). rep->created says which.
 */
static int settle_file(struct opener *op, struct fp_journal_scan *s,
		       struct fp_journal_report *rep)
{
	const struct fp_journal_options *o = op->o;
	char kept[64] = "";
	int r;

	if (s->skipped) {
		r = rewrite(op, s, kept, sizeof(kept));
		if (r < 0)
			return r;
		say(o, FP_LOG_WARN,
		    "journal %s: --journal-recover skipped %" PRIu64
		    " damaged region(s), %" PRIu64 " bytes, the first at byte offset %"
		    PRIu64 "; kept %" PRIu64 " valid records; the damaged file is kept as %s/%s",
		    op->path, s->skipped, s->skipped_bytes, s->first_skip.off,
		    s->records, o->dir, kept);
	} else if (s->empty) {
		if (getrandom(&s->salt, sizeof(s->salt), 0) != sizeof(s->salt)) {
			r = -errno;
			fail(op, r, "cannot draw the journal's salt: %s", strerror(-r));
			return r;
		}
		if ((r = write_header(op, op->fd, s->salt)) < 0)
			return r;
		s->end = FP_JOURNAL_HDR_LEN;
		rep->created = true;
	} else if (s->torn && ftruncate(op->fd, (off_t)s->end) < 0) {
		r = -errno;
		fail(op, r, "cannot cut the torn tail of %s: %s", op->path,
		     strerror(-r));
		return r;
	}
	return 0;
}

int fp_journal_open(fp_journal **out, fp_loop *loop,
		    const struct fp_journal_options *o,
		    struct fp_journal_report *report, char *err, size_t errlen)
{
	struct opener op = { .o = o, .dirfd = -1, .lockfd = -1, .fd = -1,
			     .err = err, .errlen = errlen };
	struct fp_journal_report rep = { 0 };
	struct fp_journal_scan s = { 0 };
	struct replayer rp = { &op, &s };
	fp_journal *j;
	int r;

	*out = NULL;
	err[0] = '\0';
	if (!o->dir || !*o->dir)
		return fail(&op, -EINVAL, "no data directory given");
	snprintf(op.path, sizeof(op.path), "%s/journal", o->dir);

	if ((r = open_dir(&op)) < 0)
		goto err;
	if ((r = take_lock(&op)) < 0)
		goto err_dir;
	if ((r = open_journal(&op)) < 0)
		goto err_lock;
	/* A compaction the last run did not finish: the journal is whole. */
	unlinkat(op.dirfd, "journal.new", 0);

	s.recover = o->recover;
	s.record = replay_cb;
	s.data = &rp;
	r = fp_journal_scan_fd(op.fd, op.path, &s);
	if (r < 0) {
		fail(&op, r, "%s", s.err);
		goto err_file;
	}
	report_scan(&op, &s, &rep);
	if ((r = settle_file(&op, &s, &rep)) < 0)
		goto err_file;
	r = fp__journal_new(&j, loop, op.fd, s.end, s.salt, o->fsync,
			    o->fsync_interval_ms);
	if (r < 0) {
		fail(&op, r, "journal %s: %s", op.path, strerror(-r));
		goto err_file;
	}
	j->dirfd = op.dirfd;
	j->lockfd = op.lockfd;
	if (report)
		*report = rep;
	*out = j;
	return 0;

err_file:
	close(op.fd);
err_lock:
	close(op.lockfd);
err_dir:
	close(op.dirfd);
err:
	return r;
}
