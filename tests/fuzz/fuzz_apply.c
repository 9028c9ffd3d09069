/*
 * fuzz-apply: the body of POST /v1/apply, checked by the real API
 * (server/api.c) and submitted to the real job store. The input is the body
 * alone; the request around it is always the same, so every mutation lands
 * in the JSON.
 */
#include "fuzz_server.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer's entry point has no context argument: the one server of the process. */
	static struct fuzz_server *server;

	if (!server)
		server = fuzz_server_new();
	fuzz_server_request(server, "POST /v1/apply HTTP/1.1\r\nHost: fuzz\r\n"
			    "Content-Type: application/json", data, size);
	return 0;
}
