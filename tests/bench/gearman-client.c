/*
 * The gearman side of scripts/bench peers: a client of gearmand doing the same
 * trivial work as forkpool's HTTP apply (the square of an integer, checked).
 *
 *   gearman-client ready HOST PORT FUNCTION WORKERS SECONDS
 *       waits until gearmand reports at least WORKERS workers able to run
 *       FUNCTION (its text admin command `status`), at most SECONDS
 *   gearman-client throughput HOST PORT CLIENTS SECONDS
 *       CLIENTS threads, each with its own connection, each submitting
 *       `square` jobs one after another with gearman_client_do() for SECONDS:
 *       CLIENTS jobs in flight at any time, as wrk -cCLIENTS keeps requests
 *   gearman-client rtt HOST PORT N
 *       N sequential gearman_client_do() calls, each timed
 *
 * Every job's argument is distinct and its result is checked against its
 * square. Prints one result line on stdout, e.g.
 *   result name=throughput clients=50 seconds=3.01 rate=12345.6 ok=37160 failed=0
 *   result name=rtt items=2000 seconds=0.4 rate=5000.0 p50_us=190.2 p99_us=260.0 ok=2000 failed=0
 * and exits 1 if any job failed or came back wrong (the first one is named on
 * stderr), 2 on bad usage. Percentiles: nearest rank (bench-stats.h), as
 * every other round trip of scripts/bench. Nothing here asserts a time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libgearman-1.0/gearman.h>

#include "bench-stats.h"

#define NUM_MAX 24
/* A job that takes longer than this is a failure, not a slow figure. */
#define JOB_TIMEOUT_MS 10000
/*
 * Arguments of client t start at t * ARG_STRIDE, so no two jobs share one; with
 * at most 1000 clients every square fits the worker's 64 bits.
 */
#define ARG_STRIDE 1000000ULL

struct target {
	const char *host;
	in_port_t port;
};

struct client {
	pthread_t thread;
	const struct target *target;
	unsigned long long first_arg;
	size_t ok, failed;
	char failure[200];
};

static atomic_bool stop;

static int usage(void)
{
	fprintf(stderr,
		"usage: gearman-client ready HOST PORT FUNCTION WORKERS SECONDS\n"
		"       gearman-client throughput HOST PORT CLIENTS SECONDS\n"
		"       gearman-client rtt HOST PORT N\n");
	return 2;
}

static gearman_client_st *client_new(const struct target *t, char *err, size_t errlen)
{
	gearman_client_st *c = gearman_client_create(NULL);

	if (!c) {
		snprintf(err, errlen, "gearman_client_create failed");
		return NULL;
	}
	gearman_client_set_timeout(c, JOB_TIMEOUT_MS);
	if (gearman_client_add_server(c, t->host, t->port) != GEARMAN_SUCCESS) {
		snprintf(err, errlen, "add server %s:%u: %s", t->host, (unsigned)t->port,
			 gearman_client_error(c));
		gearman_client_free(c);
		return NULL;
	}
	return c;
}

/* One job: square(arg), checked. 0, or -1 with the reason in err. */
static int square_job(gearman_client_st *c, unsigned long long arg, char *err, size_t errlen)
{
	char text[NUM_MAX], want[NUM_MAX];
	gearman_return_t ret;
	size_t size = 0;
	int len, wlen;
	char *res;

	len = snprintf(text, sizeof(text), "%llu", arg);
	wlen = snprintf(want, sizeof(want), "%llu", arg * arg);
	res = gearman_client_do(c, "square", NULL, text, (size_t)len, &size, &ret);
	if (ret != GEARMAN_SUCCESS) {
		snprintf(err, errlen, "square(%s): %s: %s", text, gearman_strerror(ret),
			 gearman_client_error(c));
		free(res);
		return -1;
	}
	if (!res || size != (size_t)wlen || memcmp(res, want, size) != 0) {
		snprintf(err, errlen, "square(%s): got '%.*s', want %s", text,
			 res ? (int)(size > 64 ? 64 : size) : 0, res ? res : "", want);
		free(res);
		return -1;
	}
	free(res);
	return 0;
}

/* --- ready ---------------------------------------------------------------- */

/* Available workers for fn by gearmand's admin `status`, or -1 on failure. */
static long admin_workers(const struct target *t, const char *fn)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(t->port) };
	struct timeval tv = { .tv_sec = 2 };
	char buf[8192], *line, *save;
	size_t len = 0;
	long found = 0;
	ssize_t n;
	int fd;

	if (inet_pton(AF_INET, t->host, &sa.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, "status\n", 7) != 7) {
		close(fd);
		return -1;
	}
	/* The answer ends with a line holding a single dot. */
	while (len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if ((len >= 2 && strcmp(buf + len - 2, ".\n") == 0 && (len == 2 || buf[len - 3] == '\n')))
			break;
	}
	close(fd);
	buf[len] = '\0';
	/* FUNCTION \t TOTAL \t RUNNING \t AVAILABLE_WORKERS */
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t');
		char *last = strrchr(line, '\t');

		if (tab && last && (size_t)(tab - line) == strlen(fn) &&
		    strncmp(line, fn, strlen(fn)) == 0)
			found = strtol(last + 1, NULL, 10);
	}
	return found;
}

static int run_ready(const struct target *t, const char *fn, size_t workers, size_t seconds)
{
	double deadline = bench_now_s() + (double)seconds;
	long have = -1;

	while (bench_now_s() < deadline) {
		have = admin_workers(t, fn);
		if (have >= 0 && (size_t)have >= workers)
			return 0;
		usleep(50 * 1000);
	}
	fprintf(stderr, "gearman-client: after %zu s gearmand at %s:%u reports %ld worker(s) for %s, "
		"not %zu\n", seconds, t->host, (unsigned)t->port, have, fn, workers);
	return 1;
}

