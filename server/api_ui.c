/*
 * The status page (GET / and /ui): one HTML document compiled into the
 * binary (ui_page.h), answered with headers that keep it to itself. It
 * holds no data, so it is served without the token; its script asks for
 * one when the JSON endpoints it reads answer 401.
 */
#include "api_impl.h"
#include "ui_page.h"

void fp__api_ui(fp_api *api, fp_http_request *req)
{
	(void)api;
	fp_http_add_header(req, "Content-Security-Policy", fp__ui_csp);
	/* Always the binary's own page: a reload after an upgrade shows the new one. */
	fp_http_add_header(req, "Cache-Control", "no-store");
	fp_http_add_header(req, "X-Content-Type-Options", "nosniff");
	fp_http_add_header(req, "Referrer-Policy", "no-referrer");
	fp_http_respond(req, 200, "text/html; charset=utf-8", (const char *)fp__ui_page,
			fp__ui_page_len);
}
