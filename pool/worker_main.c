/*
 * The worker side: read TASK frames, run each task, answer with one RESULT or
 * ERROR frame per item. Plain blocking I/O: a worker does one thing at a time.
 *
 * Results of quick tasks are gathered and sent together (one send, their
 * RESULTs packed into one RESULTS frame: see send_frames()), at the latest
 * when a chunk ends (FP_FRAME_FLUSH: the master may have sent the next chunk
 * already); a slow task's result goes out at once.
 * The master learns which item
 * is running from the shared page, so gathering never blurs which item a
 * crash belongs to.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cancel.h"
#include "frame_reader.h"
#include "worker_kv.h"
#include "worker_main.h"

/* Send gathered results when this much is waiting... */
#define OUT_FLUSH_BYTES (64u * 1024)
/* ...or the oldest has waited this long... */
#define OUT_FLUSH_AGE_NS (1000u * 1000)
/* ...or the task that produced one took longer than this. */
#define QUICK_TASK_NS (50u * 1000)
/* Quick items timed together by one clock read, at most (see struct clock_run). */
#define RUN_MAX 8

struct out_buf {
	char *data;
	size_t len, cap;
	uint64_t oldest_ns;     /* when the first unsent frame was added */
	char *packed;           /* what goes out instead: RESULTs packed (send_frames) */
	size_t packed_cap;
	size_t pack_max;        /* a RESULTS frame's payload at most: the master's limit */
};

/*
 * Items timed together. A precise clock read costs about as much as a
 * trivial task in a VM (kvm-clock: 50-100 ns), so quick items are timed in
 * runs: one precise read when a run ends, each item of it given the run's
 * average as its run time. A run ends after RUN_MAX items, at a chunk's end,
 * and as soon as the coarse clock (a few ns to read) ticks: so no run spans
 * more than one tick, and an item that starts a tick or more after the run
 * began ends it. The shared page's started_ns is the run's start: at most
 * one tick (started_slack_ns) before the item's own start, and never after
 * it; the master adds that slack to a timeout, so none fires early.
 */
struct clock_run {
	uint64_t start_ns;      /* precise: when its first item started */
	uint64_t coarse_ns;     /* the coarse clock then */
	size_t at[RUN_MAX];     /* its items' end frames in out */
	unsigned n;
};

