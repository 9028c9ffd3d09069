/*
 * The HTTP server's insides, shared by server/http*.c and nothing else:
 * the connection, request, listener and server objects, and what one part
 * calls in another. http.c holds the server object, http_listen.c the
 * listeners, http_conn.c a connection's life and deadlines, http_parse.c
 * the parser callbacks, http_out.c the output queue and its writes,
 * http_response.c the responses, http_request.c the request accessors.
 *
 * HTTP/1.1 on an fp_loop, with http-parser doing the parsing.
 *
 * A connection owns three buffers, reused from request to request:
 *  - `in`, the bytes read and not yet given up. http-parser runs over it in
 *    place: the request line and headers are kept as offsets into it and
 *    NUL-terminated where the parser has already passed (the CR after a
 *    value, the ':' after a name, the space after the target), and a
 *    chunked body is compacted over its own chunk framing, so a request
 *    costs no allocation and no copy beyond the one out of the loop's read
 *    buffer. `in` never moves while the handler holds the request (the
 *    pointers it was given stay valid); what arrives meanwhile waits in
 *    `over`.
 *  - the output queue: blocks of OBLK_SIZE bytes that responses are
 *    formatted into, and a block of its own for a large body. One write is
 *    in flight per connection; it gathers up to FP_IO_IOV_MAX blocks, so
 *    the responses to a burst of pipelined requests leave in one write.
 *  - the request itself, embedded: one at a time per connection.
 *
 * Parsing pauses (http_parser_pause) after each complete request and
 * resumes over the bytes already read once its response is finished.
 *
 * Timeouts are deadlines in the connection, checked by one server-wide
 * timer that is re-armed only when a deadline comes before its due time:
 * a keep-alive request moves deadlines without touching the loop's timers.
 * No deadline is restarted by a byte arriving: the header deadline runs
 * from the request's start, the body deadline from the end of the headers
 * and grows only by the body's minimum rate, so drip-feeding cannot hold a
 * connection longer than its bytes pay for.
 *
 * The connection cap counts live connections (`live`: not yet killed).
 * Connections waiting for a request with nothing to send are on the
 * server's idle list in the order they became idle; at a cap the longest
 * idle is closed to admit a new one (nginx's reusable connections). The
 * per-address cap counts connections by client address (http_peers.c).
 *
 * A FIN from the client ends its requests, not its answers: requests that
 * arrived complete are answered, then the connection is closed (`peer_eof`).
 *
 * Entry points (loop callbacks and the request API) pin the connection
 * (busy); the last one out flushes output and frees what is dead, so no
 * callback ever runs on freed memory and responses made while handling a
 * read go out together.
 */
#ifndef FP_SERVER_HTTP_IMPL_H
#define FP_SERVER_HTTP_IMPL_H

#include <http_parser.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>

#include "http.h"

enum {
	IN_INIT = 4096,                /* first input buffer */
	IN_KEEP = 65536,               /* larger ones shrink between requests */
	OBLK_SIZE = 16384,             /* an output block */
	OBLK_CACHE = 2,                /* spare blocks a connection keeps */
	OBLK_BIG_SPARE = 2 << 20,      /* bytes of spare large blocks kept during a response */
	WRITE_MAX = 1 << 20,           /* bytes one write carries at most */
	HEAD_SLACK = 256,              /* status line, Date, lengths, Connection */
	LINGER_MS = 2000,              /* after an error: wait this long for the peer's FIN */
	LINGER_BYTES = 8 << 20,        /* ... or until it has sent this much more */
	SWEEP_GAP_MS = 50,             /* deadline sweeps at most this often (http_conn.c) */
};

/* What a connection's request-side deadline means when it passes. */
enum deadline_kind { DL_NONE, DL_IDLE, DL_HEADER, DL_BODY, DL_LINGER };

enum phase {
	PH_IDLE,                       /* between requests: no byte of the next one */
	PH_HEADERS,                    /* request line and headers arriving */
	PH_BODY,
	PH_HANDLER,                    /* complete, the handler has it */
};

