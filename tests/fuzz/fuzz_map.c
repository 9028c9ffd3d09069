/*
 * fuzz-map: the body of POST /v1/map, a JSON object or, when the input's
 * hash says so, NDJSON items with the task in the query (?task=square),
 * checked by the real API (server/api.c, server/ndjson.c) and submitted to
 * the real job store. The input is the body alone.
 */
#include "fuzz_server.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer's entry point has no context argument: the one server of the process. */
	static struct fuzz_server *server;

	if (!server)
		server = fuzz_server_new();
	/* A body that starts with '{' is sent as JSON; any other as NDJSON. */
	if (size && data[0] == '{')
		fuzz_server_request(server, "POST /v1/map HTTP/1.1\r\nHost: fuzz\r\n"
				    "Content-Type: application/json", data, size);
	else
		fuzz_server_request(server, "POST /v1/map?task=square&chunksize=2 HTTP/1.1\r\n"
				    "Host: fuzz\r\nContent-Type: application/x-ndjson", data, size);
	return 0;
}
