/*
 * The HTTP client (http.h) over libcurl: keep-alive across requests (the
 * multi handle's connection cache), chunked upload streaming, unix sockets
 * (CURLOPT_UNIX_SOCKET_PATH), TLS for an https:// URL at no cost here.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <forkpool/version.h>
#include "http.h"
#include "upload.h"

/* A token file is one short line, as forkpoold reads it. */
#define TOKEN_MAX 4096
/* Connecting takes this long at most (curl's own default is 300 s). */
#define CONNECT_TIMEOUT_MS 10000
/* An upload the server takes nothing of for this long has stalled. */
#define UPLOAD_STALL_S 60

int64_t cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The token in the file, trimmed, as forkpoold's config_token.c reads it. */
static int read_token(struct cli_http *h, const char *path, const char *cmd)
{
	char buf[TOKEN_MAX + 1], *s, *e;
	ssize_t n;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "forkpool %s: --token-file %s: %s\n", cmd, path, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "forkpool %s: --token-file %s: %s\n", cmd, path,
				strerror(errno));
			close(fd);
			return CLI_EXIT_USAGE;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	for (s = buf; isspace((unsigned char)*s); s++)
		;
	for (e = buf + len; e > s && isspace((unsigned char)e[-1]); e--)
		;
	*e = '\0';
	if (len >= TOKEN_MAX || s == e || strpbrk(s, " \t") ) {
		fprintf(stderr, "forkpool %s: --token-file %s: %s\n", cmd, path, len >= TOKEN_MAX ?
			"over 4096 bytes; a token is one short line" : s == e ? "the file is empty" :
			"the token must be one word");
		return CLI_EXIT_USAGE;
	}
	for (char *p = s; p < e; p++) {
		if (iscntrl((unsigned char)*p)) {
			fprintf(stderr, "forkpool %s: --token-file %s: the token has a control"
				" character\n", cmd, path);
			return CLI_EXIT_USAGE;
		}
	}
	if (asprintf(&h->auth_header, "Bearer %s", s) < 0) {
		h->auth_header = NULL;
		return CLI_EXIT_LOCAL;
	}
	return 0;
}

/* http://HOST[:PORT], https://…, HOST:PORT (http assumed), or unix:/path. */
static int parse_url(struct cli_http *h, const char *url, const char *cmd)
{
	size_t len;

	if (!strncmp(url, "unix:", 5)) {
		if (url[5] != '/') {
			fprintf(stderr, "forkpool %s: --url %s: a unix socket is unix:/absolute/path\n",
				cmd, url);
			return CLI_EXIT_USAGE;
		}
		h->unix_path = strdup(url + 5);
		h->base = strdup("http://localhost");
	} else if (strstr(url, "://")) {
		if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
			fprintf(stderr, "forkpool %s: --url %s: the scheme must be http, https or"
				" unix\n", cmd, url);
			return CLI_EXIT_USAGE;
		}
		h->base = strdup(url);
	} else if (*url) {
		if (asprintf(&h->base, "http://%s", url) < 0)
			h->base = NULL;
	} else {
		fprintf(stderr, "forkpool %s: --url is empty\n", cmd);
		return CLI_EXIT_USAGE;
	}
	if (!h->base || (!strncmp(url, "unix:", 5) && !h->unix_path))
		return CLI_EXIT_LOCAL;
	len = strlen(h->base);
	while (len > 0 && h->base[len - 1] == '/')
		h->base[--len] = '\0';
	return 0;
}