enum resp_state { R_NONE, R_STREAM, R_DONE };

struct buf {
	char *p;
	size_t len, cap;
};

/* Offsets into the connection's input buffer. */
struct hdr {
	size_t name, name_len;
	size_t val, val_len;
};

/* Offsets into the request's arena, each a NUL-terminated string. */
struct qparam {
	size_t key, val;
};

struct oblk {
	struct oblk *next;
	size_t cap, len;
	size_t sent;                   /* written, confirmed by a callback */
	size_t inflight;               /* end of what the write in flight carries */
	char data[];
};

struct listener {
	fp_io io;
	fp_http_server *srv;
	struct listener *next;
	int fd;
	int family;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];  /* unix: only */
	ino_t ino;                     /* the socket file we made, to unlink only it */
	dev_t dev;
};

struct conn;
struct fp__http_peers;

/*
 * How a connection's bytes move: on its socket through the loop (every
 * accepted connection, http_conn.c), or in memory (http_mem.c: tests and the
 * fuzzer feed bytes and collect the answer, through the same parsing, limits
 * and responses, with no socket). Either way, as the loop's rules say, the
 * transport calls fp__http_conn_read() for each read and once more at the
 * read stream's end, and fp__http_conn_written() once per write, never from
 * inside the call that started or cancelled it. The connection keeps its own
 * count of what is in flight (read_done, writing), so no query is needed.
 */
struct conn_io_ops {
	/* Write every byte of iov[0..iovcnt) (at most FP_IO_IOV_MAX). */
	int (*write)(struct conn *c, const struct iovec *iov, int iovcnt);
	/* End the read stream and the write in flight: their last calls follow. */
	void (*cancel)(struct conn *c);
	/* Our side is done sending (SHUT_WR). */
	void (*shutdown)(struct conn *c);
	/* After the last call of every operation. */
	void (*close)(struct conn *c);
};

struct fp_http_request {
	struct conn *c;
	void *data;
	void (*close_cb)(fp_http_request *req, void *data);
	void *close_data;
	void (*drain_cb)(fp_http_request *req, void *data);
	void *drain_data;

	uint8_t have_method;           /* the method is parsed */
	uint8_t target_ready;          /* the target is NUL-terminated */
	uint8_t headers_ready;         /* every header is NUL-terminated */
	uint8_t method;                /* enum http_method */
	uint8_t is_head;
	uint8_t keep_alive;
	uint8_t http_minor;
	uint8_t resp;                  /* enum resp_state */
	uint8_t close;                 /* the response ends the connection */
	uint8_t chunked;               /* streamed with chunked encoding */
	uint8_t bodiless;              /* HEAD, 204, 304: no body bytes */
	uint8_t gone;                  /* the client went away first */
	uint8_t has_server;            /* the handler set its own Server */
	uint8_t path_done, query_done;
	int status;
	uint64_t t_start_ns;           /* only measured with an access log */
	uint64_t out_start;            /* c->out_total when the response began */
	size_t url, url_len;
	size_t body, body_len;         /* body_len 0: body is "" */
	uint8_t body_started;
	const char *path;
	struct qparam *qp;
	unsigned nqp, qp_cap;
	char *arena;                   /* decoded path and query */
	size_t arena_cap, arena_len;
	struct buf rh;                 /* headers added by the handler */
	const char *log_key;           /* fp_http_set_log_field(); NULL: none */
	char log_value[40];
};

struct conn {
	fp_http_server *srv;
	struct conn *prev, *next;
	struct conn *sweep_next;       /* sweep_cb's list of expired ones */
	const struct conn_io_ops *io;
	void *io_data;                 /* the transport's own (memory) */
	int fd;                        /* the socket transport's */
	fp_io rio, wio;
	http_parser parser;

