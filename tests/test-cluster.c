/*
 * The cluster's Redis client, under whichever backend FORKPOOL_LOOP names:
 * --cluster URLs parsed and refused by name (no Redis needed), and hiredis
 * driven by fp_loop against a real redis-server this test starts on a free
 * 127.0.0.1 port (skipped when redis-server is not installed): a reply far
 * larger than hiredis's 16 KiB read (the adapter's polls must be
 * level-triggered), close with a command pending, reconnect after Redis
 * dies and comes back, a password refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster_chunk.h"
#include "forkpool/loop.h"
#include "ndjson.h"
#include "redis.h"

#define WATCHDOG_MS 15000

/* --- URLs ------------------------------------------------------------------ */

static void urls_parse(void **state)
{
	struct fp_redis_addr a;
	char err[256];

	(void)state;
	assert_int_equal(fp_redis_addr_parse("redis://127.0.0.1", &a, err, sizeof(err)), 0);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 6379);
	assert_int_equal(a.db, 0);
	assert_string_equal(a.path, "");
	assert_int_equal(fp_redis_addr_parse("redis://cache.example:7000/5", &a, err,
					     sizeof(err)), 0);
	assert_string_equal(a.host, "cache.example");
	assert_int_equal(a.port, 7000);
	assert_int_equal(a.db, 5);
	assert_int_equal(fp_redis_addr_parse("redis://[::1]:6380/", &a, err, sizeof(err)), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 6380);
	assert_int_equal(fp_redis_addr_parse("unix:/run/redis.sock", &a, err, sizeof(err)), 0);
	assert_string_equal(a.path, "/run/redis.sock");
	assert_string_equal(a.host, "");
	assert_int_equal(fp_redis_addr_parse("unix:///run/r.sock?db=2", &a, err, sizeof(err)), 0);
	assert_string_equal(a.path, "/run/r.sock");
	assert_int_equal(a.db, 2);
}

static void url_refused(const char *url, const char *want)
{
	struct fp_redis_addr a;
	char err[256];

	assert_int_equal(fp_redis_addr_parse(url, &a, err, sizeof(err)), -EINVAL);
	if (!strstr(err, want))
		fail_msg("%s: \"%s\" does not say \"%s\"", url, err, want);
}

static void bad_urls_are_named(void **state)
{
	char path[200];

	(void)state;
	url_refused("", "expected redis://HOST[:PORT][/DB]");
	url_refused("http://h", "expected redis://HOST[:PORT][/DB]");
	url_refused("rediss://h", "TLS");
	url_refused("redis://", "no host");
	url_refused("redis://:6379", "no host");
	url_refused("redis://h:0", "port must be a number from 1 to 65535");
	url_refused("redis://h:65536", "port must be");
	url_refused("redis://h:12x", "port must be");
	url_refused("redis://h/one", "database number");
	url_refused("redis://pw@h", "--cluster-auth-file");
	url_refused("redis://[::1", "closing ']'");
	url_refused("redis://[::1]x", "only :PORT");
	url_refused("unix:", "absolute");
	url_refused("unix:r.sock", "absolute");
	url_refused("unix:/r.sock?x=1", "db=N");
	memset(path, 'a', sizeof(path));
	memcpy(path, "unix:/", 6);
	path[sizeof(path) - 1] = '\0';
	url_refused(path, "too long");
}

/* --- a redis-server of our own -------------------------------------------- */

struct server {
	pid_t pid;
	int port;
	char dir[64];
	char password[32];
};

