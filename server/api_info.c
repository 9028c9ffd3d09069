/* What the server can tell about itself: tasks, workers, health, metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"
#include "cluster.h"
#include "cluster_jobs.h"
#include "forkpool/loop.h"

#define WORKERS_MAX 1024

/* The pool's limits now, to free(); *n of them (0, and NULL, without memory). */
static struct fp_limit_stats *limits_now(fp_api *api, size_t *n)
{
	size_t count = fp_pool_limits(api->pool, NULL, 0);
	struct fp_limit_stats *st = count ? calloc(count, sizeof(*st)) : NULL;

	*n = st ? fp_pool_limits(api->pool, st, count) : 0;
	return st;
}

/* ,"limit":{"name":...,"max":N,"running":N} or ,"limit":null */
static void task_limit(fp_api *api, struct sbuf *b, const char *task,
		       const struct fp_limit_stats *st, size_t n)
{
	const char *name = fp_pool_task_limit_name(api->pool, task);

	for (size_t i = 0; name && i < n; i++) {
		if (strcmp(st[i].name, name))
			continue;
		sbuf_adds(b, ",\"limit\":{\"name\":");
		sbuf_json_string(b, name, strlen(name));
		sbuf_printf(b, ",\"max\":%u,\"running\":%u}", st[i].max, st[i].running);
		return;
	}
	sbuf_adds(b, ",\"limit\":null");
}

void fp__api_tasks(fp_api *api, fp_http_request *req)
{
	size_t n, i, nlim;
	const struct fp_task_info *t = fp_pool_tasks(api->pool, &n);
	struct fp_limit_stats *lim = limits_now(api, &nlim);
	struct sbuf b;

	sbuf_init(&b);
	sbuf_adds(&b, "{\"tasks\":[");
	for (i = 0; i < n; i++) {
		sbuf_adds(&b, i ? ",{\"name\":" : "{\"name\":");
		sbuf_json_string(&b, t[i].name, strlen(t[i].name));
		sbuf_adds(&b, ",\"module\":");
		sbuf_json_string(&b, t[i].module, strlen(t[i].module));
		sbuf_adds(&b, ",\"doc\":");
		if (t[i].doc)
			sbuf_json_string(&b, t[i].doc, strlen(t[i].doc));
		else
			sbuf_adds(&b, "null");
		task_limit(api, &b, t[i].name, lim, nlim);
		/* Declared a generator: zero or more outputs per item (pipelines). */
		sbuf_adds(&b, t[i].generator ? ",\"generator\":true}" : ",\"generator\":false}");
	}
	sbuf_adds(&b, "]}");
	free(lim);
	fp__api_json(req, 200, &b);
	sbuf_free(&b);
}

/*
 * With --cluster: ,"cluster":"connected|disconnected","node":NAME,"nodes":[...]
 * every live node as the registry last said, this one first and marked.
 */
static void cluster_fields(fp_api *api, struct sbuf *b)
{
	const struct fp_cluster_node *n;
	const char *name;
	size_t i, count;

	if (!api->cluster)
		return;
	name = fp_cluster_node_name(api->cluster);
	count = fp_cluster_nodes(api->cluster, &n);
	sbuf_printf(b, ",\"cluster\":\"%s\",\"node\":",
		    fp_cluster_connected(api->cluster) ? "connected" : "disconnected");
	sbuf_json_string(b, name, strlen(name));
	sbuf_adds(b, ",\"nodes\":[");
	for (i = 0; i < count; i++) {
		sbuf_adds(b, i ? ",{\"name\":" : "{\"name\":");
		sbuf_json_string(b, n[i].name, strlen(n[i].name));
		sbuf_adds(b, ",\"address\":");
		sbuf_json_string(b, n[i].address, strlen(n[i].address));
		sbuf_adds(b, ",\"backend\":");
		sbuf_json_string(b, n[i].backend, strlen(n[i].backend));
		sbuf_printf(b, ",\"pid\":%ld,\"started_at_ms\":%llu,\"heartbeat_age_ms\":%llu,"
			    "\"workers\":{\"count\":%u,\"busy\":%u,\"able\":%u},\"self\":%s}",
			    n[i].pid, (unsigned long long)n[i].started_at_ms,
			    (unsigned long long)n[i].age_ms, n[i].load.workers, n[i].load.busy,
			    n[i].load.able, n[i].self ? "true" : "false");
	}
	sbuf_adds(b, "]");
}

