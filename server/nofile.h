/*
 * The daemon's open-file budget: the soft RLIMIT_NOFILE raised toward what
 * its connection cap needs, as far as the hard limit allows. Many systems
 * still start processes with a soft limit of 1024 (for select()'s sake)
 * and a much higher hard one, for a program that needs more to raise its
 * own: forkpoold holds one descriptor per connection, so it does.
 */
#ifndef FP_SERVER_NOFILE_H
#define FP_SERVER_NOFILE_H

#include <stdint.h>

struct fp_nofile {
	uint64_t need;               /* what was asked for */
	uint64_t before, after;      /* the soft limit before and after */
	uint64_t hard;               /* the hard limit; UINT64_MAX: unlimited */
};

/*
 * Raise the soft limit to `need`, or to the hard limit when that is lower;
 * never lower it. 0 with `out` filled (after < need: the hard limit is too
 * low), or -errno when the limit cannot be read or set.
 */
int fp_nofile_raise(uint64_t need, struct fp_nofile *out);

#endif
