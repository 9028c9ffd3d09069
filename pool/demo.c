/*
 * The built-in `demo` module: small tasks that the tests, the README and the
 * benchmarks run. Some are trivial and fast (echo, square), the others make
 * a worker misbehave on purpose (crash, exit, hang, alloc) so the pool's
 * handling of it can be seen. The pipeline ones are in demo_pipe.c.
 *
 * It is written like any other module: it reaches the host only through
 * fp_task_ctx, so it could be built as a shared object unchanged.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "module.h"

/* How much of a bad argument an error message quotes. */
#define QUOTE_MAX 64

/*
 * A JSON number in the arguments. Only square and its siblings use this:
 * they are benchmarked at about a million items a second, where building a
 * jansson tree per item would cost more than the task.
 */
struct number {
	const char *text;   /* the number's text, inside args */
	size_t len;
	int is_int;         /* no fraction or exponent, and fits an int64_t */
	long long i;
	double d;           /* always set */
};

static int is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Length of the JSON number (RFC 8259 grammar) at s, or 0. Checked by hand
 * because strtod() also takes "inf", "nan", hex and a leading '+', none of
 * which is JSON.
 */
static size_t json_number_span(const char *s, int *has_frac_or_exp)
{
	size_t i = 0;

	*has_frac_or_exp = 0;
	if (s[i] == '-')
		i++;
	if (s[i] == '0') {
		i++;
	} else if (is_digit(s[i])) {
		while (is_digit(s[i]))
			i++;
	} else {
		return 0;
	}
	if (s[i] == '.') {
		i++;
		if (!is_digit(s[i]))
			return 0;
		while (is_digit(s[i]))
			i++;
		*has_frac_or_exp = 1;
	}
	if (s[i] == 'e' || s[i] == 'E') {
		i++;
		if (s[i] == '+' || s[i] == '-')
			i++;
		if (!is_digit(s[i]))
			return 0;
		while (is_digit(s[i]))
			i++;
		*has_frac_or_exp = 1;
	}
	return i;
}

/*
 * Parse args (NUL-terminated, as the ABI promises) as one JSON number with
 * optional surrounding whitespace. -EINVAL when it is anything else.
 * strtod() reads the decimal point of the C locale, which is the one a
 * worker runs in: nothing in forkpool calls setlocale().
 */
static int number_parse(const char *args, size_t len, struct number *n)
{
	const char *s = args, *end = args + len;
	char *stop;
	int frac;

	while (s < end && is_json_space(*s))
		s++;
	n->text = s;
	n->len = json_number_span(s, &frac);
	if (n->len == 0)
		return -EINVAL;
	for (s += n->len; s < end && is_json_space(*s); s++)
		;
	if (s != end)
		return -EINVAL;

	n->is_int = 0;
	if (!frac && n->len <= 18 + (n->text[0] == '-')) {
		/*
		 * Up to 18 digits cannot overflow an int64_t: summed here, as
		 * strtoll() would, without its locale and base machinery (the
		 * most of a trivial task's time).
		 */
		const char *d = n->text + (n->text[0] == '-');
		long long v = 0;

		for (; d < n->text + n->len; d++)
			v = v * 10 + (*d - '0');
		n->i = n->text[0] == '-' ? -v : v;
		n->is_int = 1;
	} else if (!frac) {
		errno = 0;
		n->i = strtoll(n->text, &stop, 10);
		n->is_int = errno == 0;
	}
	n->d = n->is_int ? (double)n->i : strtod(n->text, &stop);
	return 0;
}

/* Up to QUOTE_MAX bytes of the arguments, for an error message. */
static void quote_args(char *out, size_t outlen, const char *args, size_t len)
{
	if (len > QUOTE_MAX)
		snprintf(out, outlen, "%.*s...", QUOTE_MAX, args);
	else
		snprintf(out, outlen, "%.*s", (int)len, args);
}

/* Fail the item with "<task>: expected <what>, got <args>". */
static int expected(fp_task_ctx *ctx, const char *task, const char *what,
		    const char *args, size_t len)
{
	char got[QUOTE_MAX + 4], msg[QUOTE_MAX + 128];

	quote_args(got, sizeof(got), args, len);
	snprintf(msg, sizeof(msg), "%s: expected %s, got %s", task, what,
		 len ? got : "nothing");
	return fp_task_error(ctx, msg);
}

