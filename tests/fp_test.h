/* Helpers shared by the test suites that drive a pool's loop. */
#ifndef FP_TEST_H
#define FP_TEST_H

#include <stdint.h>

#include "forkpool.h"

/*
 * Run the pool's loop until cond(data) holds, checking every 2 ms; 1 when it
 * did, 0 when `ms` passed first. Waits on a condition, never a fixed time.
 */
int fp_test_run_until(fp_pool *p, int (*cond)(void *), void *data, uint64_t ms);

#endif
