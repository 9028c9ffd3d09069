/*
 * Shared values over HTTP (issue 18): /v1/kv/KEY read, written, deleted,
 * incremented and compared-and-set, and /v1/kv listed by prefix, over the
 * pool's store (fp_pool_kv), the one tasks use. A value is answered as its
 * JSON text, so that `curl .../v1/kv/hits` prints the count.
 *
 * A write's answer may come after fp_pool_kv returns: with --data-dir it
 * waits for the change's journal record (kv_journal.h). The request is held
 * meanwhile in a struct kv_answer whose close callback only marks the
 * client gone, since the pool still holds the struct and frees nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

/* The HTTP answer to an error of fp_pool_kv: status and code, the message from the engine. */
static void kv_error(fp_http_request *req, const char *key, int err)
{
	int status = 500;
	const char *code = "internal";

	switch (err) {
	case -ENOENT:
		fp__api_error(req, 404, "no_such_key", "no shared value '%s'", key);
		return;
	case -EINVAL:
		status = 400, code = "bad_key";
		break;
	case -EBADMSG:
		status = 400, code = "bad_json";
		break;
	case -EDOM:
		status = 409, code = "not_an_integer";
		break;
	case -ERANGE:
		status = 409, code = "out_of_range";
		break;
	case -E2BIG:
		status = 413, code = "value_too_large";
		break;
	case -ENOSPC:
		status = 507, code = "kv_full";
		break;
	case -EIO:
		status = 507, code = "insufficient_storage";
		break;
	case -ENOTCONN:
		status = 503, code = "store_unavailable";
		break;
	}
	fp__api_error(req, status, code, "shared value '%s': %s", key, fp_kv_strerror(err));
}

/* The key of /v1/kv/KEY[/verb]: its bytes up to the next '/'. */
static const char *path_key(fp_http_request *req, size_t *len)
{
	const char *key = fp_http_path(req) + strlen("/v1/kv/");

	*len = strcspn(key, "/");
	return key;
}

struct kv_answer {
	fp_http_request *req;   /* NULL once the client went away */
	char key[FP_KV_KEY_MAX + 1];
	int ok_status;          /* 200: the value as the body; 204: none */
};

static void client_gone(fp_http_request *req, void *data)
{
	struct kv_answer *a = data;

	(void)req;
	a->req = NULL;
}

/*
 * Whether `a`'s request is still there to answer; `a` is freed when not.
 * The caller answers, then frees `a`.
 */
static bool answerable(struct kv_answer *a)
{
	if (!a->req) {
		free(a);
		return false;
	}
	fp_http_on_close(a->req, NULL, NULL);
	return true;
}

static void answer_value(fp_pool *pool, const struct fp_kv_reply *r, void *data)
{
	struct kv_answer *a = data;
	struct sbuf b;

	(void)pool;
	if (!answerable(a))
		return;
	if (r->err) {
		kv_error(a->req, a->key, r->err);
	} else if (a->ok_status == 204) {
		fp_http_respond(a->req, 204, NULL, NULL, 0);
	} else {
		sbuf_init(&b);
		sbuf_add(&b, r->value, r->value_len);
		fp__api_json(a->req, 200, &b);
		sbuf_free(&b);
	}
	free(a);
}

static void answer_cas(fp_pool *pool, const struct fp_kv_reply *r, void *data)
{
	struct kv_answer *a = data;
	struct sbuf b;

	(void)pool;
	if (!answerable(a))
		return;
	if (r->err) {
		kv_error(a->req, a->key, r->err);
		free(a);
		return;
	}
	sbuf_init(&b);
	sbuf_adds(&b, r->swapped ? "{\"swapped\":true,\"value\":" : "{\"swapped\":false,\"value\":");
	if (r->value)
		sbuf_add(&b, r->value, r->value_len);
	else
		sbuf_adds(&b, "null");
	sbuf_adds(&b, "}");
	fp__api_json(a->req, 200, &b);
	sbuf_free(&b);
	free(a);
}

