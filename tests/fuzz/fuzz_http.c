/*
 * fuzz-http: bytes from a client, through the real connection code (the
 * parser in place, limits, chunked bodies, Expect, keep-alive and pipelined
 * requests, half-close) and the real API with its job store, as forkpoold
 * runs them, over a memory connection: no socket. Each input is one client's
 * bytes; {job} and {queued} name the two jobs the store holds (fuzz_server.h).
 */
#include "fuzz_server.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer's entry point has no context argument: the one server of the process. */
	static struct fuzz_server *server;

	if (!server)
		server = fuzz_server_new();
	fuzz_server_exchange(server, data, size);
	return 0;
}
