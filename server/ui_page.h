/*
 * The status page's bytes and its Content-Security-Policy, generated at
 * build time from server/ui/status.html by server/ui/embed.py (ui_page.c in
 * the build directory): the page is part of the binary, with no file to
 * find at run time.
 */
#ifndef FP_SERVER_UI_PAGE_H
#define FP_SERVER_UI_PAGE_H

#include <stddef.h>

extern const unsigned char fp__ui_page[];
extern const size_t fp__ui_page_len;
/* Allows the page's own inline style and script (by hash) and same-origin fetches only. */
extern const char fp__ui_csp[];

#endif
