/*
 * The HTTP server object: creation with its limits, the access-log hook and
 * the counters, stopping accepts, and the free that closes every connection
 * and listener and runs the loop until their last callbacks are in. How the
 * parts of the server fit together is told in http_impl.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_impl.h"

void fp_http_limits_init(struct fp_http_limits *lim)
{
	lim->max_header_bytes = 16 * 1024;
	lim->max_uri_bytes = 8 * 1024;
	lim->max_body_bytes = 64 * 1024 * 1024;
	/* An idle connection costs about 11 KiB and no thread: thousands fit. */
	lim->max_connections = 16384;
	lim->max_connections_per_ip = 0;
	lim->header_timeout_ms = 10000;
	/* Apache mod_reqtimeout's `body=20,MinRate=500`. */
	lim->body_timeout_ms = 20000;
	lim->body_min_rate = 500;
	lim->idle_timeout_ms = 60000;
	lim->high_water_bytes = 256 * 1024;
}

int fp_http_server_new(fp_http_server **out, fp_loop *loop,
		       const struct fp_http_limits *lim,
		       fp_http_handler handler, void *data)
{
	fp_http_server *srv;
	int r;

	if (!out || !loop || !handler)
		return -EINVAL;
	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	if (lim)
		srv->lim = *lim;
	else
		fp_http_limits_init(&srv->lim);
	srv->handler = handler;
	srv->data = data;
	srv->sweep.data = srv;
	if (srv->lim.max_connections_per_ip) {
		r = fp__http_peers_new(&srv->peers, srv->lim.max_connections);
		if (r < 0) {
			free(srv);
			return r;
		}
	}
	*out = srv;
	return 0;
}

void fp_http_set_access_log(fp_http_server *srv, fp_http_access_log fn, void *data)
{
	if (!srv)
		return;
	srv->log_fn = fn;
	srv->log_data = data;
}

void fp_http_server_stats(const fp_http_server *srv, struct fp_http_stats *out)
{
	if (!out)
		return;
	if (!srv) {
		memset(out, 0, sizeof(*out));
		return;
	}
	*out = srv->stats;
}

void fp_http_server_stop_accepting(fp_http_server *srv)
{
	struct listener *l;

	if (!srv)
		return;
	srv->stopping = 1;
	/* Each listener's fd is closed by its last callback. */
	for (l = srv->listeners; l; l = l->next)
		fp_io_cancel(&l->io);
}

static void server_destroy(fp_http_server *srv)
{
	struct listener *l;
	struct conn *c;

	fp_timer_stop(&srv->sweep);
	while ((c = srv->conns)) {
		srv->conns = c->next;
		/* Only zombies are left, their fds closed; a handler that still
		 * holds one must not touch it after the server is freed. */
		if (!c->closed)
			c->io->close(c);
		fp__http_conn_free(c);
	}
	while ((l = srv->listeners)) {
		srv->listeners = l->next;
		fp__http_listener_close(l);
		free(l);
	}
	fp__http_peers_free(srv->peers);
	free(srv);
}

static void free_done_cb(fp_timer *t)
{
	fp_http_server *srv = t->data;

	fp_loop_stop(srv->loop);
}

/* Called as the last thing of a callback: the server may be freed by it. */
void fp__http_server_check_done(fp_http_server *srv)
{
	if (!srv->freeing || srv->killing || srv->stats.open || srv->nlisten_open)
		return;
	if (srv->destroy_when_done) {
		server_destroy(srv);
		return;
	}
	/*
	 * Stop fp_http_server_free()'s run from a timer, not from here: on the
	 * epoll backend a stop from a deferred (cancelled) operation's callback
	 * leaves libuv's stop flag set outside uv_run, and the loop's teardown
	 * then leaks its handles. The sweep timer is idle while freeing.
	 */
	if (fp_timer_start(srv->loop, &srv->sweep, 0, free_done_cb) < 0)
		fp_loop_stop(srv->loop);
}

void fp_http_server_free(fp_http_server *srv)
{
	struct listener *l;
	struct conn *c, *n;
	unsigned stuck = 0;
	uint64_t before;
	int r;

	if (!srv || srv->freeing)
		return;
	srv->freeing = 1;
	srv->stopping = 1;
	fp_timer_stop(&srv->sweep);
	srv->sweep_due = 0;
	for (l = srv->listeners; l; l = l->next) {
		if (fp_io_active(&l->io))
			fp_io_cancel(&l->io);
		else
			fp__http_listener_close(l);
	}
	/*
	 * Close callbacks are handler code: every connection is pinned while
	 * they run, so none is freed under this walk.
	 */
	srv->killing = 1;
	for (c = srv->conns; c; c = c->next)
		c->busy++;
	for (c = srv->conns; c; c = c->next)
		fp__http_conn_kill(c);
	for (c = srv->conns; c; c = n) {
		n = c->next;
		fp__http_conn_leave(c);
	}
	srv->killing = 0;

	/* Wait for the last callback of every operation before closing fds. */
	while (srv->stats.open || srv->nlisten_open) {
		before = srv->stats.open + srv->nlisten_open;
		r = fp_loop_run(srv->loop);
		if (r == -EBUSY) {
			/* Called from a callback: the last one to end frees. */
			srv->destroy_when_done = 1;
			return;
		}
		/* A loop that has nothing left yet returned: do not spin. */
		if (r < 0 || (before == srv->stats.open + srv->nlisten_open && ++stuck > 100))
			break;
	}
	server_destroy(srv);
}