/* Runs `kr` for the request's key and answers through `cb`, now or once the change is kept. */
static void kv_run(fp_api *api, fp_http_request *req, struct fp_kv_request *kr, fp_kv_cb cb,
		   int ok_status)
{
	struct kv_answer *a = calloc(1, sizeof(*a));
	size_t len;
	const char *key = path_key(req, &len);

	if (!a) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	a->req = req;
	a->ok_status = ok_status;
	/* Named in messages whole when it fits, else cut: it is refused anyway. */
	memcpy(a->key, key, len < FP_KV_KEY_MAX ? len : FP_KV_KEY_MAX);
	a->key[len < FP_KV_KEY_MAX ? len : FP_KV_KEY_MAX] = '\0';
	kr->key = key;
	kr->key_len = len;
	fp_http_set_log_field(req, "key", a->key);
	fp_http_on_close(req, client_gone, a);
	if (fp_pool_kv(api->pool, kr, cb, a) < 0) {
		/* The callback was not called and will not be. */
		fp_http_on_close(req, NULL, NULL);
		free(a);
		fp__api_error(req, 500, "internal", "out of memory");
	}
}

/* ?ttl=SECONDS (a number > 0; fractions allowed) as ms: 0 when absent, -1 after answering 400. */
static int64_t ttl_param(fp_http_request *req, const char *text)
{
	char *end;
	double s;

	if (!text)
		return 0;
	s = strtod(text, &end);
	if (end == text || *end || !(s > 0) || s > 1e9 || !isfinite(s)) {
		fp__api_error(req, 400, "bad_request",
			      "ttl must be a number of seconds above 0, got '%s'", text);
		return -1;
	}
	return (int64_t)ceil(s * 1000);
}

void fp__api_kv_get(fp_api *api, fp_http_request *req)
{
	struct fp_kv_request kr = { .op = FP_KV_GET };

	kv_run(api, req, &kr, answer_value, 200);
}

void fp__api_kv_delete(fp_api *api, fp_http_request *req)
{
	struct fp_kv_request kr = { .op = FP_KV_DEL };

	kv_run(api, req, &kr, answer_value, 204);
}

const char *const fp__api_kv_put_params[] = { "ttl", NULL };

/* PUT /v1/kv/KEY[?ttl=S]: the body, JSON text of any kind, is the value. */
void fp__api_kv_put(fp_api *api, fp_http_request *req)
{
	struct fp_kv_request kr = { .op = FP_KV_SET };
	int64_t ttl = ttl_param(req, fp_http_query(req, "ttl"));

	if (ttl < 0)
		return;
	if (!fp__api_media_type_is(req, "application/json")) {
		fp__api_error(req, 415, "unsupported_media_type",
			      "expected Content-Type: application/json, got %s",
			      fp_http_header(req, "Content-Type") ? fp_http_header(req, "Content-Type")
								   : "none");
		return;
	}
	kr.value = fp_http_body(req, &kr.value_len);
	kr.ttl_ms = (uint64_t)ttl;
	kv_run(api, req, &kr, answer_value, 204);
}

const char *const fp__api_kv_incr_params[] = { "by", NULL };

/* POST /v1/kv/KEY/incr[?by=N]: the new value. */
void fp__api_kv_incr(fp_api *api, fp_http_request *req)
{
	struct fp_kv_request kr = { .op = FP_KV_INCR, .by = 1 };
	const char *by = fp_http_query(req, "by");
	char *end;

	if (by) {
		errno = 0;
		kr.by = strtoll(by, &end, 10);
		if (end == by || *end || errno) {
			fp__api_error(req, 400, "bad_request",
				      "by must be a 64-bit integer, got '%s'", by);
			return;
		}
	}
	kv_run(api, req, &kr, answer_value, 200);
}

/*
 * POST /v1/kv/KEY/cas {"value": V, "expect": E, "ttl": S}: sets V only if
 * the value is E now (no "expect": only if the key does not exist).
 */
