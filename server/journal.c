/*
 * The journal's writer: group commit through the loop's file operations
 * and the fsync policies (journal.h says what each promises). It knows
 * records only as bytes; not what they say, nor the directory they live in.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "forkpool/list.h"
#include "journal_impl.h"

/* A write buffer larger than this is freed after its write, not kept. */
#define FLIGHT_KEEP_MAX (4u << 20)

int fp_fsync_policy_parse(const char *name, enum fp_fsync_policy *out)
{
	if (!name || !out)
		return -EINVAL;
	if (!strcasecmp(name, "always"))
		*out = FP_FSYNC_ALWAYS;
	else if (!strcasecmp(name, "interval"))
		*out = FP_FSYNC_INTERVAL;
	else if (!strcasecmp(name, "never"))
		*out = FP_FSYNC_NEVER;
	else
		return -EINVAL;
	return 0;
}

const char *fp_fsync_policy_name(enum fp_fsync_policy p)
{
	switch (p) {
	case FP_FSYNC_ALWAYS:
		return "always";
	case FP_FSYNC_INTERVAL:
		return "interval";
	case FP_FSYNC_NEVER:
		return "never";
	}
	return "?";
}

/* --- waiters ------------------------------------------------------------- */

static void wait_link(fp_journal *j, struct fp_journal_wait *w)
{
	w->j = j;
	FP_LIST_APPEND_TAIL(j->wh, j->wt, w);
}

static void wait_unlink(struct fp_journal_wait *w)
{
	fp_journal *j = w->j;

	FP_LIST_UNLINK_TAIL(j->wh, j->wt, w);
	w->prev = w->next = NULL;
	w->j = NULL;
}

void fp_journal_wait_cancel(struct fp_journal_wait *w)
{
	if (w && w->j)
		wait_unlink(w);
}

static bool needs_sync(const fp_journal *j, const struct fp_journal_wait *w)
{
	return w->sync || j->policy == FP_FSYNC_ALWAYS;
}

/*
 * Call every waiter whose record is as safe as it asked: written, or
 * written and fsynced; with the broken journal's error when that fsync
 * will never come. A callback may append or wait again: the list is
 * walked afresh after each.
 */
void fp__journal_release(fp_journal *j)
{
	struct fp_journal_wait *w;
	int status;

again:
	for (w = j->wh; w; w = w->next) {
		if (w->upto > j->written)
			continue;
		if (!needs_sync(j, w))
			status = 0;
		else if (w->upto <= j->synced)
			status = 0;
		else if (j->broken)
			status = j->broken;
		else
			continue;
		wait_unlink(w);
		w->cb(w, status);
		goto again;
	}
}

/* The records in logical (from, to] are lost: tell their waiters. */
static void release_failed(fp_journal *j, uint64_t from, uint64_t to, int err)
{
	struct fp_journal_wait *w;

again:
	for (w = j->wh; w; w = w->next) {
		if (w->upto <= from || w->upto > to)
			continue;
		wait_unlink(w);
		w->cb(w, err);
		goto again;
	}
}

/* --- writes and fsyncs --------------------------------------------------- */


static void write_failed(fp_journal *j, int err)
{
	uint64_t from = j->written;

	j->st.write_errors++;
	j->st.last_error = err;
	/*
	 * Part of the batch may have reached the file (a short write, then
	 * ENOSPC): cut it, so neither the next write (which goes to the same
	 * offset but may be shorter) nor a replay finds whole records whose
	 * submitters were told they failed.
	 */
	if (ftruncate(j->fd, (off_t)j->file_end) < 0 && !j->broken)
		j->broken = -errno;
	j->written = j->batch_end;
	sbuf_reset(&j->flight);
	/* Those records are in a compaction's tail too: give it up rather
	 * than let the new file bring back what their waiters hear failed. */
	if ((j->c.state == C_SNAP || j->c.state == C_WANT_FINAL) && !j->c.err)
		j->c.err = err;
	release_failed(j, from, j->batch_end, err);
}

