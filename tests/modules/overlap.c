/*
 * Tasks that record how many of them ran at once, for the concurrency
 * limit tests: the task itself measures it, whatever the pool reports.
 *
 * overlap.hold, overlap.free and overlap.other (three names, one function,
 * so that a test can limit some and not the others), args "PATH MS" (a JSON string): under
 * an exclusive flock on PATH, add one to the running count kept in it and
 * raise the most seen; sleep MS; take one off again. PATH holds
 * "RUNNING MOST" in text; the task returns the most seen so far.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "forkpool/task.h"

/* Add `delta` to the running count in fd (locked); the most seen after. */
static long count(int fd, int delta)
{
	char buf[64] = "";
	long running = 0, most = 0;
	ssize_t n;
	int len;

	flock(fd, LOCK_EX);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n > 0)
		sscanf(buf, "%ld %ld", &running, &most);
	running += delta;
	if (running > most)
		most = running;
	len = snprintf(buf, sizeof(buf), "%ld %ld\n", running, most);
	if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)len, 0) != len)
		most = -1;
	flock(fd, LOCK_UN);
	return most;
}

static int overlap_run(fp_task_ctx *ctx, const char *args, size_t len)
{
	char path[256], out[32];
	long ms, most;
	int fd, l;

	if (len < 2 || sscanf(args, "\"%255s %ld\"", path, &ms) != 2)
		return fp_task_error(ctx, "overlap: expected \"PATH MS\"");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return fp_task_error(ctx, "overlap: cannot open the file");
	count(fd, 1);
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0)
		;
	most = count(fd, -1);
	close(fd);
	if (most < 0)
		return fp_task_error(ctx, "overlap: cannot write the file");
	l = snprintf(out, sizeof(out), "%ld", most);
	return fp_task_return(ctx, out, (size_t)l);
}

static const struct fp_task tasks[] = {
	{ "overlap.hold", overlap_run, "\"PATH MS\" -> the most running at once so far" },
	{ "overlap.free", overlap_run, "the same, under another name" },
	{ "overlap.other", overlap_run, "the same, under a third name" },
	{ NULL, NULL, NULL },
};

FP_MODULE("overlap", tasks);
