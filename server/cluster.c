/*
 * The node registry (cluster.h) on a Redis connection (redis.h): the
 * heartbeat that writes this node's document, the read that lists every
 * live node, and the goodbye on a clean shutdown. Knows the registry's keys
 * and documents; nothing of jobs, HTTP or the pool (the load comes through
 * a callback).
 *
 * One heartbeat is a pipeline of SET (with PX), ZADD, ZREMRANGEBYSCORE and
 * ZRANGE; the ZRANGE's answer starts an MGET of the named keys, and its
 * answer is the new list. A key that expired (its node stopped beating) is
 * nil in the MGET and left out, so the list follows the TTL, which Redis
 * keeps, not any node's clock; the set's scores only prune names.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cluster.h"
#include "redis.h"

#define NODES_MAX 1024
#define PRUNE_MS 60000              /* a name silent this long leaves the set */
#define PREFIX_MAX 128

struct fp_cluster {
	fp_loop *loop;
	fp_redis *redis;
	struct fp_dlog *log;
	char *prefix, *name, *address, *backend;
	char *node_key, *set_key;
	uint64_t heartbeat_ms, ttl_ms, started_at_ms;
	void (*load)(void *data, struct fp_cluster_load *out);
	void (*on_connected)(void *data, bool connected, const char *why);
	void *data;

	fp_timer tick;
	fp_timer closer;
	bool reading;                   /* a ZRANGE/MGET round is out */
	bool leaving, left;
	uint64_t generation;            /* bumped per connection: stale reads drop */

	struct fp_cluster_node *nodes;  /* [0] is this node */
	size_t nnodes;
};

static uint64_t wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

void fp_cluster_options_init(struct fp_cluster_options *o)
{
	memset(o, 0, sizeof(*o));
	o->prefix = "forkpool:";
	o->heartbeat_ms = 1000;
}

bool fp_cluster_connected(const fp_cluster *c)
{
	return c && fp_redis_state(c->redis) == FP_REDIS_READY;
}

const char *fp_cluster_last_error(const fp_cluster *c)
{
	return fp_redis_last_error(c->redis);
}

const char *fp_cluster_node_name(const fp_cluster *c)
{
	return c->name;
}

const char *fp_cluster_prefix(const fp_cluster *c)
{
	return c->prefix;
}

struct fp_redis *fp_cluster_redis(fp_cluster *c)
{
	return c->redis;
}

uint64_t fp_cluster_reconnects(const fp_cluster *c)
{
	return fp_redis_reconnects(c->redis);
}

void fp_cluster_default_name(char *out, size_t len, const char *bound_addr)
{
	char host[256] = "localhost";
	const char *port = bound_addr ? strrchr(bound_addr, ':') : NULL;

	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	/* A unix socket has no port: the path tells nodes of one host apart. */
	if (bound_addr && !strncmp(bound_addr, "unix:", 5))
		snprintf(out, len, "%s:%s", host, bound_addr + 5);
	else
		snprintf(out, len, "%s:%s", host, port ? port + 1 : "0");
}

/* --- this node ------------------------------------------------------------ */

static void self_fill(fp_cluster *c, struct fp_cluster_node *n)
{
	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "%s", c->name);
	snprintf(n->address, sizeof(n->address), "%s", c->address);
	snprintf(n->backend, sizeof(n->backend), "%s", c->backend);
	n->pid = (long)getpid();
	n->started_at_ms = c->started_at_ms;
	if (c->load)
		c->load(c->data, &n->load);
	n->self = true;
}

size_t fp_cluster_nodes(const fp_cluster *c, const struct fp_cluster_node **out)
{
	/* The load changes between heartbeats; this node's is always fresh. */
	self_fill((fp_cluster *)c, &c->nodes[0]);
	*out = c->nodes;
	return fp_cluster_connected(c) ? c->nnodes : 1;
}

