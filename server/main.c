/*
 * forkpoold: the HTTP/JSON job service around a forkpool.
 *
 * main() reads the configuration, then builds the daemon in dependency
 * order on one event loop: loop, pool, jobs, the journal (replayed into the
 * jobs, whose unfinished ones start again, before anything listens), API,
 * HTTP server, listeners, signals; and takes it down in the reverse order.
 * Everything after start-up happens in loop callbacks.
 *
 * Shutdown is a small state machine driven by signals and one timer:
 *
 *   RUNNING --SIGTERM/SIGINT--> DRAINING: submissions get 503, jobs go on
 *   DRAINING --no job left---------------------------> STOPPING
 *   DRAINING --drain timeout--> CANCELLING: the rest are cancelled
 *   CANCELLING --cancellations delivered, or a bound-> STOPPING
 *   any phase --second SIGTERM/SIGINT--> workers SIGKILLed, STOPPING at once
 *
 * STOPPING leaves the loop; teardown then answers what is still open, closes
 * the sockets and shuts the pool down.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "cluster.h"
#include "cluster_jobs.h"
#include "cluster_kv.h"
#include "cluster_limit.h"
#include "config.h"
#include "http.h"
#include "jobs.h"
#include "journal.h"
#include "kv_journal.h"
#include "dlog.h"
#include "forkpool/loop.h"
#include "nofile.h"
#include "redis.h"

/* Exit statuses: config.h's usage text says the same. */
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* How long a clean shutdown waits for Redis to take this node's goodbye. */
#define CLUSTER_LEAVE_MS 1000
/* Chunks taken by a node that stops get this long to land their outcomes. */
#define CLUSTER_JOBS_LEAVE_MS 10000
/* At start, the jobs' connections get this long to follow the registry's. */
#define CLUSTER_JOBS_CONNECT_MS 2000
/* How often the drain checks whether the jobs have finished. */
#define DRAIN_POLL_MS 20
/* After the drain timeout, how long cancelled jobs get to be delivered. */
#define CANCEL_BOUND_MS 10000
/* Workers still running after the drain get this long, then SIGKILL. */
#define POOL_GRACE_MS 2000
/* How long responses already queued may take to reach their clients. */
#define LINGER_MS 1000
#define SETTLE_GRACE_MS 200
/* How long the journal's last write and fsync may take at exit. */
#define JOURNAL_CLOSE_MS 5000

enum phase { RUNNING, DRAINING, CANCELLING, STOPPING };

struct daemon {
	struct fp_config cfg;
	struct fp_dlog log;
	char *token;
	char token_warning[PATH_MAX * 2 + 256];   /* logged once the log is up */
	char *cluster_password;
	char cluster_warning[PATH_MAX * 2 + 256];

	fp_loop *loop;
	fp_pool *pool;
	fp_jobs *jobs;
	fp_journal *journal;        /* --data-dir; NULL: memory only */
	fp_kv_journal *kv_journal;  /* the shared values in it */
	struct fp_journal_report journal_report;
	bool journal_closed;
	fp_api *api;
	fp_http_server *http;
	fp_cluster *cluster;        /* --cluster; NULL: a single node */
	fp_cluster_jobs *cjobs;     /* --cluster: apply and map through Redis */
	fp_cluster_kv *ckv;         /* --cluster: the shared values in Redis */
	fp_cluster_limits *climits; /* --cluster: the limits' places held in Redis */
	bool cluster_starting;      /* start() waits for Redis's first answer */
	bool cluster_failed;

	fp_signal sigterm, sigint, sighup;
	fp_timer drain_timer;
	fp_timer log_timer;         /* writes the log's batch on the next round */
	enum phase phase;
	bool hard;                  /* a second signal: no more waiting */
	uint64_t drain_deadline_ms, cancel_deadline_ms;

	fp_timer wait_timer;        /* run_until() */
	bool (*wait_cond)(struct daemon *d);
	uint64_t wait_deadline_ms;
	uint64_t settled_since_ms;  /* http_settled() */

	char pool_error[512];       /* the pool's last error line, not to repeat it */
};

/* --- the pool's log ------------------------------------------------------ */

/* The pool's log lines go to the daemon's log; an error is kept for /v1/health. */
static void pool_log(void *data, fp_log_level level, const char *msg)
{
	struct daemon *d = data;

	if (level == FP_LOG_ERROR)
		snprintf(d->pool_error, sizeof(d->pool_error), "%s", msg);
	fp_dlog_fields(&d->log, level, 0, msg, NULL, 0);
}

/* --- the access log ------------------------------------------------------ */

/*
 * The access log's lines are batched (fp_dlog_batch): a write(2) a request
 * was a fifth of the master's CPU under many clients. They go out on the
 * next loop round, when everything the round answered has been logged.
 */
static void log_flush_cb(fp_timer *t)
{
	struct daemon *d = t->data;

	fp_dlog_flush(&d->log);
}

static void log_flush_soon(void *data)
{
	struct daemon *d = data;

	/* Without the timer the line is late, not lost: a full batch, a warning or the end writes it. */
	if (!fp_timer_active(&d->log_timer))
		fp_timer_start(d->loop, &d->log_timer, 0, log_flush_cb);
}

