/*
 * An exec pool's worker: after fork, instead of running C tasks, the worker
 * process runs the pool's program and relays between the master's frames
 * and the program's NDJSON lines:
 *
 *   program -> us   {"ready":{"tasks":["resize",...]}}      once, at start
 *                   (an entry may be {"name":"split","generator":true,"doc":".."})
 *   us -> program   {"id":7,"task":"resize","args":ARGS}     one per TASK frame
 *   program -> us   {"id":7,"value":V} | {"id":7,"error":"why"[,"traceback":"..."]}
 *                   | {"id":7,"emit":V}... then {"id":7,"end":true}
 *                   | {"id":7,"call":...} (exec_calls.h), answered on its stdin
 *
 * One task at a time, like a C worker: the next task line is written only
 * after the answer to the one before, and every pipe is read only when its
 * bytes are wanted, so a slow program holds the master back through the
 * socket instead of filling our memory. Outputs of a generator task (emit)
 * are gathered into one JSON array, its value under apply and map; for a
 * pipeline stage (TASK flag STREAM) each is an EMIT frame at once.
 *
 * When the program fails (dies, closes stdout, writes something that is not
 * the protocol, or never says ready) we write what happened to it into the
 * shared page (`fate`), kill it, and exit with FP_WORKER_EXIT_PROGRAM: the
 * master blames the running item with that message and replaces the worker,
 * as for a crashing C worker. SIGTERM from the master (a timeout's first
 * step) is passed on to the program; the program dies with us (PDEATHSIG).
 *
 * Process group: the shim makes its own group, which the program and
 * everything it starts inherit, so that what the program started (a shell
 * script's pipelines, a Python program's subprocesses) can be stopped with
 * it. SIGTERM is passed on to the whole group; when the shim exits, however
 * it ends (retired, told to quit, the program failed, SIGKILLed by the
 * master or anyone), the master SIGKILLs the group before it reaps the shim
 * (worker.c): the group's id is the shim's pid, which its unreaped zombie
 * keeps from being reused, so that kill can only reach this worker's
 * processes. PDEATHSIG alone reaches only the program. A program's own
 * children may hold its stdout open after it died, so its death is learnt
 * from SIGCHLD too, not only from EOF.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "exec_calls.h"
#include "frame_reader.h"
#include "pool_impl.h"
#include "worker_main.h"

/* How long a program told to stop (stdin closed) gets before SIGKILL. */
#define STOP_GRACE_MS 1000
/* How long after closing its stdout a program gets to exit. */
#define EXIT_WAIT_MS 1000
/* Bytes of a bad line quoted in the message. */
#define QUOTE_BYTES 40
/* A line may hold the largest value plus this much of envelope. */
#define LINE_SLACK 4096