static void write_cb(fp_io *io, ssize_t res, const char *buf)
{
	fp_journal *j = io->data;

	if (res < 0) {
		write_failed(j, (int)res);
	} else {
		j->file_end += j->flight.len;
		j->st.bytes += j->flight.len;
		j->st.writes++;
		j->written = j->batch_end;
		sbuf_reset(&j->flight);
		/* A big batch (a million-item job) leaves no big buffer behind. */
		if (j->flight.cap > FLIGHT_KEEP_MAX)
			sbuf_free(&j->flight);
		fp__journal_release(j);
	}
	fp__journal_progress(j);
}


static void kick(fp_journal *j)
{
	struct sbuf t;
	struct iovec iov;
	int r;

	/* Compaction's last steps own the file: appends wait for them. */
	if (fp_io_active(&j->wio) || j->deferred_err || !j->pend.len ||
	    j->c.state >= C_WANT_FINAL)
		return;
	t = j->flight;
	j->flight = j->pend;
	j->pend = t;
	j->batch_end = j->appended;
	iov.iov_base = j->flight.data;
	iov.iov_len = j->flight.len;
	r = fp_io_pwrite(j->loop, &j->wio, j->fd, &iov, 1, j->file_end, write_cb);
	if (r < 0) {
		/* Its waiters must hear it from the loop, not from an append. */
		j->deferred_err = r;
		fp__journal_soon(j);
	}
}

static void sync_cb(fp_io *io, ssize_t res, const char *buf)
{
	fp_journal *j = io->data;

	j->st.fsyncs++;
	if (res < 0) {
		j->broken = (int)res;
		j->st.last_error = (int)res;
	} else {
		j->synced = j->sync_target;
	}
	fp__journal_release(j);
	fp__journal_progress(j);
}

static bool sync_wanted(const fp_journal *j)
{
	const struct fp_journal_wait *w;

	if (j->policy == FP_FSYNC_ALWAYS || j->closing)
		return true;
	for (w = j->wh; w; w = w->next)
		if (w->sync && w->upto <= j->written)
			return true;
	return false;
}

static int start_sync(fp_journal *j)
{
	if (fp_io_active(&j->sio) || j->broken || j->written <= j->synced ||
	    j->c.state >= C_WANT_FINAL)
		return 0;
	j->sync_target = j->written;
	/* fdatasync: an appended file's size is data to it. */
	return fp_io_fsync(j->loop, &j->sio, j->fd, 1, sync_cb);
}

static void interval_cb(fp_timer *t)
{
	fp_journal *j = t->data;
	int r = start_sync(j);

	if (r < 0) {
		j->broken = r;
		fp__journal_release(j);
	}
}

static void finish_close(fp_journal *j);

void fp__journal_progress(fp_journal *j)
{
	int r;

	if (j->c.state != C_IDLE)
		fp__journal_compact_step(j);
	kick(j);
	if (sync_wanted(j) && (r = start_sync(j)) < 0) {
		j->broken = r;
		fp__journal_release(j);
	}
	if (j->policy == FP_FSYNC_INTERVAL && !j->closing &&
	    j->written > j->synced && !fp_timer_active(&j->interval))
		fp_timer_start(j->loop, &j->interval, j->interval_ms, interval_cb);
	if (j->closing && !fp_journal_busy(j))
		finish_close(j);
}

static void soon_cb(fp_timer *t)
{
	fp_journal *j = t->data;
	int err = j->deferred_err;

	if (err) {
		j->deferred_err = 0;
		j->batch_end = j->appended;
		write_failed(j, err);
	}
	fp__journal_release(j);
	fp__journal_progress(j);
}

void fp__journal_soon(fp_journal *j)
{
	if (!fp_timer_active(&j->soon))
		fp_timer_start(j->loop, &j->soon, 0, soon_cb);
}

/* --- appending ----------------------------------------------------------- */

struct sbuf *fp_journal_buf(fp_journal *j)
{
	return &j->pend;
}

uint32_t fp_journal_salt(const fp_journal *j)
{
	return j->salt;
}

size_t fp_journal_begin(fp_journal *j)
{
	return fp_jrec_begin(&j->pend);
}

int fp_journal_end(fp_journal *j, size_t start, uint16_t type,
		   struct fp_journal_wait *w)
{
	int r;