static const char *redis_server(void)
{
	static const char *const paths[] = { "/usr/bin/redis-server", "/usr/local/bin/redis-server" };
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

static int free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

/* Blocking PING, for the test's own waiting only (not on the loop). */
static int answers_ping(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				   .sin_port = htons((uint16_t)port) };
	char buf[64];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = 0;
	ssize_t n;

	if (fd < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    write(fd, "PING\r\n", 6) == 6 && (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		/* With requirepass the answer is -NOAUTH: up all the same. */
		ok = !strncmp(buf, "+PONG", 5) || !strncmp(buf, "-NOAUTH", 7);
	}
	close(fd);
	return ok;
}

static void server_start(struct server *s)
{
	char port[16];
	int i;

	snprintf(port, sizeof(port), "%d", s->port);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 1);
		dup2(null, 2);
		if (s->password[0])
			execl(redis_server(), "redis-server", "--bind", "127.0.0.1", "--port", port,
			      "--save", "", "--appendonly", "no", "--dir", s->dir,
			      "--requirepass", s->password, (char *)NULL);
		else
			execl(redis_server(), "redis-server", "--bind", "127.0.0.1", "--port", port,
			      "--save", "", "--appendonly", "no", "--dir", s->dir, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 500 && !answers_ping(s->port); i++)
		usleep(10000);
	assert_true(answers_ping(s->port));
}

static void server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
}

static int server_setup(void **state)
{
	struct server *s;

	if (!redis_server())
		return 0;
	s = calloc(1, sizeof(*s));
	assert_non_null(s);
	snprintf(s->dir, sizeof(s->dir), "/tmp/fp-test-redis-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	s->port = free_port();
	*state = s;
	return 0;
}

static int server_teardown(void **state)
{
	struct server *s = *state;

	if (s) {
		server_stop(s);
		rmdir(s->dir);
		free(s);
	}
	return 0;
}

/* --- the client on the loop ------------------------------------------------ */

struct ctx {
	fp_loop *loop;
	fp_timer wd, tick;
	int wd_fired;
	struct server *srv;
	fp_redis *r;
	int readies, downs;
	char last_why[256];
	int replies;
	int status;
	size_t got_len;
	int got_ok;
	char *big;
	size_t big_len;
	int phase;
};

static void wd_cb(fp_timer *t)
{
	struct ctx *c = t->data;

	c->wd_fired = 1;
	fp_loop_stop(c->loop);
}

static void ctx_init(struct ctx *c, struct server *s)
{
	memset(c, 0, sizeof(*c));
	c->srv = s;
	assert_int_equal(fp_loop_new(&c->loop, FP_LOOP_AUTO), 0);
	c->wd.data = c->tick.data = c;
	assert_int_equal(fp_timer_start(c->loop, &c->wd, WATCHDOG_MS, wd_cb), 0);
}

static void ctx_connect(struct ctx *c, fp_redis_state_cb cb, const char *password)
{
	struct fp_redis_options o;
	char url[64], err[256];

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/1", c->srv->port);
	fp_redis_options_init(&o);
	o.url = url;
	o.password = password;
	o.on_state = cb;
	o.data = c;
	o.backoff_min_ms = 20;
	o.backoff_max_ms = 100;
	assert_int_equal(fp_redis_new(&c->r, c->loop, &o, err, sizeof(err)), 0);
}

/* Run the loop until the client's sockets are released, then free it all. */
static void settle_tick(fp_timer *t)
{
	struct ctx *c = t->data;

	if (fp_redis_settled(c->r))
		fp_loop_stop(c->loop);
	else
		fp_timer_start(c->loop, t, 5, settle_tick);
}

static void ctx_free(struct ctx *c)
{
	fp_redis_close(c->r);
	fp_timer_start(c->loop, &c->tick, 0, settle_tick);
	fp_loop_run(c->loop);
	assert_true(fp_redis_settled(c->r));
	fp_redis_free(c->r);
	fp_timer_stop(&c->wd);
	fp_timer_stop(&c->tick);
	fp_loop_free(c->loop);
}

static void get_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct ctx *c = data;

	(void)r;
	c->status = status;
	c->replies++;
	if (status == 0 && reply->type == REDIS_REPLY_STRING) {
		c->got_len = reply->len;
		c->got_ok = reply->len == c->big_len && !memcmp(reply->str, c->big, c->big_len);
	}
	fp_loop_stop(c->loop);
}

static void big_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	struct ctx *c = data;
	const char *set[] = { "SET", "big", c->big };
	size_t setl[] = { 3, 3, c->big_len };
	const char *get[] = { "GET", "big" };
	size_t getl[] = { 3, 3 };

	(void)why;
	if (st != FP_REDIS_READY)
		return;
	c->readies++;
	assert_int_equal(fp_redis_command(r, NULL, NULL, 3, set, setl), 0);
	assert_int_equal(fp_redis_command(r, get_cb, c, 2, get, getl), 0);
}

