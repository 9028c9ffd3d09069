/* The progress bar (progress.h). */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "http.h"
#include "progress.h"

#define REDRAW_MS 100
#define UPLOAD_SHOW_MS 250
#define BAR_MIN 10
#define BAR_MAX 40

void cli_progress_init(struct cli_progress *p, bool quiet)
{
	memset(p, 0, sizeof(*p));
	p->on = !quiet && isatty(STDERR_FILENO);
}

static int columns(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* 1234567 -> "1,234,567" */
static const char *grouped(char *buf, size_t len, uint64_t v)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v), o = 0;

	for (int i = 0; i < n && (size_t)o + 2 < len; i++) {
		if (i && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = tmp[i];
	}
	buf[o] = '\0';
	return buf;
}

static void draw(struct cli_progress *p, int64_t now)
{
	char line[512], tail[256], a[32], b[32], c[32], eta[32] = "";
	int cols = columns(), width, fill, n;
	double secs, rate;

	if (p->uploading) {
		secs = (double)(now - p->upload_start_ms) / 1000.0;
		n = snprintf(line, sizeof(line), "sending items: %.1f MB (%.1f MB/s)",
			     (double)p->sent / 1e6, secs > 0 ? (double)p->sent / 1e6 / secs : 0.0);
		fprintf(stderr, "\r%.*s\033[K", cols - 1 < n ? cols - 1 : n, line);
		p->drawn = true;
		fflush(stderr);
		return;
	}
	secs = (double)(now - p->start_ms) / 1000.0;
	rate = secs > 0.05 ? (double)(p->done + p->failed) / secs : 0.0;
	if (p->total > p->done + p->failed && rate > 0) {
		unsigned long s = (unsigned long)((double)(p->total - p->done - p->failed) / rate + 0.5);
		snprintf(eta, sizeof(eta), "  ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	}
	n = snprintf(tail, sizeof(tail), " %3u%%  %s/%s  failed %s  %.0f items/s%s",
		     p->total ? (unsigned)((p->done + p->failed) * 100 / p->total) : 100u,
		     grouped(a, sizeof(a), p->done + p->failed), grouped(b, sizeof(b), p->total),
		     grouped(c, sizeof(c), p->failed), rate, eta);
	/* The bar keeps its width whether an ETA is shown or not. */
	width = cols - 1 - (n - (int)strlen(eta)) - (int)sizeof("  ETA 0:00:00") - 2;
	if (width > BAR_MAX)
		width = BAR_MAX;
	if (width < BAR_MIN)
		width = 0;
	fill = p->total ? (int)((double)width * (double)(p->done + p->failed) / (double)p->total)
		: width;
	if (fill > width)
		fill = width;
	if (width) {
		line[0] = '[';
		memset(line + 1, '#', (size_t)fill);
		memset(line + 1 + fill, '.', (size_t)(width - fill));
		line[width + 1] = ']';
		line[width + 2] = '\0';
	} else {
		line[0] = '\0';
	}
	fprintf(stderr, "\r%s%.*s\033[K", line, cols - 1 - (width ? width + 2 : 0), tail);
	fflush(stderr);
	p->drawn = true;
}

void cli_progress_sent(struct cli_progress *p, uint64_t bytes)
{
	int64_t now;

	if (!p->on)
		return;
	now = cli_now_ms();
	if (!p->uploading) {
		p->uploading = true;
		p->upload_start_ms = now;
	}
	p->sent = bytes;
	/* A quick upload is not worth a line of its own. */
	if (now - p->upload_start_ms >= UPLOAD_SHOW_MS && now - p->last_ms >= REDRAW_MS) {
		p->last_ms = now;
		draw(p, now);
	}
}

void cli_progress_update(struct cli_progress *p, size_t done, size_t failed, size_t total)
{
	int64_t now;

	if (!p->on)
		return;
	now = cli_now_ms();
	if (p->uploading || !p->start_ms) {
		p->uploading = false;
		p->start_ms = now;
	}
	p->done = done;
	p->failed = failed;
	p->total = total;
	if (now - p->last_ms >= REDRAW_MS) {
		p->last_ms = now;
		draw(p, now);
	}
}

void cli_progress_finish(struct cli_progress *p)
{
	if (!p->on)
		return;
	if (!p->start_ms)
		p->start_ms = cli_now_ms();
	p->uploading = false;
	draw(p, cli_now_ms());
	fputc('\n', stderr);
	p->drawn = false;
	p->on = false;
}

void cli_progress_clear(struct cli_progress *p)
{
	if (!p->on || !p->drawn)
		return;
	fputs("\r\033[K", stderr);
	p->drawn = false;
	/* Drawn again at the next count, not a tenth of a second later. */
	p->last_ms = 0;
}
