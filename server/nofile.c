/*
 * Raising the soft RLIMIT_NOFILE for the connection cap; see nofile.h.
 * main.c decides how many descriptors it needs and logs what was done.
 */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "nofile.h"

static uint64_t lim_value(rlim_t v)
{
	return v == RLIM_INFINITY ? UINT64_MAX : (uint64_t)v;
}

int fp_nofile_raise(uint64_t need, struct fp_nofile *out)
{
	struct rlimit rl;
	uint64_t want;

	memset(out, 0, sizeof(*out));
	out->need = need;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	out->before = out->after = lim_value(rl.rlim_cur);
	out->hard = lim_value(rl.rlim_max);
	if (out->before >= need)
		return 0;
	want = need < out->hard ? need : out->hard;
	rl.rlim_cur = (rlim_t)want;
	/* An unlimited hard limit still stops at the kernel's fs.nr_open:
	 * setrlimit() says EPERM past it. */
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	out->after = want;
	return 0;
}
