/*
 * forkpool's HTTP client, over libcurl's multi interface: the server's
 * address (http://HOST:PORT or unix:/path), the bearer token, requests that
 * collect their answer or hand it on as it streams, uploads read from a file
 * descriptor as they are sent, and one loop that runs them all together
 * and wakes for SIGINT/SIGTERM (a signalfd), --timeout, and a caller's fd.
 * Knows nothing of jobs or of what a command prints.
 */
#ifndef FORKPOOL_CLI_HTTP_H
#define FORKPOOL_CLI_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "args.h"

struct cli_upload;

struct cli_http {
	CURLM *multi;
	char *base;                 /* "http://host:port", no trailing slash */
	char *unix_path;            /* the socket of a unix: URL, else NULL */
	char *auth_header;          /* the Authorization header's value, "Bearer …", or NULL */
	const char *idempotency_key;
	int64_t deadline_ms;        /* --timeout as a monotonic time; 0: none */
	int sigfd;                  /* SIGINT and SIGTERM, blocked and read here */
	int running;                /* transfers the multi handle is running */
};

struct cli_req {
	struct cli_http *http;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	long status;                /* 0 until the answer's status line came */
	char *body;                 /* the answer (an error answer even when streaming) */
	size_t len, cap;
	/* Streaming: 2xx answer bytes go here as they come; 0 aborts the transfer. */
	int (*on_data)(struct cli_req *r, const char *data, size_t len);
	void *data;
	struct cli_upload *upload;  /* the request body, read as it is sent */
	char *post;                 /* or this one, owned */
	int64_t timeout_ms;         /* this request's own bound; 0: none */
	bool active, done;
	CURLcode result;
	char errbuf[CURL_ERROR_SIZE];
};

/* Reads the token file; on error a message is printed and CLI_EXIT_* returned. */
int cli_http_init(struct cli_http *h, const struct cli_args *a, const char *cmd);
void cli_http_deinit(struct cli_http *h);

void cli_req_init(struct cli_req *r, struct cli_http *h);
void cli_req_deinit(struct cli_req *r);
/*
 * Start METHOD PATH (path and query, escaped: cli_path_add()). `ctype` names
 * the body's type when there is one (r->upload or r->post). Runs in
 * cli_http_step(); r->done says when it ended.
 */
int cli_req_start(struct cli_req *r, const char *method, const char *path, const char *ctype);
/* Stop a running request (it ends with r->done and CURLE_ABORTED_BY_CALLBACK). */
void cli_req_abort(struct cli_req *r);

/*
 * Run the transfers for at most wait_ms. Returns 0; 1 when `fd` (>= 0)
 * became readable; -EINTR after SIGINT/SIGTERM; -ETIMEDOUT once --timeout
 * has passed.
 */
int cli_http_step(struct cli_http *h, int wait_ms, int fd);
/* Start a request and step until it ends: 0, or cli_http_step()'s error. */
int cli_req_call(struct cli_req *r, const char *method, const char *path);

/* 0 for a 2xx answer; else the reason is printed, and CLI_EXIT_SERVER returned. */
int cli_req_check(struct cli_req *r, const char *cmd);
/* The answer's JSON (a new reference), or NULL with a message printed. */
json_t *cli_req_json(struct cli_req *r, const char *cmd);
/* Say why a step ended the command (interrupted or --timeout), with the job's id if any. */
int cli_http_stopped(struct cli_http *h, int err, const char *cmd, const char *job_id);

/* Append `?name=value` or `&name=value` to *path, the value escaped. -ENOMEM. */
int cli_path_add(char **path, const char *name, const char *value);
int cli_path_addi(char **path, const char *name, int64_t value);

int64_t cli_now_ms(void);

#endif
