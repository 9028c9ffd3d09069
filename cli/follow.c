/* Following a job to its end (follow.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "follow.h"
#include "progress.h"
#include "results.h"

/* How often the job's document is fetched for the progress bar. */
#define POLL_MS 200
/* A long-poll's wait when no bar needs drawing, and what a request gets beyond it. */
#define LONG_POLL_S 20
#define REQUEST_SLACK_MS 30000

bool cli_job_finished(json_t *doc)
{
	const char *s = json_string_value(json_object_get(doc, "state"));

	return s && (!strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled"));
}

static size_t count(json_t *doc, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(doc, key));

	return v > 0 ? (size_t)v : 0;
}

static void show(struct cli_progress *bar, json_t *doc)
{
	cli_progress_update(bar, count(doc, "done"), count(doc, "failed"), count(doc, "total"));
}

static char *doc_path(const struct cli_follow *f, const char *wait)
{
	char *p;

	if (asprintf(&p, "/v1/jobs/%s", f->id) < 0)
		return NULL;
	if (wait && cli_path_add(&p, "wait", wait) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

static int stream_data(struct cli_req *r, const char *data, size_t len)
{
	return cli_results_feed(r->data, data, len) == 0;
}

/* The poll's answer, when it is the job's document, drawn on the bar. */
static void show_answer(struct cli_progress *bar, const struct cli_req *poll)
{
	json_t *doc;

	if (poll->status == 200 && (doc = json_loadb(poll->body, poll->len, 0, NULL))) {
		show(bar, doc);
		json_decref(doc);
	}
}

/*
 * The results stream read to its end while, for the bar, the job's document
 * is fetched every POLL_MS. *err: the transfer's error, if it stopped on one;
 * -1 when the poll could not even be started (out of memory).
 */
static int pump(struct cli_http *h, struct cli_req *stream, struct cli_req *poll,
		const char *dpath, struct cli_progress *bar, int *err)
{
	int64_t next_poll = 0;

	while (!stream->done) {
		int64_t now = cli_now_ms();
		if (bar->on && !poll->active && now >= next_poll) {
			poll->timeout_ms = REQUEST_SLACK_MS;
			if (cli_req_start(poll, "GET", dpath, NULL) < 0)
				return -1;
			next_poll = now + POLL_MS;
		}
		if ((*err = cli_http_step(h, POLL_MS / 2, -1)) < 0)
			break;
		if (poll->done)
			show_answer(bar, poll);
		poll->done = false;
	}
	return 0;
}

int cli_follow_results(struct cli_http *h, const struct cli_follow *f)
{
	struct cli_progress bar;
	struct cli_results res;
	struct cli_req stream, poll;
	char *spath = NULL, *dpath = NULL;
	int rc = CLI_EXIT_LOCAL, err = 0;

	cli_progress_init(&bar, f->quiet);
	cli_results_init(&res, f->cmd, f->values, stdout, &bar);
	cli_req_init(&stream, h);
	cli_req_init(&poll, h);
	if (asprintf(&spath, "/v1/jobs/%s/results", f->id) < 0) {
		spath = NULL;
		goto out;
	}
	if ((f->order && cli_path_add(&spath, "order", f->order) < 0) || !(dpath = doc_path(f, NULL)))
		goto out;
	stream.on_data = stream_data;
	stream.data = &res;
	if (cli_req_start(&stream, "GET", spath, NULL) < 0)
		goto out;
	if (pump(h, &stream, &poll, dpath, &bar, &err) < 0)
		goto out;
	cli_req_abort(&poll);
	if (err < 0) {
		cli_req_abort(&stream);
		cli_results_end(&res);
		cli_progress_clear(&bar);
		rc = cli_http_stopped(h, err, f->cmd, f->id);
		goto out;
	}
	cli_results_end(&res);
	if (res.err == -EPROTO) {
		rc = CLI_EXIT_SERVER;
		goto out;
	}
	if (res.err) {
		cli_progress_clear(&bar);
		fprintf(stderr, "forkpool %s: cannot write the results: %s\n", f->cmd,
			strerror(-res.err));
		goto out;
	}
	if ((rc = cli_req_check(&stream, f->cmd)) != 0) {
		cli_progress_clear(&bar);
		goto out;
	}
	/* The job has finished: its last counts for the bar's last draw. */
	if (bar.on) {
		poll.timeout_ms = REQUEST_SLACK_MS;
		if (cli_req_call(&poll, "GET", dpath) == 0)
			show_answer(&bar, &poll);
		cli_progress_finish(&bar);
	}
	rc = res.failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
out:
	if (rc == CLI_EXIT_LOCAL && !res.err && !err)
		fprintf(stderr, "forkpool %s: out of memory\n", f->cmd);
	cli_req_deinit(&poll);
	cli_req_deinit(&stream);
	cli_results_deinit(&res);
	free(spath);
	free(dpath);
	return rc;
}

int cli_follow_wait(struct cli_http *h, const struct cli_follow *f, json_t **doc, char **raw)
{
	struct cli_progress bar;
	struct cli_req r;
	char *path;
	int rc, err;

	*doc = NULL;
	*raw = NULL;
	cli_progress_init(&bar, f->quiet);
	/* With a bar to draw, a short long-poll: the counts every fifth of a second. */
	if (!(path = doc_path(f, bar.on ? "0.2" : "20"))) {
		fprintf(stderr, "forkpool %s: out of memory\n", f->cmd);
		return CLI_EXIT_LOCAL;
	}
	cli_req_init(&r, h);
	r.timeout_ms = LONG_POLL_S * 1000 + REQUEST_SLACK_MS;
	for (;;) {
		if ((err = cli_req_call(&r, "GET", path)) < 0) {
			cli_progress_clear(&bar);
			rc = cli_http_stopped(h, err, f->cmd, f->id);
			break;
		}
		if ((rc = cli_req_check(&r, f->cmd)) != 0) {
			cli_progress_clear(&bar);
			break;
		}
		if (!(*doc = cli_req_json(&r, f->cmd))) {
			rc = CLI_EXIT_SERVER;
			break;
		}
		show(&bar, *doc);
		if (cli_job_finished(*doc)) {
			cli_progress_finish(&bar);
			*raw = r.body;
			r.body = NULL;
			rc = 0;
			break;
		}
		json_decref(*doc);
		*doc = NULL;
	}
	cli_req_deinit(&r);
	free(path);
	return rc;
}
