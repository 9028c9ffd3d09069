/*
 * fuzz-pipeline: the body of POST /v1/pipelines (stages, their tasks and
 * options, the reduce, the items), checked in full by the real API
 * (server/api_pipeline.c) and submitted to the real job store: a JSON
 * object, or, when the input does not start with '{', NDJSON items with the
 * stages in the query. The input is the body alone.
 */
#include "fuzz_server.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer's entry point has no context argument: the one server of the process. */
	static struct fuzz_server *server;

	if (!server)
		server = fuzz_server_new();
	if (size && data[0] == '{')
		fuzz_server_request(server, "POST /v1/pipelines HTTP/1.1\r\nHost: fuzz\r\n"
				    "Content-Type: application/json", data, size);
	else
		fuzz_server_request(server, "POST /v1/pipelines?stages=words,lower&workers=0,1"
				    "&buffer=,100&reduce=count HTTP/1.1\r\nHost: fuzz\r\n"
				    "Content-Type: application/x-ndjson", data, size);
	return 0;
}