	unsigned busy;                 /* entry points on the stack */
	uint8_t phase;                 /* enum phase */
	uint8_t dead;                  /* ops cancelled; freed once they end */
	uint8_t closing;               /* no further request: flush, then shut down */
	uint8_t shut;                  /* SHUT_WR done, lingering */
	uint8_t read_done;             /* the read stream has ended */
	uint8_t writing;               /* a write is in flight */
	uint8_t closed;                /* the transport is closed */
	uint8_t processing;            /* inside fp__http_conn_process() */
	uint8_t zombie;                /* gone, but the handler holds the request */
	uint8_t in_close_cb;
	uint8_t resume_pending;        /* parse buffered requests from the loop */
	uint8_t reap_later;            /* a released zombie, freed by the sweep */
	uint8_t want_drain;
	uint8_t hdr_state;             /* 0 none, 1 in a name, 2 in a value */
	uint8_t rdl_kind;              /* enum deadline_kind */
	uint8_t saved_set;
	uint8_t peer_done;
	uint8_t unix_peer;
	uint8_t peer_eof;              /* the client's FIN came: answer, then close */
	uint8_t idle_listed;           /* on the server's idle list */
	uint8_t ip_counted;            /* counted in the per-address table */
	int err_status;                /* set by a parser callback that refused */
	const char *err_code;
	char err_msg[128];

	uint64_t rdeadline;            /* request side, per rdl_kind; 0 none */
	uint64_t body_t0;              /* the headers' end: the body deadline's start */
	uint64_t body_rx;              /* body bytes received (de-chunked) */
	uint64_t body_total;           /* Content-Length; 0 for chunked */
	struct conn *idle_prev, *idle_next;
	struct in6_addr ip;            /* the client's address (IPv4 mapped), with ip_counted */
	uint64_t wdeadline;            /* output must progress by then; 0 none */

	struct buf in;
	size_t in_off;                 /* parsed up to here */
	size_t msg_start;              /* where the current request began */
	struct buf over;               /* read while the handler has a request */
	size_t saved_at;               /* the body's NUL went here ... */
	char saved;                    /* ... over this byte */
	size_t discarded;              /* read and dropped while lingering */

	struct hdr *hdrs;
	unsigned nhdrs, hdrs_cap;

	struct oblk *oq_head, *oq_tail, *ofree;
	unsigned nfree;
	struct oblk *obig;             /* spare blocks over OBLK_SIZE, while a response lasts */
	size_t obig_bytes;
	size_t unsent;
	uint64_t out_total;

	char peer[INET6_ADDRSTRLEN + 8];
	struct fp_http_request req;
};

struct fp_http_server {
	fp_loop *loop;
	struct fp_http_limits lim;
	fp_http_handler handler;
	void *data;
	fp_http_access_log log_fn;
	void *log_data;

	struct listener *listeners;
	unsigned nlisten_open;         /* listeners whose fd is open */
	struct conn *conns;
	struct conn *idle_head, *idle_tail;  /* longest idle first */
	unsigned live;                 /* connections not killed: what the caps count */
	struct fp__http_peers *peers;  /* per-address counts; NULL without that cap */
	struct fp_http_stats stats;

	fp_timer sweep;
	uint64_t sweep_due;            /* 0: not armed */

	uint8_t stopping;              /* no more accepts */
	uint8_t freeing;
	uint8_t killing;               /* fp_http_server_free() closing connections */
	uint8_t destroy_when_done;     /* freed from inside the loop: finish later */
	uint8_t unix_mode_set;         /* else unix sockets get FP_HTTP_UNIX_MODE */
	unsigned unix_mode;

	time_t date_sec;
	char date[40];                 /* "Date: ...\r\n" */
	size_t date_len;
};

/* --- http_peers.c -------------------------------------------------------- */

