/*
 * For the test modules: hooks append "<module>:<hook>\n" to the file named by
 * FP_TEST_HOOK_LOG, when it is set, so a test can see which hooks ran, in
 * which order and in which process. A file rather than memory because hooks
 * run in the master and in forked workers alike.
 */
#ifndef FP_TEST_HOOKLOG_H
#define FP_TEST_HOOKLOG_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void hook_log(const char *module, const char *hook)
{
	const char *path = getenv("FP_TEST_HOOK_LOG");
	char line[128];
	int fd, n;

	if (!path || !*path)
		return;
	n = snprintf(line, sizeof(line), "%s:%s\n", module, hook);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	/* O_APPEND: one write() per line keeps lines whole across processes. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) < 0) {
		/* A test that reads the log will see the line missing. */
	}
	close(fd);
}

#endif
