/*
 * HTTP/1.1 server on an fp_loop (either backend), built on http-parser.
 *
 * One request per connection at a time: when a request is complete (headers
 * and body) the handler is called; the connection reads no further request
 * until that one's response has been sent, so pipelined requests are answered
 * in order with no extra bookkeeping. Keep-alive by default, HEAD answered
 * without a body, chunked request bodies decoded, `Expect: 100-continue`
 * answered (or refused with 413 when the declared body is over the limit),
 * limits answered with 431, 414, 413, 408, 405 (the API chooses), header
 * and body deadlines that a slow client cannot extend, a connection cap
 * that closes idle connections to admit new ones, an optional cap per
 * client address (429), and a client that half-closes after its request
 * still answered. Responses are either whole (fp_http_respond) or streamed
 * with chunked encoding (fp_http_stream_*), with back-pressure: a stream
 * write reports when the connection's unsent output has reached its
 * high-water mark, and a drain callback says when there is room again.
 *
 * Lifetimes: a request is owned by the server. It stays valid until its
 * response is finished (fp_http_respond, or fp_http_stream_end) and, if the
 * client goes away first, until the close callback set with
 * fp_http_on_close() has run; after either the handler must not touch it.
 * (One tolerance: a request finished from outside its own handler call, say
 * from a timer, is not reused for the next pipelined request before the
 * loop turns, so clearing its callbacks right after finishing it is
 * harmless.) A client that leaves while the handler holds a request with no
 * close callback leaves it allocated until respond/stream_end, which then
 * return -EPIPE. A client's FIN alone is not leaving: it may have only
 * half-closed, so its complete requests are answered; a client that closed
 * its socket is known to be gone when a write to it fails (or it resets).
 */
#ifndef FP_SERVER_HTTP_H
#define FP_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "forkpool/loop.h"

typedef struct fp_http_server fp_http_server;
typedef struct fp_http_request fp_http_request;

struct fp_http_limits {
	size_t max_header_bytes;     /* request line + headers; 431 over it (16 KiB) */
	size_t max_uri_bytes;        /* 414 over it (8 KiB) */
	size_t max_body_bytes;       /* 413 over it (64 MiB) */
	/*
	 * Open connections at most (16384). At the cap, the connection idle
	 * the longest (no request under way and nothing to send: a keep-alive
	 * one between requests, or a new one that has sent nothing) is closed
	 * to admit the new one; with none idle, the new one is accepted and
	 * closed at once (counted as refused).
	 */
	unsigned max_connections;
	/*
	 * Open connections from one client address (IPv4, or IPv6 in full) at
	 * most; 0: no cap (the default). Unix-socket peers are not counted. At
	 * its cap, that address's longest-idle connection is closed to admit
	 * the new one; with none idle, the new one is answered 429
	 * too_many_connections and closed.
	 */
	unsigned max_connections_per_ip;
	/*
	 * The request line and headers must be complete this long after the
	 * request began (its first byte; a new connection's, its accept): 408.
	 * Bytes arriving do not move it (10 s).
	 */
	uint64_t header_timeout_ms;
	/*
	 * The body deadline: this long after the headers (20 s) plus 1 s for
	 * each body_min_rate bytes received (500), as Apache's mod_reqtimeout
	 * `body=20,MinRate=500`: a client must keep up that rate after the
	 * grace, and a byte now and then does not extend it. 408 naming it.
	 * body_min_rate 0: the body must be complete within body_timeout_ms.
	 */
	uint64_t body_timeout_ms;
	uint64_t body_min_rate;      /* bytes a second */
	uint64_t idle_timeout_ms;    /* keep-alive connection with no request (60 s): closed */
	/*
	 * A stream's window: the unsent output a streamed response may have
	 * queued on its connection (256 KiB). A producer that writes at most
	 * fp_http_stream_room() at a time holds no more; a stalled reader
	 * costs this much, not its response.
	 */
	size_t high_water_bytes;
};

void fp_http_limits_init(struct fp_http_limits *lim);

/* Called once per complete request. */
typedef void (*fp_http_handler)(fp_http_request *req, void *data);

/*
 * Log hook: one call per finished request (method, target, status, bytes
 * sent, duration). May be NULL.
 */