/* Connections per client address, for max_connections_per_ip. */
int fp__http_peers_new(struct fp__http_peers **out, unsigned max_connections);
void fp__http_peers_free(struct fp__http_peers *p);
unsigned fp__http_peers_count(const struct fp__http_peers *p, const struct in6_addr *ip);
int fp__http_peers_add(struct fp__http_peers *p, const struct in6_addr *ip);
void fp__http_peers_remove(struct fp__http_peers *p, const struct in6_addr *ip);

/* --- http_admit.c -------------------------------------------------------- */

enum fp__http_admit {
	FP__HTTP_ADMIT,
	FP__HTTP_ADMIT_OVER_IP,        /* over its address's cap: answer 429 and close */
	FP__HTTP_REFUSE,               /* over max_connections with none idle: close */
};

/*
 * May a new connection from `ip` (NULL: not counted by address) open?
 * Closes the longest-idle connection to make room where a cap is reached.
 */
enum fp__http_admit fp__http_admit(fp_http_server *srv, const struct in6_addr *ip);
/* The peer's address (IPv4 mapped into IPv6) and its text, without the port. */
int fp__http_peer_ip(int fd, struct in6_addr *ip, char *text, size_t textlen);

/* --- http.c -------------------------------------------------------------- */

/* Called as the last thing of a callback: the server may be freed by it. */
void fp__http_server_check_done(fp_http_server *srv);

/* --- http_listen.c -------------------------------------------------------- */

void fp__http_listener_close(struct listener *l);
/* "127.0.0.1:80" or "[::1]:80". */
void fp__http_format_inet(const struct sockaddr_storage *ss, char *out, size_t outlen);

/* --- http_conn.c ---------------------------------------------------------- */

int fp__http_buf_reserve(struct buf *b, size_t extra);
int fp__http_buf_append(struct buf *b, const char *s, size_t n);
void fp__http_buf_free(struct buf *b);

void fp__http_sweep_arm(fp_http_server *srv, uint64_t due);
void fp__http_conn_rdeadline(struct conn *c, enum deadline_kind kind, uint64_t ms);

void fp__http_access_log(struct conn *c, int status);
void fp__http_request_release(struct conn *c);

/* On the idle list (again, as the most recent), or off it. */
void fp__http_idle_enter(struct conn *c);
void fp__http_idle_leave(struct conn *c);

void fp__http_conn_accept(fp_http_server *srv, struct listener *l, int fd);
/* A connection over `io`, not yet reading nor in the server's list. */
struct conn *fp__http_conn_new(fp_http_server *srv, const struct conn_io_ops *io);
/* List it and count it open: it is reading now. */
void fp__http_conn_open(struct conn *c);
/* Wait for its first request: the header deadline runs, and it is idle until a byte comes. */
void fp__http_conn_await(struct conn *c);
/* A transport's read: res > 0 bytes, 0 end of file, < 0 -errno (the last two end it). */
void fp__http_conn_read(struct conn *c, ssize_t res, const char *buf);
void fp__http_conn_kill(struct conn *c);
void fp__http_conn_leave(struct conn *c);
void fp__http_conn_free(struct conn *c);

/* --- http_parse.c --------------------------------------------------------- */

void fp__http_conn_process(struct conn *c);

/* --- http_out.c ----------------------------------------------------------- */

char *fp__http_out_reserve(struct conn *c, size_t n);
void fp__http_out_commit(struct conn *c, size_t n);
/* Free the spare large blocks (at the end of a response, and with the connection). */
void fp__http_out_spare_free(struct conn *c);
int fp__http_out_append(struct conn *c, const char *s, size_t n);
void fp__http_conn_flush(struct conn *c);
/* A transport's write ended: every byte written (res >= 0) or -errno. */
void fp__http_conn_written(struct conn *c, ssize_t res);

/* --- http_response.c ------------------------------------------------------ */

void fp__http_conn_error(struct conn *c, int status, const char *code,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* What a stream may still write before its unsent output reaches the mark. */
size_t fp__http_stream_room(const struct conn *c);

/* --- http_request.c ------------------------------------------------------- */

const char *fp__http_header_find(const struct conn *c, const char *name);

#endif
