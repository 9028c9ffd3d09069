/* Error messages for callers that pass a buffer (errbuf, errlen) to hear why. */
#ifndef FP_ERRORS_H
#define FP_ERRORS_H

#include <stddef.h>

/*
 * Formats a message into errbuf, cut to errlen, unless errbuf is NULL or
 * errlen 0 (the caller did not ask); returns err, so that a failure is one
 * line: `return fp__errbuf_printf(errbuf, errlen, -EINVAL, "...", ...);`.
 */
int fp__errbuf_printf(char *errbuf, size_t errlen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
