/*
 * Jobs: what the HTTP API calls an apply or a map, kept after it finishes.
 *
 * A job wraps one pool call. It records every item's outcome (value or
 * error), in item order and in completion order, so results can be read
 * whole, streamed as they come, or long-polled. Finished jobs are kept for
 * a TTL, then forgotten. Memory is bounded: the number of items not yet
 * finished across all jobs is capped (max_queue), and a submission that
 * would pass the cap is refused with -EBUSY (the API answers 429); the
 * finished jobs kept are capped (max_jobs), and so are the bytes of results
 * held (max_results_bytes): see "Results memory" below. A forgotten job's id
 * is remembered for a while, with why it went (fp_jobs_gone()).
 *
 * Job ids are 128 random bits from getrandom(), as 32 hex characters: not
 * guessable from another job's id. A job may also hold an idempotency key,
 * found through the store while the job is kept (see "Idempotency keys").
 */
#ifndef FP_SERVER_JOBS_H
#define FP_SERVER_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

typedef struct fp_jobs fp_jobs;
typedef struct fp_job fp_job;

enum fp_job_kind { FP_JOB_APPLY, FP_JOB_MAP, FP_JOB_PIPELINE };

enum fp_job_state {
	FP_JOB_QUEUED,      /* no item has been handed to a worker */
	FP_JOB_RUNNING,     /* an item was handed to a worker (the pool's on_start) */
	FP_JOB_DONE,        /* every item has a value */
	FP_JOB_FAILED,      /* finished, some item has an error */
	FP_JOB_CANCELLED,   /* finished after a cancel */
};

const char *fp_job_kind_name(enum fp_job_kind kind);
const char *fp_job_state_name(enum fp_job_state state);
/* -EINVAL for an unknown name. */
int fp_job_state_parse(const char *name, enum fp_job_state *out);

struct fp_jobs_options {
	uint64_t ttl_ms;        /* finished jobs are kept this long (10 min) */
	uint64_t max_queue;     /* unfinished items across all jobs (1,000,000) */
	size_t max_jobs;        /* finished jobs kept at most; oldest go first (10,000) */
	uint64_t max_results_bytes;   /* results held at most, see below (1 GiB; 0: no limit) */
	/*
	 * Outputs one pipeline job keeps at most (10,000,000; 0: no limit).
	 * A pipeline's fan-out is not known in advance: one that passes this
	 * is cancelled, and what it delivers after is counted as lost.
	 */
	uint64_t max_outputs;
	/*
	 * With a journal: rewrite it from the live jobs once it is at least
	 * this large and more than twice what they need (64 MiB).
	 */
	uint64_t journal_compact_min;
};

void fp_jobs_options_init(struct fp_jobs_options *o);

/*
 * Results memory. The bytes a job holds are its records (16 bytes an item,
 * 4 more for the completion order, 8 more for a pipeline output's origin),
 * the text of its values and messages, and the job itself: what
 * fp_jobs_stats() reports as results_bytes, for every job the store has, running,
 * finished, or forgotten while a reader still holds it (fp_job_ref()).
 *
 * Past max_results_bytes, finished jobs that no reader holds are forgotten,
 * oldest first, until what is needed fits:
 *  - at submission, what a job will need is estimated as its records plus
 *    the bytes of its items (its arguments: results are often of their
 *    order); a job whose estimate does not fit even once every such finished
 *    job is forgotten is refused with -ENOSPC, and nothing is forgotten for it;
 *  - as results come, a value that does not fit even so is not kept: its item
 *    ends with FP_ITEM_TOO_LARGE, naming the limit, and the job goes on. So
 *    running jobs cannot take the master past the limit either, whatever
 *    they return beyond their estimate.
 */

int fp_jobs_new(fp_jobs **out, fp_pool *pool, const struct fp_jobs_options *o);
/*
 * Cancels what runs (through the pool) and frees every job; calls no
 * watcher. Call it before fp_pool_free(), not from inside a job's callback.
 * The pool's callbacks for the cancelled calls may come later, from its loop
 * or from fp_pool_free(): they find a small tombstone, which they free.
 */
void fp_jobs_free(fp_jobs *jobs);

/*
 * Submit. Items are JSON texts (copied by the pool). -EBUSY when over
 * max_queue; -ENOSPC when its results could not fit under max_results_bytes
 * (above); FP_EUNKNOWN_TASK; FP_ESTOPPED while the pool is stopping;
 * FP_EUNAVAILABLE while the task's pool cannot start its workers; -EIO when
 * the journal refused its record (fp_jobs_journal_error() says why).
 */