int cli_http_init(struct cli_http *h, const struct cli_args *a, const char *cmd)
{
	sigset_t set;
	int rc;

	memset(h, 0, sizeof(*h));
	h->sigfd = -1;
	if ((rc = parse_url(h, a->url, cmd)) != 0)
		goto fail;
	if (a->token_file && (rc = read_token(h, a->token_file, cmd)) != 0)
		goto fail;
	h->idempotency_key = a->idempotency_key;
	if (a->timeout_ms >= 0)
		h->deadline_ms = cli_now_ms() + a->timeout_ms;
	/* The loop, not a handler, learns of Ctrl-C: the command then says what goes on. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	rc = CLI_EXIT_LOCAL;
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (h->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		fprintf(stderr, "forkpool %s: signalfd: %s\n", cmd, strerror(errno));
		goto fail;
	}
	if (!(h->multi = curl_multi_init())) {
		fprintf(stderr, "forkpool %s: cannot set up libcurl\n", cmd);
		goto fail;
	}
	return 0;
fail:
	cli_http_deinit(h);
	return rc;
}

void cli_http_deinit(struct cli_http *h)
{
	if (h->multi)
		curl_multi_cleanup(h->multi);
	if (h->sigfd >= 0)
		close(h->sigfd);
	free(h->auth_header);
	free(h->unix_path);
	free(h->base);
	memset(h, 0, sizeof(*h));
	h->sigfd = -1;
}

void cli_req_init(struct cli_req *r, struct cli_http *h)
{
	memset(r, 0, sizeof(*r));
	r->http = h;
}

static void req_detach(struct cli_req *r)
{
	if (r->active) {
		curl_multi_remove_handle(r->http->multi, r->easy);
		r->active = false;
	}
}

void cli_req_deinit(struct cli_req *r)
{
	if (!r->http)
		return;
	req_detach(r);
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->url);
	free(r->body);
	free(r->post);
	r->easy = NULL;
	r->headers = NULL;
	r->url = r->body = r->post = NULL;
}

static int append(struct cli_req *r, const char *data, size_t len)
{
	if (r->len + len + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		char *p;
		while (cap < r->len + len + 1)
			cap *= 2;
		if (!(p = realloc(r->body, cap)))
			return -ENOMEM;
		r->body = p;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, len);
	r->len += len;
	r->body[r->len] = '\0';
	return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct cli_req *r = userdata;
	size_t len = size * nmemb;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	/* An error answer is kept whole to be read, not streamed on. */
	if (r->on_data && r->status >= 200 && r->status < 300)
		return r->on_data(r, data, len) ? len : 0;
	return append(r, data, len) ? 0 : len;
}

/* One header line onto r's list; the list is kept whole when memory runs out. */
static int add_header(struct cli_req *r, const char *name, const char *value)
{
	struct curl_slist *l;
	char *line;

	if (asprintf(&line, "%s: %s", name, value) < 0)
		return -ENOMEM;
	l = curl_slist_append(r->headers, line);
	free(line);
	if (!l)
		return -ENOMEM;
	r->headers = l;
	return 0;
}

int cli_req_start(struct cli_req *r, const char *method, const char *path, const char *ctype)
{
	struct cli_http *h = r->http;
	CURL *e;

	req_detach(r);
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	free(r->url);
	r->url = NULL;
	r->len = 0;
	r->status = 0;
	r->done = false;
	r->result = CURLE_OK;
	r->errbuf[0] = '\0';
	if (!r->easy && !(r->easy = curl_easy_init()))
		return -ENOMEM;
	e = r->easy;
	curl_easy_reset(e);
	if (asprintf(&r->url, "%s%s", h->base, path) < 0) {
		r->url = NULL;
		return -ENOMEM;
	}
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	if (h->unix_path)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, h->unix_path);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "forkpool/" FP_VERSION);
	if (r->timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
	if (h->auth_header && add_header(r, "Authorization", h->auth_header) < 0)
		return -ENOMEM;
	if (!strcmp(method, "POST")) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		if (ctype && add_header(r, "Content-Type", ctype) < 0)
			return -ENOMEM;
		if (h->idempotency_key &&
		    add_header(r, "Idempotency-Key", h->idempotency_key) < 0)
			return -ENOMEM;
		if (r->upload) {
			curl_easy_setopt(e, CURLOPT_READFUNCTION, cli_upload_read);
			curl_easy_setopt(e, CURLOPT_READDATA, r->upload);
			/* -1: Transfer-Encoding: chunked. */
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->upload->size);
			curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
			curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)UPLOAD_STALL_S);
		} else {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->post ? r->post : "");
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)(r->post ? strlen(r->post) : 0));
		}
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
		return -ENOMEM;
	r->active = true;
	return 0;
}

void cli_req_abort(struct cli_req *r)
{
	if (!r->active)
		return;
	req_detach(r);
	r->done = true;
	r->result = CURLE_ABORTED_BY_CALLBACK;
}

