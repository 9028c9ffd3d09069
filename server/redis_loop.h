/*
 * hiredis's event-library adapter for fp_loop (its ev.addRead ... cleanup
 * hooks), on fp_io_poll_start(): one poll per direction, started and
 * cancelled as hiredis asks. Knows hiredis and the loop, nothing else.
 */
#ifndef FP_SERVER_REDIS_LOOP_H
#define FP_SERVER_REDIS_LOOP_H

#include <hiredis/async.h>

#include "forkpool/loop.h"

/*
 * Attach before redisAsyncSetConnectCallback() (which asks for the first
 * write readiness). The adapter frees itself after hiredis's cleanup hook,
 * once the loop has delivered its polls' last callbacks; *live counts the
 * adapters not yet freed, so an owner knows when the loop may go. -EEXIST
 * when the context already has an adapter, -ENOMEM.
 */
int fp__redis_loop_attach(redisAsyncContext *ac, fp_loop *loop, unsigned *live);

#endif
