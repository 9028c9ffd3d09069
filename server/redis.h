/*
 * A Redis connection on fp_loop: hiredis's async API driven by the loop's
 * readiness operation (redis_loop.c), with the connection's life around it:
 * connect without blocking, AUTH and SELECT, reconnect with exponential
 * backoff and jitter, one log line per change of state. It knows nothing of
 * what the commands are for (cluster.c does).
 *
 * hiredis 0.14.1 (Debian bookworm) is the floor: its async context has no
 * timers and no connect timeout, so the connect timeout is a timer here,
 * and its connect resolves host names with a blocking getaddrinfo(), so
 * fp_redis_new() resolves the name once, before the loop runs, and every
 * connect after goes to that address.
 */
#ifndef FP_SERVER_REDIS_H
#define FP_SERVER_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "forkpool/loop.h"
#include "dlog.h"

typedef struct fp_redis fp_redis;

/* Where Redis is: redis://HOST[:PORT][/DB] or unix:/PATH[?db=DB]. */
struct fp_redis_addr {
	char host[256];          /* "" for a unix socket; IPv6 without brackets */
	unsigned port;
	char path[108];          /* sun_path; "" for TCP */
	unsigned db;
};

/*
 * Parse `url`. -EINVAL with one line in `err` saying what is wrong with it
 * (a password in the URL is refused: it belongs in --cluster-auth-file).
 */
int fp_redis_addr_parse(const char *url, struct fp_redis_addr *out, char *err,
			size_t errlen);

enum fp_redis_state {
	FP_REDIS_CONNECTING,     /* connect, AUTH, SELECT, PING under way */
	FP_REDIS_READY,          /* commands go out */
	FP_REDIS_DOWN,           /* lost or refused; a retry is scheduled */
	FP_REDIS_CLOSED,         /* fp_redis_close() done */
};

typedef void (*fp_redis_state_cb)(fp_redis *r, enum fp_redis_state state,
				  const char *why, void *data);

struct fp_redis_options {
	const char *url;                 /* shown in log lines and errors */
	const char *password;            /* AUTH; NULL: none */
	uint64_t connect_timeout_ms;     /* connect + handshake (default 2000) */
	uint64_t backoff_min_ms;         /* first retry (default 100) */
	uint64_t backoff_max_ms;         /* cap (default 2000) */
	struct fp_dlog *log;             /* NULL: silent */
	fp_redis_state_cb on_state;      /* every change; may be NULL */
	void *data;
};

void fp_redis_options_init(struct fp_redis_options *o);

/*
 * Parse the URL and resolve its host (the only blocking step, so: call it
 * before the loop serves anyone), then start connecting. -EINVAL (bad URL,
 * unknown host) with one line in `err`; -ENOMEM.
 */
int fp_redis_new(fp_redis **out, fp_loop *loop, const struct fp_redis_options *o,
		 char *err, size_t errlen);

/*
 * Disconnect: commands not yet answered get their callback with -ECANCELED
 * from inside this call (the one exception to "never from the call"), and
 * none after. The loop must run a little more for the socket's last
 * callbacks (fp_redis_settled() says when); fp_redis_free() after that, or
 * at once when the loop is going away too.
 */
void fp_redis_close(fp_redis *r);
bool fp_redis_settled(const fp_redis *r);
void fp_redis_free(fp_redis *r);

enum fp_redis_state fp_redis_state(const fp_redis *r);
/* Why the last connection or attempt failed ("" before any). */
const char *fp_redis_last_error(const fp_redis *r);
/* Connections lost after being ready, since fp_redis_new(). */
uint64_t fp_redis_reconnects(const fp_redis *r);

/*
 * A command's answer. status 0: `reply` is Redis's (an error reply too:
 * reply->type == REDIS_REPLY_ERROR), valid during the callback only.
 * status < 0: no reply (-ENOTCONN: the connection was lost first;
 * -ECANCELED: closed).
 */
typedef void (*fp_redis_cb)(fp_redis *r, int status, redisReply *reply, void *data);

/*
 * Send argv[0..argc) (binary-safe, lengths in argvlen). Only when READY:
 * -ENOTCONN otherwise, with no callback. cb may be NULL (fire and forget).
 */
int fp_redis_command(fp_redis *r, fp_redis_cb cb, void *data, int argc,
		     const char **argv, const size_t *argvlen);

/* One command of a transaction: argv[0..argc), binary-safe. */
struct fp_redis_cmdv {
	int argc;
	const char **argv;
	const size_t *argvlen;
};

/*
 * MULTI, cmds[0..n), EXEC: Redis runs them as one step, no other client's
 * command between them. cb gets EXEC's answer (an array of the commands'
 * answers in order; an error reply if Redis refused one while queueing).
 * -ENOTCONN when not READY, or -ENOMEM, with no callback: a transaction
 * begun is then DISCARDed, so nothing of it runs.
 */
int fp_redis_transaction(fp_redis *r, fp_redis_cb cb, void *data, size_t n,
			 const struct fp_redis_cmdv *cmds);

/*
 * SUBSCRIBE to one channel: the connection is in pub/sub mode from then on
 * (no other command). cb gets the subscription's confirmation, then each
 * message (an array "message", channel, payload), with status 0; once the
 * connection ends, one last call with status < 0. Subscribe again after a
 * reconnect. -ENOTCONN when not READY, with no callback.
 */
int fp_redis_subscribe(fp_redis *r, const char *channel, fp_redis_cb cb, void *data);

#endif
