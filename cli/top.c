/*
 * forkpool top: a live view of the server (health, the pool's counters, each
 * worker, the newest jobs with their progress), fetched again every
 * --interval and drawn over the whole terminal; `q` (or Ctrl-C) quits and
 * gives the terminal back as it was. Not on a terminal: one view, then exit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "commands.h"
#include "http.h"
#include "json.h"
#include "rows.h"

#define REQUEST_TIMEOUT_MS 10000

struct top {
	struct cli_http *http;
	struct cli_req req;
	const char *url;
	bool tty;
	int rows, cols;
	long long last_done;          /* the pool's items done at the last view */
	int64_t last_ms;
	double rate;
	char err[512];                /* why the last fetch failed, shown in the view */
};

/* GET path as JSON; NULL with t->err saying why. */
static json_t *fetch(struct top *t, const char *path, int *stop)
{
	json_t *doc;
	int err;

	t->req.timeout_ms = REQUEST_TIMEOUT_MS;
	if ((err = cli_req_call(&t->req, "GET", path)) < 0) {
		*stop = err;
		return NULL;
	}
	if (t->req.result != CURLE_OK) {
		snprintf(t->err, sizeof(t->err), "cannot reach the server at %s%s: %s",
			 t->http->unix_path ? "unix:" : "",
			 t->http->unix_path ? t->http->unix_path : t->http->base,
			 t->req.errbuf[0] ? t->req.errbuf : curl_easy_strerror(t->req.result));
		return NULL;
	}
	/* /v1/health answers 503 with its document when unhealthy: still a view. */
	if ((t->req.status != 200 && t->req.status != 503) ||
	    !(doc = json_loadb(t->req.body ? t->req.body : "", t->req.len, 0, NULL))) {
		snprintf(t->err, sizeof(t->err), "GET %s: the server answered %ld: %.200s", path,
			 t->req.status, t->req.body ? t->req.body : "");
		return NULL;
	}
	return doc;
}

