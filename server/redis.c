/*
 * One Redis connection's life (redis.h): connect, AUTH, SELECT, PING, ready;
 * lost or refused, a retry after a backoff; commands only while ready.
 *
 *   CONNECTING --PONG--> READY --lost--> DOWN --backoff--> CONNECTING
 *   CONNECTING --refused, timeout, AUTH or SELECT error--> DOWN
 *
 * The handshake is pipelined (AUTH, SELECT, PING in one write); the first
 * error reply names the failure, and PING's PONG, which comes last, is the
 * proof that the peer is Redis and took everything before it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/async.h>

#include "redis.h"
#include "redis_loop.h"

struct fp_redis {
	fp_loop *loop;
	struct fp_redis_addr addr;
	char ip[INET6_ADDRSTRLEN];     /* addr.host resolved, once */
	char *url;
	char *password;
	struct fp_dlog *log;
	fp_redis_state_cb on_state;
	void *data;
	uint64_t connect_timeout_ms, backoff_min_ms, backoff_max_ms;

	redisAsyncContext *ac;         /* the connection, while there is one */
	enum fp_redis_state state;
	bool closing;
	bool ever_ready;
	unsigned attempt;              /* failures since the last READY */
	unsigned adapters;             /* redis_loop.c adapters not yet freed */
	uint64_t reconnects;
	unsigned rng;
	char why[256];                 /* the handshake's first refusal */
	char last_error[256];
	fp_timer connect_timer, retry_timer;
};

enum step { STEP_AUTH, STEP_SELECT, STEP_PING };
static const char *const step_names[] = { "AUTH", "SELECT", "PING" };

struct cmd {
	fp_redis *r;
	fp_redis_cb cb;
	void *data;
	bool subscribed;       /* called per message; freed at the NULL of the end */
};

static void connect_now(fp_redis *r);

void fp_redis_options_init(struct fp_redis_options *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 2000;
	o->backoff_min_ms = 100;
	o->backoff_max_ms = 2000;
}

enum fp_redis_state fp_redis_state(const fp_redis *r)
{
	return r->state;
}

const char *fp_redis_last_error(const fp_redis *r)
{
	return r->last_error;
}

uint64_t fp_redis_reconnects(const fp_redis *r)
{
	return r->reconnects;
}

bool fp_redis_settled(const fp_redis *r)
{
	return !r || r->adapters == 0;
}

/* --- state changes -------------------------------------------------------- */

/* Exponential, capped, and jittered over its upper half so that nodes that
 * lost Redis together do not come back together. */
static uint64_t backoff_ms(fp_redis *r)
{
	uint64_t d = r->backoff_min_ms;
	unsigned i;

	for (i = 0; i < r->attempt && d < r->backoff_max_ms; i++)
		d *= 2;
	if (d > r->backoff_max_ms)
		d = r->backoff_max_ms;
	return d / 2 + (uint64_t)rand_r(&r->rng) % (d / 2 + 1);
}

static void retry_cb(fp_timer *t)
{
	connect_now(t->data);
}

static void fail(fp_redis *r, const char *why)
{
	enum fp_redis_state was = r->state;
	bool same = !strcmp(why, r->last_error);
	uint64_t delay;

	fp_timer_stop(&r->connect_timer);
	snprintf(r->last_error, sizeof(r->last_error), "%s", why);
	r->state = FP_REDIS_DOWN;
	delay = backoff_ms(r);
	r->attempt++;
	if (r->log) {
		if (was == FP_REDIS_READY)
			fp_dlog_warn(r->log, "cluster: lost Redis at %s: %s; reconnecting",
				     r->url, why);
		else if (r->attempt == 1 || !same)
			fp_dlog_warn(r->log, "cluster: cannot connect to Redis at %s: %s;"
				     " retrying in %llu ms, with backoff", r->url, why,
				     (unsigned long long)delay);
		else
			fp_dlog_debug(r->log, "cluster: Redis at %s: %s; retry %u in %llu ms",
				      r->url, why, r->attempt, (unsigned long long)delay);
	}
	r->retry_timer.data = r;
	fp_timer_start(r->loop, &r->retry_timer, delay, retry_cb);
	/* Last: the owner may close us from here. */
	if (r->on_state)
		r->on_state(r, FP_REDIS_DOWN, why, r->data);
}

static void ready(fp_redis *r)
{
	fp_timer_stop(&r->connect_timer);
	if (r->ever_ready)
		r->reconnects++;
	r->ever_ready = true;
	r->attempt = 0;
	r->last_error[0] = '\0';
	r->state = FP_REDIS_READY;
	if (r->log)
		fp_dlog_info(r->log, "cluster: connected to Redis at %s", r->url);
	if (r->on_state)
		r->on_state(r, FP_REDIS_READY, "", r->data);
}

