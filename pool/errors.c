/*
 * Names for error codes and states: one table each, shared by every caller;
 * and the one way a message reaches a caller's errbuf.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "forkpool.h"

int fp_errbuf_printf(char *errbuf, size_t errlen, int err, const char *fmt, ...)
{
	va_list ap;

	if (errbuf && errlen) {
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return err;
}

const char *fp_strerror(int err)
{
	switch (err) {
#define FP__ERR_CASE(name, value, msg) case FP_E##name: return msg;
	FP_ERRNO_MAP(FP__ERR_CASE)
#undef FP__ERR_CASE
	}
	/* strerror() is not thread-safe; strerrordesc_np() returns a static string. */
	const char *s = err < 0 ? strerrordesc_np(-err) : NULL;
	return s ? s : "unknown error";
}

const char *fp_item_status_name(fp_item_status status)
{
	static const char *const names[] = {
		[FP_ITEM_OK] = "ok",
		[FP_ITEM_TASK_ERROR] = "task_error",
		[FP_ITEM_CRASH] = "crash",
		[FP_ITEM_TIMEOUT] = "timeout",
		[FP_ITEM_CANCELLED] = "cancelled",
		[FP_ITEM_TOO_LARGE] = "too_large",
		[FP_ITEM_BAD_OUTPUT] = "bad_output",
		[FP_ITEM_UNKNOWN_TASK] = "unknown_task",
		[FP_ITEM_START_FAILURE] = "start_failure",
	};
	if ((unsigned)status < sizeof(names) / sizeof(names[0]) && names[status])
		return names[status];
	return "error";
}

const char *fp_worker_state_name(fp_worker_state state)
{
	static const char *const names[] = {
		[FP_WORKER_STARTING] = "starting",
		[FP_WORKER_IDLE] = "idle",
		[FP_WORKER_BUSY] = "busy",
		[FP_WORKER_RETIRING] = "retiring",
		[FP_WORKER_STOPPING] = "stopping",
	};
	if ((unsigned)state < sizeof(names) / sizeof(names[0]))
		return names[state];
	return "unknown";
}
