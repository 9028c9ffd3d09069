#include <stdarg.h>
#include <stdio.h>

#include "log.h"

void fp_log(const struct fp_logger *log, fp_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char msg[1024];
	va_list ap;
	size_t n = 0;

	if (level > log->level)
		return;

	if (log->prefix)
		n = (size_t)snprintf(msg, sizeof(msg), "%s", log->prefix);
	if (n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	if (log->fn)
		log->fn(log->data, level, msg);
	else
		fprintf(stderr, "forkpool: %s: %s\n", names[level], msg);
}