struct task_ctx {
	fp_task_ctx base;               /* first: the task sees only this */
	const struct fp_worker_args *args;
	const char *name;               /* the task's */
	struct out_buf *out;
	size_t frame_at;                /* where this item's end frame starts in out */
	int answered;                   /* 0, FP_FRAME_RESULT or FP_FRAME_ERROR */
	fp_item_status status;
	int oom;
	int stream;                     /* outputs go out as EMIT frames (pipeline) */
	uint64_t id;                    /* the item's frame id */
	int returned;                   /* fp_task_return() was called */
	int both;                       /* ... and fp_emit() too: an error */
	size_t emitted;                 /* outputs emitted */
	unsigned hop;                   /* its place in the item's chain (frame.h) */
	struct clock_run *run;          /* the items before it, not yet timed */
	struct fp_worker_kv *kv;        /* its shared-value calls (worker_kv.h) */
	struct fp_task_cancel *cancel;  /* fp_cancelled() (cancel.h) */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void set_run_time(struct out_buf *out, size_t frame_at, uint64_t ns);
static void send_frames(int fd, struct out_buf *o, size_t len);

/* A new run starting at `now` (precise). */
static void run_start(struct clock_run *r, uint64_t now)
{
	r->start_ns = now;
	r->coarse_ns = coarse_ns();
	r->n = 0;
}

/*
 * Time the run's items: `now` minus its start, shared among them. `extra`
 * more items (started, not finished) count for a share each.
 */
static void run_stamp(struct clock_run *r, struct out_buf *out, uint64_t now, unsigned extra)
{
	uint64_t each = r->n + extra ? (now - r->start_ns) / (r->n + extra) : 0;

	for (unsigned i = 0; i < r->n; i++)
		set_run_time(out, r->at[i], each);
	r->start_ns += each * r->n;
	r->n = 0;
}

static int out_reserve(struct out_buf *o, size_t extra)
{
	size_t cap;
	char *p;

	if (o->len + extra <= o->cap)
		return 0;
	cap = o->cap ? o->cap : OUT_FLUSH_BYTES * 2;
	while (cap < o->len + extra)
		cap *= 2;
	p = realloc(o->data, cap);
	if (!p)
		return -ENOMEM;
	o->data = p;
	o->cap = cap;
	return 0;
}

/* Replace this item's payload (a task may answer more than once: last wins). */
static int ctx_set(struct task_ctx *c, int type, fp_item_status status,
		   const char *bytes, size_t len)
{
	struct out_buf *o = c->out;

	o->len = c->frame_at + FP_FRAME_HEADER_SIZE;
	if (out_reserve(o, len)) {
		c->oom = 1;
		return -ENOMEM;
	}
	memcpy(o->data + o->len, bytes, len);
	o->len += len;
	c->answered = type;
	c->status = status;
	return 0;
}

static int ctx_error_fmt(struct task_ctx *c, fp_item_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int ctx_error_fmt(struct task_ctx *c, fp_item_status status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	return ctx_set(c, FP_FRAME_ERROR, status, msg, (size_t)n);
}

static int host_return(fp_task_ctx *ctx, const char *json, size_t len)
{
	struct task_ctx *c = (struct task_ctx *)ctx;

	if (c->emitted) {
		/* Told once the task is over, in run_task(), naming both. */
		c->both = 1;
		return -EINVAL;
	}
	c->returned = 1;
	if (len > c->args->max_payload)
		return ctx_error_fmt(c, FP_ITEM_TOO_LARGE,
				     "result of %zu bytes is over the %zu-byte limit",
				     len, c->args->max_payload);
	return ctx_set(c, FP_FRAME_RESULT, FP_ITEM_OK, json, len);
}

static int host_error(fp_task_ctx *ctx, const char *msg)
{
	struct task_ctx *c = (struct task_ctx *)ctx;
	size_t len = msg ? strlen(msg) : 0;

	if (len > 64 * 1024)
		len = 64 * 1024;
	return ctx_set(c, FP_FRAME_ERROR, FP_ITEM_TASK_ERROR, msg ? msg : "", len);
}

static int host_worker_slot(fp_task_ctx *ctx)
{
	return (int)((struct task_ctx *)ctx)->args->slot;
}

void fp__worker_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* The master is gone or broke the socket: nothing to answer to. */
			_exit(FP_WORKER_EXIT_OK);
		}
		p += n;
		len -= (size_t)n;
	}
}

static int check_json(struct task_ctx *c, const char *what, const char *p, size_t len);

/*
 * In a pipeline: the frames before this item's end frame are complete, so
 * they can go now. The send blocks while the master is not reading (the
 * stage after this one is full): that is where back-pressure stops a task
 * that emits a lot, and why a worker's memory stays bounded.
 */
static void stream_flush(struct task_ctx *c)
{
	struct out_buf *o = c->out;

	/*
	 * Items of the run before this one go out now: time them, the one
	 * running counting for a share so far.
	 */
	if (c->run->n)
		run_stamp(c->run, o, mono_ns(), 1);
	send_frames(c->args->fd, o, c->frame_at);
	o->len = FP_FRAME_HEADER_SIZE;
	c->frame_at = 0;
}

static int host_emit(fp_task_ctx *ctx, const char *json, size_t len)
{
	struct task_ctx *c = (struct task_ctx *)ctx;
	struct out_buf *o = c->out;
	struct fp_frame_header h;
	size_t body = o->len - c->frame_at - FP_FRAME_HEADER_SIZE;
	uint64_t now;
	char what[96];

	if (c->answered == FP_FRAME_ERROR || c->oom)
		return -ECANCELED;
	if (c->returned) {
		c->both = 1;
		return -EINVAL;
	}
	if (len > c->args->max_payload ||
	    (!c->stream && body + len + 2 > c->args->max_payload)) {
		ctx_error_fmt(c, FP_ITEM_TOO_LARGE,
			      c->stream ? "output #%zu of %zu bytes is over the %zu-byte limit"
				        : "outputs up to #%zu (%zu bytes more) are over the %zu-byte limit",
			      c->emitted + 1, len, c->args->max_payload);
		return -EMSGSIZE;
	}
	snprintf(what, sizeof(what), "%s (output #%zu)", c->name, c->emitted + 1);
	if (check_json(c, what, json, len) < 0 || c->answered == FP_FRAME_ERROR)
		return -EINVAL;
	if (out_reserve(o, len + 2 + (c->stream ? FP_FRAME_HEADER_SIZE : 0))) {
		c->oom = 1;
		return -ENOMEM;
	}
	if (!c->stream) {
		/* Gathered into one array: the item's value in map and apply. */
		o->data[o->len++] = c->emitted ? ',' : '[';
		memcpy(o->data + o->len, json, len);
		o->len += len;
		c->emitted++;
		return 0;
	}
	/* The slot reserved for the end frame becomes this EMIT; reserve anew. */
	fp_frame_header_init(&h, FP_FRAME_EMIT, c->id, (uint32_t)len, 0);
	h.hop = (uint8_t)c->hop;
	memcpy(o->data + c->frame_at, &h, sizeof(h));
	memcpy(o->data + o->len, json, len);
	o->len += len;
	if (c->frame_at == 0)
		o->oldest_ns = mono_ns();
	c->frame_at = o->len;
	o->len += FP_FRAME_HEADER_SIZE;
	c->emitted++;
	now = mono_ns();
	if (c->frame_at >= OUT_FLUSH_BYTES || now - o->oldest_ns > OUT_FLUSH_AGE_NS)
		stream_flush(c);
	return 0;
}