static void big_reply_arrives_whole(void **state)
{
	struct server *s = *state;
	struct ctx c;
	size_t i;

	if (!s)
		skip();
	server_start(s);
	ctx_init(&c, s);
	c.big_len = 1 << 20;
	c.big = malloc(c.big_len + 1);
	assert_non_null(c.big);
	for (i = 0; i < c.big_len; i++)
		c.big[i] = (char)('a' + i % 26);
	c.big[c.big_len] = '\0';
	ctx_connect(&c, big_state, NULL);
	assert_int_equal(fp_redis_state(c.r), FP_REDIS_CONNECTING);
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_false(c.wd_fired);
	assert_int_equal(c.readies, 1);
	assert_int_equal(c.status, 0);
	assert_int_equal(c.got_len, c.big_len);
	assert_true(c.got_ok);
	ctx_free(&c);
	free(c.big);
	server_stop(s);
}

/* EXEC's answer: SET's OK, then GET's value; then the key read after it. */
static void exec_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct ctx *c = data;

	(void)r;
	c->status = status;
	c->replies++;
	c->got_ok = status == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
		    reply->element[0]->type == REDIS_REPLY_STATUS &&
		    reply->element[1]->type == REDIS_REPLY_STRING &&
		    !strcmp(reply->element[1]->str, "v1");
}

static void after_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct ctx *c = data;

	(void)r;
	c->replies++;
	/* A plain command after the transaction is answered on its own, not queued. */
	if (status == 0 && reply->type == REDIS_REPLY_STRING && !strcmp(reply->str, "v1"))
		c->phase++;
	fp_loop_stop(c->loop);
}

static void multi_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	struct ctx *c = data;
	const char *set[] = { "SET", "t", "v1" }, *get[] = { "GET", "t" };
	size_t setl[] = { 3, 1, 2 }, getl[] = { 3, 1 };
	const struct fp_redis_cmdv cmds[] = { { 3, set, setl }, { 2, get, getl } };

	(void)why;
	if (st != FP_REDIS_READY)
		return;
	c->readies++;
	assert_int_equal(fp_redis_transaction(r, exec_cb, c, 2, cmds), 0);
	assert_int_equal(fp_redis_command(r, after_cb, c, 2, get, getl), 0);
}

static void transaction_answers_once_in_order(void **state)
{
	struct server *s = *state;
	struct ctx c;

	if (!s)
		skip();
	server_start(s);
	ctx_init(&c, s);
	ctx_connect(&c, multi_state, NULL);
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_false(c.wd_fired);
	assert_int_equal(c.readies, 1);
	assert_int_equal(c.status, 0);
	assert_true(c.got_ok);
	assert_int_equal(c.replies, 2);
	assert_int_equal(c.phase, 1);
	ctx_free(&c);
	server_stop(s);
}

static void blpop_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	struct ctx *c = data;

	(void)r;
	(void)reply;
	c->status = status;
	c->replies++;
}

static void pending_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	struct ctx *c = data;
	const char *argv[] = { "BLPOP", "nothing", "10" };
	size_t lens[] = { 5, 7, 2 };

	(void)why;
	if (st != FP_REDIS_READY)
		return;
	assert_int_equal(fp_redis_command(r, blpop_cb, c, 3, argv, lens), 0);
	fp_loop_stop(c->loop);
}

static void close_cancels_pending(void **state)
{
	struct server *s = *state;
	struct ctx c;
	const char *argv[] = { "PING" };
	size_t lens[] = { 4 };

	if (!s)
		skip();
	server_start(s);
	ctx_init(&c, s);
	ctx_connect(&c, pending_state, NULL);
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_false(c.wd_fired);
	assert_int_equal(c.replies, 0);
	fp_redis_close(c.r);
	assert_int_equal(c.replies, 1);
	assert_int_equal(c.status, -ECANCELED);
	assert_int_equal(fp_redis_state(c.r), FP_REDIS_CLOSED);
	assert_int_equal(fp_redis_command(c.r, NULL, NULL, 1, argv, lens), -ENOTCONN);
	ctx_free(&c);
	server_stop(s);
}