	if (j->broken || j->closing) {
		j->pend.len = start;
		return j->broken ? j->broken : -ESHUTDOWN;
	}
	r = fp_jrec_end(&j->pend, start, type, j->salt);
	if (r < 0)
		return r;
	if (j->c.state == C_SNAP || j->c.state == C_WANT_FINAL)
		fp__journal_compact_appended(j, j->pend.data + start,
					     j->pend.len - start);
	j->appended += j->pend.len - start;
	j->st.records++;
	if (w) {
		w->sync = false;
		w->upto = j->appended;
		wait_link(j, w);
	}
	kick(j);
	return 0;
}

void fp_journal_flush(fp_journal *j, struct fp_journal_wait *w)
{
	w->sync = true;
	w->upto = j->appended;
	wait_link(j, w);
	fp__journal_soon(j);
}

void fp_journal_wait_appended(fp_journal *j, struct fp_journal_wait *w)
{
	w->sync = false;
	w->upto = j->appended;
	wait_link(j, w);
	/* Already written: the callback still comes from the loop. */
	if (w->upto <= j->written)
		fp__journal_soon(j);
}

void fp_journal_drop(fp_journal *j, size_t start)
{
	if (start <= j->pend.len)
		j->pend.len = start;
}

int fp_journal_error(const fp_journal *j)
{
	return j->broken ? j->broken : j->closing ? -ESHUTDOWN : 0;
}

void fp_journal_stats_get(const fp_journal *j, struct fp_journal_stats *out)
{
	*out = j->st;
	out->broken = j->broken;
	out->size = j->file_end;
	out->fsync = j->policy;
}

/* --- life ---------------------------------------------------------------- */

int fp__journal_new(fp_journal **out, fp_loop *loop, int fd, uint64_t end,
		    uint32_t salt, enum fp_fsync_policy policy,
		    uint64_t interval_ms)
{
	fp_journal *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->loop = loop;
	j->fd = fd;
	j->salt = salt;
	j->dirfd = j->lockfd = -1;
	j->policy = policy;
	j->interval_ms = interval_ms ? interval_ms : FP_JOURNAL_FSYNC_INTERVAL_MS;
	sbuf_init(&j->pend);
	sbuf_init(&j->flight);
	j->file_end = end;
	j->wio.data = j;
	j->sio.data = j;
	j->interval.data = j;
	j->soon.data = j;
	j->c.fd = j->c.old_fd = -1;
	j->c.io.data = j;
	sbuf_init(&j->c.snap);
	sbuf_init(&j->c.tail);
	*out = j;
	return 0;
}

bool fp_journal_busy(const fp_journal *j)
{
	return fp_io_active(&j->wio) || fp_io_active(&j->sio) ||
	       j->pend.len || j->deferred_err || j->c.state != C_IDLE ||
	       (!j->broken && j->written > j->synced && j->closing);
}

void fp_journal_free(fp_journal *j)
{
	if (!j || fp_io_active(&j->wio) || fp_io_active(&j->sio) ||
	    fp_io_active(&j->c.io))
		return;
	fp__journal_compact_free(j);
	fp_timer_stop(&j->interval);
	fp_timer_stop(&j->soon);
	sbuf_free(&j->pend);
	sbuf_free(&j->flight);
	if (j->fd >= 0)
		close(j->fd);
	if (j->dirfd >= 0)
		close(j->dirfd);
	/* The lock goes last: the file is closed before another may open it. */
	if (j->lockfd >= 0)
		close(j->lockfd);
	free(j);
}

static void finish_close(fp_journal *j)
{
	void (*cb)(void *data) = j->close_cb;
	void *data = j->close_data;
	struct fp_journal_wait *w;

	/* Anyone still waiting waited for something that will not come. */
	while ((w = j->wh)) {
		wait_unlink(w);
		w->cb(w, j->broken ? j->broken : -ESHUTDOWN);
	}
	fp_journal_free(j);
	if (cb)
		cb(data);
}

void fp_journal_close(fp_journal *j, void (*cb)(void *data), void *data)
{
	j->closing = true;
	j->close_cb = cb;
	j->close_data = data;
	fp_timer_stop(&j->interval);
	/* A compaction still taking its snapshot is given up; one that has
	 * begun to switch files finishes first. */
	if (j->c.state == C_SNAP || j->c.state == C_WANT_FINAL)
		j->c.err = -ESHUTDOWN;
	/* Even with nothing to do, the callback comes from the loop. */
	fp__journal_soon(j);
}