static void access_log(void *data, const fp_http_request *req, int status,
		       uint64_t bytes, uint64_t usec)
{
	struct daemon *d = data;
	const char *method = fp_http_method(req), *target = fp_http_target(req);
	const char *peer = fp_http_peer(req), *key = NULL;
	/* The job the request made or read: one grep of its id finds its story. */
	const char *job = fp_http_log_field(req, &key);
	char msg[1100], *m = msg;
	size_t n;

	if (!fp_dlog_enabled(&d->log, FP_LOG_INFO))
		return;
	method = method ? method : "-";
	target = target ? target : "-";
	peer = peer ? peer : "-";
	/*
	 * "METHOD TARGET STATUS", without printf (a line a request). A target
	 * near the URI limit would crowd out the fields: cut it at 1,024 bytes.
	 */
	n = strnlen(method, 32);
	memcpy(m, method, n);
	m += n;
	*m++ = ' ';
	n = strnlen(target, 1024);
	memcpy(m, target, n);
	m += n;
	*m++ = ' ';
	if (status >= 100 && status <= 999) {
		m[0] = (char)('0' + status / 100);
		m[1] = (char)('0' + status / 10 % 10);
		m[2] = (char)('0' + status % 10);
		m[3] = '\0';
	} else {
		snprintf(m, 16, "%d", status);
	}
	if (d->log.format == FP_DLOG_JSON) {
		const struct fp_dlog_field f[] = {
			FP_DLOG_FSTR("method", method),
			FP_DLOG_FSTR("target", target),
			FP_DLOG_FINT("status", status),
			FP_DLOG_FUINT("bytes", bytes),
			FP_DLOG_FMILLI("duration_ms", usec),
			FP_DLOG_FSTR("peer", peer),
			FP_DLOG_FSTR(key, job),
		};
		fp_dlog_fields(&d->log, FP_LOG_INFO, 0, msg, f, sizeof(f) / sizeof(f[0]) - !job);
	} else {
		const struct fp_dlog_field f[] = {
			FP_DLOG_FUINT("bytes", bytes),
			FP_DLOG_FMILLI("duration_ms", usec),
			FP_DLOG_FSTR("peer", peer),
			FP_DLOG_FSTR(key, job),
		};
		fp_dlog_fields(&d->log, FP_LOG_INFO, 0, msg, f, sizeof(f) / sizeof(f[0]) - !job);
	}
}

/* --- waiting on the loop ------------------------------------------------- */

static void wait_tick(fp_timer *t)
{
	struct daemon *d = t->data;

	if (d->wait_cond(d) || fp_now_ms() >= d->wait_deadline_ms)
		fp_loop_stop(d->loop);
	else
		fp_timer_start(d->loop, t, DRAIN_POLL_MS, wait_tick);
}

/* Run the loop until cond() holds or `ms` pass. For teardown (and the cluster's start). */
static void run_until(struct daemon *d, bool (*cond)(struct daemon *d), uint64_t ms)
{
	if (cond(d))
		return;
	d->wait_cond = cond;
	d->wait_deadline_ms = fp_now_ms() + ms;
	d->wait_timer.data = d;
	if (fp_timer_start(d->loop, &d->wait_timer, DRAIN_POLL_MS, wait_tick) < 0)
		return;
	fp_loop_run(d->loop);
	fp_timer_stop(&d->wait_timer);
}

/* --- shutdown ------------------------------------------------------------ */

static void stop_now(struct daemon *d)
{
	d->phase = STOPPING;
	fp_timer_stop(&d->drain_timer);
	fp_loop_stop(d->loop);
}

/*
 * A second signal: nothing more is waited for. Kill the workers here rather
 * than leave it to fp_pool_free(), because the pool may be inside its own
 * graceful shutdown, whose grace this cuts short.
 */
static void kill_workers(struct daemon *d)
{
	struct fp_worker_stats *ws;
	size_t i, n, cap;

	if (!d->pool)
		return;
	/* Every process the pool has, successors of a reload included. */
	cap = fp_pool_workers(d->pool, NULL, 0) + 1;
	ws = calloc(cap, sizeof(*ws));
	if (!ws)
		return;     /* fp_pool_free() kills them, after its grace */
	n = fp_pool_workers(d->pool, ws, cap);
	for (i = 0; i < n && i < cap; i++)
		if (ws[i].pid > 0)
			kill(ws[i].pid, SIGKILL);
	free(ws);
}

/* Cancel every job not finished yet; returns how many. */
static size_t cancel_unfinished(struct daemon *d)
{
	static const enum fp_job_state states[] = { FP_JOB_QUEUED, FP_JOB_RUNNING };
	struct fp_jobs_stats st;
	fp_job **list;
	size_t i, k, n, cancelled = 0;

	fp_jobs_stats(d->jobs, &st);
	if (!st.jobs)
		return 0;
	list = calloc(st.jobs, sizeof(*list));
	if (!list) {
		fp_dlog_error(&d->log, "out of memory listing jobs to cancel");
		return 0;
	}
	for (k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
		n = fp_jobs_list(d->jobs, &states[k], 0, list, st.jobs);
		for (i = 0; i < n && i < st.jobs; i++)
			if (fp_jobs_cancel(d->jobs, list[i]) == 0)
				cancelled++;
	}
	free(list);
	return cancelled;
}