static int host_kv_get(fp_task_ctx *ctx, const char *key, const char **json, size_t *len)
{
	return fp__worker_kv_get(((struct task_ctx *)ctx)->kv, key, json, len);
}

static int host_kv_set(fp_task_ctx *ctx, const char *key, const char *json, size_t len,
		       uint64_t ttl_ms)
{
	return fp__worker_kv_set(((struct task_ctx *)ctx)->kv, key, json, len, ttl_ms);
}

static int host_kv_del(fp_task_ctx *ctx, const char *key)
{
	return fp__worker_kv_del(((struct task_ctx *)ctx)->kv, key);
}

static int host_kv_incr(fp_task_ctx *ctx, const char *key, int64_t by, int64_t *out)
{
	return fp__worker_kv_incr(((struct task_ctx *)ctx)->kv, key, by, out);
}

static int host_kv_cas(fp_task_ctx *ctx, const char *key, const char *expect, size_t expect_len,
		       const char *json, size_t len, uint64_t ttl_ms)
{
	return fp__worker_kv_cas(((struct task_ctx *)ctx)->kv, key, expect, expect_len, json,
				 len, ttl_ms);
}

static int host_cancelled(fp_task_ctx *ctx)
{
	struct task_ctx *c = (struct task_ctx *)ctx;

	return fp__task_cancelled(c->cancel, c->args->shm, c->id);
}

static int host_lock(fp_task_ctx *ctx, const char *name, uint64_t timeout_ms)
{
	return fp__worker_lock(((struct task_ctx *)ctx)->kv, name, timeout_ms, NULL);
}

static int host_unlock(fp_task_ctx *ctx, const char *name)
{
	return fp__worker_unlock(((struct task_ctx *)ctx)->kv, name, NULL);
}

static const struct fp_task_host worker_host = {
	.abi_version = FP_TASK_ABI_VERSION,
	.ret = host_return,
	.error = host_error,
	.worker_slot = host_worker_slot,
	.emit = host_emit,
	.kv_get = host_kv_get,
	.kv_set = host_kv_set,
	.kv_del = host_kv_del,
	.kv_incr = host_kv_incr,
	.kv_cas = host_kv_cas,
	.kv_errmsg = fp_kv_strerror,
	.cancelled = host_cancelled,
	.lock = host_lock,
	.unlock = host_unlock,
};

/* The frame at `at`'s header. */
static struct fp_frame_header header_at(const struct out_buf *o, size_t at)
{
	struct fp_frame_header h;

	memcpy(&h, o->data + at, sizeof(h));
	return h;
}

/*
 * Send out's first `len` bytes of frames, consecutive RESULTs (two or more,
 * of consecutive ids) packed into one RESULTS frame: the master then checks
 * and dispatches one header for them all. A packed run is never longer than
 * its frames were.
 */
