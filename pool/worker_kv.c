/*
 * A worker's shared-value calls (worker_kv.h says how the answer is picked
 * out of a stream that may carry TASK frames before it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_wire.h"
#include "worker_kv.h"
#include "worker_main.h"

void fp__worker_kv_init(struct fp_worker_kv *k, int fd, struct fp_frame_reader *reader)
{
	memset(k, 0, sizeof(*k));
	k->fd = fd;
	k->reader = reader;
}

void fp__worker_kv_deinit(struct fp_worker_kv *k)
{
	if (!k)
		return;
	free(k->held);
	free(k->out);
	free(k->value);
	k->held = k->out = k->value = NULL;
	k->held_len = k->held_cap = k->out_cap = k->value_cap = 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t c = *cap ? *cap : 4096;
	char *p;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	p = realloc(*buf, c);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = c;
	return 0;
}

/*
 * n bytes of the reader's buffer from `at` as they came: the reader keeps
 * its last payload NUL-terminated in place, the byte it covers aside.
 */
static void reader_bytes(const struct fp_frame_reader *r, size_t at, void *dst, size_t n)
{
	if (!n)
		return;
	memcpy(dst, r->buf + at, n);
	if (r->has_saved && r->saved_at >= at && r->saved_at < at + n)
		((char *)dst)[r->saved_at - at] = (char)r->saved;
}

/*
 * Where the reader's incomplete last frame starts (r->len when it holds
 * whole frames only): the bytes from there on are the start of what the
 * socket says next, and the answer is looked for from there.
 */
static size_t reader_tail(const struct fp_frame_reader *r)
{
	struct fp_frame_header h;
	size_t at = r->pos, entry;
	uint32_t len;

	if (r->pack_type) {
		/* An open packed frame is whole in the buffer: skip its items left. */
		entry = r->pack_type == FP_FRAME_TASKS ? FP_FRAME_TASKS_ENTRY : FP_FRAME_RESULTS_ENTRY;
		for (uint32_t i = 0; i < r->pack_left; i++) {
			reader_bytes(r, at + entry - sizeof(len), &len, sizeof(len));
			at += entry + len;
		}
	}
	while (r->len - at >= FP_FRAME_HEADER_SIZE) {
		reader_bytes(r, at, &h, sizeof(h));
		if (r->len - at - FP_FRAME_HEADER_SIZE < h.len)
			break;
		at += FP_FRAME_HEADER_SIZE + (size_t)h.len;
	}
	return at;
}

static int send_request(struct fp_worker_kv *k, const struct fp_kv_request *req)
{
	struct fp_kv_wire_req w = {
		.op = (uint32_t)req->op,
		.key_len = (uint32_t)req->key_len,
		.value_len = req->value ? (uint32_t)req->value_len : 0,
		.expect_len = req->expect ? (uint32_t)req->expect_len : 0,
		.has_expect = req->expect != NULL,
		.by = req->by,
		.ttl_ms = req->ttl_ms,
	};
	size_t len = sizeof(w) + w.key_len + w.value_len + w.expect_len;
	struct fp_frame_header h;
	char *p;

	if (req->key_len > UINT32_MAX || len > UINT32_MAX)
		return -E2BIG;
	if (grow(&k->out, &k->out_cap, FP_FRAME_HEADER_SIZE + len))
		return -ENOMEM;
	fp_frame_header_init(&h, FP_FRAME_KV, ++k->seq, (uint32_t)len, 0);
	p = k->out;
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	memcpy(p, &w, sizeof(w));
	p += sizeof(w);
	if (w.key_len)
		memcpy(p, req->key, w.key_len);
	p += w.key_len;
	if (w.value_len)
		memcpy(p, req->value, w.value_len);
	p += w.value_len;
	if (w.expect_len)
		memcpy(p, req->expect, w.expect_len);
	/* One send: a master that is gone ends the worker there. */
	fp__worker_send_all(k->fd, k->out, FP_FRAME_HEADER_SIZE + len);
	return 0;
}

/* The answer, taken from `payload`; the worker ends on a malformed one. */
static int take_reply(struct fp_worker_kv *k, const struct fp_frame_header *h,
		      const char *payload, struct fp_kv_reply *out)
{
	struct fp_kv_wire_reply w;

	if (h->id != k->seq || h->len < sizeof(w))
		_exit(FP_WORKER_EXIT_PROTOCOL);
	memcpy(&w, payload, sizeof(w));
	if (w.value_len != h->len - sizeof(w) || (!w.has_value && w.value_len))
		_exit(FP_WORKER_EXIT_PROTOCOL);
	if (grow(&k->value, &k->value_cap, (size_t)w.value_len + 1))
		return -ENOMEM;
	memcpy(k->value, payload + sizeof(w), w.value_len);
	k->value[w.value_len] = '\0';
	*out = (struct fp_kv_reply){
		.err = w.err,
		.value = w.has_value ? k->value : NULL,
		.value_len = w.value_len,
		.number = w.number,
		.swapped = w.swapped,
	};
	return 0;
}

int fp__worker_kv_call(struct fp_worker_kv *k, const struct fp_kv_request *req,
		       struct fp_kv_reply *out)
{
	const struct fp_frame_reader *r = k->reader;
	size_t tail_at = reader_tail(r), skip = r->len - tail_at, scan = 0, total;
	struct fp_frame_header h;
	ssize_t n;
	int err;