static void drain_tick(fp_timer *t)
{
	struct daemon *d = t->data;
	size_t left = fp_jobs_unfinished(d->jobs);
	uint64_t now = fp_now_ms();

	if (left == 0) {
		fp_dlog_info(&d->log, d->phase == DRAINING ? "drained: every job finished"
			     : "drained: the cancelled jobs are settled");
		stop_now(d);
		return;
	}
	if (d->phase == DRAINING && now >= d->drain_deadline_ms) {
		fp_dlog_warn(&d->log, "drain timeout (%" PRIu64 " s): cancelling %zu unfinished jobs",
			     d->cfg.drain_timeout_s, left);
		d->phase = CANCELLING;
		d->cancel_deadline_ms = now + CANCEL_BOUND_MS;
		cancel_unfinished(d);
	} else if (d->phase == CANCELLING && now >= d->cancel_deadline_ms) {
		fp_dlog_warn(&d->log, "%zu jobs still unfinished %d s after cancelling them;"
			     " stopping anyway", left, CANCEL_BOUND_MS / 1000);
		stop_now(d);
		return;
	}
	fp_timer_start(d->loop, t, DRAIN_POLL_MS, drain_tick);
}

static void on_stop_signal(fp_signal *sig, int signum)
{
	struct daemon *d = sig->data;
	const char *name = sigabbrev_np(signum);

	if (d->phase != RUNNING) {
		fp_dlog_warn(&d->log, "second SIG%s: killing the workers and exiting at once",
			     name ? name : "?");
		d->hard = true;
		kill_workers(d);
		stop_now(d);
		return;
	}
	d->phase = DRAINING;
	fp_dlog_info(&d->log, "SIG%s: draining: new jobs are refused, %zu unfinished jobs get"
		     " up to %" PRIu64 " s (a second signal exits at once)",
		     name ? name : "?", fp_jobs_unfinished(d->jobs), d->cfg.drain_timeout_s);
	fp_api_set_draining(d->api, true);
	fp_jobs_close(d->jobs);
	d->drain_deadline_ms = fp_now_ms() + d->cfg.drain_timeout_s * 1000;
	d->drain_timer.data = d;
	fp_timer_start(d->loop, &d->drain_timer, 0, drain_tick);
}

static void on_reload_signal(fp_signal *sig, int signum)
{
	(void)signum;
	struct daemon *d = sig->data;
	struct fp_pool_stats st;
	int r;

	if (d->phase != RUNNING) {
		fp_dlog_warn(&d->log, "SIGHUP ignored: shutting down");
		return;
	}
	fp_pool_stats(d->pool, &st);
	r = fp_pool_reload(d->pool);
	if (r < 0) {
		fp_dlog_error(&d->log, "SIGHUP: cannot restart the workers: %s", fp_strerror(r));
		return;
	}
	fp_dlog_info(&d->log, "SIGHUP: restarting all %u workers, one at a time", st.workers);
	fp_api_count_reload(d->api, st.workers);
}

/* --- start-up ------------------------------------------------------------ */

/*
 * The cluster's settings: a URL that parses, flags that need --cluster only
 * with it, the password file read. Exits 2 like any bad setting.
 */
static int check_cluster(struct daemon *d)
{
	char err[PATH_MAX * 2 + 256];
	struct fp_redis_addr addr;
	const char *alone = d->cfg.cluster_auth_file ? "--cluster-auth-file" :
			    d->cfg.cluster_prefix ? "--cluster-prefix" :
			    d->cfg.node_name ? "--node-name" :
			    d->cfg.cluster_wait ? "--cluster-wait" : NULL;

	if (!d->cfg.cluster) {
		if (!alone)
			return 0;
		fprintf(stderr, "forkpoold: %s: needs --cluster URL\n", alone);
		return -EINVAL;
	}
	if (fp_redis_addr_parse(d->cfg.cluster, &addr, err, sizeof(err)) < 0 ||
	    fp_config_read_cluster_password(&d->cfg, &d->cluster_password, d->cluster_warning,
					    sizeof(d->cluster_warning), err, sizeof(err)) < 0) {
		fprintf(stderr, "forkpoold: %s\n", err);
		return -EINVAL;
	}
	return 0;
}