static void send_frames(int fd, struct out_buf *o, size_t len)
{
	char *dst;
	size_t at = 0;

	if (len > o->packed_cap) {
		char *b = realloc(o->packed, len);
		if (!b) {
			/* Unpacked is as right, only slower for the master. */
			fp__worker_send_all(fd, o->data, len);
			return;
		}
		o->packed = b;
		o->packed_cap = len;
	}
	dst = o->packed;
	while (at < len) {
		struct fp_frame_header h = header_at(o, at), e;
		size_t end = at, values = 0;
		uint32_t n = 0, rss = 0;

		/* Ids count up inside a pack: the next chunk's do not follow on. */
		while (end < len && (e = header_at(o, end)).type == FP_FRAME_RESULT &&
		       e.id == h.id + n && e.hop == h.hop &&
		       fp_frame_results_len(n + 1, values + e.len) <= o->pack_max) {
			n++;
			values += e.len;
			rss = e.rss_kib ? e.rss_kib : rss;
			end += FP_FRAME_HEADER_SIZE + e.len;
		}
		if (n < 2) {
			memcpy(dst, o->data + at, FP_FRAME_HEADER_SIZE + h.len);
			dst += FP_FRAME_HEADER_SIZE + h.len;
			at += FP_FRAME_HEADER_SIZE + h.len;
			continue;
		}
		dst = fp_frame_put_results(dst, h.id, n,
					   (uint32_t)fp_frame_results_len(n, values), rss, h.hop);
		for (; at < end; at += FP_FRAME_HEADER_SIZE + e.len) {
			e = header_at(o, at);
			dst = fp_frame_put_results_item(dst, e.flags,
							o->data + at + FP_FRAME_HEADER_SIZE, e.len);
		}
	}
	fp__worker_send_all(fd, o->packed, (size_t)(dst - o->packed));
}

static void out_flush(int fd, struct out_buf *o)
{
	if (o->len)
		send_frames(fd, o, o->len);
	o->len = 0;
}

size_t fp__rss_kib(int statm_fd)
{
	char buf[128];
	unsigned long size, resident;
	ssize_t n;

	if (statm_fd < 0)
		return 0;
	n = pread(statm_fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
		return 0;
	return resident * ((size_t)sysconf(_SC_PAGESIZE) / 1024);
}

/*
 * Check the value is JSON: the master and the HTTP API pass it on as it is,
 * so text that is not JSON has to be caught here, in the worker, where the
 * cost is spread over every core.
 */
static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Whether p is, give or take whitespace, a JSON number, true, false, null,
 * or a string of printable ASCII without escapes: the values quick tasks
 * mostly return, checked here without building a jansson tree (most of a
 * trivial task's cost). 0 says nothing: jansson decides.
 */
static int json_plain_scalar(const char *p, size_t len)
{
	const char *s = p, *end = p + len;

	/*
	 * The answer quick tasks give most, an integer with no sign and no
	 * space, in one tight loop: the general walk below cost a trivial
	 * map's worker about 125 instructions an answer, a tenth of its time.
	 */
	if (s < end && *s >= '1' && *s <= '9') {
		while (++s < end && (unsigned char)(*s - '0') < 10)
			;
		if (s == end)
			return 1;
		s = p;
	}
	while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' ||
			   end[-1] == '\r'))
		end--;
	if (s == end)
		return 0;
	if (*s == '"') {
		for (s++; s < end - 1; s++)
			if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f ||
			    *s == '"' || *s == '\\')
				return 0;
		return s == end - 1 && *s == '"';
	}
	if ((size_t)(end - s) == 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "null", 4) == 0))
		return 1;
	if ((size_t)(end - s) == 5 && memcmp(s, "false", 5) == 0)
		return 1;
	/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
	if (*s == '-')
		s++;
	if (s < end && *s == '0')
		s++;
	else if (s < end && is_digit(*s))
		while (s < end && is_digit(*s))
			s++;
	else
		return 0;
	if (s < end && *s == '.') {
		if (++s == end || !is_digit(*s))
			return 0;
		while (s < end && is_digit(*s))
			s++;
	}
	if (s < end && (*s == 'e' || *s == 'E')) {
		s++;
		if (s < end && (*s == '+' || *s == '-'))
			s++;
		if (s == end || !is_digit(*s))
			return 0;
		while (s < end && is_digit(*s))
			s++;
	}
	return s == end;
}

static int check_json(struct task_ctx *c, const char *what, const char *p, size_t len)
{
	json_error_t err;
	json_t *j;

	if (json_plain_scalar(p, len))
		return 0;
	j = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

	if (j) {
		json_decref(j);
		return 0;
	}
	return ctx_error_fmt(c, FP_ITEM_BAD_OUTPUT,
			     "task %s returned invalid JSON at byte %d: %s",
			     what, err.position, err.text);
}

/*
 * A chain's next task starts: like an item, it begins a new clock run if
 * the coarse clock ticked since the run began, so that the shared page's
 * start is never more than a tick before the task's own and a chain of
 * tasks each within its timeout is never timed out as a whole.
 */