int fp_jobs_submit(fp_jobs *jobs, enum fp_job_kind kind, const char *task,
		   const struct fp_buf *items, size_t n, const fp_call_options *opts,
		   fp_job **out);

/*
 * Submit a pipeline (jobs_pipeline.c): its records are its outputs, in the
 * order they are delivered, each with the input it came from and its stage;
 * its task name is the stages' tasks joined by '|'. Its `n` inputs count
 * against max_queue until the pipeline ends. Errors as fp_jobs_submit and
 * fp_pool_pipeline_async.
 */
int fp_jobs_submit_pipeline(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
			    const struct fp_buf *items, size_t n,
			    const fp_pipeline_options *opts, fp_job **out);

fp_job *fp_jobs_find(fp_jobs *jobs, const char *id);

/*
 * Idempotency keys (jobs_idem.c). A job may hold a key, given at submission:
 * while the job is kept (queued, running, finished and not yet forgotten) no
 * other job can have it, and fp_jobs_idem_find() finds the job by it. When
 * the job is forgotten (DELETE, TTL, max_jobs, memory) its key goes with it,
 * so keys are bounded by the jobs kept, in no table of their own. Beside
 * the key the job keeps `hash`, a hash of the request that made it, which
 * the store only keeps: the API compares it to tell a retry of the same
 * request from another request reusing the key.
 *
 * A key is printable ASCII (0x20 to 0x7e), 1 to FP_IDEM_KEY_MAX bytes: it
 * is an id, say a UUID, not a document. The key is copied; its bytes (256
 * at most) are not counted in results_bytes.
 */
#define FP_IDEM_KEY_MAX 255
struct fp_job_idem {
	const char *key;        /* len bytes, not NUL-terminated; NULL: none */
	size_t len;
	uint64_t hash;
};
/* 0, or -EINVAL when `key` is empty, too long or not printable ASCII. */
int fp_idem_key_check(const char *key, size_t len);
/*
 * A 64-bit hash of bytes, to be chained over the pieces of a request
 * (h = fp_idem_hash(h, piece, len), from FP_IDEM_HASH_INIT): each piece's
 * length goes in, so "ab"+"c" and "a"+"bc" differ. The function is part of
 * what the journal keeps (a job's hash is written, and compared after a
 * restart): changing it turns every retry across an upgrade into a 409.
 */
#define FP_IDEM_HASH_INIT UINT64_C(0x6a09e667f3bcc908)
uint64_t fp_idem_hash(uint64_t h, const void *data, size_t len);
/* The kept job that holds `key`, or NULL. */
fp_job *fp_jobs_idem_find(const fp_jobs *jobs, const char *key, size_t len);
/*
 * Submit with a key: as fp_jobs_submit() and fp_jobs_submit_pipeline(),
 * with -EEXIST when a kept job holds the key already (nothing is submitted)
 * and -EINVAL for a key fp_idem_key_check() refuses. `idem` NULL or its key
 * NULL: no key, as the plain functions.
 */
int fp_jobs_submit_idem(fp_jobs *jobs, enum fp_job_kind kind, const char *task,
			const struct fp_buf *items, size_t n, const fp_call_options *opts,
			const struct fp_job_idem *idem, fp_job **out);
int fp_jobs_submit_pipeline_idem(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
				 const struct fp_buf *items, size_t n,
				 const fp_pipeline_options *opts,
				 const struct fp_job_idem *idem, fp_job **out);

/*
 * Submit a map, or a pipeline, whose items the job keeps: `items` (n of
 * them) and `text`, the block they point into, both fp_mem_alloc() memory,
 * become the job's whatever the outcome. The pool borrows them for the
 * life of the call (fp_pool_map_borrow_async()), so they are neither copied
 * item by item nor given a second array, and the job frees them when the
 * call ends. For big NDJSON bodies. Errors as the _idem forms.
 */
int fp_jobs_submit_map_taking(fp_jobs *jobs, const char *task, struct fp_buf *items,
			      size_t n, void *text, const fp_call_options *opts,
			      const struct fp_job_idem *idem, fp_job **out);
int fp_jobs_submit_pipeline_taking(fp_jobs *jobs, const fp_stage *stages, size_t nstages,
				   struct fp_buf *items, size_t n, void *text,
				   const fp_pipeline_options *opts,
				   const struct fp_job_idem *idem, fp_job **out);