/* One line of the view, cut to the terminal's width, ended for either mode. */
static void line(struct top *t, int *row, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void line(struct top *t, int *row, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	if (t->tty && *row >= t->rows - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	if (t->tty && n > t->cols - 1)
		n = t->cols - 1;
	fwrite(buf, 1, (size_t)n, stdout);
	fputs(t->tty ? "\033[K\r\n" : "\n", stdout);
	(*row)++;
}

static void view(struct top *t, json_t *health, json_t *workers, json_t *jobs)
{
	json_t *p = json_object_get(workers, "pool"), *w, *j;
	char clock[16], text[512], bar[24];
	time_t now = time(NULL);
	int64_t ms = cli_now_ms();
	struct tm tm;
	size_t i;
	int row = 0;

	localtime_r(&now, &tm);
	strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	if (p) {
		long long done = cli_json_int(p, "done") + cli_json_int(p, "failed");
		if (t->last_ms && ms > t->last_ms)
			t->rate = (double)(done - t->last_done) * 1000.0 / (double)(ms - t->last_ms);
		t->last_done = done;
		t->last_ms = ms;
	}
	if (t->tty)
		fputs("\033[H", stdout);
	line(t, &row, "forkpool top  %s  %s%s", t->url, clock, t->tty ? "  (q quits)" : "");
	if (!health || !workers || !jobs) {
		line(t, &row, "%s", t->err);
	} else {
		line(t, &row, "status %s  backend %s  version %s  up %llds",
		     cli_json_str(health, "status", "?"), cli_json_str(health, "backend", "?"),
		     cli_json_str(health, "version", "?"), cli_json_int(health, "uptime_ms") / 1000);
		line(t, &row, "workers %lld (alive %lld, able %lld)  queued %lld  running %lld  %.0f"
		     " items/s", cli_json_int(p, "workers"), cli_json_int(p, "alive"),
		     cli_json_int(p, "able"), cli_json_int(p, "queued"), cli_json_int(p, "running"),
		     t->rate);
		line(t, &row, "items done %lld  failed %lld  crashes %lld  timeouts %lld  recycles"
		     " %lld", cli_json_int(p, "done"), cli_json_int(p, "failed"),
		     cli_json_int(p, "crashes"), cli_json_int(p, "timeouts"),
		     cli_json_int(p, "recycles"));
		line(t, &row, "%s", "");
		cli_worker_head(text, sizeof(text));
		line(t, &row, "%s", text);
		json_array_foreach(json_object_get(workers, "workers"), i, w) {
			cli_worker_row(w, text, sizeof(text));
			line(t, &row, "%s", text);
		}
		line(t, &row, "%s", "");
		line(t, &row, "%-32s %-9s %-23s %13s %7s %s", "JOB", "STATE", "PROGRESS", "DONE/TOTAL",
		     "FAILED", "TASK");
		json_array_foreach(json_object_get(jobs, "jobs"), i, j) {
			long long fin, total;
			int fill;
			char counts[48];

			cli_job_counts(j, &fin, &total);
			fill = total ? (int)(fin * 16 / total) : 16;
			memset(bar, '.', 16);
			memset(bar, '#', (size_t)(fill > 16 ? 16 : fill));
			bar[16] = '\0';
			snprintf(counts, sizeof(counts), "%lld/%lld", fin, total);
			line(t, &row, "%-32s %-9s [%s] %3lld%% %13s %7lld %s", cli_json_str(j, "id", "?"),
			     cli_json_str(j, "state", "?"), bar, total ? fin * 100 / total : 100, counts,
			     cli_json_int(j, "failed"), cli_json_str(j, "task", "?"));
		}
	}
	if (t->tty)
		fputs("\033[J", stdout);
	fflush(stdout);
}

/* Fetch and draw once. 0, or a step's error (interrupted, --timeout). */
static int refresh(struct top *t)
{
	json_t *health = NULL, *workers = NULL, *jobs = NULL;
	char path[64];
	int stop = 0, rows = t->tty ? t->rows : 40;
	struct winsize ws;

	if (t->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) {
		t->rows = ws.ws_row;
		t->cols = ws.ws_col;
		rows = t->rows;
	}
	t->err[0] = '\0';
	health = fetch(t, "/v1/health", &stop);
	if (health && !stop)
		workers = fetch(t, "/v1/workers", &stop);
	/* The jobs fill what the workers leave of the screen. */
	snprintf(path, sizeof(path), "/v1/jobs?limit=%d", rows > 13 ? rows - 9 : 4);
	if (workers && !stop)
		jobs = fetch(t, path, &stop);
	if (!stop)
		view(t, health, workers, jobs);
	json_decref(health);
	json_decref(workers);
	json_decref(jobs);
	return stop;
}

static int run_top(const struct cli_args *a)
{
	struct cli_http h;
	struct termios saved, raw;
	struct top t = { .url = a->url, .rows = 24, .cols = 80 };
	bool restore = false;
	int rc, err = 0;
	char key = 0;

	if ((rc = cli_http_init(&h, a, "top")) != 0)
		return rc;
	t.http = &h;
	cli_req_init(&t.req, &h);
	t.tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
	if (!t.tty) {
		err = refresh(&t);
		rc = err ? cli_http_stopped(&h, err, "top", NULL) : t.err[0] ? CLI_EXIT_SERVER : 0;
		if (t.err[0])
			fprintf(stderr, "forkpool top: %s\n", t.err);
		goto out;
	}
	/* Keys one at a time, not echoed; the screen of its own, the cursor hidden. */
	if (tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
	}
	fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
	for (;;) {
		int64_t next = cli_now_ms() + a->interval_ms;
		if ((err = refresh(&t)) != 0)
			break;
		/*
		 * At least one step after each refresh, even when the refresh took
		 * longer than --interval (a loaded server): else the keyboard is never
		 * read and q never quits.
		 */
		do {
			int64_t left = next - cli_now_ms();
			int r = cli_http_step(&h, left > 0 ? (int)left : 0, STDIN_FILENO);
			if (r < 0)
				err = r;
			else if (r == 1 && read(STDIN_FILENO, &key, 1) == 1 && (key == 'q' || key == 'Q'))
				goto quit;
			else if (r == 1 && key == 'r')  /* r: refresh now */
				break;
		} while (!err && cli_now_ms() < next);
		if (err)
			break;
	}
quit:
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	/* Ctrl-C quits as q does; --timeout is a give-up. */
	rc = err && err != -EINTR ? cli_http_stopped(&h, err, "top", NULL) : 0;
out:
	cli_req_deinit(&t.req);
	cli_http_deinit(&h);
	return rc;
}

static const enum cli_opt top_opts[] = { OPT_INTERVAL, OPT_END };

const struct cli_command cli_cmd_top = {
	.name = "top",
	.synopsis = "",
	.summary = "a live view of workers and jobs (q quits)",
	.description = "Shows the server's health, the pool's counters, every worker (pid, state,\n"
		"tasks done of its limit, RSS, the task it runs) and the newest jobs with their\n"
		"progress, refreshed every --interval over the whole terminal; q quits (r refreshes\n"
		"now) and gives the terminal back as it was. When stdin or stdout is not a terminal,\n"
		"prints one view and exits.",
	.min_pos = 0, .max_pos = 0,
	.opts = top_opts,
	.run = run_top,
};