/* --- hiredis's callbacks -------------------------------------------------- */

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	fp_redis *r = ac->data;
	char why[256];

	(void)status;
	if (!r || r->ac != ac)
		return;
	r->ac = NULL;
	if (r->closing)
		return;
	if (r->why[0])
		snprintf(why, sizeof(why), "%s", r->why);
	else if (ac->err && strstr(ac->errstr, "Protocol error"))
		snprintf(why, sizeof(why), "%s (is it Redis?)", ac->errstr);
	else if (ac->err)
		snprintf(why, sizeof(why), "%s", ac->errstr);
	else
		snprintf(why, sizeof(why), "the connection was closed");
	fail(r, why);
}

/* A handshake step's reply: the first refusal is the reason. */
static void handshake_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	fp_redis *r = ac->data;
	redisReply *rep = reply;
	enum step step = (enum step)(uintptr_t)priv;

	if (!r || r->ac != ac || !rep)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		if (!r->why[0])
			snprintf(r->why, sizeof(r->why), "%s refused: %.*s", step_names[step],
				 (int)rep->len, rep->str);
		redisAsyncDisconnect(ac);
		return;
	}
	if (step != STEP_PING)
		return;
	if (r->why[0])
		return;
	if (rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "PONG")) {
		snprintf(r->why, sizeof(r->why), "PING was not answered PONG (is it Redis?)");
		redisAsyncDisconnect(ac);
		return;
	}
	ready(r);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	fp_redis *r = ac->data;
	char db[16];

	if (!r || r->ac != ac)
		return;
	if (status != REDIS_OK) {
		char why[256];

		/* hiredis frees the context when this returns. */
		snprintf(why, sizeof(why), "%s", ac->c.err ? ac->c.errstr :
			 ac->err ? ac->errstr : "connect failed");
		ac->data = NULL;
		r->ac = NULL;
		fail(r, why);
		return;
	}
	r->why[0] = '\0';
	if (r->password) {
		const char *argv[] = { "AUTH", r->password };
		size_t lens[] = { 4, strlen(r->password) };

		redisAsyncCommandArgv(ac, handshake_cb, (void *)(uintptr_t)STEP_AUTH, 2, argv, lens);
	}
	if (r->addr.db) {
		snprintf(db, sizeof(db), "%u", r->addr.db);
		redisAsyncCommand(ac, handshake_cb, (void *)(uintptr_t)STEP_SELECT, "SELECT %s", db);
	}
	redisAsyncCommand(ac, handshake_cb, (void *)(uintptr_t)STEP_PING, "PING");
}

/* Connect, handshake and all, must be done within the timeout. */
static void connect_timeout_cb(fp_timer *t)
{
	fp_redis *r = t->data;
	redisAsyncContext *ac = r->ac;
	char why[96];

	if (!ac)
		return;
	snprintf(why, sizeof(why), "no answer within %llu ms",
		 (unsigned long long)r->connect_timeout_ms);
	ac->data = NULL;
	r->ac = NULL;
	redisAsyncFree(ac);
	fail(r, why);
}

static void connect_now(fp_redis *r)
{
	redisAsyncContext *ac;
	char why[256];

	r->state = FP_REDIS_CONNECTING;
	r->why[0] = '\0';
	if (r->addr.path[0])
		ac = redisAsyncConnectUnix(r->addr.path);
	else
		ac = redisAsyncConnect(r->ip, (int)r->addr.port);
	if (!ac) {
		fail(r, "out of memory");
		return;
	}
	if (ac->err) {
		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		fail(r, why);
		return;
	}
	/* hiredis 0.14 opens its socket without SOCK_CLOEXEC: keep it from
	 * workers forked without the zygote and from exec pools' programs. */
	fcntl(ac->c.fd, F_SETFD, FD_CLOEXEC);
	if (fp__redis_loop_attach(ac, r->loop, &r->adapters) < 0) {
		redisAsyncFree(ac);
		fail(r, "out of memory");
		return;
	}
	ac->data = r;
	r->ac = ac;
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	redisAsyncSetConnectCallback(ac, on_connect);
	r->connect_timer.data = r;
	fp_timer_start(r->loop, &r->connect_timer, r->connect_timeout_ms, connect_timeout_cb);
}

/* --- the public side ------------------------------------------------------ */

static int resolve(fp_redis *r, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	const void *a;
	int g;

	if (r->addr.path[0])
		return 0;
	g = getaddrinfo(r->addr.host, NULL, &hints, &res);
	if (g != 0) {
		snprintf(err, errlen, "--cluster %s: cannot resolve %s: %s", r->url,
			 r->addr.host, gai_strerror(g));
		return -EINVAL;
	}
	if (res->ai_family == AF_INET6)
		a = &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
	else
		a = &((struct sockaddr_in *)res->ai_addr)->sin_addr;
	inet_ntop(res->ai_family, a, r->ip, sizeof(r->ip));
	freeaddrinfo(res);
	return 0;
}