static void chain_hop_clock(struct clock_run *r, struct out_buf *out, struct fp_worker_shm *shm)
{
	uint64_t now;

	if (coarse_ns() == r->coarse_ns)
		return;
	now = mono_ns();
	/* The run's items before this one are timed; this one's time goes on. */
	run_stamp(r, out, now, 1);
	r->coarse_ns = coarse_ns();
	atomic_store_explicit(&shm->started_ns, now, memory_order_relaxed);
}

/*
 * What one task left in the item's end frame once it returned `rc`: its
 * value, an error, or (a generator, or in a pipeline a task that emitted)
 * NOVALUE. Returns the end frame's flags.
 */
static uint32_t task_answer(struct task_ctx *c, const struct fp_registry_task *t, int rc)
{
	struct out_buf *out = c->out;

	if (c->oom) {
		/* The answer could not be stored; say so in a small frame. */
		c->oom = 0;
		out->len = c->frame_at + FP_FRAME_HEADER_SIZE;
		ctx_error_fmt(c, FP_ITEM_TOO_LARGE, "task %s: out of memory storing its result",
			      c->name);
	} else if (c->answered == FP_FRAME_ERROR) {
		/* Its own error, or an emit that failed: already in place. */
	} else if (c->both) {
		ctx_error_fmt(c, FP_ITEM_TASK_ERROR,
			      "task %s both returned a value and emitted %zu output%s; "
			      "a task answers with one or the other", c->name, c->emitted,
			      c->emitted == 1 ? "" : "s");
	} else if (rc < 0) {
		ctx_error_fmt(c, FP_ITEM_TASK_ERROR, "task %s failed: %s", c->name,
			      strerror(-rc));
	} else if (c->emitted || (!c->answered && t->generator)) {
		if (c->stream) {
			out->len = c->frame_at + FP_FRAME_HEADER_SIZE;
			c->answered = FP_FRAME_RESULT;
			return FP_FRAME_NOVALUE;
		} else if (c->emitted) {
			out->data[out->len++] = ']';   /* reserved by the last emit */
			c->answered = FP_FRAME_RESULT;
		} else {
			ctx_set(c, FP_FRAME_RESULT, FP_ITEM_OK, "[]", 2);
		}
	} else if (!c->answered) {
		ctx_set(c, FP_FRAME_RESULT, FP_ITEM_OK, "null", 4);
	} else {
		check_json(c, c->name, out->data + c->frame_at + FP_FRAME_HEADER_SIZE,
			   out->len - c->frame_at - FP_FRAME_HEADER_SIZE);
	}
	return c->answered == FP_FRAME_ERROR ? (uint32_t)c->status : 0;
}

/* A chain's value between two of its tasks: the next one's args, NUL-terminated. */
struct hop_buf {
	char *data;
	size_t cap;
};

/*
 * The tasks an item runs: one, or a chain's (frame.h), by name and as
 * looked up (NULL: no such task). A TASKS frame's are looked up once for
 * all its items: `seq` is the reader's pack_seq they are of.
 */
struct item_tasks {
	uint64_t seq;
	unsigned n;
	const char *name[FP_FRAME_HOPS_MAX + 1];
	const struct fp_registry_task *task[FP_FRAME_HOPS_MAX + 1];
};

/* Look up the n names at `names` (one after the other, NUL-separated). */
static void tasks_resolve(struct item_tasks *it, const struct fp_registry *reg,
			  const char *names, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		const struct fp_registry_task *t = it->task[k];

		/* Mostly the same task as the last frame's at this place. */
		if (!t || strcmp(t->name, names) != 0)
			t = fp_registry_find(reg, names);
		it->task[k] = t;
		it->name[k] = names;
		names += strlen(names) + 1;
	}
	it->n = n;
}

/*
 * Run one item, appending its answer to `out` (and, in a pipeline, its
 * outputs; some of them may have been sent already). A chain's tasks run in
 * turn on it, each on the value the one before returned, until the last,
 * or one that fails or emits (its frames then say which it was). Returns
 * where its end frame starts in `out`.
 */
