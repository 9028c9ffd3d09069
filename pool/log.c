#include <stdarg.h>
#include <stdio.h>

#include "log.h"

void fp_log(const struct fp_logger *log, fp_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char msg[1024];
	va_list ap;

	if (level > log->level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log->fn)
		log->fn(log->data, level, msg);
	else
		fprintf(stderr, "forkpool: %s: %s\n", names[level], msg);
}