static void reconnect_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	struct ctx *c = data;

	(void)r;
	if (st == FP_REDIS_READY) {
		c->readies++;
		if (c->readies == 1) {
			/* Redis dies under a ready connection. */
			server_stop(c->srv);
		} else {
			fp_loop_stop(c->loop);
		}
	} else if (st == FP_REDIS_DOWN) {
		c->downs++;
		snprintf(c->last_why, sizeof(c->last_why), "%s", why);
		/* Back after a few failed attempts, on the same port. */
		if (c->downs == 3)
			server_start(c->srv);
	}
}

static void reconnects_after_redis_dies(void **state)
{
	struct server *s = *state;
	struct ctx c;

	if (!s)
		skip();
	server_start(s);
	ctx_init(&c, s);
	ctx_connect(&c, reconnect_state, NULL);
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_false(c.wd_fired);
	assert_int_equal(c.readies, 2);
	assert_true(c.downs >= 3);
	assert_int_equal(fp_redis_reconnects(c.r), 1);
	assert_int_equal(fp_redis_state(c.r), FP_REDIS_READY);
	assert_string_equal(fp_redis_last_error(c.r), "");
	ctx_free(&c);
	server_stop(s);
}

static void auth_state(fp_redis *r, enum fp_redis_state st, const char *why, void *data)
{
	struct ctx *c = data;

	(void)r;
	if (st == FP_REDIS_READY)
		c->readies++;
	if (st == FP_REDIS_DOWN) {
		c->downs++;
		snprintf(c->last_why, sizeof(c->last_why), "%s", why);
	}
	fp_loop_stop(c->loop);
}

static void wrong_password_is_named(void **state)
{
	struct server *s = *state;
	struct ctx c;

	if (!s)
		skip();
	snprintf(s->password, sizeof(s->password), "right");
	server_start(s);
	ctx_init(&c, s);
	ctx_connect(&c, auth_state, "wrong");
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_int_equal(c.readies, 0);
	assert_int_equal(c.downs, 1);
	if (!strstr(c.last_why, "AUTH refused"))
		fail_msg("%s", c.last_why);
	ctx_free(&c);

	ctx_init(&c, s);
	ctx_connect(&c, auth_state, "right");
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_int_equal(c.readies, 1);
	ctx_free(&c);
	s->password[0] = '\0';
	server_stop(s);
}

static void refused_port_is_retried(void **state)
{
	struct server *s = *state;
	struct ctx c;

	if (!s)
		skip();
	/* Nothing listens on s->port: ECONNREFUSED, named, a retry scheduled. */
	ctx_init(&c, s);
	ctx_connect(&c, auth_state, NULL);
	assert_int_equal(fp_loop_run(c.loop), 0);
	assert_int_equal(c.downs, 1);
	if (!strstr(c.last_why, "refused"))
		fail_msg("%s", c.last_why);
	assert_int_equal(fp_redis_state(c.r), FP_REDIS_DOWN);
	ctx_free(&c);
}

/* --- chunks, entries and outcome lines (no Redis) ------------------------ */

static void chunks_cut_by_count_and_bytes(void **state)
{
	static char big[70000];
	struct fp_buf items[1000];
	char text[1000][8];
	size_t i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		snprintf(text[i], sizeof(text[i]), "%zu", i);
		items[i] = (struct fp_buf){ text[i], strlen(text[i]) };
	}
	/* 256 items a chunk: 1000 is 3 full chunks and 232. */
	assert_int_equal(fp_cluster_chunk_next(items, 1000, 0, FP_CLUSTER_CHUNK_ITEMS,
					       FP_CLUSTER_CHUNK_BYTES), 256);
	assert_int_equal(fp_cluster_chunk_next(items, 1000, 768, FP_CLUSTER_CHUNK_ITEMS,
					       FP_CLUSTER_CHUNK_BYTES), 232);
	assert_int_equal(fp_cluster_chunk_count(items, 1000, FP_CLUSTER_CHUNK_ITEMS,
						FP_CLUSTER_CHUNK_BYTES), 4);
	assert_int_equal(fp_cluster_chunk_count(items, 0, FP_CLUSTER_CHUNK_ITEMS,
						FP_CLUSTER_CHUNK_BYTES), 0);
	/* Bytes bound first: 10 bytes with newlines hold "0\n".."4\n", not a sixth. */
	assert_int_equal(fp_cluster_chunk_next(items, 1000, 0, 256, 10), 5);
	/* An item larger than the bound goes alone, never in an empty chunk. */
	memset(big, '1', sizeof(big) - 1);
	items[1] = (struct fp_buf){ big, sizeof(big) - 1 };
	assert_int_equal(fp_cluster_chunk_next(items, 1000, 0, 256, FP_CLUSTER_CHUNK_BYTES), 1);
	assert_int_equal(fp_cluster_chunk_next(items, 1000, 1, 256, FP_CLUSTER_CHUNK_BYTES), 1);
	assert_int_equal(fp_cluster_chunk_next(items, 1000, 2, 256, FP_CLUSTER_CHUNK_BYTES), 256);
}