static size_t run_task(const struct fp_worker_args *a, struct out_buf *out,
		       const struct fp_frame_header *h, const struct item_tasks *it,
		       const char *args, size_t args_len, struct clock_run *run,
		       struct hop_buf *hb, struct fp_worker_kv *kv, struct fp_task_cancel *tc)
{
	struct task_ctx c = {
		.base.host = &worker_host, .args = a, .out = out,
		.stream = (h->flags & FP_FRAME_STREAM) != 0, .id = h->id, .run = run, .kv = kv,
		.cancel = tc,
	};
	const struct fp_registry_task *t;
	struct fp_frame_header rh;
	size_t len;
	uint32_t flags = 0;
	unsigned hop = 0;
	int rc;

	c.frame_at = out->len;
	if (out_reserve(out, FP_FRAME_HEADER_SIZE)) {
		/* Nothing sensible left to do without memory: die as a crash. */
		abort();
	}
	out->len += FP_FRAME_HEADER_SIZE;
	if (!it) {
		ctx_error_fmt(&c, FP_ITEM_TASK_ERROR, "task frame without a name");
		goto done;
	}
	for (;;) {
		c.name = it->name[hop];
		c.hop = hop;
		if (hop) {
			atomic_store_explicit(&a->shm->hop, hop, memory_order_release);
			chain_hop_clock(run, out, a->shm);
		}
		if (!(t = it->task[hop])) {
			ctx_error_fmt(&c, FP_ITEM_UNKNOWN_TASK, "unknown task '%s'", c.name);
			break;
		}
		rc = t->fn(&c.base, args, args_len);
		flags = task_answer(&c, t, rc);
		if (hop + 1 == it->n || c.answered != FP_FRAME_RESULT || (flags & FP_FRAME_NOVALUE))
			break;
		/* Its value is the next task's args: out of `out`, which the next one writes. */
		len = out->len - c.frame_at - FP_FRAME_HEADER_SIZE;
		if (len + 1 > hb->cap) {
			char *d = realloc(hb->data, len + 1);
			if (!d)
				abort();
			hb->data = d;
			hb->cap = len + 1;
		}
		memcpy(hb->data, out->data + c.frame_at + FP_FRAME_HEADER_SIZE, len);
		hb->data[len] = '\0';
		args = hb->data;
		args_len = len;
		out->len = c.frame_at + FP_FRAME_HEADER_SIZE;
		c.answered = 0;
		c.returned = 0;
		hop++;
	}
done:
	fp_frame_header_init(&rh, c.answered ? c.answered : FP_FRAME_ERROR, h->id,
			     (uint32_t)(out->len - c.frame_at - FP_FRAME_HEADER_SIZE), flags);
	rh.hop = (uint8_t)hop;
	memcpy(out->data + c.frame_at, &rh, sizeof(rh));
	return c.frame_at;
}

/*
 * The tasks of the TASK frame just read and its args: a TASKS frame's item
 * has its frame's names (looked up when the frame is new), a frame that
 * came whole has the name before a NUL in its payload. NULL for a payload
 * without a name.
 */
static const struct item_tasks *item_tasks_of(const struct fp_worker_args *a,
					      const struct fp_frame_reader *r,
					      const struct fp_frame_header *h,
					      const char *payload, struct item_tasks *it,
					      const char **args, size_t *args_len)
{
	size_t name_len;

	if (r->item_name) {
		if (it->seq != r->pack_seq) {
			tasks_resolve(it, a->registry, r->item_name, 1u + h->hop);
			it->seq = r->pack_seq;
		}
		*args = payload;
		*args_len = h->len;
		return it;
	}
	name_len = strnlen(payload, h->len);
	if (name_len == h->len)
		return NULL;
	tasks_resolve(it, a->registry, payload, 1);
	/* Not a TASKS frame's: the next one is looked up anew. */
	it->seq = 0;
	*args = payload + name_len + 1;
	*args_len = h->len - name_len - 1;
	return it;
}

static _Noreturn void worker_exit(const struct fp_worker_args *a, int fd,
				  struct out_buf *out, int status)
{
	out_flush(fd, out);
	fp_registry_worker_fini(a->registry);
	/*
	 * fflush, then _exit: exit() would run the host program's atexit
	 * handlers, which belong to the master, in every worker.
	 */
	fflush(NULL);
	_exit(status);
}

/* Record the worker's RSS in the frame at `frame_at`. */
static void set_rss(struct out_buf *out, size_t frame_at, size_t rss_kib)
{
	struct fp_frame_header h;

	memcpy(&h, out->data + frame_at, sizeof(h));
	h.rss_kib = (uint32_t)rss_kib;
	memcpy(out->data + frame_at, &h, sizeof(h));
}

