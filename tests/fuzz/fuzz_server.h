/*
 * The daemon's front in one process, for the targets that send it requests:
 * the loop, a pool of one worker that never says ready (idle.c), the job
 * store, the API and the HTTP server, as forkpoold puts them together, and
 * two jobs of known ids a request can name (fuzz_server_exchange()).
 */
#ifndef FP_FUZZ_SERVER_H
#define FP_FUZZ_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct fuzz_server;

/* Made once per process (fuzzing is one input after another); exits on failure. */
struct fuzz_server *fuzz_server_new(void);

/*
 * One client's whole exchange over a memory connection: `data` goes in the
 * reads fuzz_cuts() chooses, with the loop and the writes turning between
 * them, perhaps followed by the client's FIN; then the client goes away.
 * Every `{job}` in data stands for the id of a finished job (a map of 3
 * items, cancelled) and every `{queued}` for a queued one (an apply), so a
 * request can reach a job's document, results and stream. Afterwards the
 * store is put back as it was: every other job is forgotten and what they
 * had pending is delivered, or the process aborts (a leak is a finding).
 */
void fuzz_server_exchange(struct fuzz_server *s, const uint8_t *data, size_t size);

/* One request: `head` (the request line and headers, without the blank line) and a body. */
void fuzz_server_request(struct fuzz_server *s, const char *head, const uint8_t *body,
			 size_t len);

#endif
