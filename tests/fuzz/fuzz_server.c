/*
 * The daemon's front for the fuzz targets (fuzz_server.h): built once, then
 * one exchange per input, after which it is as it was before.
 */
#include <errno.h>
#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "forkpool.h"
#include "fuzz_server.h"
#include "fuzz_util.h"
#include "http.h"
#include "jobs.h"
#include "forkpool/loop.h"

/* Loop and write turns of one exchange at most: a response that never ends is a finding. */
#define TURNS_MAX 10000
#define JOBS_MAX 4096

struct fuzz_server {
	fp_loop *loop;
	fp_pool *pool;
	fp_jobs *jobs;
	fp_api *api;
	fp_http_server *http;
	fp_timer stop;
	bool show;                     /* FUZZ_SHOW=1: print what the server wrote */
	char done_id[64];              /* the finished job's id */
	char queued_id[64];            /* the queued one's */
	fp_job *list[JOBS_MAX];
};

static void quiet(void *data, fp_log_level level, const char *msg)
{
}

static void die(const char *what, int err)
{
	fprintf(stderr, "fuzz: %s: %s\n", what, fp_strerror(err));
	exit(1);
}

static void stop_cb(fp_timer *t)
{
	fp_loop_stop(t->data);
}

/* One turn of the loop: what is due runs (the pool's deferred deliveries, the sweep). */
static void loop_turn(struct fuzz_server *s)
{
	if (fp_timer_start(s->loop, &s->stop, 0, stop_cb) < 0)
		die("timer", -ENOMEM);
	fp_loop_run(s->loop);
	fp_timer_stop(&s->stop);
}

static uint64_t pending(struct fuzz_server *s)
{
	struct fp_jobs_stats st;

	fp_jobs_stats(s->jobs, &st);
	return st.items_pending;
}

/* The jobs a request may name; made again when a request deleted one. */
static void fixtures(struct fuzz_server *s)
{
	static const struct fp_buf three[] = { { "1", 1 }, { "2", 1 }, { "3", 1 } };
	fp_job *job;
	int r, i;

	if (!fp_jobs_find(s->jobs, s->done_id)) {
		r = fp_jobs_submit(s->jobs, FP_JOB_MAP, "square", three, 3, NULL, &job);
		if (r < 0)
			die("submit", r);
		fp_jobs_cancel(s->jobs, job);
		snprintf(s->done_id, sizeof(s->done_id), "%s", fp_job_id(job));
		for (i = 0; i < 100 && !fp_job_finished(job); i++)
			loop_turn(s);
		FUZZ_CHECK(fp_job_finished(job));
	}
	if (!fp_jobs_find(s->jobs, s->queued_id)) {
		r = fp_jobs_submit(s->jobs, FP_JOB_APPLY, "idle.nop", three, 1, NULL, &job);
		if (r < 0)
			die("submit", r);
		snprintf(s->queued_id, sizeof(s->queued_id), "%s", fp_job_id(job));
	}
}

struct fuzz_server *fuzz_server_new(void)
{
	struct fuzz_server *s = calloc(1, sizeof(*s));
	struct fp_jobs_options jo;
	struct fp_api_options ao;
	struct fp_http_limits lim;
	fp_options po;
	char err[512] = "";
	int r;

	if (!s)
		die("server", -ENOMEM);
	r = fp_loop_new(&s->loop, FP_LOOP_AUTO);
	if (r < 0)
		die("loop", r);
	s->stop.data = s->loop;
	fp_options_init(&po);
	po.workers = 1;
	po.modules[0] = FUZZ_IDLE_MODULE;
	po.log = quiet;
	r = fp_pool_new(&s->pool, s->loop, &po, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "fuzz: pool: %s\n", err);
		exit(1);
	}
	fp_jobs_options_init(&jo);
	r = fp_jobs_new(&s->jobs, s->pool, &jo);
	if (r < 0)
		die("jobs", r);
	fp_api_options_init(&ao);
	r = fp_api_new(&s->api, s->pool, s->jobs, &ao);
	if (r < 0)
		die("api", r);
	fp_http_limits_init(&lim);
	/* Small enough that a fuzzed Content-Length passes it. */
	lim.max_body_bytes = 1 << 20;
	r = fp_http_server_new(&s->http, s->loop, &lim, fp_api_handler, s->api);
	if (r < 0)
		die("http", r);
	fp_api_attach_http(s->api, s->http);
	s->show = getenv("FUZZ_SHOW") != NULL;
	fixtures(s);
	return s;
}

/* The input with each {job} and {queued} replaced by that job's id; NUL-terminated. */
static char *substitute(struct fuzz_server *s, const uint8_t *data, size_t size, size_t *len)
{
	static const char job[] = "{job}", queued[] = "{queued}";
	size_t cap = size + 1, n = 0, i;
	char *out;

	/* An id is 32 characters; each placeholder at least 5: 7 times the input is room enough. */
	out = malloc(cap * 7);
	if (!out)
		die("input", -ENOMEM);
	for (i = 0; i < size;) {
		if (size - i >= sizeof(job) - 1 && !memcmp(data + i, job, sizeof(job) - 1)) {
			n += (size_t)sprintf(out + n, "%s", s->done_id);
			i += sizeof(job) - 1;
		} else if (size - i >= sizeof(queued) - 1 &&
			   !memcmp(data + i, queued, sizeof(queued) - 1)) {
			n += (size_t)sprintf(out + n, "%s", s->queued_id);
			i += sizeof(queued) - 1;
		} else {
			out[n++] = (char)data[i++];
		}
	}
	out[n] = '\0';
	*len = n;
	return out;
}

