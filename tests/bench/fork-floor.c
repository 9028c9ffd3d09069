/*
 * The machine's fork floor: how many fork + _exit + waitpid cycles a second
 * a small process manages, one at a time. A pool that forks a worker per
 * task (max_tasks_per_child = 1) cannot beat this, so scripts/bench reports
 * that mode as a fraction of it.
 *
 *   fork-floor [COUNT]     COUNT cycles (default 5000), after 100 unmeasured
 *
 * Prints one line:  result name=fork-floor forks=N seconds=S rate=R
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 100

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One cycle. The child does nothing but leave: no stdio flush, no atexit. */
static int fork_once(void)
{
	int status;
	pid_t pid, r;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		_exit(0);
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

int main(int argc, char **argv)
{
	long count = argc > 1 ? strtol(argv[1], NULL, 10) : 5000;
	double t0, t1;
	int rc;

	if (count <= 0) {
		fprintf(stderr, "usage: fork-floor [COUNT > 0]\n");
		return 2;
	}
	for (int i = 0; i < WARMUP; i++) {
		if ((rc = fork_once()) < 0)
			goto fail;
	}
	t0 = now_s();
	for (long i = 0; i < count; i++) {
		if ((rc = fork_once()) < 0)
			goto fail;
	}
	t1 = now_s();
	printf("result name=fork-floor forks=%ld seconds=%.6f rate=%.1f\n",
	       count, t1 - t0, (double)count / (t1 - t0));
	return 0;

fail:
	fprintf(stderr, "fork-floor: %s\n", strerror(-rc));
	return 1;
}