/*
 * The shortest "%.*g" that reads back as the same double, so 1.5 squared is
 * 2.25 and not 2.25000000000000000. Returns the length, or -ERANGE for
 * infinities and NaN, which JSON cannot spell.
 */
static int format_double(char *buf, size_t len, double d)
{
	int prec, n = 0;

	if (!isfinite(d))
		return -ERANGE;
	for (prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, len, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return n;
}

/* Milliseconds for sleep and spin: a non-negative number, at most a year. */
static int millis_parse(const char *args, size_t len, struct number *n)
{
	if (number_parse(args, len, n) < 0 || n->d < 0 || n->d > 365.0 * 86400e3)
		return -EINVAL;
	return 0;
}

#define MILLIS_EXPECTED "milliseconds (a number from 0 to 3.15e10)"

/* Whether args is the JSON null, give or take whitespace. */
static int is_null(const char *args, size_t len)
{
	while (len > 0 && is_json_space(*args)) {
		args++;
		len--;
	}
	while (len > 0 && is_json_space(args[len - 1]))
		len--;
	return len == 4 && memcmp(args, "null", 4) == 0;
}

static int task_echo(fp_task_ctx *ctx, const char *args, size_t len)
{
	return fp_task_return(ctx, args, len);
}

/* A square (never negative) in decimal, as "%llu" would write it; its length. */
static int format_square(char *buf, unsigned long long v)
{
	char tmp[24];
	int n = 0, len;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (len = n; n > 0; n--)
		*buf++ = tmp[n - 1];
	*buf = '\0';
	return len;
}

static int task_square(fp_task_ctx *ctx, const char *args, size_t len)
{
	struct number n;
	long long sq;
	char buf[64];
	int out;

	if (number_parse(args, len, &n) < 0)
		return expected(ctx, "square", "a number", args, len);
	/* An integer stays an integer until its square leaves int64_t. */
	if (n.is_int && !__builtin_mul_overflow(n.i, n.i, &sq)) {
		out = format_square(buf, (unsigned long long)sq);
	} else {
		out = format_double(buf, sizeof(buf), n.d * n.d);
		if (out < 0)
			return fp_task_error(ctx, "square: the result is too large for a double");
	}
	return fp_task_return(ctx, buf, (size_t)out);
}

static int task_sleep(fp_task_ctx *ctx, const char *args, size_t len)
{
	struct timespec ts;
	struct number n;

	if (millis_parse(args, len, &n) < 0)
		return expected(ctx, "sleep", MILLIS_EXPECTED, args, len);
	ts.tv_sec = (time_t)(n.d / 1000);
	ts.tv_nsec = (long)((n.d - (double)ts.tv_sec * 1000) * 1e6);
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	/* A signal the worker handles (e.g. its own timer) must not cut the sleep short. */
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return fp_task_return(ctx, n.text, n.len);
}

static double cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int task_spin(fp_task_ctx *ctx, const char *args, size_t len)
{
	volatile uint64_t work = 0;
	struct number n;
	double until;

	if (millis_parse(args, len, &n) < 0)
		return expected(ctx, "spin", MILLIS_EXPECTED, args, len);
	/*
	 * CPU time, not wall time: a task of n ms is the same work whether or
	 * not the machine is busy, which is what a CPU-bound benchmark needs.
	 */
	until = cpu_ms() + n.d;
	/* Burn CPU between clock reads so the loop is not all clock calls. */
	while (cpu_ms() < until) {
		for (int i = 0; i < 1000; i++)
			work = work + (uint64_t)i;
	}
	return fp_task_return(ctx, n.text, n.len);
}

static int task_pid(fp_task_ctx *ctx, const char *args, size_t len)
{
	char buf[32];
	int n;

	n = snprintf(buf, sizeof(buf), "%ld", (long)getpid());
	return fp_task_return(ctx, buf, (size_t)n);
}

/* Signals `crash` can be asked for by name: those whose default action kills. */
static const struct {
	const char *name;
	int sig;
} crash_signals[] = {
	{ "SIGSEGV", SIGSEGV }, { "SIGABRT", SIGABRT }, { "SIGKILL", SIGKILL },
	{ "SIGBUS", SIGBUS },   { "SIGFPE", SIGFPE },   { "SIGILL", SIGILL },
	{ "SIGTERM", SIGTERM }, { "SIGINT", SIGINT },   { "SIGQUIT", SIGQUIT },
	{ "SIGHUP", SIGHUP },   { "SIGTRAP", SIGTRAP }, { "SIGSYS", SIGSYS },
	{ "SIGUSR1", SIGUSR1 }, { "SIGUSR2", SIGUSR2 }, { "SIGALRM", SIGALRM },
	{ "SIGPIPE", SIGPIPE },
};

/* The signal `crash` should die of: its argument as a name or a number. */
static int crash_signal(const char *args, size_t len, int *sig)
{
	json_error_t jerr;
	json_t *v;
	const char *s;
	size_t i;
	int rc = -EINVAL;

	v = json_loadb(args, len, JSON_DECODE_ANY, &jerr);
	if (!v)
		return -EINVAL;
	if (json_is_null(v)) {
		*sig = SIGSEGV;
		rc = 0;
	} else if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);

		if (n > 0 && n < NSIG) {
			*sig = (int)n;
			rc = 0;
		}
	} else if (json_is_string(v)) {
		s = json_string_value(v);
		for (i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++) {
			/* "SIGABRT" and "ABRT" both. */
			if (strcmp(s, crash_signals[i].name) == 0 ||
			    strcmp(s, crash_signals[i].name + 3) == 0) {
				*sig = crash_signals[i].sig;
				rc = 0;
				break;
			}
		}
	}
	json_decref(v);
	return rc;
}