/*
 * Small maps keep 256-item chunks; big ones take fewer, bigger chunks (each
 * costs its round trips) but still 64 of them up to 4096 items each, so
 * that nodes share a job finely; a map's own chunksize is taken as given.
 */
static void chunk_items_follow_the_map(void **state)
{
	(void)state;
	assert_int_equal(fp_cluster_chunk_items(0, 0), 256);
	assert_int_equal(fp_cluster_chunk_items(1, 0), 256);
	assert_int_equal(fp_cluster_chunk_items(10000, 0), 256);
	assert_int_equal(fp_cluster_chunk_items(16384, 0), 256);
	assert_int_equal(fp_cluster_chunk_items(16385, 0), 257);
	assert_int_equal(fp_cluster_chunk_items(200000, 0), 3125);
	assert_int_equal(fp_cluster_chunk_items(262144, 0), 4096);
	assert_int_equal(fp_cluster_chunk_items(10000000, 0), 4096);
	assert_int_equal(fp_cluster_chunk_items(200000, 1), 1);
	assert_int_equal(fp_cluster_chunk_items(10, 1000), 1000);
	assert_int_equal(fp_cluster_chunk_items(10, 100000), FP_CLUSTER_CHUNK_ITEMS_MAX);
}

static void chunk_text_splits_back_into_its_items(void **state)
{
	const char *in[] = { "1", "\"a\\nb\"", "{\"k\":[1,2]}", "null", "-2.5" };
	struct fp_buf items[5], *out = NULL;
	struct fp_ndjson_error err;
	struct sbuf b;
	size_t i, n = 0;

	(void)state;
	for (i = 0; i < 5; i++)
		items[i] = (struct fp_buf){ in[i], strlen(in[i]) };
	sbuf_init(&b);
	fp_cluster_chunk_encode(&b, items, 5);
	assert_string_equal(b.data, "1\n\"a\\nb\"\n{\"k\":[1,2]}\nnull\n-2.5\n");
	assert_int_equal(fp_ndjson_split(b.data, b.len, &out, &n, &err), 0);
	assert_int_equal(n, 5);
	for (i = 0; i < 5; i++) {
		assert_int_equal(out[i].len, items[i].len);
		assert_memory_equal(out[i].base, in[i], items[i].len);
	}
	fp_ndjson_free(out);
	sbuf_free(&b);
}

static int parse_entry(const char *const *fv, size_t n, struct fp_cluster_entry *e)
{
	size_t lens[16], i;

	for (i = 0; i < n; i++)
		lens[i] = strlen(fv[i]);
	return fp_cluster_entry_parse(fv, lens, n, e);
}