/* --- throughput ----------------------------------------------------------- */

static void *client_main(void *arg)
{
	struct client *cl = arg;
	unsigned long long a = cl->first_arg;
	gearman_client_st *c;
	char err[200];

	c = client_new(cl->target, cl->failure, sizeof(cl->failure));
	if (!c) {
		cl->failed++;
		return NULL;
	}
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (square_job(c, a++, err, sizeof(err)) == 0) {
			cl->ok++;
			continue;
		}
		if (!cl->failure[0])
			snprintf(cl->failure, sizeof(cl->failure), "%s", err);
		cl->failed++;
		/* A client whose jobs fail keeps failing; one failure fails the run. */
		break;
	}
	gearman_client_free(c);
	return NULL;
}

static int run_throughput(const struct target *t, size_t nclients, size_t seconds)
{
	struct client *cl = calloc(nclients, sizeof(*cl));
	size_t started = 0, ok = 0, failed = 0;
	const char *failure = NULL;
	double t0, t1;
	char err[200];
	gearman_client_st *warm;

	if (!cl) {
		fprintf(stderr, "gearman-client: out of memory\n");
		return 1;
	}
	/* One job before the clock starts: the workers are there and answer right. */
	warm = client_new(t, err, sizeof(err));
	if (!warm || square_job(warm, 7, err, sizeof(err)) < 0) {
		fprintf(stderr, "gearman-client: warm-up: %s\n", err);
		if (warm)
			gearman_client_free(warm);
		free(cl);
		return 1;
	}
	gearman_client_free(warm);

	t0 = bench_now_s();
	for (; started < nclients; started++) {
		cl[started].target = t;
		cl[started].first_arg = (started + 1) * ARG_STRIDE;
		if (pthread_create(&cl[started].thread, NULL, client_main, &cl[started]) != 0) {
			fprintf(stderr, "gearman-client: pthread_create: %s\n", strerror(errno));
			break;
		}
	}
	if (started == nclients) {
		struct timespec ts = { .tv_sec = (time_t)seconds };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	atomic_store(&stop, true);
	for (size_t i = 0; i < started; i++)
		pthread_join(cl[i].thread, NULL);
	/* Jobs in flight when the time was up finish first and count: the clock runs until then. */
	t1 = bench_now_s();
	for (size_t i = 0; i < started; i++) {
		ok += cl[i].ok;
		failed += cl[i].failed;
		if (!failure && cl[i].failure[0])
			failure = cl[i].failure;
	}
	printf("result name=throughput clients=%zu seconds=%.6f rate=%.1f ok=%zu failed=%zu\n",
	       started, t1 - t0, (double)ok / (t1 - t0), ok, failed);
	if (failure)
		fprintf(stderr, "gearman-client: first failure: %s\n", failure);
	free(cl);
	return failed || started != nclients || ok == 0 ? 1 : 0;
}

/* --- rtt ------------------------------------------------------------------ */

static int run_rtt(const struct target *t, size_t n)
{
	double *lat = malloc(n * sizeof(*lat));
	double t0, t1, start, secs;
	size_t ok = 0;
	char err[200];
	gearman_client_st *c;
	int rc = 1;

	if (!lat) {
		fprintf(stderr, "gearman-client: out of memory\n");
		return 1;
	}
	c = client_new(t, err, sizeof(err));
	if (!c || square_job(c, 7, err, sizeof(err)) < 0) {
		fprintf(stderr, "gearman-client: warm-up: %s\n", err);
		goto out;
	}
	start = bench_now_s();
	for (size_t i = 0; i < n; i++) {
		t0 = bench_now_s();
		if (square_job(c, i, err, sizeof(err)) < 0) {
			fprintf(stderr, "gearman-client: first failure: %s\n", err);
			goto out;
		}
		t1 = bench_now_s();
		lat[ok++] = (t1 - t0) * 1e6;
	}
	secs = bench_now_s() - start;
	qsort(lat, ok, sizeof(*lat), bench_cmp_double);
	printf("result name=rtt items=%zu seconds=%.6f rate=%.1f p50_us=%.1f p99_us=%.1f "
	       "ok=%zu failed=0\n", n, secs, (double)ok / secs, bench_percentile(lat, ok, 0.50),
	       bench_percentile(lat, ok, 0.99), ok);
	rc = 0;
out:
	if (c)
		gearman_client_free(c);
	free(lat);
	return rc;
}

int main(int argc, char **argv)
{
	struct target t;
	size_t port, a, b;

	if (argc < 5 || bench_parse_size(argv[3], &port) < 0 || port == 0 || port > 65535)
		return usage();
	t.host = argv[2];
	t.port = (in_port_t)port;
	if (strcmp(argv[1], "ready") == 0 && argc == 7 && bench_parse_size(argv[5], &a) == 0 &&
	    bench_parse_size(argv[6], &b) == 0 && b > 0)
		return run_ready(&t, argv[4], a, b);
	if (strcmp(argv[1], "throughput") == 0 && argc == 6 && bench_parse_size(argv[4], &a) == 0 &&
	    a > 0 && a <= 1000 && bench_parse_size(argv[5], &b) == 0 && b > 0)
		return run_throughput(&t, a, b);
	if (strcmp(argv[1], "rtt") == 0 && argc == 5 && bench_parse_size(argv[4], &a) == 0 && a > 0)
		return run_rtt(&t, a);
	return usage();
}