/* Record in the frame at `frame_at` how long its task ran. */
static void set_run_time(struct out_buf *out, size_t frame_at, uint64_t ns)
{
	struct fp_frame_header h;
	uint64_t us = ns / 1000u;

	memcpy(&h, out->data + frame_at, sizeof(h));
	h.flags |= (uint32_t)(us > FP_FRAME_US_MAX ? FP_FRAME_US_MAX : us) << FP_FRAME_US_SHIFT;
	memcpy(out->data + frame_at, &h, sizeof(h));
}

/* Mark the frame at `frame_at` as this worker's last. */
static void mark_retire(struct out_buf *out, size_t frame_at, size_t rss_kib)
{
	struct fp_frame_header h;

	memcpy(&h, out->data + frame_at, sizeof(h));
	h.flags |= FP_FRAME_RETIRE;
	h.rss_kib = (uint32_t)rss_kib;
	memcpy(out->data + frame_at, &h, sizeof(h));
}

/* What the worker's loop keeps from one item to the next. */
struct wloop {
	const struct fp_worker_args *a;
	struct item_tasks tasks;
	struct hop_buf hb;
	struct clock_run run;
	struct fp_frame_reader reader;
	struct out_buf out;
	uint64_t done;             /* tasks run, a chain's counting as its hops + 1 */
	int statm_fd;
	struct fp_worker_kv kv;    /* the tasks' shared-value and lock calls (worker_kv.h) */
	struct fp_task_cancel tc;  /* fp_cancelled() (cancel.h) */
};

/* worker_init, then READY; or INITFAIL with its message, and exit. */
static void worker_hello(struct wloop *l)
{
	const struct fp_worker_args *a = l->a;
	struct fp_frame_header h;
	struct timespec tick;
	char errbuf[512];

	fp_frame_reader_init(&l->reader, a->max_payload + 256);
	fp__worker_kv_init(&l->kv, a->fd, &l->reader);
	l->out.pack_max = a->max_payload;
	if (fp_registry_worker_init(a->registry, errbuf, sizeof(errbuf)) < 0) {
		fp_frame_header_init(&h, FP_FRAME_INITFAIL, 0, (uint32_t)strlen(errbuf), 0);
		fp__worker_send_all(a->fd, &h, sizeof(h));
		fp__worker_send_all(a->fd, errbuf, strlen(errbuf));
		fflush(NULL);
		_exit(FP_WORKER_EXIT_INIT);
	}
	l->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	fp_frame_header_init(&h, FP_FRAME_READY, 0, 0, 0);
	h.rss_kib = (uint32_t)fp__rss_kib(l->statm_fd);
	fp__worker_send_all(a->fd, &h, sizeof(h));

	/* A clock tick: what a run's start may be early by (struct clock_run). */
	if (clock_getres(CLOCK_MONOTONIC_COARSE, &tick) == 0)
		atomic_store_explicit(&a->shm->started_slack_ns,
				      (uint32_t)(tick.tv_sec ? UINT32_MAX : (uint64_t)tick.tv_nsec),
				      memory_order_relaxed);
}

/*
 * Run one TASK (or one item of a TASKS frame) and gather its answer; end
 * the run and send what is gathered when the run is long, slow or the
 * chunk's last. Exits when asked to quit, on a frame a worker must not get,
 * and after its last task (budget spent, RSS over the limit).
 */