static void work_entries_parse_or_are_refused(void **state)
{
	const char *good[] = { "job", "0123456789abcdef0123456789abcdef", "chunk", "3",
			       "first", "768", "n", "256" };
	const char *no_n[] = { "job", "ab", "chunk", "3", "first", "768" };
	const char *bad_id[] = { "job", "AB", "chunk", "3", "first", "7", "n", "1" };
	const char *big_n[] = { "job", "ab", "chunk", "3", "first", "7", "n", "65537" };
	const char *max_n[] = { "job", "ab", "chunk", "3", "first", "7", "n", "65536" };
	const char *zero_n[] = { "job", "ab", "chunk", "3", "first", "7", "n", "0" };
	const char *neg[] = { "job", "ab", "chunk", "-3", "first", "7", "n", "1" };
	const char *extra[] = { "n", "2", "x", "y", "job", "ab", "first", "7", "chunk", "1" };
	struct fp_cluster_entry e;

	(void)state;
	assert_int_equal(parse_entry(good, 8, &e), 0);
	assert_string_equal(e.job, "0123456789abcdef0123456789abcdef");
	assert_int_equal(e.chunk, 3);
	assert_int_equal(e.first, 768);
	assert_int_equal(e.n, 256);
	assert_int_equal(parse_entry(no_n, 6, &e), -EINVAL);
	assert_int_equal(parse_entry(bad_id, 8, &e), -EINVAL);
	assert_int_equal(parse_entry(big_n, 8, &e), -EINVAL);
	assert_int_equal(parse_entry(max_n, 8, &e), 0);
	assert_int_equal(e.n, FP_CLUSTER_CHUNK_ITEMS_MAX);
	assert_int_equal(parse_entry(zero_n, 8, &e), -EINVAL);
	assert_int_equal(parse_entry(neg, 8, &e), -EINVAL);
	/* Fields in any order, unknown ones ignored. */
	assert_int_equal(parse_entry(extra, 10, &e), 0);
	assert_int_equal(e.n, 2);
	assert_false(fp_cluster_id_valid("", 0));
	assert_false(fp_cluster_id_valid("0123456789abcdef0123456789abcdef"
					  "0123456789abcdef0123456789abcdef0", 65));
}

static void outcome_lines_are_the_streams_lines(void **state)
{
	struct fp_result ok = { .status = FP_ITEM_OK, .value = "[1,\"x\"]", .value_len = 7 };
	struct fp_result err = { .status = FP_ITEM_TASK_ERROR, .message = "bad \"arg\"\n" };
	struct fp_result tb = { .status = FP_ITEM_TASK_ERROR, .message = "m", .traceback = "t" };
	struct sbuf b;

	(void)state;
	sbuf_init(&b);
	fp_cluster_outcome_line(&b, 12345678901ULL, &ok);
	assert_string_equal(b.data, "{\"index\":12345678901,\"value\":[1,\"x\"]}");
	sbuf_reset(&b);
	fp_cluster_outcome_line(&b, 0, &err);
	assert_string_equal(b.data, "{\"index\":0,\"error\":{\"type\":\"task_error\","
			    "\"message\":\"bad \\\"arg\\\"\\n\"}}");
	sbuf_reset(&b);
	fp_cluster_outcome_line(&b, 1, &tb);
	assert_string_equal(b.data, "{\"index\":1,\"error\":{\"type\":\"task_error\","
			    "\"message\":\"m\",\"traceback\":\"t\"}}");
	sbuf_reset(&b);
	fp_cluster_outcome_error(&b, 7, FP_ITEM_CANCELLED, "the job was cancelled");
	assert_string_equal(b.data, "{\"index\":7,\"error\":{\"type\":\"cancelled\","
			    "\"message\":\"the job was cancelled\"}}");
	sbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(urls_parse),
		cmocka_unit_test(bad_urls_are_named),
		cmocka_unit_test(chunks_cut_by_count_and_bytes),
		cmocka_unit_test(chunk_items_follow_the_map),
		cmocka_unit_test(chunk_text_splits_back_into_its_items),
		cmocka_unit_test(work_entries_parse_or_are_refused),
		cmocka_unit_test(outcome_lines_are_the_streams_lines),
		cmocka_unit_test_setup_teardown(big_reply_arrives_whole, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(transaction_answers_once_in_order, server_setup,
						server_teardown),
		cmocka_unit_test_setup_teardown(close_cancels_pending, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(reconnects_after_redis_dies, server_setup,
						server_teardown),
		cmocka_unit_test_setup_teardown(wrong_password_is_named, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(refused_port_is_retried, server_setup, server_teardown),
	};

	if (!redis_server())
		fprintf(stderr, "redis-server not found (scripts/deps installs it): its cases skip\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