static char *self_document(fp_cluster *c)
{
	struct fp_cluster_node n;
	json_t *doc;
	char *s;

	self_fill(c, &n);
	doc = json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:{s:I,s:I,s:I}}",
			"name", n.name, "address", n.address, "pid", (json_int_t)n.pid,
			"started_at_ms", (json_int_t)n.started_at_ms,
			"heartbeat_at_ms", (json_int_t)wall_ms(), "backend", n.backend,
			"workers", "count", (json_int_t)n.load.workers,
			"busy", (json_int_t)n.load.busy, "able", (json_int_t)n.load.able);
	if (!doc)
		return NULL;
	s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return s;
}

/* --- reading the registry ------------------------------------------------- */

static int node_parse(const char *text, size_t len, struct fp_cluster_node *n)
{
	json_int_t pid = 0, started = 0, beat = 0, w = 0, busy = 0, able = 0;
	const char *name = NULL, *addr = "", *backend = "";
	uint64_t now = wall_ms();
	json_t *doc = json_loadb(text, len, 0, NULL);
	int r = -EINVAL;

	if (!doc)
		return r;
	if (json_unpack(doc, "{s:s,s?s,s?I,s?I,s?I,s?s,s?{s?I,s?I,s?I}}",
			"name", &name, "address", &addr, "pid", &pid,
			"started_at_ms", &started, "heartbeat_at_ms", &beat,
			"backend", &backend, "workers", "count", &w, "busy", &busy,
			"able", &able) == 0) {
		memset(n, 0, sizeof(*n));
		snprintf(n->name, sizeof(n->name), "%s", name);
		snprintf(n->address, sizeof(n->address), "%s", addr);
		snprintf(n->backend, sizeof(n->backend), "%s", backend);
		n->pid = (long)pid;
		n->started_at_ms = (uint64_t)started;
		n->age_ms = beat > 0 && (uint64_t)beat < now ? now - (uint64_t)beat : 0;
		n->load.workers = (unsigned)w;
		n->load.busy = (unsigned)busy;
		n->load.able = (unsigned)able;
		r = 0;
	}
	json_decref(doc);
	return r;
}

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fp_cluster_node *)a)->name,
		      ((const struct fp_cluster_node *)b)->name);
}

static void mget_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster *c = data;
	size_t i, n = 1;

	(void)r;
	c->reading = false;
	if (status < 0 || reply->type != REDIS_REPLY_ARRAY)
		return;
	for (i = 0; i < reply->elements && n < NODES_MAX; i++) {
		redisReply *e = reply->element[i];

		if (e->type != REDIS_REPLY_STRING)
			continue;      /* expired: that node stopped beating */
		if (node_parse(e->str, e->len, &c->nodes[n]) < 0) {
			if (c->log)
				fp_dlog_debug(c->log, "cluster: a node's document is not ours;"
					      " skipped");
			continue;
		}
		if (!strcmp(c->nodes[n].name, c->name))
			continue;      /* this node: nodes[0], always fresh */
		n++;
	}
	qsort(c->nodes + 1, n - 1, sizeof(c->nodes[0]), node_cmp);
	c->nnodes = n;
}

static void zrange_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster *c = data;
	const char **argv;
	size_t *lens, plen = strlen(c->prefix), i, n;
	char **keys;

	if (status < 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
		c->reading = false;
		return;
	}
	n = reply->elements < NODES_MAX ? reply->elements : NODES_MAX;
	argv = calloc(n + 1, sizeof(*argv));
	lens = calloc(n + 1, sizeof(*lens));
	keys = calloc(n, sizeof(*keys));
	if (!argv || !lens || !keys)
		goto out;
	argv[0] = "MGET";
	lens[0] = 4;
	for (i = 0; i < n; i++) {
		redisReply *e = reply->element[i];

		if (e->type != REDIS_REPLY_STRING)
			goto out;
		keys[i] = malloc(plen + 5 + e->len);
		if (!keys[i])
			goto out;
		memcpy(keys[i], c->prefix, plen);
		memcpy(keys[i] + plen, "node:", 5);
		memcpy(keys[i] + plen + 5, e->str, e->len);
		argv[i + 1] = keys[i];
		lens[i + 1] = plen + 5 + e->len;
	}
	if (fp_redis_command(r, mget_cb, c, (int)n + 1, argv, lens) == 0)
		c->reading = true;
	else
		c->reading = false;
	goto done;