int fp_redis_new(fp_redis **out, fp_loop *loop, const struct fp_redis_options *o,
		 char *err, size_t errlen)
{
	fp_redis *r;
	int rc;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	rc = fp_redis_addr_parse(o->url, &r->addr, err, errlen);
	if (rc < 0)
		goto err_free;
	rc = -ENOMEM;
	r->url = strdup(o->url);
	if (!r->url)
		goto err_free;
	if (o->password) {
		r->password = strdup(o->password);
		if (!r->password)
			goto err_url;
	}
	rc = resolve(r, err, errlen);
	if (rc < 0)
		goto err_password;
	r->loop = loop;
	r->log = o->log;
	r->on_state = o->on_state;
	r->data = o->data;
	r->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 2000;
	r->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : 100;
	r->backoff_max_ms = o->backoff_max_ms > r->backoff_min_ms ? o->backoff_max_ms
				: r->backoff_min_ms;
	r->rng = (unsigned)getpid() ^ (unsigned)fp_now_ns();
	connect_now(r);
	*out = r;
	return 0;

err_password:
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
err_url:
	free(r->url);
err_free:
	free(r);
	return rc;
}

void fp_redis_close(fp_redis *r)
{
	redisAsyncContext *ac;

	if (!r || r->closing)
		return;
	r->closing = true;
	fp_timer_stop(&r->connect_timer);
	fp_timer_stop(&r->retry_timer);
	ac = r->ac;
	r->ac = NULL;
	/* Commands still pending are answered -ECANCELED from in here. */
	if (ac)
		redisAsyncFree(ac);
	r->state = FP_REDIS_CLOSED;
}

void fp_redis_free(fp_redis *r)
{
	if (!r)
		return;
	fp_redis_close(r);
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
	free(r->url);
	free(r);
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct cmd *c = priv;
	fp_redis *r = c->r;

	(void)ac;
	if (c->cb)
		c->cb(r, reply ? 0 : r->closing ? -ECANCELED : -ENOTCONN, reply, c->data);
	/* hiredis calls a subscription's callback with NULL once, as it frees the context. */
	if (!c->subscribed || !reply)
		free(c);
}

int fp_redis_command(fp_redis *r, fp_redis_cb cb, void *data, int argc,
		     const char **argv, const size_t *argvlen)
{
	struct cmd *c;

	if (!r || r->state != FP_REDIS_READY || !r->ac)
		return -ENOTCONN;
	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->r = r;
	c->cb = cb;
	c->data = data;
	c->subscribed = false;
	if (redisAsyncCommandArgv(r->ac, reply_cb, c, argc, argv, argvlen) != REDIS_OK) {
		free(c);
		return -ENOTCONN;
	}
	return 0;
}

int fp_redis_transaction(fp_redis *r, fp_redis_cb cb, void *data, size_t n,
			 const struct fp_redis_cmdv *cmds)
{
	static const char *const multi[] = { "MULTI" }, *const exec[] = { "EXEC" },
			  *const discard[] = { "DISCARD" };
	static const size_t multil[] = { 5 }, execl[] = { 4 }, discardl[] = { 7 };
	size_t i;
	int err;

	if ((err = fp_redis_command(r, NULL, NULL, 1, (const char **)multi, multil)) < 0)
		return err;
	for (i = 0; i < n; i++)
		if ((err = fp_redis_command(r, NULL, NULL, cmds[i].argc, cmds[i].argv,
					    cmds[i].argvlen)) < 0)
			goto discard;
	if ((err = fp_redis_command(r, cb, data, 1, (const char **)exec, execl)) < 0)
		goto discard;
	return 0;

discard:
	/* Sent as far as it went: dropped whole (if this fails too, the connection is going). */
	fp_redis_command(r, NULL, NULL, 1, (const char **)discard, discardl);
	return err;
}

int fp_redis_subscribe(fp_redis *r, const char *channel, fp_redis_cb cb, void *data)
{
	const char *argv[] = { "SUBSCRIBE", channel };
	size_t lens[] = { 9, strlen(channel) };
	struct cmd *c;

	if (!r || r->state != FP_REDIS_READY || !r->ac)
		return -ENOTCONN;
	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct cmd){ .r = r, .cb = cb, .data = data, .subscribed = true };
	if (redisAsyncCommandArgv(r->ac, reply_cb, c, 2, argv, lens) != REDIS_OK) {
		free(c);
		return -ENOTCONN;
	}
	return 0;
}
