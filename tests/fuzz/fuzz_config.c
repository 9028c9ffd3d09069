/*
 * fuzz-config: forkpoold's configuration file (server/config.c), read by
 * fp_config_load() from a --config path as forkpoold does, with an empty
 * environment. The file is a memfd named by its /proc/self/fd path, so
 * nothing touches the disk. A refusal must say what was wrong; a file that
 * loads must give a configuration forkpoold can use.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer's entry point has no context argument: the one file of the process. */
	static int fd = -1;
	static char path[64];
	char *envp[] = { NULL };
	char *argv[] = { "forkpoold", "--config", path, NULL };
	fp_exec_options pools[FP_EXEC_MAX];
	char names[FP_EXEC_MAX][72];
	struct fp_config c;
	char err[512];
	int r;

	if (fd < 0) {
		fd = memfd_create("fuzz-config", MFD_CLOEXEC);
		FUZZ_CHECK(fd >= 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	FUZZ_CHECK(ftruncate(fd, 0) == 0);
	FUZZ_CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
	r = fp_config_load(&c, 3, argv, envp, err, sizeof(err));
	if (r == -EINVAL) {
		/* Bad input gets a clear error naming what was wrong. */
		FUZZ_CHECK(err[0] != '\0');
	} else {
		/* A file cannot ask for --help or --version. */
		FUZZ_CHECK(r == FP_CONFIG_RUN);
		FUZZ_CHECK(c.nlisten > 0 && c.listen[0] != NULL);
		fp_config_exec_pools(&c, pools, names);
	}
	fp_config_deinit(&c);
	return 0;
}