out:
	c->reading = false;
done:
	if (keys)
		for (i = 0; i < n; i++)
			free(keys[i]);
	free(keys);
	free(lens);
	free(argv);
}

/* --- the heartbeat ---------------------------------------------------------- */

static void tick_cb(fp_timer *t);

static void heartbeat(fp_cluster *c)
{
	char px[24], score[24], cutoff[32];
	char *doc = self_document(c);
	uint64_t now = wall_ms();

	if (!doc)
		return;
	snprintf(px, sizeof(px), "%" PRIu64, c->ttl_ms);
	snprintf(score, sizeof(score), "%" PRIu64, now);
	snprintf(cutoff, sizeof(cutoff), "(%" PRIu64, now > PRUNE_MS ? now - PRUNE_MS : 0);
	{
		const char *set[] = { "SET", c->node_key, doc, "PX", px };
		size_t setl[] = { 3, strlen(c->node_key), strlen(doc), 2, strlen(px) };
		const char *zadd[] = { "ZADD", c->set_key, score, c->name };
		size_t zaddl[] = { 4, strlen(c->set_key), strlen(score), strlen(c->name) };
		const char *prune[] = { "ZREMRANGEBYSCORE", c->set_key, "-inf", cutoff };
		size_t prunel[] = { 16, strlen(c->set_key), 4, strlen(cutoff) };
		const char *zr[] = { "ZRANGE", c->set_key, "0", "-1" };
		size_t zrl[] = { 6, strlen(c->set_key), 1, 2 };

		fp_redis_command(c->redis, NULL, NULL, 5, set, setl);
		fp_redis_command(c->redis, NULL, NULL, 4, zadd, zaddl);
		fp_redis_command(c->redis, NULL, NULL, 4, prune, prunel);
		/* One read at a time: a slow Redis gets no pile of MGETs. */
		if (!c->reading && fp_redis_command(c->redis, zrange_cb, c, 4, zr, zrl) == 0)
			c->reading = true;
	}
	free(doc);
}

static void tick_cb(fp_timer *t)
{
	fp_cluster *c = t->data;

	if (c->leaving)
		return;
	if (fp_redis_state(c->redis) == FP_REDIS_READY)
		heartbeat(c);
	fp_timer_start(c->loop, &c->tick, c->heartbeat_ms, tick_cb);
}

static void on_redis_state(fp_redis *r, enum fp_redis_state state, const char *why,
			   void *data)
{
	fp_cluster *c = data;

	(void)r;
	if (c->leaving)
		return;
	if (state == FP_REDIS_READY) {
		/* (Re-)register at once; a read of the last connection is void. */
		c->reading = false;
		if (c->log)
			fp_dlog_info(c->log, "cluster: node %s registered under prefix %s",
				     c->name, c->prefix);
		fp_timer_start(c->loop, &c->tick, 0, tick_cb);
	} else if (state == FP_REDIS_DOWN) {
		c->reading = false;
		c->nnodes = 1;
	}
	if (c->on_connected && (state == FP_REDIS_READY || state == FP_REDIS_DOWN))
		c->on_connected(c->data, state == FP_REDIS_READY, why);
}

/* --- life ----------------------------------------------------------------- */

static int check_text(const char *flag, const char *v, size_t max, char *err, size_t errlen)
{
	size_t i, n = strlen(v);

	if (n == 0 || n > max) {
		snprintf(err, errlen, "%s: must be 1 to %zu bytes long", flag, max);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f) {
			snprintf(err, errlen, "%s \"%s\": no blanks or control characters",
				 flag, v);
			return -EINVAL;
		}
	}
	return 0;
}

char *fp__cluster_cat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);

	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

