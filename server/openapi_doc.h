/*
 * The API's description, docs/openapi.json as compact JSON with the
 * project's version in info.version, generated at build time by
 * server/openapi/render.py (openapi_doc.c in the build directory).
 */
#ifndef FP_SERVER_OPENAPI_DOC_H
#define FP_SERVER_OPENAPI_DOC_H

#include <stddef.h>

extern const unsigned char fp__openapi_doc[];
extern const size_t fp__openapi_doc_len;

#endif