static int task_crash(fp_task_ctx *ctx, const char *args, size_t len)
{
	struct rlimit nocore = { 0, 0 };
	struct sigaction sa;
	sigset_t set;
	char msg[128];
	int sig = SIGSEGV;

	if (len > 0 && crash_signal(args, len, &sig) < 0)
		return expected(ctx, "crash", "null, a signal name like \"SIGABRT\" or a number",
				args, len);

	/*
	 * Die of exactly this signal, whatever the worker (or a sanitizer
	 * runtime) installed or blocked. A demo crash is not worth a core
	 * file, which on a systemd host also means a slow coredump helper.
	 */
	setrlimit(RLIMIT_CORE, &nocore);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);   /* fails for SIGKILL, which needs none of this */
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);

	/* Still here: the signal's default action is not to terminate (SIGCHLD, SIGURG...). */
	snprintf(msg, sizeof(msg), "crash: signal %d did not kill the worker", sig);
	return fp_task_error(ctx, msg);
}

static int task_exit(fp_task_ctx *ctx, const char *args, size_t len)
{
	struct number n;

	if (len == 0 || is_null(args, len))
		_exit(1);
	if (number_parse(args, len, &n) < 0 || !n.is_int || n.i < 0 || n.i > 255)
		return expected(ctx, "exit", "null or an exit status from 0 to 255", args, len);
	/* _exit: no atexit handlers, no stdio flush, no worker_fini; like a task calling it. */
	_exit((int)n.i);
}

static int task_hang(fp_task_ctx *ctx, const char *args, size_t len)
{
	signal(SIGTERM, SIG_IGN);
	/* Only SIGKILL ends this: it is what the pool's kill escalation is tested with. */
	for (;;)
		pause();
	return 0;
}

static int task_fail(fp_task_ctx *ctx, const char *args, size_t len)
{
	json_error_t jerr;
	char *msg;
	json_t *v;
	int rc;

	v = json_loadb(args, len, JSON_DECODE_ANY, &jerr);
	if (v && json_is_string(v)) {
		rc = fp_task_error(ctx, json_string_value(v));
		json_decref(v);
		return rc;
	}
	json_decref(v);
	/* Not a string (maybe not even JSON): the message is the text as given. */
	msg = malloc(len + 1);
	if (!msg)
		return -ENOMEM;
	memcpy(msg, args, len);
	msg[len] = '\0';
	rc = fp_task_error(ctx, msg);
	free(msg);
	return rc;
}

/*
 * Blocks `alloc` holds on to, chained through their own first bytes.
 * This is the one mutable file-static in the project, on purpose: the task
 * exists to make the worker process grow (to test max_rss_bytes and the
 * OOM handling), so the memory must outlive the call and belong to the
 * process, and a worker never frees it: the worker's exit does. Keeping it
 * reachable also keeps LeakSanitizer from reporting it.
 */