/* Authentication, or loopback only. Exits 2 like any bad setting. */
static int check_security(struct daemon *d)
{
	char err[PATH_MAX * 2 + 256];
	size_t i;

	if (check_cluster(d) < 0)
		return -EINVAL;

	if (d->cfg.token_file) {
		if (fp_config_read_token(&d->cfg, &d->token, d->token_warning,
					 sizeof(d->token_warning), err, sizeof(err)) < 0) {
			fprintf(stderr, "forkpoold: %s\n", err);
			return -EINVAL;
		}
		return 0;
	}
	for (i = 0; i < d->cfg.nlisten; i++) {
		if (!fp_http_addr_is_loopback(d->cfg.listen[i])) {
			fprintf(stderr, "forkpoold: --listen %s: refusing to listen on a non-loopback"
				" address without authentication; to allow it, give --token-file PATH"
				" (a file holding the bearer token clients must send)\n",
				d->cfg.listen[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static const char *backend_flag_name(fp_loop_backend b)
{
	return b == FP_LOOP_URING ? "uring" : b == FP_LOOP_EPOLL ? "epoll" : "auto";
}

static void log_pool(struct daemon *d, unsigned flags)
{
	struct fp_worker_stats ws[64];
	struct fp_pool_stats st;
	char pids[64 * 12 + 8] = "";
	size_t i, n, len = 0, ntasks;

	fp_pool_stats(d->pool, &st);
	n = fp_pool_workers(d->pool, ws, sizeof(ws) / sizeof(ws[0]));
	for (i = 0; i < n && i < sizeof(ws) / sizeof(ws[0]); i++) {
		/* "?": the zygote has not answered for this one yet. */
		char pid[16] = "?";

		if (ws[i].pid > 0)
			snprintf(pid, sizeof(pid), "%d", (int)ws[i].pid);
		len += (size_t)snprintf(pids + len, sizeof(pids) - len, "%s%s", i ? " " : "", pid);
	}
	if (n > sizeof(ws) / sizeof(ws[0]))
		snprintf(pids + len, sizeof(pids) - len, " ...");
	fp_pool_tasks(d->pool, &ntasks);
	fp_dlog_flags(&d->log, FP_LOG_INFO, flags, "workers: %u (pids %s), %zu tasks from %zu"
		      " module%s", st.workers, pids, ntasks, d->cfg.nmodules + 1,
		      d->cfg.nmodules ? "s" : "");
}

/*
 * Descriptors besides the connections': the listeners, the loop's, the
 * log, and per worker its socket, its log pipe and a successor's two.
 */
#define NOFILE_RESERVE 256
#define NOFILE_PER_WORKER 4

/*
 * Raise the soft RLIMIT_NOFILE to hold --max-connections, and say so. When
 * the hard limit is too low, the cap becomes what fits: past the limit
 * accept() would fail with EMFILE, leaving clients in the backlog unanswered.
 * Returns the connection cap to use.
 */
static unsigned open_files(struct daemon *d)
{
	uint64_t cap = d->cfg.max_connections, other, need;
	struct fp_nofile nf;
	struct fp_pool_stats st;
	int r;

	fp_pool_stats(d->pool, &st);
	other = NOFILE_RESERVE + (uint64_t)NOFILE_PER_WORKER * st.workers;
	need = cap + other;
	r = fp_nofile_raise(need, &nf);
	if (r < 0) {
		fp_dlog_warn(&d->log, "open files: cannot raise RLIMIT_NOFILE to %" PRIu64
			     " for --max-connections %" PRIu64 ": %s", need, cap, fp_strerror(r));
		return (unsigned)cap;
	}
	if (nf.after < need) {
		uint64_t fit = nf.after > other + 1 ? nf.after - other : 1;

		fp_dlog_warn(&d->log, "open files: the hard RLIMIT_NOFILE (%" PRIu64 ") is below the"
			     " %" PRIu64 " descriptors --max-connections %" PRIu64 " needs: taking at"
			     " most %" PRIu64 " connections (raise the hard limit: ulimit -Hn,"
			     " LimitNOFILE=; or lower --max-connections)", nf.hard, need, cap, fit);
		return (unsigned)fit;
	}
	if (nf.after > nf.before)
		fp_dlog_info(&d->log, "open files: raised the soft RLIMIT_NOFILE from %" PRIu64
			     " to %" PRIu64 " for --max-connections %" PRIu64, nf.before, nf.after, cap);
	else
		fp_dlog_info(&d->log, "open files: RLIMIT_NOFILE %" PRIu64 " holds --max-connections"
			     " %" PRIu64, nf.after, cap);
	return (unsigned)cap;
}

/* A record goes back to its owner: the shared values or the job store. */
static int replay(void *data, const struct fp_jrec *r, uint64_t off, char *err, size_t errlen)
{
	struct daemon *d = data;

	if (fp_kv_journal_owns(r->type))
		return fp_kv_journal_replay(d->pool, r, off, err, errlen);
	return fp_jobs_replay(d->jobs, r, off, err, errlen);
}

/*
 * The journal, replayed into the job store and the shared values before
 * anything listens, so that the first request already sees every job the
 * last run accepted and every value it answered for.
 */
static int open_journal(struct daemon *d)
{
	struct fp_journal_options o = {
		.dir = d->cfg.data_dir, .fsync = d->cfg.fsync,
		.fsync_interval_ms = d->cfg.fsync_interval_ms,
		.recover = d->cfg.journal_recover, .replay = replay,
		.data = d, .log = &d->log,
	};
	size_t kv_keys, kv_bytes;
	struct fp_jobs_recovery rec;
	char err[1024];
	int r;

	if (!d->cfg.data_dir) {
		fp_dlog_warn(&d->log, "jobs and shared values are kept in memory only: --data-dir"
			     " DIR keeps them across restarts");
		return 0;
	}
	r = fp_journal_open(&d->journal, d->loop, &o, &d->journal_report, err, sizeof(err));
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot open the journal in --data-dir %s: %s",
			      d->cfg.data_dir, err[0] ? err : fp_strerror(r));
		return r;
	}
	fp_jobs_attach_journal(d->jobs, d->journal);
	r = fp_kv_journal_new(&d->kv_journal, d->pool, d->journal, d->jobs);
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot keep the shared values in the journal: %s",
			      fp_strerror(r));
		return r;
	}
	fp_pool_kv_usage(d->pool, &kv_keys, &kv_bytes);
	fp_dlog_info(&d->log, "journal: %zu shared values recovered", kv_keys);
	r = fp_jobs_resume(d->jobs, &rec);
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot resume the journal's jobs: %s", fp_strerror(r));
		return r;
	}
	fp_dlog_info(&d->log, "journal: %s/journal, fsync %s, %" PRIu64 " records replayed;"
		     " %" PRIu64 " jobs recovered (%" PRIu64 " finished, %" PRIu64 " resumed:"
		     " %" PRIu64 " items kept their outcome, %" PRIu64 " run again)",
		     d->cfg.data_dir, fp_fsync_policy_name(d->cfg.fsync),
		     d->journal_report.records, rec.jobs, rec.finished, rec.resumed,
		     rec.items_kept, rec.items_rerun);
	if (rec.skipped)
		fp_dlog_warn(&d->log, "journal: %" PRIu64 " jobs were not recovered (their JOB"
			     " records are of a kind or shape this forkpoold does not resume)",
			     rec.skipped);
	return 0;
}