void fp__api_workers(fp_api *api, fp_http_request *req)
{
	struct fp_worker_stats *ws = calloc(WORKERS_MAX, sizeof(*ws));
	struct fp_pool_stats st;
	uint64_t now = fp_now_ms();
	size_t n, i;
	struct sbuf b;

	if (!ws) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	n = fp_pool_workers(api->pool, ws, WORKERS_MAX);
	if (n > WORKERS_MAX)
		n = WORKERS_MAX;
	fp_pool_stats(api->pool, &st);
	sbuf_init(&b);
	sbuf_adds(&b, "{\"workers\":[");
	for (i = 0; i < n; i++) {
		/* No pid yet (the zygote has not answered): null, never 0. */
		sbuf_printf(&b, "%s{\"pid\":", i ? "," : "");
		if (ws[i].pid > 0)
			sbuf_printf(&b, "%d", (int)ws[i].pid);
		else
			sbuf_adds(&b, "null");
		sbuf_printf(&b, ",\"slot\":%u,\"generation\":%llu,\"state\":\"%s\","
			    "\"tasks_done\":%llu,\"tasks_limit\":%llu,\"rss_bytes\":%zu,"
			    "\"uptime_ms\":%llu,\"pool\":",
			    ws[i].slot,
			    (unsigned long long)ws[i].generation, fp_worker_state_name(ws[i].state),
			    (unsigned long long)ws[i].tasks_done,
			    (unsigned long long)ws[i].tasks_limit, ws[i].rss_bytes,
			    (unsigned long long)(now - ws[i].started_ms));
		/* Which pool: null for C workers, else the exec pool's name. */
		if (ws[i].pool)
			sbuf_json_string(&b, ws[i].pool, strlen(ws[i].pool));
		else
			sbuf_adds(&b, "null");
		sbuf_adds(&b, ",\"task\":");
		if (ws[i].task) {
			sbuf_json_string(&b, ws[i].task, strlen(ws[i].task));
			sbuf_printf(&b, ",\"task_running_ms\":%llu",
				    (unsigned long long)(now > ws[i].task_started_ms ?
							 now - ws[i].task_started_ms : 0));
		} else {
			sbuf_adds(&b, "null");
		}
		sbuf_adds(&b, "}");
	}
	sbuf_printf(&b, "],\"pool\":{\"workers\":%u,\"alive\":%u,\"able\":%u,\"queued\":%llu,"
		    "\"running\":%llu,\"done\":%llu,\"failed\":%llu,\"crashes\":%llu,"
		    "\"timeouts\":%llu,\"recycles\":%llu,\"healthy\":%s}",
		    st.workers, st.alive, st.able, (unsigned long long)st.queued,
		    (unsigned long long)st.running, (unsigned long long)st.done,
		    (unsigned long long)st.failed, (unsigned long long)st.crashes,
		    (unsigned long long)st.timeouts, (unsigned long long)st.recycles,
		    st.healthy ? "true" : "false");
	cluster_fields(api, &b);
	sbuf_adds(&b, "}");
	fp__api_json(req, 200, &b);
	sbuf_free(&b);
	free(ws);
}

void fp__api_health(fp_api *api, fp_http_request *req)
{
	struct fp_pool_stats st;
	const char *status;
	struct sbuf b;

	fp_pool_stats(api->pool, &st);
	if (api->draining)
		status = "draining";
	else if (!st.healthy || st.able == 0)
		status = "unhealthy";
	else
		status = "ok";
	sbuf_init(&b);
	sbuf_printf(&b, "{\"status\":\"%s\",\"backend\":\"%s\",\"workers\":%u,\"able\":%u,"
		    "\"queued\":%llu,\"running\":%llu,\"version\":",
		    status, fp_loop_backend_name(api->loop), st.workers, st.able,
		    (unsigned long long)st.queued, (unsigned long long)st.running);
	sbuf_json_string(&b, api->version, strlen(api->version));
	/* Redis lost is no reason for 503: the node still runs its own jobs. */
	cluster_fields(api, &b);
	sbuf_printf(&b, ",\"uptime_ms\":%llu,\"durable\":%s}",
		    (unsigned long long)(fp_now_ms() - api->started_ms),
		    fp_jobs_journal(api->jobs) ? "true" : "false");
	fp__api_json(req, strcmp(status, "ok") == 0 ? 200 : 503, &b);
	sbuf_free(&b);
}