typedef void (*fp_http_access_log)(void *data, const fp_http_request *req,
				   int status, uint64_t bytes, uint64_t usec);

int fp_http_server_new(fp_http_server **out, fp_loop *loop,
		       const struct fp_http_limits *lim,
		       fp_http_handler handler, void *data);

/*
 * Listen on "HOST:PORT" ("127.0.0.1:8080", "[::1]:0", "localhost:8080") or
 * "unix:/path". Port 0 picks a free port; the address actually bound is
 * written to `bound` ("127.0.0.1:41234", "[::1]:41234", "unix:/path").
 * Errors: negative errno, with a message in errbuf.
 */
int fp_http_listen(fp_http_server *srv, const char *addr, char *bound, size_t boundlen,
		   char *errbuf, size_t errlen);

/*
 * The permissions of the socket files of later unix:/path listeners (0660
 * unless set: the owner and its group may connect), whatever the umask.
 */
void fp_http_set_unix_mode(fp_http_server *srv, unsigned mode);

/* Is the address a loopback one (127.0.0.0/8, ::1, localhost, unix:)? */
int fp_http_addr_is_loopback(const char *addr);

void fp_http_set_access_log(fp_http_server *srv, fp_http_access_log fn, void *data);

/* Stop accepting; open connections go on. */
void fp_http_server_stop_accepting(fp_http_server *srv);
/*
 * Close every connection and listener, running pending close callbacks,
 * then free. Runs the loop until the last socket is closed.
 */
void fp_http_server_free(fp_http_server *srv);

struct fp_http_stats {
	uint64_t accepted, open, refused;   /* refused: over max_connections, none idle */
	uint64_t evicted;                   /* idle ones closed at a cap to admit another */
	uint64_t refused_per_ip;            /* answered 429: over max_connections_per_ip */
	uint64_t timed_out;                 /* answered 408: a header or body deadline */
	uint64_t requests;
	uint64_t responses[6];              /* by status class: [1]=1xx ... [5]=5xx */
	uint64_t writes;                    /* write operations: pipelined responses share one */
	/*
	 * By exact status code, 100 to 599: by_code[status - 100]. Counted with
	 * responses[] (each response, the server's own errors and 100 Continue
	 * included), so the codes of a class sum to its class count.
	 */
	uint64_t by_code[500];
};
void fp_http_server_stats(const fp_http_server *srv, struct fp_http_stats *out);

/* --- the request ---------------------------------------------------------- */

const char *fp_http_method(const fp_http_request *req);   /* "GET", "HEAD", ... */
/* Path without the query, percent-decoded: "/v1/jobs/abc". */
const char *fp_http_path(const fp_http_request *req);
/* The raw request target as sent: "/v1/jobs/abc?wait=5". */
const char *fp_http_target(const fp_http_request *req);
/* A query parameter, percent-decoded; NULL when absent. "" for "?flag". */
const char *fp_http_query(const fp_http_request *req, const char *name);
/* The n-th (from 0) occurrence of a repeated parameter; fp_http_query is n = 0. */
const char *fp_http_query_nth(const fp_http_request *req, const char *name, unsigned n);
/*
 * The name of the i-th (from 0) parameter in the order sent, repeats
 * included, percent-decoded; NULL past the last. For refusing names a
 * handler does not know.
 */
const char *fp_http_query_name(const fp_http_request *req, unsigned i);
/* A request header by name, any case; NULL when absent. */
const char *fp_http_header(const fp_http_request *req, const char *name);
/* The (de-chunked) body; NUL-terminated, len excludes the NUL. */
const char *fp_http_body(const fp_http_request *req, size_t *len);
/* The peer, "127.0.0.1:5555" or "unix". */
const char *fp_http_peer(const fp_http_request *req);

/* A per-request pointer for the handler. */
void fp_http_set_data(fp_http_request *req, void *data);
void *fp_http_get_data(const fp_http_request *req);

/*
 * One field for the request's access-log line, say the job it made or read
 * ("job", its id): the log hook reads it back with fp_http_log_field(). `key`
 * must outlive the request (a literal); `value` is copied, cut at 39 bytes.
 * A second call replaces the first.
 */