/*
 * Build everything. On failure the message is logged and the caller tears
 * down what was built.
 */
/* --- the cluster -------------------------------------------------------- */

static void cluster_load(void *data, struct fp_cluster_load *out)
{
	struct daemon *d = data;
	struct fp_pool_stats st;

	fp_pool_stats(d->pool, &st);
	out->workers = st.workers;
	out->able = st.able;
	out->busy = st.running < st.alive ? (unsigned)st.running : st.alive;
}

static void cluster_connected(void *data, bool connected, const char *why)
{
	struct daemon *d = data;

	(void)why;
	if (!d->cluster_starting)
		return;
	/* Without --cluster-wait the first answer decides whether we run. */
	d->cluster_failed = !connected;
	d->cluster_starting = false;
	fp_loop_stop(d->loop);
}

static bool cluster_jobs_ready(struct daemon *d);

/*
 * Join the cluster once the listeners are bound (the default name and the
 * address come from the first). Without --cluster-wait, Redis must answer
 * now: the loop runs (serving) until the first connect succeeds or fails.
 */
static int start_cluster(struct daemon *d, const char *bound)
{
	struct fp_cluster_options co;
	char name[512], err[PATH_MAX + 512];
	int r;

	fp_cluster_options_init(&co);
	fp_cluster_default_name(name, sizeof(name), bound);
	co.url = d->cfg.cluster;
	co.password = d->cluster_password;
	if (d->cfg.cluster_prefix)
		co.prefix = d->cfg.cluster_prefix;
	co.node_name = d->cfg.node_name ? d->cfg.node_name : name;
	co.address = bound;
	co.backend = fp_loop_backend_name(d->loop);
	co.log = &d->log;
	co.load = cluster_load;
	co.on_connected = cluster_connected;
	co.data = d;
	r = fp_cluster_new(&d->cluster, d->loop, &co, err, sizeof(err));
	if (r < 0) {
		fp_dlog_error(&d->log, "%s", err[0] ? err : fp_strerror(r));
		return r;
	}
	fp_api_set_cluster(d->api, d->cluster);
	r = fp_cluster_kv_new(&d->ckv, d->pool, d->cluster);
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot keep the shared values in the cluster: %s",
			      fp_strerror(r));
		return r;
	}
	/* Limits (the flags', and jobs' "concurrency") hold across the cluster: places in Redis. */
	if ((r = fp_cluster_limits_new(&d->climits, d->loop, d->pool, d->cluster)) < 0) {
		fp_dlog_error(&d->log, "cannot hold the limits in the cluster: %s", fp_strerror(r));
		return r;
	}
	{
		struct fp_cluster_jobs_options jo;

		fp_cluster_jobs_options_init(&jo);
		jo.url = co.url;
		jo.password = co.password;
		jo.prefix = co.prefix;
		jo.node_name = co.node_name;
		jo.ttl_ms = d->cfg.job_ttl_s * 1000;
		jo.max_queue = d->cfg.max_queue;
		jo.buffer_max = d->cfg.cluster_buffer;
		jo.log = &d->log;
		r = fp_cluster_jobs_new(&d->cjobs, d->loop, d->pool, &jo, err, sizeof(err));
		if (r < 0) {
			fp_dlog_error(&d->log, "%s", err[0] ? err : fp_strerror(r));
			return r;
		}
		fp_api_set_cluster_jobs(d->api, d->cjobs);
	}
	fp_dlog_info(&d->log, "cluster: node %s joining through %s (prefix %s)%s",
		     co.node_name, d->cfg.cluster, co.prefix,
		     d->cfg.cluster_wait ? ", waiting for Redis as long as it takes" : "");
	/* With --cluster-wait the node serves meanwhile; redis.c retries. */
	if (d->cfg.cluster_wait)
		return 0;
	d->cluster_starting = true;
	fp_loop_run(d->loop);
	if (d->cluster_starting || d->cluster_failed) {
		d->cluster_starting = false;
		fp_dlog_error(&d->log, "--cluster %s: cannot reach Redis: %s (--cluster-wait"
			      " waits for it instead)", d->cfg.cluster,
			      fp_cluster_last_error(d->cluster));
		return -EHOSTUNREACH;
	}
	/*
	 * The jobs' own connections came up with the registry's, or are about
	 * to: a submission right after "ready" must not meet 503. (Redis
	 * answered the registry; a failure here is rare and is retried as at
	 * run time.)
	 */
	run_until(d, cluster_jobs_ready, CLUSTER_JOBS_CONNECT_MS);
	return 0;
}

