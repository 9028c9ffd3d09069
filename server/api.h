/*
 * The JSON API of forkpoold: routes HTTP requests to the job store, the pool
 * and the metrics. One handler for the HTTP server (fp_api_handler), with
 * the objects it needs.
 *
 *   POST   /v1/apply            {"task","args","timeout_ms","retries"}     202 / ?wait=S 200
 *   POST   /v1/map              {"task","items",...} or NDJSON ?task=      202 / ?wait=S 200
 *   GET    /v1/jobs             ?state= ?limit=
 *   GET    /v1/jobs/ID          ?wait=S ?results=1
 *   GET    /v1/jobs/ID/results  NDJSON stream, ?order=input|completion
 *   DELETE /v1/jobs/ID          cancel (running) or forget (finished: 204)
 *   GET    /v1/tasks  /v1/workers  /v1/health  /metrics
 */
#ifndef FP_SERVER_API_H
#define FP_SERVER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"
#include "http.h"
#include "jobs.h"

typedef struct fp_api fp_api;

struct fp_api_options {
	const char *token;          /* bearer token; NULL: no authentication */
	uint64_t max_wait_ms;       /* cap on ?wait= (default 300 s) */
	const char *version;        /* reported by /v1/health */
	/* What opening the journal found, for /metrics; NULL without one. */
	const struct fp_journal_report *journal_report;
};

void fp_api_options_init(struct fp_api_options *o);

int fp_api_new(fp_api **out, fp_pool *pool, fp_jobs *jobs,
	       const struct fp_api_options *o);
/* The server whose statistics /metrics reports (it is made after the api). */
void fp_api_attach_http(fp_api *api, fp_http_server *http);
/* Answers long-polls and streams still open, then frees. */
void fp_api_free(fp_api *api);

/* The fp_http_handler to give fp_http_server_new(), with the api as data. */
void fp_api_handler(fp_http_request *req, void *data);

/* While draining: submissions get 503 shutting_down, /v1/health 503. */
void fp_api_set_draining(fp_api *api, bool draining);

/* The cluster's registry for /v1/health, /v1/workers, /metrics; NULL: none. */
struct fp_cluster;
void fp_api_set_cluster(fp_api *api, struct fp_cluster *cluster);
/* With it, apply and map are cluster jobs, run by any node (api_cluster.c). */
struct fp_cluster_jobs;
void fp_api_set_cluster_jobs(fp_api *api, struct fp_cluster_jobs *cjobs);

/*
 * For the metrics: `workers` were restarted by a reload (SIGHUP). The other
 * reasons (recycled, crash, timeout, start failure) are the pool's own
 * counters (fp_pool_stats); a reload is the daemon's doing, so it counts it.
 */
void fp_api_count_reload(fp_api *api, unsigned workers);

#endif