void fp_http_set_log_field(fp_http_request *req, const char *key, const char *value);
/* The field's value, its key in *key; NULL when none was set. */
const char *fp_http_log_field(const fp_http_request *req, const char **key);

/* --- responding ----------------------------------------------------------- */

/*
 * Add a response header (before respond/stream_start); copied. Content-Length,
 * Transfer-Encoding, Date, Connection are the server's own.
 */
int fp_http_add_header(fp_http_request *req, const char *name, const char *value);

/*
 * The whole response at once. `body` is copied. For HEAD the body is not
 * sent but Content-Length says its size. Finishes the request.
 */
int fp_http_respond(fp_http_request *req, int status, const char *content_type,
		    const char *body, size_t len);

/* A streamed response: chunked transfer encoding (for HEAD: headers only). */
int fp_http_stream_start(fp_http_request *req, int status, const char *content_type);
/*
 * Send one chunk (copied). Returns 0, or 1 when the connection's unsent output
 * has reached the high-water mark (fp_http_stream_room() is 0): stop
 * producing until the drain callback. -EPIPE when the client has gone (the
 * close callback will follow).
 */
int fp_http_stream_write(fp_http_request *req, const char *data, size_t len);
/*
 * How many bytes of data one fp_http_stream_write() may carry without taking
 * the unsent output past the high-water mark (its chunk framing counted).
 */
size_t fp_http_stream_room(const fp_http_request *req);
/* Bytes queued on the request's connection and not yet written. */
size_t fp_http_unsent(const fp_http_request *req);
/* Called once there is room again, after a write that returned 1. */
void fp_http_on_drain(fp_http_request *req, void (*cb)(fp_http_request *req, void *data),
		      void *data);
/* Last chunk; finishes the request. */
int fp_http_stream_end(fp_http_request *req);
/*
 * Finishes the request without the last chunk: what was written is still
 * sent, then the connection is closed. A chunked body without its last
 * chunk is how HTTP/1.1 says "incomplete", for a stream that cannot go on
 * (its source is gone) and must not pass for a whole one.
 */
int fp_http_stream_cut(fp_http_request *req);

/*
 * The client went away (or the server is closing) before the response was
 * finished. After cb returns the request is freed. Setting NULL clears it.
 */
void fp_http_on_close(fp_http_request *req, void (*cb)(fp_http_request *req, void *data),
		      void *data);

/* "Not Found" for 404, etc. */
const char *fp_http_reason(int status);

/* --- a connection in memory (tests, fuzzing) ------------------------------- */

/*
 * A connection with no socket: bytes given to fp_http_mem_send() go through
 * the server's own code (the parser, the limits, the handler, the responses,
 * keep-alive and pipelining, the close) as if read from a client, and what
 * the server writes is kept for the caller to read. The caller stands for the
 * loop: a write the server makes completes at the next fp_http_mem_turn(),
 * as a write to a client that reads everything would. None of these may be
 * called from inside one of the server's callbacks. Close every memory
 * connection before fp_http_server_free().
 */
typedef struct fp_http_mem fp_http_mem;

int fp_http_mem_open(fp_http_server *srv, fp_http_mem **out);
/* Bytes from the client, as one read brings them. -EPIPE once the server is done reading. */
int fp_http_mem_send(fp_http_mem *m, const void *data, size_t len);
/* The client half-closes: the server reads end of file. */
void fp_http_mem_shutdown(fp_http_mem *m);
/*
 * Complete the write in flight, or end what the server cancelled, as one
 * turn of the loop would. 1 when something happened, 0 when nothing was due.
 */
int fp_http_mem_turn(fp_http_mem *m);
/* Everything the server wrote so far; fp_http_mem_clear() forgets it. */
const char *fp_http_mem_output(const fp_http_mem *m, size_t *len);
void fp_http_mem_clear(fp_http_mem *m);
/* The server sent its FIN (SHUT_WR). */
int fp_http_mem_server_shut(const fp_http_mem *m);
/* The server closed the connection: nothing more will be written. */
int fp_http_mem_closed(const fp_http_mem *m);
/* The client goes away (a reset, if the server was still reading), then m is freed. */
void fp_http_mem_close(fp_http_mem *m);

#endif
