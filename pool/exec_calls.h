/*
 * An exec program's calls during a task (issue 18): shared values, locks
 * and cooperative cancel, asked for with a line and answered with a line on
 * its stdin, the same operations a C task has in include/forkpool/task.h:
 *
 *   program -> us   {"id":7,"call":"get","key":"k"}
 *                   {"id":7,"call":"set","key":"k","value":V[,"ttl_ms":N]}
 *                   {"id":7,"call":"del","key":"k"}
 *                   {"id":7,"call":"incr","key":"k"[,"by":N]}
 *                   {"id":7,"call":"cas","key":"k"[,"expect":V],"value":V[,"ttl_ms":N]}
 *                   {"id":7,"call":"lock","key":"name"[,"timeout_ms":N]}
 *                   {"id":7,"call":"unlock","key":"name"}
 *                   {"id":7,"call":"cancelled"}
 *   us -> program   {"id":7,"ok":true,"value":V}   (get: the value; incr: the
 *                   new number; cas: {"swapped":B,"value":V}; cancelled: B)
 *                   {"id":7,"ok":false,"error":"no such key","errno":"ENOENT"}
 *
 * `id` is the running task's; a call may come any number of times before
 * the task's answer. A call the shim cannot make sense of is answered with
 * ok false and an error naming what was wrong; the program goes on.
 */
#ifndef FP_EXEC_CALLS_H
#define FP_EXEC_CALLS_H

#include <stdint.h>

#include <jansson.h>

#include "worker_kv.h"
#include "worker_main.h"

/* The answer line's object for call `line` of task `id`; NULL on ENOMEM. */
json_t *fp__exec_call(struct fp_worker_kv *kv, struct fp_worker_shm *shm, uint64_t id,
		      json_t *line);

#endif