static bool cluster_jobs_ready(struct daemon *d)
{
	return fp_cluster_jobs_ready(d->cjobs);
}

static bool cluster_jobs_settled(struct daemon *d)
{
	return fp_cluster_jobs_settled(d->cjobs);
}

static bool cluster_settled(struct daemon *d)
{
	return fp_cluster_settled(d->cluster);
}

/* The event loop, the pool on it (its workers start here) and the pool's concurrency limits. */
static int start_pool(struct daemon *d)
{
	fp_options po;
	char err[512], names[FP_EXEC_MAX][72];
	size_t i;
	int r;

	r = fp_loop_new(&d->loop, d->cfg.loop);
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot start the event loop (--loop %s): %s%s",
			      backend_flag_name(d->cfg.loop), fp_strerror(r),
			      d->cfg.loop == FP_LOOP_URING ? "; --loop epoll works without io_uring" : "");
		return r;
	}

	fp_options_init(&po);
	po.workers = (unsigned)d->cfg.workers;
	po.max_tasks_per_child = (unsigned)d->cfg.max_tasks_per_child;
	po.max_tasks_jitter = (unsigned)d->cfg.max_tasks_jitter;
	po.max_rss_bytes = (size_t)d->cfg.max_rss_mb << 20;
	po.timeout_ms = d->cfg.task_timeout_ms;
	for (i = 0; i < d->cfg.nmodules; i++)
		po.modules[i] = d->cfg.modules[i];
	/* Checked by the configuration; the pool copies the strings. */
	fp_config_exec_pools(&d->cfg, po.exec, names);
	po.log = pool_log;
	po.log_data = d;
	/* Everything: the daemon's log filters. */
	po.log_level = FP_LOG_DEBUG;
	po.backend = d->cfg.loop;
	r = fp_pool_new(&d->pool, d->loop, &po, err, sizeof(err));
	if (r < 0) {
		/* The pool logged it already when it is the same text. */
		if (strcmp(err, d->pool_error) != 0)
			fp_dlog_error(&d->log, "cannot start the pool: %s", err[0] ? err : fp_strerror(r));
		return r;
	}

	r = fp_config_apply_limits(&d->cfg, d->pool, err, sizeof(err));
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot set the concurrency limits: %s", err);
		return r;
	}
	return 0;
}

/* The job store, the journal that replays into it, and the API over both. */
static int start_jobs(struct daemon *d)
{
	struct fp_jobs_options jo;
	struct fp_api_options ao;
	int r;

	fp_jobs_options_init(&jo);
	jo.ttl_ms = d->cfg.job_ttl_s * 1000;
	jo.max_queue = d->cfg.max_queue;
	jo.max_jobs = (size_t)d->cfg.max_jobs;
	jo.max_results_bytes = d->cfg.max_results_memory;
	jo.journal_compact_min = d->cfg.journal_compact_size;
	r = fp_jobs_new(&d->jobs, d->pool, &jo);
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot start the job store: %s", fp_strerror(r));
		return r;
	}

	r = open_journal(d);
	if (r < 0)
		return r;

	fp_api_options_init(&ao);
	ao.token = d->token;
	ao.journal_report = d->journal ? &d->journal_report : NULL;
	ao.version = FP_VERSION_STRING;
	r = fp_api_new(&d->api, d->pool, d->jobs, &ao);
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot start the API: %s", fp_strerror(r));
		return r;
	}
	return 0;
}