/*
 * Give a kept job that has none a key and hash afterwards: for a job
 * restored from the journal. -EALREADY when the job has a key, -EEXIST when
 * another job holds this one, -EINVAL for a bad key or a forgotten job,
 * -ENOMEM.
 */
int fp_jobs_idem_attach(fp_jobs *jobs, fp_job *job, const struct fp_job_idem *idem);

/* Why a job was forgotten. */
enum fp_job_gone {
	FP_JOB_GONE_TTL,        /* finished longer ago than ttl_ms */
	FP_JOB_GONE_MAX_JOBS,   /* the oldest finished one, over max_jobs */
	FP_JOB_GONE_MEMORY,     /* the oldest finished one, for room under max_results_bytes */
	FP_JOB_GONE_DELETED,    /* fp_jobs_forget() */
};
#define FP_JOB_GONE_COUNT 4
/* "ttl", "max_jobs", "memory", "deleted". */
const char *fp_job_gone_name(enum fp_job_gone why);

/*
 * The ids of the last FP_JOBS_GONE_KEPT jobs forgotten are remembered, in
 * 32 bytes each (2 MiB in all at most), so that a client asking for one
 * learns that it existed and why it went, where an id never seen is simply
 * unknown. 1 and why and when (wall clock, ms) if `id` is one of them, else 0.
 */
#define FP_JOBS_GONE_KEPT 65536
int fp_jobs_gone(const fp_jobs *jobs, const char *id, enum fp_job_gone *why,
		 uint64_t *at_ms);
const struct fp_jobs_options *fp_jobs_get_options(const fp_jobs *jobs);
/* Cancel a queued or running job: -EALREADY when it has finished. */
int fp_jobs_cancel(fp_jobs *jobs, fp_job *job);
/*
 * Forget a finished job now (its watchers get on_end first if any). An
 * unfinished one is cancelled through the pool and forgotten at once: its
 * watchers get on_end, and its remaining items are counted in items_pending
 * until the pool has delivered them. Its id is remembered as deleted.
 */
void fp_jobs_forget(fp_jobs *jobs, fp_job *job);

/*
 * Kept jobs newest first (in submission order, backwards), optionally only
 * in one state, and with `before` only those submitted before the job whose
 * fp_job_seq() it is (0: from the newest): a cursor for paging that neither
 * new submissions nor forgotten jobs move, the job it names included. Fills
 * up to max, returns the count.
 */
size_t fp_jobs_list(fp_jobs *jobs, const enum fp_job_state *state, uint64_t before,
		    fp_job **out, size_t max);

struct fp_jobs_stats {
	uint64_t jobs;                 /* kept now */
	uint64_t by_state[5];          /* jobs kept, per fp_job_state */
	uint64_t items_pending;        /* counted against max_queue */
	uint64_t items_ok, items_failed; /* since start */
	uint64_t submitted, rejected;  /* since start; rejected: over max_queue */
	uint64_t results_bytes;        /* held now (see "Results memory") */
	uint64_t rejected_memory;      /* since start: -ENOSPC */
	uint64_t results_dropped;      /* since start: values not kept for the limit */
	uint64_t forgotten[FP_JOB_GONE_COUNT];   /* since start, by fp_job_gone */
	/* The last -ENOSPC: the job's estimate, and what could not be freed for it. */
	uint64_t refused_need, refused_held;
};
void fp_jobs_stats(const fp_jobs *jobs, struct fp_jobs_stats *out);

/* Stop taking submissions (drain); fp_jobs_submit then gives FP_ESTOPPED. */
void fp_jobs_close(fp_jobs *jobs);
/* Jobs not finished yet. */
size_t fp_jobs_unfinished(const fp_jobs *jobs);

/* --- the journal (jobs_journal.c) ---------------------------------------- */

/*
 * With a journal (--data-dir), the store writes each job's life into it
 * (journal_jobs.h's records): a submission's JOB record is appended by
 * fp_jobs_submit() (the caller answers once fp_journal_wait_appended() says
 * it is safe), STARTED, one OUTCOMES record per job for what finished in
 * one loop turn, END, CANCEL, FORGET. Without one nothing of this runs.
 *
 * Recovery: open the journal with fp_jobs_replay() as its replay callback
 * (data: the store) before anything is submitted, then
 * fp_jobs_attach_journal(), then fp_jobs_resume(): finished jobs are kept
 * with their results until their TTL, counted from their finished_at;
 * unfinished ones run their items without an outcome again.
 */