	err = send_request(k, req);
	if (err)
		return err;
	/*
	 * Look from the reader's incomplete frame on: the held bytes go after
	 * its `skip` bytes for the search, and come off again after it.
	 */
	if (grow(&k->held, &k->held_cap, k->held_len + skip))
		return -ENOMEM;
	if (skip && k->held_len)
		memmove(k->held + skip, k->held, k->held_len);
	reader_bytes(r, tail_at, k->held, skip);
	k->held_len += skip;
	for (;;) {
		while (k->held_len - scan >= FP_FRAME_HEADER_SIZE) {
			memcpy(&h, k->held + scan, sizeof(h));
			if (fp_frame_header_check(&h, r->max_payload))
				_exit(FP_WORKER_EXIT_PROTOCOL);
			total = FP_FRAME_HEADER_SIZE + (size_t)h.len;
			if (k->held_len - scan < total)
				break;
			if (h.type != FP_FRAME_KV_REPLY) {
				scan += total;
				continue;
			}
			err = take_reply(k, &h, k->held + scan + FP_FRAME_HEADER_SIZE, out);
			memmove(k->held + scan, k->held + scan + total, k->held_len - scan - total);
			k->held_len -= total;
			memmove(k->held, k->held + skip, k->held_len - skip);
			k->held_len -= skip;
			return err;
		}
		if (grow(&k->held, &k->held_cap, k->held_len + 64 * 1024))
			return -ENOMEM;
		n = read(k->fd, k->held + k->held_len, k->held_cap - k->held_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(FP_WORKER_EXIT_OK);   /* the master is gone: nobody to answer */
		k->held_len += (size_t)n;
	}
}

int fp__worker_kv_take(struct fp_worker_kv *k)
{
	int err;

	if (!k->held_len)
		return 0;
	err = fp_frame_reader_feed(k->reader, k->held, k->held_len);
	if (err)
		return err;
	k->held_len = 0;
	return 1;
}

/* A key of more than FP_KV_KEY_MAX bytes is refused in the master; no need to measure past it. */
static size_t key_len(const char *key)
{
	return key ? strnlen(key, FP_KV_KEY_MAX + 1) : 0;
}

int fp__worker_kv_get(struct fp_worker_kv *k, const char *key, const char **json, size_t *len)
{
	struct fp_kv_request req = { .op = FP_KV_GET, .key = key, .key_len = key_len(key) };
	struct fp_kv_reply r;
	int err = fp__worker_kv_call(k, &req, &r);

	if (err)
		return err;
	if (r.err == 0) {
		if (json)
			*json = r.value;
		if (len)
			*len = r.value_len;
	}
	return r.err;
}

int fp__worker_kv_set(struct fp_worker_kv *k, const char *key, const char *json, size_t len,
		      uint64_t ttl_ms)
{
	struct fp_kv_request req = {
		.op = FP_KV_SET, .key = key, .key_len = key_len(key),
		.value = json, .value_len = len, .ttl_ms = ttl_ms,
	};
	struct fp_kv_reply r;
	int err;

	if (!json)
		return -EBADMSG;
	err = fp__worker_kv_call(k, &req, &r);
	return err ? err : r.err;
}

int fp__worker_kv_del(struct fp_worker_kv *k, const char *key)
{
	struct fp_kv_request req = { .op = FP_KV_DEL, .key = key, .key_len = key_len(key) };
	struct fp_kv_reply r;
	int err = fp__worker_kv_call(k, &req, &r);

	return err ? err : r.err;
}

int fp__worker_kv_incr(struct fp_worker_kv *k, const char *key, int64_t by, int64_t *out)
{
	struct fp_kv_request req = { .op = FP_KV_INCR, .key = key, .key_len = key_len(key), .by = by };
	struct fp_kv_reply r;
	int err = fp__worker_kv_call(k, &req, &r);

	if (err)
		return err;
	if (r.err == 0 && out)
		*out = r.number;
	return r.err;
}

int fp__worker_kv_cas(struct fp_worker_kv *k, const char *key, const char *expect,
		      size_t expect_len, const char *json, size_t len, uint64_t ttl_ms)
{
	struct fp_kv_request req = {
		.op = FP_KV_CAS, .key = key, .key_len = key_len(key),
		.value = json, .value_len = len,
		.expect = expect, .expect_len = expect_len, .ttl_ms = ttl_ms,
	};
	struct fp_kv_reply r;
	int err;

	if (!json)
		return -EBADMSG;
	err = fp__worker_kv_call(k, &req, &r);
	if (err)
		return err;
	return r.err ? r.err : r.swapped;
}

static int lock_call(struct fp_worker_kv *k, uint32_t op, const char *name, uint64_t timeout_ms,
		     const char **msg)
{
	struct fp_kv_request req = {
		.op = (fp_kv_op)op, .key = name, .key_len = name ? strnlen(name, FP_KV_KEY_MAX + 1) : 0,
		.ttl_ms = timeout_ms,
	};
	struct fp_kv_reply r;
	int err = fp__worker_kv_call(k, &req, &r);

	if (err)
		return err;
	if (msg)
		*msg = r.err ? r.value : NULL;
	return r.err;
}

int fp__worker_lock(struct fp_worker_kv *k, const char *name, uint64_t timeout_ms,
		    const char **msg)
{
	int err = lock_call(k, FP_KV_WIRE_LOCK, name, timeout_ms, msg);

	if (err == 0)
		k->locks++;
	return err;
}

int fp__worker_unlock(struct fp_worker_kv *k, const char *name, const char **msg)
{
	int err = lock_call(k, FP_KV_WIRE_UNLOCK, name, 0, msg);

	if (err == 0 && k->locks)
		k->locks--;
	return err;
}

void fp__worker_kv_task_end(struct fp_worker_kv *k)
{
	if (!k->locks)
		return;
	(void)lock_call(k, FP_KV_WIRE_UNLOCK_ALL, NULL, 0, NULL);
	k->locks = 0;
}