/* The HTTP server with its limits, listening on every --listen; bound[i] is what it got. */
static int start_http(struct daemon *d, char (*bound)[256])
{
	struct fp_http_limits lim;
	char err[512];
	size_t i;
	int r;

	fp_http_limits_init(&lim);
	lim.max_body_bytes = (size_t)d->cfg.max_body;
	lim.max_connections = open_files(d);
	lim.max_connections_per_ip = (unsigned)d->cfg.max_connections_per_ip;
	lim.header_timeout_ms = d->cfg.header_timeout_ms;
	lim.body_timeout_ms = d->cfg.body_timeout_ms;
	lim.body_min_rate = d->cfg.body_min_rate;
	r = fp_http_server_new(&d->http, d->loop, &lim, fp_api_handler, d->api);
	if (r < 0) {
		fp_dlog_error(&d->log, "cannot start the HTTP server: %s", fp_strerror(r));
		return r;
	}
	fp_http_set_access_log(d->http, access_log, d);
	fp_http_set_unix_mode(d->http, (unsigned)d->cfg.unix_mode);
	fp_api_attach_http(d->api, d->http);

	for (i = 0; i < d->cfg.nlisten; i++) {
		err[0] = '\0';
		r = fp_http_listen(d->http, d->cfg.listen[i], bound[i], sizeof(bound[i]),
				   err, sizeof(err));
		if (r < 0) {
			fp_dlog_error(&d->log, "cannot listen on %s: %s", d->cfg.listen[i],
				      err[0] ? err : fp_strerror(r));
			return r;
		}
	}
	return 0;
}

/* Stop and reload arrive through the loop (signalfd or the self-pipe), never in a handler. */
static int watch_signals(struct daemon *d)
{
	int r;

	d->sigterm.data = d->sigint.data = d->sighup.data = d;
	if ((r = fp_signal_start(d->loop, &d->sigterm, SIGTERM, on_stop_signal)) < 0 ||
	    (r = fp_signal_start(d->loop, &d->sigint, SIGINT, on_stop_signal)) < 0 ||
	    (r = fp_signal_start(d->loop, &d->sighup, SIGHUP, on_reload_signal)) < 0) {
		fp_dlog_error(&d->log, "cannot watch signals: %s", fp_strerror(r));
		return r;
	}
	return 0;
}

/* What start-up decided, logged once the daemon can be reached; then batching begins. */
static void announce(struct daemon *d, char (*bound)[256])
{
	size_t i;

	/*
	 * Scripts and tests read the port from the first line: the listening
	 * lines go out first, whatever the level, ahead of what start-up held.
	 */
	for (i = 0; i < d->cfg.nlisten; i++)
		fp_dlog_flags(&d->log, FP_LOG_INFO, FP_DLOG_FORCE | FP_DLOG_NOW,
			      "listening on %s", bound[i]);
	fp_dlog_flags(&d->log, FP_LOG_INFO, FP_DLOG_NOW, "event loop: %s",
		      fp_loop_backend_name(d->loop));
	log_pool(d, FP_DLOG_NOW);
	fp_dlog_flags(&d->log, FP_LOG_INFO, FP_DLOG_NOW, "authentication: %s%s",
		      d->token ? "bearer token from " : "off (loopback only)",
		      d->token ? d->cfg.token_file : "");
	fp_dlog_release(&d->log);
	d->log_timer.data = d;
	/* Without the buffer each line is written at once, as before. */
	fp_dlog_batch(&d->log, log_flush_soon, d);
}

/*
 * In dependency order. Each step logs why it failed and returns; teardown()
 * frees whatever a failed start made, as it did before the steps were split.
 */
static int start(struct daemon *d)
{
	char bound[FP_CONFIG_LISTEN_MAX][256];
	int r;

	if ((r = start_pool(d)) < 0 || (r = start_jobs(d)) < 0 ||
	    (r = start_http(d, bound)) < 0 || (r = watch_signals(d)) < 0)
		return r;
	announce(d, bound);
	if (d->cfg.cluster && (r = start_cluster(d, bound[0])) < 0)
		return r;
	if (d->cfg.config_file)
		fp_dlog_debug(&d->log, "configuration read from %s", d->cfg.config_file);
	fp_dlog_info(&d->log, "forkpoold %s ready", fp_version());
	return 0;
}

/* --- teardown ------------------------------------------------------------ */

/*
 * Every connection closed; or every request answered and a short grace since
 * for the bytes to go out. fp_http_server_free() drops unsent output, and the
 * server's statistics count a response when it is queued, not when it has
 * been written, so the grace stands in for "written" (a client reading a big
 * response slowly can still be cut off; LINGER_MS bounds the wait).
 */
static bool http_settled(struct daemon *d)
{
	struct fp_http_stats st;
	uint64_t answered = 0, now = fp_now_ms();
	size_t i;

	fp_http_server_stats(d->http, &st);
	if (st.open == 0)
		return true;
	for (i = 1; i < sizeof(st.responses) / sizeof(st.responses[0]); i++)
		answered += st.responses[i];
	if (answered < st.requests) {
		d->settled_since_ms = 0;
		return false;
	}
	if (!d->settled_since_ms)
		d->settled_since_ms = now;
	return now - d->settled_since_ms >= SETTLE_GRACE_MS;
}

static void journal_closed_cb(void *data)
{
	struct daemon *d = data;

	d->journal_closed = true;
}

static bool journal_done(struct daemon *d)
{
	return d->journal_closed;
}