void fp_cluster_free(fp_cluster *c)
{
	if (!c)
		return;
	fp_timer_stop(&c->tick);
	fp_timer_stop(&c->closer);
	fp_redis_free(c->redis);
	free(c->nodes);
	free(c->set_key);
	free(c->node_key);
	free(c->backend);
	free(c->address);
	free(c->name);
	free(c->prefix);
	free(c);
}

int fp_cluster_new(fp_cluster **out, fp_loop *loop, const struct fp_cluster_options *o,
		   char *err, size_t errlen)
{
	struct fp_redis_options ro;
	fp_cluster *c;
	int r;

	*out = NULL;
	if ((r = check_text("--cluster-prefix", o->prefix, PREFIX_MAX, err, errlen)) < 0 ||
	    (r = check_text("--node-name", o->node_name, sizeof(c->nodes[0].name) - 1,
			    err, errlen)) < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->log = o->log;
	c->load = o->load;
	c->on_connected = o->on_connected;
	c->data = o->data;
	c->heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : 1000;
	c->ttl_ms = o->ttl_ms ? o->ttl_ms : 3 * c->heartbeat_ms;
	c->started_at_ms = wall_ms();
	c->tick.data = c->closer.data = c;
	c->prefix = strdup(o->prefix);
	c->name = strdup(o->node_name);
	c->address = strdup(o->address ? o->address : "");
	c->backend = strdup(o->backend ? o->backend : "");
	c->nodes = calloc(NODES_MAX, sizeof(*c->nodes));
	c->nnodes = 1;
	if (!c->prefix || !c->name || !c->address || !c->backend || !c->nodes)
		goto err_nomem;
	c->set_key = fp__cluster_cat(c->prefix, "nodes");
	c->node_key = malloc(strlen(c->prefix) + 5 + strlen(c->name) + 1);
	if (!c->set_key || !c->node_key)
		goto err_nomem;
	sprintf(c->node_key, "%snode:%s", c->prefix, c->name);

	fp_redis_options_init(&ro);
	ro.url = o->url;
	ro.password = o->password;
	ro.log = o->log;
	ro.on_state = on_redis_state;
	ro.data = c;
	r = fp_redis_new(&c->redis, loop, &ro, err, errlen);
	if (r < 0)
		goto err_free;
	fp_timer_start(loop, &c->tick, c->heartbeat_ms, tick_cb);
	*out = c;
	return 0;

err_nomem:
	r = -ENOMEM;
err_free:
	fp_cluster_free(c);
	return r;
}

static void closer_cb(fp_timer *t)
{
	fp_cluster *c = t->data;

	c->left = true;
	fp_redis_close(c->redis);
}

static void goodbye_cb(fp_redis *r, int status, redisReply *reply, void *data)
{
	fp_cluster *c = data;

	(void)r;
	(void)reply;
	if (c->log)
		fp_dlog_info(c->log, status == 0 ? "cluster: node %s left the registry" :
			     "cluster: node %s could not say goodbye; its key expires", c->name);
	/* Closed from a timer: never from inside hiredis's own callback. */
	fp_timer_start(c->loop, &c->closer, 0, closer_cb);
}

void fp_cluster_leave(fp_cluster *c)
{
	if (!c || c->leaving)
		return;
	c->leaving = true;
	fp_timer_stop(&c->tick);
	{
		const char *del[] = { "DEL", c->node_key };
		size_t dell[] = { 3, strlen(c->node_key) };
		const char *zrem[] = { "ZREM", c->set_key, c->name };
		size_t zreml[] = { 4, strlen(c->set_key), strlen(c->name) };

		if (fp_redis_command(c->redis, NULL, NULL, 2, del, dell) == 0 &&
		    fp_redis_command(c->redis, goodbye_cb, c, 3, zrem, zreml) == 0)
			return;
	}
	fp_timer_start(c->loop, &c->closer, 0, closer_cb);
}

bool fp_cluster_settled(const fp_cluster *c)
{
	return !c || (c->left && fp_redis_settled(c->redis));
}
