/*
 * Compaction: the journal rewritten from the live state in DIR/journal.new,
 * then renamed over DIR/journal, without stalling the loop (journal.h says
 * what the caller provides and sees).
 *
 * The steps, one I/O at a time through c.io:
 *  SNAP         a slice of the snapshot per loop turn, each written before
 *               the next is asked for; every record appended meanwhile is
 *               written to the old file as usual and also kept in `tail`.
 *  WANT_FINAL   the snapshot is written: new writes to the old file stop
 *               (kick() waits) and the one in flight, and any fsync, end.
 *  FINAL_WRITE  what the old file has not got yet (`pend`) is all in
 *               `tail`, so pend is dropped and `tail` written to the new
 *               file after the snapshot.
 *  FINAL_SYNC   the new file fsynced, so that renaming it cannot lose a
 *               record the old file had (or whose waiter is waiting).
 *  FINAL_DIRSYNC renamed over journal, the directory fsynced: the new
 *               file is the journal; the writer moves to it and releases
 *               the waiters of everything appended until FINAL began.
 * Until the rename the old file is the journal, and it has every record
 * whose waiter was told so: a crash at any step loses nothing that was
 * answered. A failure before the rename gives up (journal.new removed),
 * putting back into pend what FINAL had dropped from it; a failure of the
 * directory's fsync after it breaks the journal, as a failed fsync does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "journal_impl.h"

#define NEW_NAME "journal.new"

bool fp_journal_compacting(const fp_journal *j)
{
	return j->c.state != C_IDLE;
}

void fp__journal_compact_free(fp_journal *j)
{
	struct fp_journal_compaction *c = &j->c;

	sbuf_free(&c->snap);
	sbuf_free(&c->tail);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void finish(fp_journal *j, int status)
{
	struct fp_journal_compaction *c = &j->c;
	void (*done)(void *, int) = c->done;
	void *data = c->data;

	c->state = C_IDLE;
	c->err = 0;
	c->snap_done = false;
	c->done = NULL;
	sbuf_free(&c->snap);
	sbuf_free(&c->tail);
	if (done)
		done(data, status);
}

void fp__journal_compact_abort(fp_journal *j, int err)
{
	struct fp_journal_compaction *c = &j->c;
	struct sbuf keep;
	size_t dropped;

	if (c->state == C_IDLE)
		return;
	if (fp_io_active(&c->io)) {
		/* Its callback comes back here once the operation ended. */
		c->err = err;
		fp_io_cancel(&c->io);
		return;
	}
	if (c->state >= C_FINAL_WRITE) {
		/* pend was dropped into tail: the end of tail is what the old
		 * file still lacks, ahead of what was appended since. */
		dropped = (size_t)(c->l_f - c->l_w);
		sbuf_init(&keep);
		sbuf_add(&keep, c->tail.data + c->tail.len - dropped, dropped);
		sbuf_add(&keep, j->pend.data, j->pend.len);
		if (keep.oom) {
			/* Records nobody can write: nothing else is safe. */
			j->broken = -ENOMEM;
		} else {
			sbuf_free(&j->pend);
			j->pend = keep;
		}
		j->fd = c->old_fd;
		j->file_end = c->old_size;
		c->old_fd = -1;
	}
	close(c->fd);
	c->fd = -1;
	unlinkat(j->dirfd, NEW_NAME, 0);
	j->st.last_error = err;
	finish(j, err);
	fp__journal_release(j);
	fp__journal_soon(j);
}

void fp__journal_compact_appended(fp_journal *j, const char *rec, size_t len)
{
	struct fp_journal_compaction *c = &j->c;

	sbuf_add(&c->tail, rec, len);
	if (c->tail.oom && !c->err) {
		c->err = -ENOMEM;
		fp__journal_soon(j);
	}
}

static void io_cb(fp_io *io, ssize_t res, const char *buf)
{
	fp_journal *j = io->data;
	struct fp_journal_compaction *c = &j->c;
	int status = 0;

	if (c->fail_step && c->state == c->fail_step && res >= 0)
		res = -EIO;
	if (res < 0 || c->err) {
		if (c->state == C_FINAL_DIRSYNC) {
			/* Renamed already: the new file is the journal, but
			 * whether the directory says so on the disk is unknown. */
			j->broken = status = c->err ? c->err : (int)res;
		} else {
			fp__journal_compact_abort(j, c->err ? c->err : (int)res);
			return;
		}
	}
	switch (c->state) {
	case C_SNAP:
		c->end += c->snap.len;
		sbuf_reset(&c->snap);
		break;
	case C_FINAL_WRITE:
		c->end += c->tail.len;
		c->state = C_FINAL_SYNC;
		break;
	case C_FINAL_SYNC:
		if (renameat(j->dirfd, NEW_NAME, j->dirfd, "journal") < 0) {
			fp__journal_compact_abort(j, -errno);
			return;
		}
		c->state = C_FINAL_DIRSYNC;
		break;
	case C_FINAL_DIRSYNC:
		close(c->old_fd);
		c->old_fd = -1;
		j->fd = c->fd;
		c->fd = -1;
		j->file_end = c->end;
		/* The new file holds, fsynced, everything appended until l_f. */
		if (j->written < c->l_f)
			j->written = c->l_f;
		if (j->synced < c->l_f)
			j->synced = c->l_f;
		j->st.compactions++;
		j->st.compacted_from = c->old_size;
		j->st.compacted_to = c->end;
		finish(j, status);
		fp__journal_release(j);
		break;
	}
	fp__journal_progress(j);
}