/*
 * What the server wrote must be HTTP responses, one for each request it
 * read, and nothing else: http-parser reads the output as responses,
 * knowing from the input which requests were HEADs (their responses have a
 * Content-Length and no body).
 */
enum { HEADS_MAX = 256 };

struct wire {
	unsigned nreq, nresp, nfinal;
	bool head[HEADS_MAX];
};

static int request_headers(http_parser *p)
{
	struct wire *w = p->data;

	if (w->nreq < HEADS_MAX)
		w->head[w->nreq] = p->method == HTTP_HEAD;
	w->nreq++;
	return 0;
}

static int response_headers(http_parser *p)
{
	struct wire *w = p->data;
	unsigned k;

	/* 100 Continue answers no request of its own. */
	if (p->status_code < 200)
		return 0;
	k = w->nfinal++;
	return k < HEADS_MAX && k < w->nreq && w->head[k] ? 1 : 0;
}

static int response_complete(http_parser *p)
{
	struct wire *w = p->data;

	w->nresp++;
	return 0;
}

static void check_responses(const char *in, size_t inlen, const char *out, size_t outlen)
{
	static const http_parser_settings req = { .on_headers_complete = request_headers };
	static const http_parser_settings resp = { .on_headers_complete = response_headers,
						   .on_message_complete = response_complete };
	struct wire w = { 0 };
	http_parser p;
	size_t n;

	http_parser_init(&p, HTTP_REQUEST);
	p.data = &w;
	http_parser_execute(&p, &req, in, inlen);
	http_parser_init(&p, HTTP_RESPONSE);
	p.data = &w;
	n = http_parser_execute(&p, &resp, out, outlen);
	if (HTTP_PARSER_ERRNO(&p) != HPE_OK || n != outlen) {
		fprintf(stderr, "the server's output is not HTTP responses at byte %zu of %zu: %s\n",
			n, outlen, http_errno_description(HTTP_PARSER_ERRNO(&p)));
		FUZZ_CHECK(!"well-formed responses");
	}
	/* No answer without a question: as many as the requests, and the error that ends them. */
	FUZZ_CHECK(w.nfinal <= w.nreq + 1);
}

/* Turn the writes and the loop until neither has anything to do. */
static void settle(struct fuzz_server *s, fp_http_mem *m)
{
	int turns = 0, busy;

	do {
		busy = 0;
		while (fp_http_mem_turn(m) > 0 && turns++ < TURNS_MAX)
			busy = 1;
		loop_turn(s);
		busy |= fp_http_mem_turn(m) > 0;
	} while (busy && turns++ < TURNS_MAX);
	FUZZ_CHECK(turns < TURNS_MAX);
}

/* Forget every job but the two fixtures, and let the pool deliver their cancels. */
static void store_reset(struct fuzz_server *s)
{
	fp_job *done = fp_jobs_find(s->jobs, s->done_id);
	fp_job *queued = fp_jobs_find(s->jobs, s->queued_id);
	size_t n, i;
	int turns;

	/* A request that cancelled the queued job made it one to forget. */
	if (queued && fp_job_finished(queued))
		queued = NULL;
	do {
		n = fp_jobs_list(s->jobs, NULL, 0, s->list, JOBS_MAX);
		for (i = 0; i < n; i++)
			if (s->list[i] != done && s->list[i] != queued)
				fp_jobs_forget(s->jobs, s->list[i]);
	} while (n == JOBS_MAX);
	for (turns = 0; turns < 100 && pending(s) > (queued ? 1u : 0u); turns++)
		loop_turn(s);
	FUZZ_CHECK(pending(s) == (queued ? 1u : 0u));
}

void fuzz_server_exchange(struct fuzz_server *s, const uint8_t *data, size_t size)
{
	struct fuzz_cuts cuts;
	struct fp_http_stats st;
	fp_http_mem *m;
	const char *out;
	size_t len, n, at = 0, outlen;
	char *in;

	fixtures(s);
	in = substitute(s, data, size, &len);
	if (fp_http_mem_open(s->http, &m) < 0)
		die("connection", -ENOMEM);
	fuzz_cuts_init(&cuts, data, size);
	while ((n = fuzz_cuts_next(&cuts)) > 0) {
		/* Cuts are of the input; the ids make the text longer. */
		if (at >= len)
			break;
		if (n > len - at || cuts.left == 0)
			n = len - at;
		if (fp_http_mem_send(m, in + at, n) < 0)
			break;
		at += n;
		settle(s, m);
	}
	/* Half the clients half-close when they are done sending. */
	if (cuts.h & 1) {
		fp_http_mem_shutdown(m);
		settle(s, m);
	}
	/* Whatever the server wrote is responses: HTTP/1.1, from the first byte. */
	out = fp_http_mem_output(m, &outlen);
	FUZZ_CHECK(outlen == 0 || (outlen >= 9 && !memcmp(out, "HTTP/1.1 ", 9)));
	check_responses(in, len, out, outlen);
	if (s->show)
		fprintf(stderr, "--- %zu bytes in, %zu out:\n%.*s\n", len, outlen, (int)outlen, out);
	fp_http_mem_close(m);
	fp_http_server_stats(s->http, &st);
	FUZZ_CHECK(st.open == 0);
	store_reset(s);
	free(in);
}

void fuzz_server_request(struct fuzz_server *s, const char *head, const uint8_t *body,
			 size_t len)
{
	size_t hlen = strlen(head);
	char *req = malloc(hlen + 64 + len);
	int n;

	if (!req)
		die("request", -ENOMEM);
	n = sprintf(req, "%s\r\nContent-Length: %zu\r\n\r\n", head, len);
	memcpy(req + n, body, len);
	fuzz_server_exchange(s, (const uint8_t *)req, (size_t)n + len);
	free(req);
}
