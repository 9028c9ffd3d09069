/*
 * A task for the retry and attempt tests: it counts its own starts in a
 * file, so a test knows exactly how many times an item ran, whatever the
 * pool reports.
 *
 * attempts.starts, args "PATH HOW N" (a JSON string): append one byte to
 * PATH, so that its size is the number of starts so far; while that is at
 * most N, fail by HOW:
 *   crash      the worker dies of SIGKILL
 *   fail       a task error, "failed at start K"
 *   hang       sleep until killed (for timeouts)
 *   emitcrash  emit K (sent to the master), then die of SIGKILL
 * and once it is over N, return the number of starts.
 *
 * attempts.note, args "PATH I V" (a JSON string): append the line "I" to
 * PATH and return V, so that a test counts each pipeline input's runs
 * (one short O_APPEND write: lines from several workers never mix).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "forkpool/task.h"

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0)
		;
}

static int attempts_starts(fp_task_ctx *ctx, const char *args, size_t len)
{
	char path[256], how[16], out[32];
	struct stat st;
	long n;
	int fd, l;

	if (len < 2 || sscanf(args, "\"%255s %15s %ld\"", path, how, &n) != 3)
		return fp_task_error(ctx, "attempts.starts: expected \"PATH HOW N\"");
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "x", 1) != 1 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return fp_task_error(ctx, "attempts.starts: cannot count in the file");
	}
	close(fd);
	l = snprintf(out, sizeof(out), "%lld", (long long)st.st_size);
	if (st.st_size > n)
		return fp_task_return(ctx, out, (size_t)l);
	if (!strcmp(how, "fail")) {
		char msg[64];

		snprintf(msg, sizeof(msg), "failed at start %s", out);
		return fp_task_error(ctx, msg);
	}
	if (!strcmp(how, "hang")) {
		for (;;)
			sleep_ms(1000);
	}
	if (!strcmp(how, "emitcrash")) {
		/* Two emits over 1 ms apart: the worker sends the first with the second. */
		fp_emit(ctx, out, (size_t)l);
		sleep_ms(5);
		fp_emit(ctx, out, (size_t)l);
		sleep_ms(20);
	}
	kill(getpid(), SIGKILL);
	return 0;
}

static int attempts_note(fp_task_ctx *ctx, const char *args, size_t len)
{
	char path[256], line[24];
	long i, v;
	int fd, l, ok;

	if (len < 2 || sscanf(args, "\"%255s %ld %ld\"", path, &i, &v) != 3)
		return fp_task_error(ctx, "attempts.note: expected \"PATH I V\"");
	l = snprintf(line, sizeof(line), "%ld\n", i);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	ok = fd >= 0 && write(fd, line, (size_t)l) == l;
	if (fd >= 0)
		close(fd);
	if (!ok)
		return fp_task_error(ctx, "attempts.note: cannot write the file");
	l = snprintf(line, sizeof(line), "%ld", v);
	return fp_task_return(ctx, line, (size_t)l);
}

static const struct fp_task tasks[] = {
	{ "attempts.starts", attempts_starts, "\"PATH HOW N\" -> fails by HOW for N starts" },
	{ "attempts.note", attempts_note, "\"PATH I V\" -> V, after appending the line I to PATH" },
	{ NULL },
};

FP_MODULE("attempts", tasks);