/* What was appended goes to the file and is fsynced; then the lock goes. */
static void close_journal(struct daemon *d)
{
	if (!d->journal)
		return;
	fp_journal_close(d->journal, journal_closed_cb, d);
	d->journal = NULL;
	run_until(d, journal_done, JOURNAL_CLOSE_MS);
	if (!d->journal_closed)
		fp_dlog_warn(&d->log, "the journal was not closed within %d s",
			     JOURNAL_CLOSE_MS / 1000);
}

static void teardown(struct daemon *d)
{
	fp_timer_stop(&d->drain_timer);
	/* No more chunks taken; those taken land (or stay pending for another node). */
	if (d->cjobs && d->loop) {
		fp_cluster_jobs_leave(d->cjobs);
		run_until(d, cluster_jobs_settled, CLUSTER_JOBS_LEAVE_MS);
	}
	/* Out of the registry first, so other nodes stop listing this one. */
	/* The pool's own store again; what is out is answered as the connection closes. */
	fp_cluster_kv_stop(d->ckv);
	fp_cluster_limits_stop(d->climits);
	if (d->cluster && d->loop) {
		fp_cluster_leave(d->cluster);
		run_until(d, cluster_settled, CLUSTER_LEAVE_MS);
	}
	if (d->http) {
		fp_http_server_stop_accepting(d->http);
		/* Jobs that just finished were answered; let the bytes go out. */
		if (!d->hard && d->loop)
			run_until(d, http_settled, LINGER_MS);
	}
	/* Answers the long-polls and streams still open, while the server is. */
	fp_api_free(d->api);
	d->api = NULL;
	/* Left the registry above; nothing refers to it once the API is gone. */
	fp_cluster_jobs_free(d->cjobs);
	d->cjobs = NULL;
	fp_cluster_free(d->cluster);
	d->cluster = NULL;
	fp_cluster_kv_free(d->ckv);
	d->ckv = NULL;
	fp_cluster_limits_free(d->climits);
	d->climits = NULL;
	fp_http_server_free(d->http);
	d->http = NULL;
	fp_kv_journal_free(d->kv_journal);
	d->kv_journal = NULL;
	fp_jobs_free(d->jobs);
	d->jobs = NULL;
	close_journal(d);
	if (d->pool) {
		if (d->hard)
			kill_workers(d);
		else
			fp_pool_shutdown(d->pool, POOL_GRACE_MS);
		fp_pool_free(d->pool);
		d->pool = NULL;
	}
	fp_signal_stop(&d->sigterm);
	fp_signal_stop(&d->sigint);
	fp_signal_stop(&d->sighup);
	/* What is batched goes out now; later lines are written at once. */
	fp_timer_stop(&d->log_timer);
	fp_dlog_batch(&d->log, NULL, NULL);
	fp_loop_free(d->loop);
	d->loop = NULL;
}

int main(int argc, char *argv[])
{
	static struct daemon d;
	char err[1024];
	int r, status = 0;

	r = fp_config_load(&d.cfg, argc, argv, NULL, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "forkpoold: %s\n", err);
		fp_config_deinit(&d.cfg);
		return EXIT_USAGE;
	}
	if (r == FP_CONFIG_HELP || r == FP_CONFIG_VERSION) {
		if (r == FP_CONFIG_HELP)
			fp_config_usage(stdout);
		else
			printf("forkpoold %s\n", fp_version());
		fp_config_deinit(&d.cfg);
		return fflush(stdout) == 0 ? 0 : EXIT_RUNTIME;
	}
	if (check_security(&d) < 0) {
		fp_config_deinit(&d.cfg);
		return EXIT_USAGE;
	}

	/*
	 * A client that goes away mid-response must not kill the daemon. Set
	 * before the pool forks: workers reset every signal to its default.
	 */
	signal(SIGPIPE, SIG_IGN);

	fp_dlog_init(&d.log, STDERR_FILENO, d.cfg.log_level, d.cfg.log_format);
	fp_dlog_hold(&d.log);
	if (d.token_warning[0])
		fp_dlog_warn(&d.log, "%s", d.token_warning);
	if (d.cluster_warning[0])
		fp_dlog_warn(&d.log, "%s", d.cluster_warning);
	d.drain_timer.data = &d;

	r = start(&d);
	if (r < 0) {
		fp_dlog_release(&d.log);
		d.hard = true;
		status = EXIT_RUNTIME;
	} else {
		r = fp_loop_run(d.loop);
		if (r < 0 && d.phase != STOPPING) {
			fp_dlog_error(&d.log, "the event loop failed: %s", fp_strerror(r));
			status = EXIT_RUNTIME;
		}
		if (d.hard)
			status = EXIT_RUNTIME;
	}
	teardown(&d);
	if (status == 0)
		fp_dlog_info(&d.log, "stopped");
	fp_dlog_deinit(&d.log);
	if (d.token) {
		explicit_bzero(d.token, strlen(d.token));
		free(d.token);
	}
	if (d.cluster_password) {
		explicit_bzero(d.cluster_password, strlen(d.cluster_password));
		free(d.cluster_password);
	}
	fp_config_deinit(&d.cfg);
	return status;
}
