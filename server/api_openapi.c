/*
 * GET /v1/openapi.json: the API's description (docs/openapi.json), compiled
 * into the binary (openapi_doc.h), so that it is the one this binary's
 * routes were checked against. It holds no data, so it is served without
 * the token, as the status page is: tools fetch it before they hold one.
 */
#include "api_impl.h"
#include "openapi_doc.h"

void fp__api_openapi(fp_api *api, fp_http_request *req)
{
	(void)api;
	fp_http_add_header(req, "X-Content-Type-Options", "nosniff");
	fp_http_respond(req, 200, "application/json", (const char *)fp__openapi_doc,
			fp__openapi_doc_len);
}
