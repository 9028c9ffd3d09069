/*
 * The items of map and pipeline: an NDJSON file or stdin, read straight into
 * libcurl's send buffer as the body goes out, so that a file of any size is
 * never held in memory. A regular file goes with its length; a pipe or a
 * terminal with chunked transfer encoding.
 */
#ifndef FORKPOOL_CLI_UPLOAD_H
#define FORKPOOL_CLI_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

struct cli_upload {
	int fd;                 /* -1 when closed */
	int own;                /* opened here (closed by deinit), not stdin */
	int64_t size;           /* bytes left from the start, -1 when not known */
	uint64_t sent;          /* bytes read so far */
	int err;                /* a read error (negative errno), or 0 */
	int eof;                /* every byte was read */
	const char *name;       /* "items.ndjson" or "stdin", for messages */
};

/* path NULL or "-": stdin. Returns 0 or a negative errno. */
int cli_upload_open(struct cli_upload *u, const char *path);
void cli_upload_deinit(struct cli_upload *u);
/* A CURLOPT_READFUNCTION over the upload (its userdata). */
size_t cli_upload_read(char *buf, size_t size, size_t nitems, void *userdata);

#endif