static void item_run(struct wloop *l, const struct fp_frame_header *h, const char *payload)
{
	const struct fp_worker_args *a = l->a;
	struct clock_run *run = &l->run;
	struct out_buf *out = &l->out;
	const struct item_tasks *it;
	const char *args;
	size_t frame_at, rss_kib = 0, args_len;
	int retire = 0;
	uint64_t now, start;
	unsigned n;

	if (atomic_load_explicit(&a->shm->quit, memory_order_acquire)) {
		if (run->n)
			run_stamp(run, out, mono_ns(), 0);
		worker_exit(a, a->fd, out, FP_WORKER_EXIT_OK);
	}
	/* A chain comes only in a TASKS frame, whose names were checked. */
	if (h->type != FP_FRAME_TASK || (h->hop && !l->reader.item_name))
		worker_exit(a, a->fd, out, FP_WORKER_EXIT_PROTOCOL);

	if (out->len == 0)
		out->oldest_ns = run->start_ns;
	/* A chain starts at its first task; the page never names another's. */
	if (h->hop)
		atomic_store_explicit(&a->shm->hop, 0, memory_order_relaxed);
	atomic_store_explicit(&a->shm->current, h->id, memory_order_release);
	it = item_tasks_of(a, &l->reader, h, payload, &l->tasks, &args, &args_len);
	frame_at = run_task(a, out, h, it, args, args_len, run, &l->hb, &l->kv, &l->tc);
	/* No lock outlives the task that took it. */
	fp__worker_kv_task_end(&l->kv);
	if (fp__task_cancel_end(&l->tc)) {
		/*
		 * SIGTERM came while the task said it would stop by itself: the
		 * master wants us gone. The answers before go; this one too
		 * unless it is the item given up on, which the page goes on
		 * naming, so that the master ends it as it meant to (timeout,
		 * cancelled).
		 */
		if (atomic_load_explicit(&a->shm->cancel, memory_order_acquire) == h->id) {
			out->len = frame_at;
		} else {
			atomic_store_explicit(&a->shm->current, 0, memory_order_release);
			run->at[run->n++] = frame_at;
		}
		if (run->n)
			run_stamp(run, out, mono_ns(), 0);
		worker_exit(a, a->fd, out, FP_WORKER_EXIT_OK);
	}
	atomic_store_explicit(&a->shm->current, 0, memory_order_release);
	run->at[run->n++] = frame_at;

	/* A chain's item counts as the tasks it was sent for. */
	l->done += 1u + h->hop;
	if (a->task_limit && l->done >= a->task_limit)
		retire = 1;
	if (a->max_rss_bytes) {
		rss_kib = fp__rss_kib(l->statm_fd);
		if (rss_kib * 1024 > a->max_rss_bytes)
			retire = 1;
	}
	if (retire) {
		run_stamp(run, out, mono_ns(), 0);
		mark_retire(out, frame_at, rss_kib ? rss_kib : fp__rss_kib(l->statm_fd));
		worker_exit(a, a->fd, out, FP_WORKER_EXIT_OK);
	}
	/* The run goes on while it is short and within one tick. */
	if (run->n < RUN_MAX && !(h->flags & FP_FRAME_FLUSH) &&
	    out->len < OUT_FLUSH_BYTES && coarse_ns() == run->coarse_ns)
		return;
	start = run->start_ns;
	n = run->n;
	now = mono_ns();
	/* Before the next item runs: its start, and what the master times. */
	atomic_store_explicit(&a->shm->started_ns, now, memory_order_relaxed);
	run_stamp(run, out, now, 0);
	run_start(run, now);
	/* A slow task's answer goes out at once; so do a chunk's last. */
	if (out->len >= OUT_FLUSH_BYTES || (h->flags & FP_FRAME_FLUSH) ||
	    (now - start) / n > QUICK_TASK_NS ||
	    now - out->oldest_ns > OUT_FLUSH_AGE_NS) {
		set_rss(out, frame_at, rss_kib ? rss_kib : fp__rss_kib(l->statm_fd));
		out_flush(a->fd, out);
	}
}

_Noreturn void fp_worker_main(const struct fp_worker_args *a)
{
	struct wloop l = { .a = a, .statm_fd = -1 };
	struct fp_frame_header h;
	const char *payload;
	char rbuf[64 * 1024];
	ssize_t n;
	int rc;

	worker_hello(&l);
	for (;;) {
		/* Woken with work: a new run of items starts. */
		run_start(&l.run, mono_ns());
		atomic_store_explicit(&a->shm->started_ns, l.run.start_ns, memory_order_relaxed);

		while ((rc = fp_frame_reader_next(&l.reader, &h, &payload)) == 1)
			item_run(&l, &h, payload);
		if (rc < 0)
			worker_exit(a, a->fd, &l.out, FP_WORKER_EXIT_PROTOCOL);
		/* Nothing more to run: time the run, send what is gathered, then block. */
		if (l.run.n)
			run_stamp(&l.run, &l.out, mono_ns(), 0);
		out_flush(a->fd, &l.out);

		/* What a task's shared-value call read past its answer comes first. */
		rc = fp__worker_kv_take(&l.kv);
		if (rc < 0)
			abort();
		if (rc)
			continue;
		n = read(a->fd, rbuf, sizeof(rbuf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			worker_exit(a, a->fd, &l.out, FP_WORKER_EXIT_OK);
		if (fp_frame_reader_feed(&l.reader, rbuf, (size_t)n) < 0)
			abort();
	}
}
