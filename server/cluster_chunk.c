/*
 * The cluster's chunks, work entries and outcome lines (cluster_chunk.h):
 * formats only, no Redis, no loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_chunk.h"

size_t fp_cluster_chunk_items(size_t n, size_t chunksize)
{
	size_t k;

	if (chunksize)
		return chunksize < FP_CLUSTER_CHUNK_ITEMS_MAX ? chunksize : FP_CLUSTER_CHUNK_ITEMS_MAX;
	k = n / FP_CLUSTER_CHUNK_SPREAD + (n % FP_CLUSTER_CHUNK_SPREAD != 0);
	if (k < FP_CLUSTER_CHUNK_ITEMS)
		return FP_CLUSTER_CHUNK_ITEMS;
	return k < FP_CLUSTER_CHUNK_ITEMS_BIG ? k : FP_CLUSTER_CHUNK_ITEMS_BIG;
}

size_t fp_cluster_chunk_next(const struct fp_buf *items, size_t n, size_t first,
			     size_t max_items, size_t max_bytes)
{
	size_t k = 0, bytes = 0;

	while (first + k < n && k < max_items) {
		size_t add = items[first + k].len + 1;

		/* The first item goes whatever its size: a chunk is never empty. */
		if (k > 0 && bytes + add > max_bytes)
			break;
		bytes += add;
		k++;
	}
	return k;
}

size_t fp_cluster_chunk_count(const struct fp_buf *items, size_t n, size_t max_items,
			      size_t max_bytes)
{
	size_t first = 0, count = 0;

	while (first < n) {
		first += fp_cluster_chunk_next(items, n, first, max_items, max_bytes);
		count++;
	}
	return count;
}

void fp_cluster_chunk_encode(struct sbuf *b, const struct fp_buf *items, size_t count)
{
	size_t room = 0, i;
	char *d, *p;

	for (i = 0; i < count; i++)
		room += items[i].len + 1;
	if (!(p = d = sbuf_reserve(b, room ? room : 1)))
		return;
	for (i = 0; i < count; i++) {
		memcpy(p, items[i].base, items[i].len);
		p += items[i].len;
		*p++ = '\n';
	}
	sbuf_commit(b, (size_t)(p - d));
}

bool fp_cluster_id_valid(const char *id, size_t len)
{
	size_t i;

	if (len == 0 || len > FP_CLUSTER_ID_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

/* A decimal number of at most 19 digits, the whole of s[0..len). */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 19)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static bool field_is(const char *f, size_t len, const char *name)
{
	return len == strlen(name) && memcmp(f, name, len) == 0;
}

int fp_cluster_entry_parse(const char *const *fv, const size_t *lens, size_t nfields,
			   struct fp_cluster_entry *out)
{
	unsigned seen = 0;
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i + 1 < nfields; i += 2) {
		const char *v = fv[i + 1];
		size_t vl = lens[i + 1];

		if (field_is(fv[i], lens[i], "job")) {
			if (!fp_cluster_id_valid(v, vl))
				return -EINVAL;
			memcpy(out->job, v, vl);
			out->job[vl] = '\0';
			seen |= 1;
		} else if (field_is(fv[i], lens[i], "chunk")) {
			if (parse_u64(v, vl, &out->chunk) < 0)
				return -EINVAL;
			seen |= 2;
		} else if (field_is(fv[i], lens[i], "first")) {
			if (parse_u64(v, vl, &out->first) < 0)
				return -EINVAL;
			seen |= 4;
		} else if (field_is(fv[i], lens[i], "n")) {
			if (parse_u64(v, vl, &out->n) < 0 || out->n == 0 ||
			    out->n > FP_CLUSTER_CHUNK_ITEMS_MAX)
				return -EINVAL;
			seen |= 8;
		}
	}
	return seen == 15 ? 0 : -EINVAL;
}

static void error_members(struct sbuf *b, const char *type, const char *message,
			  const char *traceback)
{
	sbuf_adds(b, "\"error\":{\"type\":\"");
	sbuf_adds(b, type);
	sbuf_adds(b, "\",\"message\":");
	sbuf_json_string(b, message ? message : "", message ? strlen(message) : 0);
	if (traceback) {
		sbuf_adds(b, ",\"traceback\":");
		sbuf_json_string(b, traceback, strlen(traceback));
	}
	sbuf_adds(b, "}");
}

void fp_cluster_outcome_line(struct sbuf *b, uint64_t index, const struct fp_result *r)
{
	char *start, *d;

	if (r->status == FP_ITEM_OK) {
		/* The line of nearly every item: written in place, in one reservation. */
		if (!(start = d = sbuf_reserve(b, r->value_len + 40)))
			return;
		memcpy(d, "{\"index\":", 9);
		d = sbuf_put_uint(d + 9, index);
		memcpy(d, ",\"value\":", 9);
		d += 9;
		memcpy(d, r->value, r->value_len);
		d += r->value_len;
		*d++ = '}';
		sbuf_commit(b, (size_t)(d - start));
		return;
	}
	sbuf_printf(b, "{\"index\":%llu,", (unsigned long long)index);
	error_members(b, fp_item_status_name(r->status), r->message, r->traceback);
	sbuf_adds(b, "}");
}

void fp_cluster_outcome_error(struct sbuf *b, uint64_t index, fp_item_status status,
			      const char *message)
{
	sbuf_printf(b, "{\"index\":%llu,", (unsigned long long)index);
	error_members(b, fp_item_status_name(status), message, NULL);
	sbuf_adds(b, "}");
}

void fp_cluster_outcome_named(struct sbuf *b, uint64_t index, const char *type,
			      const char *message)
{
	sbuf_printf(b, "{\"index\":%llu,", (unsigned long long)index);
	error_members(b, type, message, NULL);
	sbuf_adds(b, "}");
}