static void metric_head(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric of one sample: its name written once, so head and sample cannot disagree. */
static void metric_one(struct sbuf *b, const char *name, const char *type, const char *help,
		       uint64_t value)
{
	metric_head(b, name, type, help);
	sbuf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

/* The journal's figures: only with --data-dir. */
static void journal_metrics(fp_api *api, struct sbuf *b)
{
	struct fp_journal *j = fp_jobs_journal(api->jobs);
	struct fp_journal_stats st;

	if (!j)
		return;
	fp_journal_stats_get(j, &st);
	metric_one(b, "forkpool_journal_records_total", "counter",
		   "Records appended to the journal since start.", st.records);
	metric_one(b, "forkpool_journal_bytes_total", "counter",
		   "Bytes written to the journal since start.", st.bytes);
	metric_one(b, "forkpool_journal_writes_total", "counter",
		   "Writes to the journal (each carries every record appended meanwhile).",
		   st.writes);
	metric_one(b, "forkpool_journal_fsyncs_total", "counter",
		   "Fsyncs of the journal (each covers every record written before it).",
		   st.fsyncs);
	metric_one(b, "forkpool_journal_write_errors_total", "counter",
		   "Journal writes that failed (their submissions were answered 507).",
		   st.write_errors);
	metric_one(b, "forkpool_journal_size_bytes", "gauge",
		   "The journal file's size.", st.size);
	metric_one(b, "forkpool_journal_compactions_total", "counter",
		   "Compactions of the journal finished.", st.compactions);
	metric_one(b, "forkpool_journal_broken", "gauge",
		   "1 after a failed fsync: submissions are refused until a restart.",
		   st.broken != 0);
	metric_one(b, "forkpool_journal_replayed_records", "gauge",
		   "Records read back from the journal at start.", api->journal_report.records);
	metric_one(b, "forkpool_journal_recover_skipped", "gauge",
		   "Damaged regions --journal-recover skipped at start.",
		   api->journal_report.skipped);
	metric_one(b, "forkpool_journal_recover_skipped_bytes", "gauge",
		   "Bytes of those damaged regions.", api->journal_report.skipped_bytes);
	metric_one(b, "forkpool_journal_torn_bytes", "gauge",
		   "Bytes of a torn last record cut off at start.", api->journal_report.torn_bytes);
}

/* The cluster's figures: only with --cluster; the rest stays per node. */
static void cluster_metrics(fp_api *api, struct sbuf *b)
{
	const struct fp_cluster_node *n;

	if (!api->cluster)
		return;
	metric_one(b, "forkpool_cluster_connected", "gauge",
		   "1 while this node's Redis connection is up.",
		   fp_cluster_connected(api->cluster));
	metric_one(b, "forkpool_cluster_nodes", "gauge",
		   "Live nodes in the registry, this one included.",
		   fp_cluster_nodes(api->cluster, &n));
	metric_one(b, "forkpool_cluster_reconnects_total", "counter",
		   "Redis connections re-established after being lost.",
		   fp_cluster_reconnects(api->cluster));
	if (api->cjobs) {
		struct fp_cluster_jobs_stats st;

		fp_cluster_jobs_stats(api->cjobs, &st);
		metric_one(b, "forkpool_cluster_chunks_run_total", "counter",
			   "Chunks of cluster jobs this node ran.", st.chunks_run);
		metric_one(b, "forkpool_cluster_items_run_total", "counter",
			   "Items of cluster jobs this node ran.", st.items_run);
		metric_one(b, "forkpool_cluster_chunks_claimed_total", "counter",
			   "Chunks this node took over from a node that stopped refreshing them.",
			   st.chunks_claimed);
		metric_one(b, "forkpool_cluster_chunks_skipped_total", "counter",
			   "Chunks acknowledged without running: landed before, or their job gone.",
			   st.chunks_skipped);
		metric_one(b, "forkpool_cluster_chunks_running", "gauge",
			   "Chunks taken by this node and not landed yet.", st.running);
	}
}

/* Each concurrency limit: its max, items of its tasks running, and waiting in the queue. */
static void limit_metrics(fp_api *api, struct sbuf *b)
{
	size_t n;
	struct fp_limit_stats *st = limits_now(api, &n);

	if (!n) {
		free(st);
		return;
	}
	/* Limit names are [A-Za-z0-9_.:-]: nothing to escape in a label. */
	metric_head(b, "forkpool_limit_max", "gauge", "Items a concurrency limit lets run at once.");
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, "forkpool_limit_max{limit=\"%s\"} %u\n", st[i].name, st[i].max);
	metric_head(b, "forkpool_limit_running", "gauge",
		    "Items of a concurrency limit's tasks handed to workers.");
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, "forkpool_limit_running{limit=\"%s\"} %u\n", st[i].name,
			    st[i].running);
	metric_head(b, "forkpool_limit_waiting", "gauge",
		    "Items of a concurrency limit's tasks waiting in the queue.");
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, "forkpool_limit_waiting{limit=\"%s\"} %llu\n", st[i].name,
			    (unsigned long long)st[i].waiting);
	free(st);
}

