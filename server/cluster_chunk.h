/*
 * The cluster's units of work as they travel through Redis (issue 15), with
 * no Redis in them: a submission's items cut into chunks (one Redis string
 * each, NDJSON), the work stream entry that names a chunk, and one item's
 * outcome as the results stream carries it. cluster_jobs.c moves them;
 * tests/test-cluster.c checks them without a server.
 */
#ifndef FP_SERVER_CLUSTER_CHUNK_H
#define FP_SERVER_CLUSTER_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"
#include "sbuf.h"

/*
 * A chunk holds at most fp_cluster_chunk_items() items and, unless one item
 * alone is larger, FP_CLUSTER_CHUNK_BYTES of them: one entry is small enough
 * to move in one write. Every chunk costs its round trips to Redis (read,
 * fetch, land), whatever its size, so a map of small items takes big
 * chunks; but a node's share of a job is counted in chunks, so a job is cut
 * into FP_CLUSTER_CHUNK_SPREAD of them at least while they hold
 * FP_CLUSTER_CHUNK_ITEMS or more. FP_CLUSTER_CHUNK_ITEMS_MAX bounds what a
 * work entry may say (the map's own chunksize included).
 */
#define FP_CLUSTER_CHUNK_ITEMS 256
#define FP_CLUSTER_CHUNK_ITEMS_BIG 4096
#define FP_CLUSTER_CHUNK_ITEMS_MAX 65536
#define FP_CLUSTER_CHUNK_SPREAD 64
#define FP_CLUSTER_CHUNK_BYTES (64u * 1024)

/*
 * The item bound of n items' chunks: the map's chunksize when it gives one
 * (items handed out at a time, up to FP_CLUSTER_CHUNK_ITEMS_MAX), else
 * n / FP_CLUSTER_CHUNK_SPREAD between FP_CLUSTER_CHUNK_ITEMS and
 * FP_CLUSTER_CHUNK_ITEMS_BIG.
 */
size_t fp_cluster_chunk_items(size_t n, size_t chunksize);

/*
 * How many items from `first` (< n) go in the next chunk: at least one, at
 * most max_items, and no more than fit in max_bytes with their newlines
 * (an item larger than that goes alone).
 */
size_t fp_cluster_chunk_next(const struct fp_buf *items, size_t n, size_t first,
			     size_t max_items, size_t max_bytes);

/* How many chunks fp_cluster_chunk_next() cuts n items into. */
size_t fp_cluster_chunk_count(const struct fp_buf *items, size_t n, size_t max_items,
			      size_t max_bytes);

/*
 * A chunk's text: each item then '\n' (NDJSON). Items are JSON texts on one
 * line (the API's items are: NDJSON lines, or json_dumps() in compact
 * form), so fp_ndjson_split() gives them back one for one.
 */
void fp_cluster_chunk_encode(struct sbuf *b, const struct fp_buf *items, size_t count);

/*
 * A work stream entry: job J's chunk K, items first .. first + n - 1 of the
 * job. Its fields go to XADD as "job" J "chunk" K "first" F "n" N.
 */
#define FP_CLUSTER_ID_MAX 64
struct fp_cluster_entry {
	char job[FP_CLUSTER_ID_MAX + 1];
	uint64_t chunk, first, n;
};

/*
 * Read an entry back from its field/value pairs (nfields strings, names and
 * values alternating, as XREADGROUP gives them). -EINVAL when a field is
 * missing, a number does not parse or the job id is not a job id: such an
 * entry is not ours and is acknowledged without running.
 */
int fp_cluster_entry_parse(const char *const *fv, const size_t *lens, size_t nfields,
			   struct fp_cluster_entry *out);

/* True when `id` (len bytes) can be a job's id: 1 to 64 of [0-9a-f]. */
bool fp_cluster_id_valid(const char *id, size_t len);

/*
 * One item's outcome as a results stream line, without its newline:
 * {"index":I,"value":V} or {"index":I,"error":{"type":T,"message":M}}
 * (with "traceback" when the task gave one): the very line a single node's
 * GET /v1/jobs/ID/results writes, so a stream is the outcomes' text as
 * stored, whatever node reads it.
 */
void fp_cluster_outcome_line(struct sbuf *b, uint64_t index, const struct fp_result *r);

/* The outcome of an item that did not run: {"index":I,"error":{"type":..,"message":..}}. */
void fp_cluster_outcome_error(struct sbuf *b, uint64_t index, fp_item_status status,
			      const char *message);
/* The same with an error type the server names (store_unavailable), not the pool. */
void fp_cluster_outcome_named(struct sbuf *b, uint64_t index, const char *type,
			      const char *message);

#endif