struct fp_journal;
struct fp_jrec;

struct fp_jobs_recovery {
	uint64_t jobs;              /* recovered and kept */
	uint64_t finished;          /* of those, finished before */
	uint64_t resumed;           /* unfinished, started again */
	uint64_t items_kept;        /* resumed jobs' items with an outcome recorded */
	uint64_t items_rerun;       /* ... and without: submitted again */
	uint64_t skipped;           /* records of a kind this store does not resume */
};

int fp_jobs_replay(void *jobs, const struct fp_jrec *r, uint64_t off, char *err,
		   size_t errlen);
void fp_jobs_attach_journal(fp_jobs *jobs, struct fp_journal *j);
/*
 * Start what the journal left unfinished. Returns 0; jobs the pool refuses
 * (a task no module has any more) end at once with every item left failed,
 * naming why. out may be NULL.
 */
int fp_jobs_resume(fp_jobs *jobs, struct fp_jobs_recovery *out);
/* Append what is pending and stop using the journal (before closing it). */
void fp_jobs_detach_journal(fp_jobs *jobs);
struct fp_journal *fp_jobs_journal(const fp_jobs *jobs);
/* The error of the last append that failed: what a -EIO submission met. */
int fp_jobs_journal_error(const fp_jobs *jobs);
/* The last compaction's outcome: 0, or the error it gave up with. */
int fp_jobs_journal_compact_error(const fp_jobs *jobs);

/*
 * Another owner of records in the same journal (the shared values,
 * kv_journal.c): compaction keeps its live records too. live() says the
 * bytes they take now, counted with the jobs' against the file's size;
 * snapshot() appends them all to a compaction's first slice. After
 * appending, the guest calls fp_jobs_journal_appended() so that a file grown
 * by its records alone is compacted as well. g NULL: none.
 */
struct sbuf;
struct fp_jobs_journal_guest {
	uint64_t (*live)(void *data);
	int (*snapshot)(void *data, struct sbuf *b, uint32_t salt);
	void *data;
};
void fp_jobs_journal_guest(fp_jobs *jobs, const struct fp_jobs_journal_guest *g);
void fp_jobs_journal_appended(fp_jobs *jobs);
/*
 * Take back a job whose JOB record could not be written (the waiter said
 * so): cancelled and gone without a trace, its id not remembered.
 */
void fp_jobs_withdraw(fp_jobs *jobs, fp_job *job);

/* --- one job -------------------------------------------------------------- */

const char *fp_job_id(const fp_job *job);
/* Its place in submission order: 1, 2, 3, ... never reused while the store lives. */
uint64_t fp_job_seq(const fp_job *job);
enum fp_job_kind fp_job_kind(const fp_job *job);
const char *fp_job_task(const fp_job *job);
/* The job's key and hash (key pointing into the job): false, *out zeroed, when none. */
bool fp_job_idem(const fp_job *job, struct fp_job_idem *out);
enum fp_job_state fp_job_state(const fp_job *job);
bool fp_job_finished(const fp_job *job);
size_t fp_job_total(const fp_job *job);
size_t fp_job_done(const fp_job *job);      /* items with a value */
size_t fp_job_failed(const fp_job *job);    /* items with an error */
/*
 * A pipeline's total, done and failed count its outputs (so far); these are
 * the items that went in, and the outputs the store had no memory for.
 * For apply and map, inputs is the total and nothing is lost.
 */
size_t fp_job_inputs(const fp_job *job);
size_t fp_job_lost(const fp_job *job);
/* The pipeline passed max_outputs and was cancelled for it. */
bool fp_job_overflowed(const fp_job *job);

/* A pipeline's stages (the reduce, if any, last): how many, and each one's task. */
size_t fp_job_stages(const fp_job *job);
const char *fp_job_stage_task(const fp_job *job, size_t k);
bool fp_job_has_reduce(const fp_job *job);
/* Submitted with ordered outputs (input order). */
bool fp_job_ordered(const fp_job *job);
/*
 * Fill up to `max` counters of a pipeline's stages: live while it runs, as
 * they were at its end afterwards. Returns fp_job_stages(); 0 for others.
 */