static void *alloc_kept;

static int task_alloc(fp_task_ctx *ctx, const char *args, size_t len)
{
	const size_t mib = (size_t)1 << 20;
	size_t size, page, off;
	struct number n;
	char msg[96];
	char *p;

	if (number_parse(args, len, &n) < 0 || !n.is_int || n.i < 0 ||
	    (unsigned long long)n.i > SIZE_MAX / mib)
		return expected(ctx, "alloc", "a whole number of MiB", args, len);
	if (n.i == 0)
		return fp_task_return(ctx, n.text, n.len);
	size = (size_t)n.i * mib;
	p = malloc(size);
	if (!p) {
		snprintf(msg, sizeof(msg), "alloc: cannot allocate %lld MiB", n.i);
		return fp_task_error(ctx, msg);
	}
	/* Touch every page: malloc'd but untouched memory is not in the RSS. */
	page = (size_t)sysconf(_SC_PAGESIZE);
	for (off = 0; off < size; off += page)
		p[off] = 1;
	memcpy(p, &alloc_kept, sizeof(alloc_kept));
	alloc_kept = p;
	return fp_task_return(ctx, n.text, n.len);
}

static int task_bytes(fp_task_ctx *ctx, const char *args, size_t len)
{
	struct number n;
	size_t size;
	char *buf;
	int rc;

	if (number_parse(args, len, &n) < 0 || !n.is_int || n.i < 0 ||
	    (unsigned long long)n.i > SIZE_MAX - 2)
		return expected(ctx, "bytes", "a whole number of bytes", args, len);
	size = (size_t)n.i;
	buf = malloc(size + 2);
	if (!buf)
		return -ENOMEM;
	buf[0] = '"';
	memset(buf + 1, 'x', size);
	buf[size + 1] = '"';
	rc = fp_task_return(ctx, buf, size + 2);
	free(buf);
	return rc;
}

static const struct fp_task demo_tasks[] = {
	{ "echo", task_echo, "returns its arguments unchanged" },
	{ "square", task_square, "number -> its square (integers stay integers)" },
	{ "sleep", task_sleep, "milliseconds -> sleeps that long, returns the number" },
	{ "spin", task_spin, "milliseconds -> burns that much CPU time, returns the number" },
	{ "pid", task_pid, "returns the pid of the worker that ran it" },
	{ "crash", task_crash, "kills its worker with SIGSEGV, or the signal named (\"SIGABRT\", 9, ...)" },
	{ "exit", task_exit, "exits its worker with the given status (default 1)" },
	{ "hang", task_hang, "ignores SIGTERM and blocks until SIGKILLed" },
	{ "fail", task_fail, "fails with its argument as the message (a string's text, else the JSON)" },
	{ "alloc", task_alloc, "MiB -> allocates and touches that much, kept until the worker exits" },
	{ "bytes", task_bytes, "n -> a JSON string of n 'x' bytes" },
	{ "range", fp__demo_range, "n -> emits 0, 1, ..., n-1 (a generator)" },
	{ "words", fp__demo_words, "string -> emits each whitespace-separated word (a generator)" },
	{ "lower", fp__demo_lower, "string -> the string with ASCII letters lower-cased" },
	{ "sum", fp__demo_sum, "array of numbers -> their sum (integers stay integers)" },
	{ "count", fp__demo_count,
	  "array of strings and/or {word: count} objects -> merged {word: count}; "
	  "associative, a reducer for word counts" },
	{ "incr", fp__demo_incr,
	  "key or {key, by} -> adds 1 (or by) to that shared value, returns the new value" },
	{ "get", fp__demo_get, "key -> that shared value, or null when there is none" },
	{ "watch", fp__demo_watch,
	  "ms or {ms, key} -> burns CPU up to ms, returns \"cancelled\" (and sets key) once fp_cancelled()" },
	{ "lock", fp__demo_lock,
	  "{name, timeout_ms, hold_ms, key, keep} -> takes lock name, holds it hold_ms, returns the pid" },
	{ NULL, NULL, NULL },
};

static const char *const demo_generators[] = { "range", "words", NULL };

const struct fp_module fp__demo_module = {
	.abi_version = FP_TASK_ABI_VERSION,
	.name = "demo",
	.tasks = demo_tasks,
	.generators = demo_generators,
};