void fp__api_kv_cas(fp_api *api, fp_http_request *req)
{
	static const char *const known[] = { "value", "expect", "ttl", NULL };
	struct fp_kv_request kr = { .op = FP_KV_CAS };
	json_t *body = fp__api_parse_body(req), *v, *e, *t;
	char *val = NULL, *expect = NULL;

	if (!body || fp__api_only_members(req, body, known, "") < 0)
		goto out;
	v = json_object_get(body, "value");
	e = json_object_get(body, "expect");
	t = json_object_get(body, "ttl");
	if (!v) {
		fp__api_error(req, 400, "bad_request", "\"value\" is required: the value to set");
		goto out;
	}
	if (t && (!json_is_number(t) || !(json_number_value(t) > 0) ||
		  json_number_value(t) > 1e9)) {
		fp__api_error(req, 400, "bad_request", "\"ttl\" must be a number of seconds above 0");
		goto out;
	}
	val = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	expect = e ? json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (!val || (e && !expect)) {
		fp__api_error(req, 500, "internal", "out of memory");
		goto out;
	}
	kr.value = val;
	kr.value_len = strlen(val);
	kr.expect = expect;
	kr.expect_len = expect ? strlen(expect) : 0;
	kr.ttl_ms = t ? (uint64_t)ceil(json_number_value(t) * 1000) : 0;
	kv_run(api, req, &kr, answer_cas, 200);
out:
	free(val);
	free(expect);
	json_decref(body);
}

const char *const fp__api_kv_list_params[] = { "prefix", "limit", NULL };

static void answer_list_to(struct kv_answer *l, int err, const struct fp_kv_entry *e, size_t n,
			   int more);

/* A listing is answered through the same held request as an operation. */
static void answer_list(fp_pool *pool, int err, const struct fp_kv_entry *e, size_t n,
			int more, void *data)
{
	struct kv_answer *a = data;

	(void)pool;
	if (!answerable(a))
		return;
	answer_list_to(a, err, e, n, more);
	free(a);
}

static void answer_list_to(struct kv_answer *l, int err, const struct fp_kv_entry *e, size_t n,
			   int more)
{
	struct sbuf b;

	if (err == -ENOTCONN) {
		fp__api_error(l->req, 503, "store_unavailable", "%s", fp_kv_strerror(err));
		return;
	}
	if (err == -E2BIG) {
		fp__api_error(l->req, 400, "bad_request", "more than 100000 shared values match"
			      " the prefix: give a longer one");
		return;
	}
	if (err) {
		fp__api_error(l->req, 500, "internal", "%s", fp_kv_strerror(err));
		return;
	}
	sbuf_init(&b);
	sbuf_adds(&b, "{\"keys\":[");
	for (size_t i = 0; i < n; i++) {
		sbuf_adds(&b, i ? ",{\"key\":" : "{\"key\":");
		sbuf_json_string(&b, e[i].key, e[i].key_len);
		sbuf_adds(&b, ",\"value\":");
		sbuf_add(&b, e[i].value, e[i].value_len);
		if (e[i].ttl_ms)
			sbuf_printf(&b, ",\"ttl_ms\":%" PRIu64 "}", e[i].ttl_ms);
		else
			sbuf_adds(&b, ",\"ttl_ms\":null}");
	}
	sbuf_printf(&b, "],\"count\":%zu,\"more\":%s}", n, more ? "true" : "false");
	fp__api_json(l->req, 200, &b);
	sbuf_free(&b);
}

/* GET /v1/kv[?prefix=P][&limit=N]: the keys and their values, in byte order of the keys. */
void fp__api_kv_list(fp_api *api, fp_http_request *req)
{
	const char *prefix = fp_http_query(req, "prefix"), *limit = fp_http_query(req, "limit");
	struct kv_answer *a;
	unsigned long max = 1000;
	char *end;

	if (limit) {
		errno = 0;
		max = strtoul(limit, &end, 10);
		if (end == limit || *end || errno || max < 1 || max > 100000 || *limit == '-') {
			fp__api_error(req, 400, "bad_request",
				      "limit must be a whole number from 1 to 100000, got '%s'", limit);
			return;
		}
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		fp__api_error(req, 500, "internal", "out of memory");
		return;
	}
	a->req = req;
	fp_http_on_close(req, client_gone, a);
	if (fp_pool_kv_list(api->pool, prefix ? prefix : "", prefix ? strlen(prefix) : 0, max,
			    answer_list, a) < 0) {
		fp_http_on_close(req, NULL, NULL);
		free(a);
		fp__api_error(req, 500, "internal", "out of memory");
	}
}