size_t fp_job_stage_stats(const fp_job *job, struct fp_stage_stats *out, size_t max);
/* A pipeline's reduced value: the position of that output, or SIZE_MAX. */
size_t fp_job_reduced(const fp_job *job);
/*
 * Wall-clock times in ms since the epoch; started_at (the first hand-off of
 * an item to a worker) 0 until then, finished_at 0 while running.
 */
uint64_t fp_job_created_at(const fp_job *job);
uint64_t fp_job_started_at(const fp_job *job);
uint64_t fp_job_finished_at(const fp_job *job);

/* One item's outcome, once it has one. */
struct fp_job_item {
	bool finished;
	size_t index;           /* the input it came from: i, except in pipelines */
	unsigned stage;         /* pipelines: the stage that made or failed it */
	fp_item_status status;
	const char *value;      /* JSON text when status is OK */
	size_t value_len;
	const char *message;    /* when not OK */
	const char *traceback;  /* a task error's, when its task gave one; else NULL */
	unsigned attempts;
};
/* Item (or output) i (0 <= i < total); pointers valid until the job is forgotten. */
void fp_job_item(const fp_job *job, size_t i, struct fp_job_item *out);
/* The k-th item to finish (0 <= k < done + failed): its index. */
size_t fp_job_completed_index(const fp_job *job, size_t k);

/* A finished item's (or output's) value, for reading many at once. */
struct fp_job_value {
	const char *value;      /* JSON text, value_len bytes */
	uint32_t value_len;
	uint32_t index;         /* the input it came from, as fp_job_item's */
};
/*
 * The values from position k on: items k, k+1, ... (outputs, for a
 * pipeline) or, with `completion`, the k-th item to finish and those after
 * it. Fills up to `max`, stopping before the first item that has not finished
 * or has an error; returns how many. The results stream's fast path: a
 * million lines without a fp_job_item() each (pointers as fp_job_item's).
 */
size_t fp_job_values(const fp_job *job, size_t k, bool completion,
		     struct fp_job_value *out, size_t max);

/*
 * What the job holds now: bytes, and how many blocks they are in (the job,
 * its item array, its completion array, its text pages). Not per item: a
 * million-item map is a few dozen blocks. Added for the API's statistics
 * and for the tests that pin that down.
 */
void fp_job_memory(const fp_job *job, size_t *bytes, size_t *blocks);

/*
 * Watch a job: on_item after each item finishes (with its index), on_end once
 * when the job finishes or is forgotten. A watch is caller-owned and stays
 * linked until unwatched or until on_end has run (it is unlinked before).
 * Watching a finished job calls nothing: check fp_job_finished() first.
 *
 * From inside either callback a watcher may unwatch itself or any other
 * watch, watch, forget the job or another one, cancel. Watchers are called
 * newest first; one that starts watching during an on_item round hears of the
 * items after that one. `w` must not be linked already. fp_jobs_free() calls
 * no watcher: it only unlinks them.
 */
struct fp_job_watch {
	void (*on_item)(struct fp_job_watch *w, fp_job *job, size_t index);
	void (*on_end)(struct fp_job_watch *w, fp_job *job);
	void *data;
	struct fp_job_watch *prev, *next;    /* private */
	fp_job *job;                         /* private */
};
void fp_job_watch(fp_job *job, struct fp_job_watch *w);
void fp_job_unwatch(struct fp_job_watch *w);

/*
 * Hold a job for a reader that goes through its records at its own pace (a
 * results stream). Forgotten meanwhile (TTL, max_jobs, memory, deleted), the
 * job leaves the table and lists at once (its id is gone), but its struct and
 * records stay readable, and their bytes counted in results_bytes, until
 * the last hold is let go. A finished job that is held is never forgotten
 * for memory: that would free nothing. A job forgotten before it finished
 * still has its records released at once (its watchers' on_end says so:
 * fp_job_finished() is false there). fp_jobs_free() with holds left leaves
 * the held jobs to fp_job_unref().
 */
void fp_job_ref(fp_job *job);
void fp_job_unref(fp_job *job);

/*
 * Added: watch a finished job for the moment it is forgotten (TTL, max_jobs,
 * fp_jobs_forget): on_end runs then, with the job still readable; on_item
 * never runs. For a reader that goes through a finished job's results at its
 * own pace. -EINVAL if the job has not finished. Unwatch as usual;
 * fp_jobs_free() only unlinks.
 */
int fp_job_watch_forget(fp_job *job, struct fp_job_watch *w);

#endif