/* Enter FINAL: the old file's writer is idle, its pend all in tail. */
static int begin_final(fp_journal *j)
{
	struct fp_journal_compaction *c = &j->c;
	struct iovec iov;

	c->l_w = j->written;
	c->l_f = j->appended;
	c->old_fd = j->fd;
	c->old_size = j->file_end;
	sbuf_reset(&j->pend);
	c->state = C_FINAL_WRITE;
	if (!c->tail.len) {
		c->state = C_FINAL_SYNC;
		return fp_io_fsync(j->loop, &c->io, c->fd, 1, io_cb);
	}
	iov.iov_base = c->tail.data;
	iov.iov_len = c->tail.len;
	return fp_io_pwrite(j->loop, &c->io, c->fd, &iov, 1, c->end, io_cb);
}

void fp__journal_compact_step(fp_journal *j)
{
	struct fp_journal_compaction *c = &j->c;
	struct iovec iov;
	int r = 0;

	if (fp_io_active(&c->io))
		return;
	if (c->err) {
		fp__journal_compact_abort(j, c->err);
		return;
	}
	switch (c->state) {
	case C_SNAP:
		if (!c->snap_done) {
			r = c->snapshot(c->data, &c->snap);
			if (r < 0 || c->snap.oom) {
				fp__journal_compact_abort(j, r < 0 ? r : -ENOMEM);
				return;
			}
			c->snap_done = r == 0;
			if (c->snap.len) {
				iov.iov_base = c->snap.data;
				iov.iov_len = c->snap.len;
				r = fp_io_pwrite(j->loop, &c->io, c->fd, &iov, 1,
						 c->end, io_cb);
				break;
			}
			if (!c->snap_done) {
				/* An empty slice: the next one next turn. */
				fp__journal_soon(j);
				return;
			}
		}
		c->state = C_WANT_FINAL;
		/* clang takes no comment for it: the attribute, which gcc takes too. */
		__attribute__((fallthrough));
	case C_WANT_FINAL:
		if (fp_io_active(&j->wio) || fp_io_active(&j->sio) ||
		    j->deferred_err)
			return;         /* their callbacks step again */
		r = begin_final(j);
		break;
	case C_FINAL_DIRSYNC:
		r = fp_io_fsync(j->loop, &c->io, j->dirfd, 0, io_cb);
		break;
	case C_FINAL_SYNC:
		r = fp_io_fsync(j->loop, &c->io, c->fd, 1, io_cb);
		break;
	default:
		return;
	}
	if (r < 0)
		fp__journal_compact_abort(j, r);
}

int fp_journal_compact(fp_journal *j, int (*snapshot)(void *data, struct sbuf *b),
		       void (*done)(void *data, int status), void *data)
{
	struct fp_journal_compaction *c = &j->c;
	unsigned char h[FP_JOURNAL_HDR_LEN];
	int r;

	if (c->state != C_IDLE)
		return -EBUSY;
	if (j->closing || j->broken)
		return -ESHUTDOWN;
	if (j->dirfd < 0)
		return -ENOTSUP;
	c->fd = openat(j->dirfd, NEW_NAME, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
		       0600);
	if (c->fd < 0)
		return -errno;
	/* Sixteen bytes into the page cache: no wait worth a round trip. */
	fp_journal_header_put(h, j->salt);
	if (pwrite(c->fd, h, sizeof(h), 0) != sizeof(h)) {
		r = errno ? -errno : -EIO;
		close(c->fd);
		c->fd = -1;
		unlinkat(j->dirfd, NEW_NAME, 0);
		return r;
	}
	c->end = FP_JOURNAL_HDR_LEN;
	c->snapshot = snapshot;
	c->done = done;
	c->data = data;
	c->snap_done = false;
	c->err = 0;
	sbuf_reset(&c->snap);
	sbuf_reset(&c->tail);
	c->state = C_SNAP;
	fp__journal_soon(j);
	return 0;
}
