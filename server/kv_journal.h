/*
 * The shared values in the journal (--data-dir): the pool's store
 * (fp_pool_kv) made durable. Every write's result goes in as one record,
 * and the write is answered once it is as safe as --fsync makes it, as a
 * submission is; replay puts the values back before anything listens.
 *
 *   KV_SET   key, value (compact JSON text), expires (u64 wall-clock ms
 *            since the epoch; 0: never)
 *   KV_DEL   key
 *
 * A record holds what the key is after the operation, never the operation
 * (an INCR's new value, a CAS's value when it swapped), so replay is
 * idempotent and a compaction may repeat a record that followed it. An
 * expiry is absolute: a key with a TTL that passed while forkpoold was down
 * is gone at start-up. Compaction is the job store's
 * (fp_jobs_journal_guest): its snapshot begins with one KV_SET per live key,
 * so the file follows the live keys, not the history of writes.
 */
#ifndef FP_SERVER_KV_JOURNAL_H
#define FP_SERVER_KV_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"
#include "jobs.h"
#include "journal.h"

/* After the job store's types (journal_jobs.h). */
enum { FP_JR_KV_SET = 10, FP_JR_KV_DEL = 11 };

typedef struct fp_kv_journal fp_kv_journal;

/* Whether a record of this type is the shared values'. */
bool fp_kv_journal_owns(uint16_t type);

/*
 * Replay one of its records into the pool's store. A negative errno with a
 * sentence in err naming the offset when it cannot be read or applied.
 */
int fp_kv_journal_replay(fp_pool *pool, const struct fp_jrec *rec, uint64_t off, char *err,
			 size_t errlen);

/*
 * From now on the pool's changes go to `j`, and the job store's
 * compactions keep the live keys. -ENOMEM.
 */
int fp_kv_journal_new(fp_kv_journal **out, fp_pool *pool, fp_journal *j, fp_jobs *jobs);
/* Stop (before the journal closes): the pool is memory-only again. Accepts NULL. */
void fp_kv_journal_free(fp_kv_journal *kj);

#endif