/* The HTTP layer's counters: responses by code, connections, refusals, timeouts. */
static void http_metrics(struct sbuf *b, const struct fp_http_stats *hs)
{
	int i;

	metric_head(b, "forkpool_http_requests_total", "counter", "HTTP responses sent, by status code.");
	for (i = 0; i < 500; i++)
		if (hs->by_code[i])
			sbuf_printf(b, "forkpool_http_requests_total{code=\"%d\"} %llu\n", i + 100,
				    (unsigned long long)hs->by_code[i]);
	metric_one(b, "forkpool_http_connections", "gauge", "Open client connections.",
		   hs->open);
	metric_one(b, "forkpool_http_connections_refused_total", "counter",
		   "Connections closed at once for being over --max-connections, none idle.",
		   hs->refused);
	metric_one(b, "forkpool_http_connections_evicted_total", "counter",
		   "Idle connections closed at a connection cap to admit another.",
		   hs->evicted);
	metric_one(b, "forkpool_http_connections_refused_per_ip_total", "counter",
		   "Connections answered 429 for being over --max-connections-per-ip.",
		   hs->refused_per_ip);
	metric_one(b, "forkpool_http_request_timeouts_total", "counter",
		   "Requests answered 408: the header or the body deadline passed.",
		   hs->timed_out);
}

/* The job store: jobs by state, submissions, refusals, evictions, results and items. */
static void jobs_metrics(fp_api *api, struct sbuf *b, const struct fp_jobs_stats *js)
{
	int i;

	metric_head(b, "forkpool_jobs", "gauge", "Jobs kept, by state.");
	for (i = FP_JOB_QUEUED; i <= FP_JOB_CANCELLED; i++)
		sbuf_printf(b, "forkpool_jobs{state=\"%s\"} %llu\n", fp_job_state_name(i),
			    (unsigned long long)js->by_state[i]);
	metric_one(b, "forkpool_jobs_submitted_total", "counter", "Jobs accepted.",
		   js->submitted);
	metric_head(b, "forkpool_jobs_rejected_total", "counter",
		    "Submissions refused: queue full (429), no room for results (507).");
	sbuf_printf(b, "forkpool_jobs_rejected_total{reason=\"queue_full\"} %llu\n",
		    (unsigned long long)js->rejected);
	sbuf_printf(b, "forkpool_jobs_rejected_total{reason=\"memory\"} %llu\n",
		    (unsigned long long)js->rejected_memory);
	metric_head(b, "forkpool_idempotent_requests_total", "counter",
		    "Submissions with an Idempotency-Key its job already held: replayed (200), "
		    "conflict (409).");
	sbuf_printf(b, "forkpool_idempotent_requests_total{outcome=\"replayed\"} %llu\n",
		    (unsigned long long)api->idem_replayed);
	sbuf_printf(b, "forkpool_idempotent_requests_total{outcome=\"conflict\"} %llu\n",
		    (unsigned long long)api->idem_conflicts);
	metric_head(b, "forkpool_jobs_evicted_total", "counter",
		    "Jobs forgotten, by reason: ttl, max_jobs, memory, deleted.");
	for (i = 0; i < FP_JOB_GONE_COUNT; i++)
		sbuf_printf(b, "forkpool_jobs_evicted_total{reason=\"%s\"} %llu\n",
			    fp_job_gone_name((enum fp_job_gone)i), (unsigned long long)js->forgotten[i]);
	metric_one(b, "forkpool_results_bytes", "gauge",
		   "Bytes of results held: records and text of every job kept or being read.",
		   js->results_bytes);
	metric_one(b, "forkpool_results_bytes_limit", "gauge",
		   "--max-results-memory (0: no limit).",
		   fp_jobs_get_options(api->jobs)->max_results_bytes);
	metric_one(b, "forkpool_results_dropped_total", "counter",
		   "Results not kept for --max-results-memory (their items failed too_large).",
		   js->results_dropped);
	metric_head(b, "forkpool_items_total", "counter", "Items finished, by outcome.");
	sbuf_printf(b, "forkpool_items_total{state=\"ok\"} %llu\n", (unsigned long long)js->items_ok);
	sbuf_printf(b, "forkpool_items_total{state=\"failed\"} %llu\n", (unsigned long long)js->items_failed);
	metric_one(b, "forkpool_items_pending", "gauge", "Items submitted and not finished.",
		   js->items_pending);
}