struct shim {
	const struct fp_worker_args *a;
	const struct fp_exec *x;
	pid_t prog;
	int in_fd;                 /* the program's stdin (we write) */
	int out_fd;                /* the program's stdout (we read) */
	int sig_fd;                /* SIGTERM, SIGCHLD */
	int statm_fd;              /* /proc/PROG/statm */
	pid_t pgid;                /* our own group, the program's too; 0: none */
	bool out_eof;
	bool reaped;               /* prog was waited for: never signal it again */
	int status;
	/* Lines from the program: buf[start, len) is unread. */
	char *buf;
	size_t start, len, cap, max_line;
	/* The announced tasks, sorted as given. */
	json_t *tasks;
	char *tasks_json;
	/* Gathered outputs of a generator task, as a JSON array being built. */
	char *gen;
	size_t gen_len, gen_cap;
	uint64_t gen_count;
	/* The program's calls (exec_calls.h) go to the master through this. */
	struct fp_worker_kv kv;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void send_frame(struct shim *s, enum fp_frame_type type, uint64_t id, uint32_t flags,
		       uint32_t rss_kib, const char *payload, size_t len)
{
	struct fp_frame_header h;

	fp_frame_header_init(&h, type, id, (uint32_t)len, flags);
	h.rss_kib = rss_kib;
	fp__worker_send_all(s->a->fd, &h, sizeof(h));
	if (len)
		fp__worker_send_all(s->a->fd, payload, len);
}

/* 'the first bytes' of a line, printable, for a message. */
static void quote_line(const char *p, size_t len, char *out, size_t outlen)
{
	size_t i, n = len < QUOTE_BYTES ? len : QUOTE_BYTES, o = 0;

	out[o++] = '\'';
	for (i = 0; i < n && o + 6 < outlen; i++)
		out[o++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	out[o++] = '\'';
	if (n < len && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* --- ending -------------------------------------------------------------- */

/* Wait for the program to exit, up to ms; then SIGKILL it. Returns its status. */
static int reap_program(struct shim *s, uint64_t ms)
{
	uint64_t end = mono_ms() + ms;
	int status = 0;
	pid_t r;

	if (s->reaped || s->prog <= 0)
		return s->status;
	for (;;) {
		r = waitpid(s->prog, &status, WNOHANG);
		if (r == s->prog || (r < 0 && errno != EINTR)) {
			s->reaped = true;
			s->status = r == s->prog ? status : 0;
			return s->status;
		}
		if (r == 0) {
			uint64_t now = mono_ms();
			struct pollfd pfd = { s->sig_fd, POLLIN, 0 };
			struct signalfd_siginfo si;

			if (now >= end) {
				kill(s->prog, SIGKILL);
				end = UINT64_MAX;
				continue;
			}
			if (poll(&pfd, 1, (int)(end - now)) > 0 &&
			    read(s->sig_fd, &si, sizeof(si)) < 0)
				continue;
		}
	}
}

/*
 * The program failed: say so in the shared page (the master reads it when
 * it accounts for us), make sure it is gone, and leave.
 */
static _Noreturn void program_failed(struct shim *s, fp_item_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static _Noreturn void program_failed(struct shim *s, fp_item_status status, const char *fmt, ...)
{
	struct fp_worker_shm *shm = s->a->shm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(shm->fate, sizeof(shm->fate), fmt, ap);
	va_end(ap);
	atomic_store_explicit(&shm->fate_status, (uint32_t)status, memory_order_release);
	if (!s->reaped)
		kill(s->prog, SIGKILL);
	reap_program(s, EXIT_WAIT_MS);
	_exit(FP_WORKER_EXIT_PROGRAM);
}

/* The program's stdout ended: find out how it died and report that. */
static _Noreturn void program_gone(struct shim *s, const char *when)
{
	char how[64];
	int status;

	/* Closing stdout is usually exiting; one that lingers is killed. */
	status = reap_program(s, EXIT_WAIT_MS);
	fp__describe_status(status, how, sizeof(how));
	program_failed(s, FP_ITEM_CRASH, "worker program (pid %d) %s%s", (int)s->prog, how, when);
}

/* Told to stop, or retiring: close its stdin, give it a moment, leave. */
static _Noreturn void shim_exit(struct shim *s, int code)
{
	close(s->in_fd);
	reap_program(s, STOP_GRACE_MS);
	_exit(code);
}

/* --- signals ------------------------------------------------------------- */

/*
 * SIGTERM: the master's (a timeout's first step) is meant for the program
 * and what it started. One from inside the group is not passed on: ours to
 * the group comes back to us, and a script's `kill 0` reached them all.
 * SIGCHLD: the program may have died.
 */
static void read_signals(struct shim *s)
{
	struct signalfd_siginfo si;
	int status;

	while (read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo != SIGTERM || si.ssi_pid == (uint32_t)getpid() ||
		    (s->pgid > 1 && getpgid((pid_t)si.ssi_pid) == s->pgid))
			continue;
		if (s->pgid > 1)
			kill(-s->pgid, SIGTERM);
		else if (!s->reaped && s->prog > 0)
			kill(s->prog, SIGTERM);
	}
	if (!s->reaped && s->prog > 0 && waitpid(s->prog, &status, WNOHANG) == s->prog) {
		s->reaped = true;
		s->status = status;
	}
}

/* --- the program's lines ------------------------------------------------- */

/*
 * The next whole line (without '\n', NUL-terminated in place), waiting at
 * most until `deadline_ms` (0 for none). Returns 1 with line and len set,
 * 0 at EOF, -ETIMEDOUT, or -E2BIG for a line over the limit.
 */
static int next_line(struct shim *s, uint64_t deadline_ms, char **line, size_t *len)
{
	size_t scanned = 0;

	for (;;) {
		char *nl = memchr(s->buf + s->start + scanned, '\n', s->len - s->start - scanned);

		if (nl) {
			*line = s->buf + s->start;
			*len = (size_t)(nl - *line);
			*nl = '\0';
			s->start += *len + 1;
			return 1;
		}
		scanned = s->len - s->start;
		if (scanned > s->max_line)
			return -E2BIG;
		if (s->out_eof)
			return 0;
		/* Make room: first by moving what is unread to the front. */
		if (s->start && s->len == s->cap) {
			memmove(s->buf, s->buf + s->start, s->len - s->start);
			s->len -= s->start;
			s->start = 0;
		}
		if (s->len == s->cap) {
			size_t cap = s->cap * 2;
			char *b = realloc(s->buf, cap);
			if (!b)
				program_failed(s, FP_ITEM_CRASH, "out of memory reading worker "
					       "program (pid %d)'s output", (int)s->prog);
			s->buf = b;
			s->cap = cap;
		}

		struct pollfd pfd[2] = { { s->out_fd, POLLIN, 0 }, { s->sig_fd, POLLIN, 0 } };
		bool dead = s->reaped;
		int timeout = -1;

		if (deadline_ms) {
			uint64_t now = mono_ms();
			if (now >= deadline_ms)
				return -ETIMEDOUT;
			timeout = (int)(deadline_ms - now);
		}
		/*
		 * A dead program wrote all it will: what is not in the pipe now
		 * never comes, even if a child of its holds the pipe open.
		 */
		if (dead)
			timeout = 0;
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			program_failed(s, FP_ITEM_CRASH, "poll: %s", strerror(errno));
		if (pfd[1].revents)
			read_signals(s);
		if (!pfd[0].revents) {
			if (dead)
				s->out_eof = true;
			continue;
		}
		ssize_t n = read(s->out_fd, s->buf + s->len, s->cap - s->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			s->out_eof = true;
		else
			s->len += (size_t)n;
	}
}

/* Write all of iov to the program, still hearing signals meanwhile. */
static void write_program(struct shim *s, struct iovec *iov, int cnt)
{
	while (cnt) {
		ssize_t n = writev(s->in_fd, iov, cnt);

		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd[2] = { { s->in_fd, POLLOUT, 0 }, { s->sig_fd, POLLIN, 0 } };

			if (poll(pfd, 2, -1) > 0 && pfd[1].revents)
				read_signals(s);
			/* Dead, while a child of its keeps its stdin open. */
			if (s->reaped)
				program_gone(s, " (it stopped reading its input)");
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			/* EPIPE: it closed stdin or died. Its stdout says which. */
			program_gone(s, " (it stopped reading its input)");
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
}

/* --- start-up ------------------------------------------------------------ */

static int start_program(struct shim *s)
{
	int in[2], out[2], ep[2], err = 0;
	sigset_t none;
	pid_t shim = getpid();
	ssize_t n;
	char path[64];

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0)
		goto fail_errno;
	/*
	 * fork() without the atfork handlers: libuv's (epoll backend) closes
	 * the fds its signal lock pipe had in the master, which are our pipes
	 * by now, and writes a '*' into the pipe it makes in their place,
	 * which became the program's stdin. The child only execs.
	 */
	s->prog = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
	if (s->prog < 0)
		goto fail_errno;
	if (s->prog == 0) {
		/* The program dies with us; if we died already, so does it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (getppid() != shim)
			_exit(127);
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		signal(SIGPIPE, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execvp(s->x->argv[0], s->x->argv);
		err = errno;
		n = write(ep[1], &err, sizeof(err));
		(void)n;
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(ep[1]);
	s->in_fd = in[1];
	s->out_fd = out[0];
	fcntl(s->in_fd, F_SETFL, O_NONBLOCK);
	fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
	atomic_store(&s->a->shm->program_pid, (int32_t)s->prog);
	/* The exec pipe closes on a successful exec; else it carries errno. */
	do
		n = read(ep[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof(err)) {
		reap_program(s, EXIT_WAIT_MS);
		errno = err;
		goto fail_errno;
	}
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)s->prog);
	s->statm_fd = open(path, O_RDONLY | O_CLOEXEC);
	return 0;

fail_errno:
	err = errno;
	snprintf(s->a->shm->fate, sizeof(s->a->shm->fate), "cannot run %s: %s",
		 s->x->argv[0], strerror(err));
	return -err;
}

static _Noreturn void init_failed(struct shim *s)
{
	const char *msg = s->a->shm->fate;

	send_frame(s, FP_FRAME_INITFAIL, 0, 0, 0, msg, strlen(msg));
	if (s->prog > 0 && !s->reaped) {
		kill(s->prog, SIGKILL);
		reap_program(s, EXIT_WAIT_MS);
	}
	_exit(FP_WORKER_EXIT_INIT);
}

#define INIT_FAIL(s, ...) do { \
	snprintf((s)->a->shm->fate, sizeof((s)->a->shm->fate), __VA_ARGS__); \
	init_failed(s); \
} while (0)

/*
 * What is wrong with one entry of the ready line's task list, or NULL: a
 * name, or {"name":"split","generator":true,"doc":"..."} (only name needed).
 */
static const char *task_entry_fault(json_t *v, char *buf, size_t len)
{
	const char *key;
	json_t *m;

	if (json_is_string(v))
		return *json_string_value(v) ? NULL : "an empty name";
	if (!json_is_object(v))
		return "not a name or an object {\"name\":..,\"generator\":..,\"doc\":..}";
	m = json_object_get(v, "name");
	if (!json_is_string(m) || !*json_string_value(m))
		return "\"name\" must be a non-empty string";
	json_object_foreach(v, key, m) {
		if (!strcmp(key, "generator") && !json_is_boolean(m))
			return "\"generator\" must be true or false";
		if (!strcmp(key, "doc") && !json_is_string(m) && !json_is_null(m))
			return "\"doc\" must be a string";
		if (strcmp(key, "name") && strcmp(key, "generator") && strcmp(key, "doc")) {
			snprintf(buf, len, "unknown member \"%.32s\" (known: name, generator, doc)",
				 key);
			return buf;
		}
	}
	return NULL;
}

/* Wait for {"ready":{"tasks":[...]}} and tell the master. */
static void await_ready(struct shim *s)
{
	uint64_t deadline = mono_ms() + s->x->startup_timeout_ms;
	json_t *j, *ready, *tasks, *v, *names;
	char q[QUOTE_BYTES + 16], how[64], why[96], *line, *list;
	const char *fault;
	size_t len, i;
	int rc;

	rc = next_line(s, deadline, &line, &len);
	if (rc == -ETIMEDOUT)
		INIT_FAIL(s, "worker program (pid %d) did not say ready within %llu ms",
			  (int)s->prog, (unsigned long long)s->x->startup_timeout_ms);
	if (rc == -E2BIG)
		INIT_FAIL(s, "worker program (pid %d) wrote a line over %zu bytes before saying ready",
			  (int)s->prog, s->max_line);
	if (rc == 0) {
		fp__describe_status(reap_program(s, EXIT_WAIT_MS), how, sizeof(how));
		INIT_FAIL(s, "worker program (pid %d) %s before saying ready", (int)s->prog, how);
	}
	quote_line(line, len, q, sizeof(q));
	j = json_loadb(line, len, 0, NULL);
	if (!j)
		INIT_FAIL(s, "worker program (pid %d) wrote a line that is not JSON before saying "
			  "ready: %s", (int)s->prog, q);
	ready = json_object_get(j, "ready");
	tasks = json_object_get(ready, "tasks");
	if (!json_is_array(tasks))
		INIT_FAIL(s, "worker program (pid %d) said %s before saying ready "
			  "({\"ready\":{\"tasks\":[...]}})", (int)s->prog, q);
	names = json_array();
	if (!names)
		INIT_FAIL(s, "out of memory");
	json_array_foreach(tasks, i, v) {
		if ((fault = task_entry_fault(v, why, sizeof(why))))
			INIT_FAIL(s, "worker program (pid %d) announced a bad task: entry %zu of "
				  "\"tasks\": %s", (int)s->prog, i, fault);
		json_array_append(names, json_is_string(v) ? v : json_object_get(v, "name"));
	}
	/* The names, for announced(); the whole list, docs and all, for the master. */
	s->tasks = names;
	s->tasks_json = json_dumps(names, JSON_COMPACT);
	list = json_dumps(tasks, JSON_COMPACT);
	json_decref(j);
	if (!s->tasks_json || !list)
		INIT_FAIL(s, "out of memory");
	s->a->shm->fate[0] = '\0';
	send_frame(s, FP_FRAME_READY, 0, 0, (uint32_t)fp__rss_kib(s->statm_fd), list, strlen(list));
	free(list);
}

/* --- one task ------------------------------------------------------------ */

static bool announced(struct shim *s, const char *task)
{
	size_t i;
	json_t *v;

	json_array_foreach(s->tasks, i, v)
		if (!strcmp(json_string_value(v), task))
			return true;
	return false;
}

static void gen_add(struct shim *s, const char *p, size_t len)
{
	size_t need = s->gen_len + len + 2;

	if (need > s->gen_cap) {
		size_t cap = s->gen_cap ? s->gen_cap : 4096;
		while (cap < need)
			cap *= 2;
		char *g = realloc(s->gen, cap);
		if (!g)
			program_failed(s, FP_ITEM_CRASH, "out of memory gathering the outputs of "
				       "worker program (pid %d)", (int)s->prog);
		s->gen = g;
		s->gen_cap = cap;
	}
	s->gen[s->gen_len++] = s->gen_count++ ? ',' : '[';
	memcpy(s->gen + s->gen_len, p, len);
	s->gen_len += len;
}

/*
 * Send the answer to one task, marked RETIRE when this worker leaves after
 * it: its task budget is spent, or the program's RSS is over the limit.
 */
static bool answer(struct shim *s, enum fp_frame_type type, uint64_t id, uint32_t flags,
		   bool retire, const char *payload, size_t len)
{
	size_t rss_kib = fp__rss_kib(s->statm_fd);

	/*
	 * The item was given up on (cancel.h) and its program stopped in the
	 * grace: its answer is not the item's. We go without it, the page still
	 * naming the item, so the master ends it as it meant (timeout, cancelled).
	 */
	if (atomic_load_explicit(&s->a->shm->cancel, memory_order_acquire) == id)
		shim_exit(s, FP_WORKER_EXIT_OK);
	if (s->a->max_rss_bytes && rss_kib * 1024 > s->a->max_rss_bytes)
		retire = true;
	send_frame(s, type, id, flags | (retire ? FP_FRAME_RETIRE : 0), (uint32_t)rss_kib,
		   payload, len);
	return retire;
}

/*
 * An ERROR frame's payload from an error line: the message (a string's
 * text, else the JSON), then, when the line has a string "traceback", a NUL
 * and the traceback (frame.h). A message cut at its first NUL keeps the
 * frame's two parts apart. A frame over max_payload would be a protocol
 * error, so only the traceback's tail is kept then: its last lines are the
 * innermost calls and the exception.
 */
static char *error_payload(json_t *err, json_t *tb, size_t max, size_t *len)
{
	const char *t;
	char *msg, *out;
	size_t mlen, tlen;

	msg = json_is_string(err) ? strdup(json_string_value(err))
				  : json_dumps(err, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!msg)
		return NULL;
	mlen = strlen(msg);
	if (!json_is_string(tb) || !json_string_length(tb) || mlen + 2 > max) {
		*len = mlen;
		return msg;
	}
	t = json_string_value(tb);
	tlen = strnlen(t, json_string_length(tb));
	if (mlen + 1 + tlen > max) {
		t += tlen - (max - mlen - 1);
		tlen = max - mlen - 1;
	}
	out = realloc(msg, mlen + 1 + tlen + 1);
	if (!out) {
		free(msg);
		return NULL;
	}
	memcpy(out + mlen + 1, t, tlen);
	out[mlen + 1 + tlen] = '\0';
	*len = mlen + 1 + tlen;
	return out;
}

/*
 * Relay the program's answer to task `id`; true when the worker retires.
 * For a pipeline stage (`stream`, the TASK's FP_FRAME_STREAM) each emit
 * goes out as an EMIT frame at once and the end as a NOVALUE RESULT, as
 * frame.h asks of whatever speaks for a worker; otherwise the emits are
 * gathered into the one JSON array that is the item's value.
 */
static bool relay_answer(struct shim *s, uint64_t id, const char *task, bool retire,
			 bool stream)
{
	bool out;
	char q[QUOTE_BYTES + 16], *line, *text;
	json_t *j, *jid, *v;
	size_t len;
	int rc;

	s->gen_len = 0;
	s->gen_count = 0;
	for (;;) {
		rc = next_line(s, 0, &line, &len);
		if (rc == 0)
			program_gone(s, "");
		if (rc == -E2BIG)
			program_failed(s, FP_ITEM_TOO_LARGE, "worker program (pid %d) wrote a line "
				       "over the %zu-byte limit", (int)s->prog, s->max_line);
		quote_line(line, len, q, sizeof(q));
		j = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
		if (!j || !json_is_object(j))
			program_failed(s, FP_ITEM_BAD_OUTPUT, "worker program (pid %d) wrote a "
				       "line that is not %s: %s", (int)s->prog,
				       j ? "a JSON object" : "JSON", q);
		jid = json_object_get(j, "id");
		if (!json_is_integer(jid) || (uint64_t)json_integer_value(jid) != id)
			program_failed(s, FP_ITEM_BAD_OUTPUT, "worker program (pid %d) answered "
				       "with the wrong id (task %s has id %llu): %s", (int)s->prog,
				       task, (unsigned long long)id, q);
		if (json_object_get(j, "call")) {
			/* A call during the task: answer it on stdin, then read on. */
			json_t *ans = fp__exec_call(&s->kv, s->a->shm, id, j);
			struct iovec iov[2];

			text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
			json_decref(ans);
			if (!text)
				program_failed(s, FP_ITEM_CRASH, "out of memory");
			iov[0] = (struct iovec){ text, strlen(text) };
			iov[1] = (struct iovec){ "\n", 1 };
			write_program(s, iov, 2);
			free(text);
			json_decref(j);
			continue;
		}
		if ((v = json_object_get(j, "value"))) {
			text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			if (!text)
				program_failed(s, FP_ITEM_CRASH, "out of memory");
			if (strlen(text) > s->a->max_payload) {
				char msg[128];
				int n = snprintf(msg, sizeof(msg), "result of %zu bytes is over the "
						 "%zu-byte limit", strlen(text), s->a->max_payload);
				out = answer(s, FP_FRAME_ERROR, id, FP_ITEM_TOO_LARGE, retire,
					     msg, (size_t)n);
			} else {
				out = answer(s, FP_FRAME_RESULT, id, 0, retire, text, strlen(text));
			}
			free(text);
		} else if ((v = json_object_get(j, "error"))) {
			text = error_payload(v, json_object_get(j, "traceback"),
					     s->a->max_payload, &len);
			if (!text)
				program_failed(s, FP_ITEM_CRASH, "out of memory");
			out = answer(s, FP_FRAME_ERROR, id, FP_ITEM_TASK_ERROR, retire, text, len);
			free(text);
		} else if ((v = json_object_get(j, "emit"))) {
			text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			if (!text)
				program_failed(s, FP_ITEM_CRASH, "out of memory");
			if (stream && strlen(text) > s->a->max_payload)
				program_failed(s, FP_ITEM_TOO_LARGE, "worker program (pid %d): an "
					       "output of task %s is over the %zu-byte limit",
					       (int)s->prog, task, s->a->max_payload);
			if (!stream && s->gen_len + strlen(text) + 2 > s->a->max_payload)
				program_failed(s, FP_ITEM_TOO_LARGE, "worker program (pid %d): the "
					       "outputs of task %s are over the %zu-byte limit",
					       (int)s->prog, task, s->a->max_payload);
			/* May block while the master does not read us: back-pressure. */
			if (stream)
				send_frame(s, FP_FRAME_EMIT, id, 0, 0, text, strlen(text));
			else
				gen_add(s, text, strlen(text));
			free(text);
			json_decref(j);
			continue;
		} else if (json_is_true(json_object_get(j, "end"))) {
			if (stream) {
				out = answer(s, FP_FRAME_RESULT, id, FP_FRAME_NOVALUE, retire, "", 0);
			} else {
				if (!s->gen_count)
					gen_add(s, "", 0);
				s->gen[s->gen_len++] = ']';
				out = answer(s, FP_FRAME_RESULT, id, 0, retire, s->gen, s->gen_len);
			}
		} else {
			program_failed(s, FP_ITEM_BAD_OUTPUT, "worker program (pid %d) wrote a line "
				       "with none of value, error, emit, end: %s", (int)s->prog, q);
		}
		json_decref(j);
		return out;
	}
}

/* One TASK frame: write its line, relay its answer. Returns true when retiring. */
static void run_task(struct shim *s, const struct fp_frame_header *h, char *payload,
		     uint64_t done)
{
	struct fp_worker_shm *shm = s->a->shm;
	size_t name_len = strnlen(payload, h->len);
	const char *task = payload;
	char head[192], msg[256];
	struct iovec iov[3];
	char *args, *p;
	size_t args_len;
	json_t *jname;
	char *qname;
	bool retire;
	int n;

	if (name_len == h->len) {
		n = snprintf(msg, sizeof(msg), "task frame without a name");
		send_frame(s, FP_FRAME_ERROR, h->id, FP_ITEM_TASK_ERROR, 0, msg, (size_t)n);
		return;
	}
	/* The master sends "NAME.task"; the program knows "task". */
	if (name_len > s->x->name_len && !memcmp(task, s->x->name, s->x->name_len) &&
	    task[s->x->name_len] == '.')
		task += s->x->name_len + 1;
	args = payload + name_len + 1;
	args_len = h->len - name_len - 1;
	retire = (s->a->task_limit && done + 1 >= s->a->task_limit);

	if (!announced(s, task)) {
		n = snprintf(msg, sizeof(msg), "unknown task '%s.%s': the program announced %s",
			     s->x->name, task, s->tasks_json);
		if (n >= (int)sizeof(msg))
			n = sizeof(msg) - 1;
		send_frame(s, FP_FRAME_ERROR, h->id, FP_ITEM_UNKNOWN_TASK |
			   (retire ? FP_FRAME_RETIRE : 0), 0, msg, (size_t)n);
		if (retire)
			shim_exit(s, FP_WORKER_EXIT_OK);
		return;
	}
	/*
	 * JSON text may hold line breaks only as blanks between tokens
	 * (strings cannot hold raw control bytes), so making them spaces
	 * keeps the value and makes it one line.
	 */
	for (p = args; (p = memchr(p, '\n', (size_t)(args + args_len - p))); p++)
		*p = ' ';
	for (p = args; (p = memchr(p, '\r', (size_t)(args + args_len - p))); p++)
		*p = ' ';
	jname = json_string(task);
	qname = jname ? json_dumps(jname, JSON_ENCODE_ANY) : NULL;
	json_decref(jname);
	if (!qname)
		program_failed(s, FP_ITEM_CRASH, "out of memory");
	n = snprintf(head, sizeof(head), "{\"id\":%llu,\"task\":%s,\"args\":",
		     (unsigned long long)h->id, qname);
	free(qname);
	iov[0] = (struct iovec){ head, (size_t)n };
	iov[1] = (struct iovec){ args, args_len ? args_len : 4 };
	if (!args_len)
		iov[1].iov_base = "null";
	iov[2] = (struct iovec){ "}\n", 2 };

	atomic_store_explicit(&shm->started_ns, mono_ns(), memory_order_relaxed);
	atomic_store_explicit(&shm->current, h->id, memory_order_release);
	write_program(s, iov, 3);
	retire = relay_answer(s, h->id, task, retire, h->flags & FP_FRAME_STREAM);
	/* No lock outlives the task that took it. */
	fp__worker_kv_task_end(&s->kv);
	atomic_store_explicit(&shm->current, 0, memory_order_release);
	if (retire)
		shim_exit(s, FP_WORKER_EXIT_OK);
}

/* --- the worker ---------------------------------------------------------- */

/*
 * Idle: wait for the master's next frames, watching the program too. A
 * program that writes while it has no task, or ends, fails here, between
 * tasks, so no item is blamed.
 */
static void wait_for_master(struct shim *s, struct fp_frame_reader *reader, char *rbuf,
			    size_t rlen)
{
	if (s->start == s->len)
		s->start = s->len = 0;
	for (;;) {
		struct pollfd pfd[3] = {
			{ s->a->fd, POLLIN, 0 }, { s->out_fd, POLLIN, 0 }, { s->sig_fd, POLLIN, 0 },
		};
		char q[QUOTE_BYTES + 16], *line;
		size_t len;
		ssize_t n;

		if (s->start < s->len || s->out_eof || s->reaped) {
			/* Alive: only what is buffered. Dead: all it wrote, then EOF. */
			if (next_line(s, s->reaped ? 0 : 1, &line, &len) == 1) {
				quote_line(line, len, q, sizeof(q));
				program_failed(s, FP_ITEM_BAD_OUTPUT, "worker program (pid %d) wrote "
					       "a line while it had no task: %s", (int)s->prog, q);
			}
			if (s->out_eof || s->reaped)
				program_gone(s, " while it had no task");
		}
		if (poll(pfd, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(FP_WORKER_EXIT_PROTOCOL);
		}
		if (pfd[2].revents)
			read_signals(s);
		if (pfd[1].revents) {
			/* Read it into the line buffer; the check above judges it. */
			if (s->len == s->cap) {
				quote_line(s->buf + s->start, s->len - s->start, q, sizeof(q));
				program_failed(s, FP_ITEM_BAD_OUTPUT, "worker program (pid %d) wrote "
					       "while it had no task: %s", (int)s->prog, q);
			}
			n = read(s->out_fd, s->buf + s->len, s->cap - s->len);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				s->out_eof = true;
			else if (n > 0)
				s->len += (size_t)n;
			continue;
		}
		if (!pfd[0].revents)
			continue;
		n = read(s->a->fd, rbuf, rlen);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			shim_exit(s, FP_WORKER_EXIT_OK);
		if (fp_frame_reader_feed(reader, rbuf, (size_t)n) < 0)
			program_failed(s, FP_ITEM_CRASH, "out of memory reading a task");
		return;
	}
}

_Noreturn void fp_exec_worker_main(const struct fp_worker_args *a)
{
	struct shim s = {
		.a = a, .x = a->exec, .prog = -1, .in_fd = -1, .out_fd = -1, .statm_fd = -1,
	};
	struct fp_frame_reader reader;
	struct fp_frame_header h;
	const char *payload;
	static char rbuf[64 * 1024];
	sigset_t set;
	uint64_t done = 0;
	int rc;

	/* Signals for us come through a signalfd, in the same poll() as the pipes. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	s.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN);
	s.max_line = a->max_payload + LINE_SLACK;
	s.cap = 64 * 1024;
	s.buf = malloc(s.cap);
	if (s.sig_fd < 0 || !s.buf) {
		snprintf(a->shm->fate, sizeof(a->shm->fate), "cannot set up the worker: %s",
			 strerror(errno));
		init_failed(&s);
	}
	fp_frame_reader_init(&reader, a->max_payload + 256);
	fp__worker_kv_init(&s.kv, a->fd, &reader);
	/*
	 * Our own process group, for the program and what it starts (see the
	 * top). The child's set-up made it (pool/child.c: the master's group,
	 * a terminal's Ctrl-C or a service manager's kill of the daemon's
	 * group, no longer reaches us or the program: the master stops them,
	 * in order); asking again confirms there is one to signal.
	 */
	if (setpgid(0, 0) == 0)
		s.pgid = getpid();

	if (start_program(&s) < 0)
		init_failed(&s);
	await_ready(&s);

	for (;;) {
		while ((rc = fp_frame_reader_next(&reader, &h, &payload)) == 1) {
			if (atomic_load_explicit(&a->shm->quit, memory_order_acquire))
				shim_exit(&s, FP_WORKER_EXIT_OK);
			if (h.type != FP_FRAME_TASK)
				_exit(FP_WORKER_EXIT_PROTOCOL);
			/* The payload is ours until the next call: run_task edits it. */
			run_task(&s, &h, (char *)payload, done++);
		}
		if (rc < 0)
			_exit(FP_WORKER_EXIT_PROTOCOL);
		/* What a call read past its answer comes before the socket. */
		rc = fp__worker_kv_take(&s.kv);
		if (rc < 0)
			program_failed(&s, FP_ITEM_CRASH, "out of memory reading a task");
		if (rc)
			continue;
		wait_for_master(&s, &reader, rbuf, sizeof(rbuf));
	}
}
