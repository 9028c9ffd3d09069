/* The pool's logger: a callback with a level, defaulting to stderr. */
#ifndef FP_LOG_H
#define FP_LOG_H

#include "forkpool.h"

struct fp_logger {
	fp_log_fn fn;          /* NULL: stderr */
	void *data;
	fp_log_level level;    /* messages above it are dropped */
	const char *prefix;    /* put before every message, or NULL */
};

void fp_log(const struct fp_logger *log, fp_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define fp_log_error(l, ...) fp_log((l), FP_LOG_ERROR, __VA_ARGS__)
#define fp_log_warn(l, ...)  fp_log((l), FP_LOG_WARN, __VA_ARGS__)
#define fp_log_info(l, ...)  fp_log((l), FP_LOG_INFO, __VA_ARGS__)
#define fp_log_debug(l, ...) fp_log((l), FP_LOG_DEBUG, __VA_ARGS__)

#endif