/* The pool's workers: how many, and why they were replaced. */
static void worker_metrics(fp_api *api, struct sbuf *b, const struct fp_pool_stats *ps)
{
	metric_head(b, "forkpool_workers", "gauge", "Worker processes, and those able to take work.");
	sbuf_printf(b, "forkpool_workers{kind=\"configured\"} %u\n", ps->workers);
	sbuf_printf(b, "forkpool_workers{kind=\"alive\"} %u\n", ps->alive);
	sbuf_printf(b, "forkpool_workers{kind=\"able\"} %u\n", ps->able);
	metric_head(b, "forkpool_worker_restarts_total", "counter", "Workers replaced, by reason.");
	sbuf_printf(b, "forkpool_worker_restarts_total{reason=\"recycled\"} %llu\n",
		    (unsigned long long)ps->recycles);
	sbuf_printf(b, "forkpool_worker_restarts_total{reason=\"crash\"} %llu\n",
		    (unsigned long long)ps->crashes);
	sbuf_printf(b, "forkpool_worker_restarts_total{reason=\"timeout\"} %llu\n",
		    (unsigned long long)ps->timeouts);
	sbuf_printf(b, "forkpool_worker_restarts_total{reason=\"start_failure\"} %llu\n",
		    (unsigned long long)ps->init_failures);
	sbuf_printf(b, "forkpool_worker_restarts_total{reason=\"reload\"} %llu\n",
		    (unsigned long long)api->reload_restarts);
}

/* Task durations as a Prometheus histogram: buckets are cumulative, the last is +Inf. */
static void duration_metrics(struct sbuf *b, const struct fp_pool_stats *ps)
{
	uint64_t cum = 0;
	int i;

	metric_head(b, "forkpool_task_duration_seconds", "histogram",
		    "Time from handing an item to a worker to its answer.");
	for (i = 0; i < FP_DURATION_BUCKETS; i++) {
		cum += ps->duration_counts[i];
		if (i == FP_DURATION_BUCKETS - 1)
			sbuf_printf(b, "forkpool_task_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
				    (unsigned long long)cum);
		else
			sbuf_printf(b, "forkpool_task_duration_seconds_bucket{le=\"%g\"} %llu\n",
				    fp_duration_bounds[i], (unsigned long long)cum);
	}
	sbuf_printf(b, "forkpool_task_duration_seconds_sum %.6f\n", ps->duration_sum_s);
	sbuf_printf(b, "forkpool_task_duration_seconds_count %llu\n", (unsigned long long)cum);
}

/* Prometheus text exposition format, version 0.0.4; one step per layer, in the order scrapers saw. */
void fp__api_metrics(fp_api *api, fp_http_request *req)
{
	struct fp_http_stats hs = { 0 };
	struct fp_jobs_stats js;
	struct fp_pool_stats ps;
	struct sbuf b;

	if (api->http)
		fp_http_server_stats(api->http, &hs);
	fp_jobs_stats(api->jobs, &js);
	fp_pool_stats(api->pool, &ps);
	sbuf_init(&b);

	http_metrics(&b, &hs);
	jobs_metrics(api, &b, &js);
	cluster_metrics(api, &b);
	metric_one(&b, "forkpool_queue_depth", "gauge", "Items waiting for a worker.",
		   ps.queued);
	metric_one(&b, "forkpool_items_running", "gauge", "Items handed to workers.",
		   ps.running);
	limit_metrics(api, &b);
	worker_metrics(api, &b, &ps);
	duration_metrics(&b, &ps);
	journal_metrics(api, &b);
	metric_head(&b, "forkpool_healthy", "gauge", "1 when workers can run tasks.");
	sbuf_printf(&b, "forkpool_healthy %d\n", ps.healthy && ps.able > 0 && !api->draining);

	if (b.oom) {
		fp__api_error(req, 500, "internal", "out of memory");
	} else {
		fp_http_respond(req, 200, "text/plain; version=0.0.4", b.data, b.len);
	}
	sbuf_free(&b);
}