static void collect(struct cli_http *h)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(h->multi, &left))) {
		struct cli_req *r = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &r->status);
		r->result = m->data.result;
		req_detach(r);
		r->done = true;
	}
}

int cli_http_step(struct cli_http *h, int wait_ms, int fd)
{
	struct curl_waitfd extra[2] = {
		{ .fd = h->sigfd, .events = CURL_WAIT_POLLIN },
		{ .fd = fd, .events = CURL_WAIT_POLLIN },
	};
	struct signalfd_siginfo si;
	int64_t now;

	curl_multi_perform(h->multi, &h->running);
	collect(h);
	now = cli_now_ms();
	if (h->deadline_ms && now >= h->deadline_ms)
		return -ETIMEDOUT;
	if (h->deadline_ms && h->deadline_ms - now < wait_ms)
		wait_ms = (int)(h->deadline_ms - now);
	extra[0].revents = extra[1].revents = 0;
	curl_multi_poll(h->multi, extra, fd >= 0 ? 2 : 1, wait_ms, NULL);
	if (extra[0].revents && read(h->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		return -EINTR;
	curl_multi_perform(h->multi, &h->running);
	collect(h);
	return fd >= 0 && extra[1].revents ? 1 : 0;
}

int cli_req_call(struct cli_req *r, const char *method, const char *path)
{
	int err = cli_req_start(r, method, path, r->post ? "application/json" : NULL);

	while (!err && !r->done)
		err = cli_http_step(r->http, 1000, -1);
	if (err < 0 && err != -ENOMEM)
		cli_req_abort(r);
	return err < 0 ? err : 0;
}

int cli_req_check(struct cli_req *r, const char *cmd)
{
	json_t *doc, *e;
	const char *code, *msg;

	if (r->result != CURLE_OK) {
		fprintf(stderr, "forkpool %s: %s the server at %s%s: %s\n", cmd,
			r->status ? "lost the connection to" : "cannot reach",
			r->http->unix_path ? "unix:" : "",
			r->http->unix_path ? r->http->unix_path : r->http->base,
			r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result));
		return CLI_EXIT_SERVER;
	}
	if (r->status >= 200 && r->status < 300)
		return 0;
	/* {"error":{"code","message"}}: the server's own words. */
	doc = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	e = json_object_get(doc, "error");
	code = json_string_value(json_object_get(e, "code"));
	msg = json_string_value(json_object_get(e, "message"));
	if (code && msg)
		fprintf(stderr, "forkpool %s: the server refused (%ld %s): %s\n", cmd, r->status,
			code, msg);
	else
		fprintf(stderr, "forkpool %s: the server answered %ld to %s\n", cmd, r->status,
			r->url);
	json_decref(doc);
	return CLI_EXIT_SERVER;
}

json_t *cli_req_json(struct cli_req *r, const char *cmd)
{
	json_error_t e;
	json_t *doc = json_loadb(r->body ? r->body : "", r->len, 0, &e);

	if (!doc)
		fprintf(stderr, "forkpool %s: the server's answer to %s is not JSON: %s\n", cmd,
			r->url, e.text);
	return doc;
}

int cli_http_stopped(struct cli_http *h, int err, const char *cmd, const char *job_id)
{
	if (err == -ETIMEDOUT)
		fprintf(stderr, "forkpool %s: gave up: --timeout passed", cmd);
	else if (err == -EINTR)
		fprintf(stderr, "forkpool %s: interrupted", cmd);
	else
		fprintf(stderr, "forkpool %s: %s", cmd, strerror(-err));
	if (job_id)
		fprintf(stderr, "; job %s goes on (forkpool cancel %s stops it)", job_id, job_id);
	fputc('\n', stderr);
	return err == -EINTR ? 130 : err == -ENOMEM ? CLI_EXIT_LOCAL : CLI_EXIT_SERVER;
}

int cli_path_add(char **path, const char *name, const char *value)
{
	char *esc = curl_easy_escape(NULL, value, 0), *p;
	int n;

	if (!esc)
		return -ENOMEM;
	n = asprintf(&p, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', name, esc);
	curl_free(esc);
	if (n < 0)
		return -ENOMEM;
	free(*path);
	*path = p;
	return 0;
}

int cli_path_addi(char **path, const char *name, int64_t value)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", (long long)value);
	return cli_path_add(path, name, num);
}
