/*
 * The job store's insides, shared by its files: jobs.c (the store: submit,
 * states, lists, TTL and max_jobs, cancel and forget, the pool's callbacks),
 * jobs_memory.c (max_results_bytes and readers' holds), jobs_table.c (ids
 * and the table by id), jobs_idem.c (idempotency keys), jobs_gone.c (the
 * ids of forgotten jobs), jobs_record.c (a job's records and their text, and
 * the bytes they hold), jobs_watch.c (watchers) and jobs_pipeline.c
 * (pipelines): how a kind of job starts its pool call, the state a kind
 * keeps beside the store's records, and the structs themselves.
 */
#ifndef FP_SERVER_JOBS_IMPL_H
#define FP_SERVER_JOBS_IMPL_H

#include "jobs.h"
#include "forkpool/loop.h"

#define ID_BYTES 16
#define ID_HEX (2 * ID_BYTES)

/*
 * An apply keeps one text, mostly a few bytes: it lives in the job itself
 * when it fits here, else in a page of its own exact size. A 4 KiB page per
 * apply was a calloc and a page fault per request under a stream of applies
 * (docs/PROFILE-http-apply.md).
 */
#define APPLY_TEXT_INLINE 48

/* Ids are drawn from getrandom() this many at a time: one syscall per 32 jobs. */
#define ID_POOL_BYTES (32 * ID_BYTES)

struct text_page {
	struct text_page *next;
	size_t used, cap;
	char data[];
};

/* 16 bytes: a million items are 16 MB of records. */
struct job_item {
	/*
	 * The value (OK) or the message, NUL-terminated; a message with a
	 * traceback is followed by it, after its NUL.
	 */
	const char *text;
	uint32_t len;              /* the value's length; the message's and traceback's, or 0 */
	uint8_t finished;
	uint8_t status;            /* fp_item_status */
	uint16_t attempts;
};

/* A pipeline output's origin: the input it came from, the stage that made it. */
struct job_origin {
	uint32_t index;
	uint32_t stage;
};

struct fp_job {
	fp_jobs *jobs;             /* NULL: the store was freed, only the pool knows us */
	fp_job *hnext;             /* hash chain */
	fp_job *prev, *next;       /* jobs->all, newest first */
	fp_job *fprev, *fnext;     /* jobs->finished (oldest first), or jobs->orphans */

	uint8_t id[ID_BYTES];
	char hex[ID_HEX + 1];
	char apply_text[APPLY_TEXT_INLINE];    /* an apply's text, when it fits */
	struct job_item apply_item;            /* an apply's items[] and order[] */
	uint32_t apply_order;
	enum fp_job_kind kind;
	enum fp_job_state state;
	uint64_t call_id;
	uint64_t seq;              /* submission order, for paging the list */
	size_t total, ndone, nfailed;
	uint64_t created_at, started_at, finished_at;   /* wall clock */
	uint64_t expire_ms;                 /* monotonic, once finished */

	/*
	 * Apply and map: one record per item, `total` of them. A pipeline:
	 * one per output as it is delivered (so delivery order is completion
	 * order and `order` is not kept), `total` so far out of `cap`, each
	 * with its origin; `inputs` items went in.
	 */
	struct job_item *items;
	uint32_t *order;           /* indices in completion order */
	struct job_origin *origins;
	size_t cap, inputs, nlost;
	void *ext;                 /* the kind's own state (jobs_pipeline.c) */
	void (*ext_free)(void *ext);
	/*
	 * Items the job took (fp_jobs_submit_*_taking) and lent to the pool:
	 * freed when the pool's done callback comes, never before, as the pool
	 * reads them until then (a tombstone keeps them too).
	 */
	struct fp_buf *lent;
	void *lent_text;
	struct text_page *pages;   /* the open page first */
	const char *last_msg;      /* for storing a repeated message once */
	size_t last_msg_len;
	size_t mem_bytes, mem_blocks;
	/*
	 * What the job holds, as the store counts it against max_results_bytes:
	 * the job, its records and the text stored, not the unused room of its
	 * pages (mappings whose untouched pages cost nothing). Added to the
	 * store's results_bytes once `counted` (from submission on).
	 */
	size_t held;
	unsigned refs;             /* fp_job_ref() holds */

	/* The idempotency key (jobs_idem.c): NULL when none; its chain in jobs->ikeys. */
	char *idem_key;
	size_t idem_len;
	uint64_t idem_hash;        /* the request's, the API's to compare */
	size_t idem_slot;          /* the key's own hash, for the index */
	fp_job *inext;

	struct fp_job_watch *watchers;
	struct fp_job_watch *cursor;   /* next watcher of the on_item round */
	unsigned busy;             /* callbacks into watchers running now */
	bool finished;             /* the pool's done callback came (not forgotten then) */
	bool pool_done;            /* the pool's done callback came, whatever the job was then */
	bool ended;                /* watchers had on_end; no new ones link */
	bool forgotten;            /* out of the table and lists */
	bool orphan;               /* forgotten, on jobs->orphans until it can be freed */
	bool counted;              /* `held` is in the store's results_bytes */
	bool cancel_requested;
	bool apply_text_used;
	bool overflowed;           /* a pipeline cancelled for passing max_outputs */

	/* The journal's (jobs_journal.c). */
	bool journaled;            /* its JOB record is in the journal */
	bool jr_dirty;             /* on jobs->jr_dirty: outcomes not appended yet */
	bool jr_started;           /* recovered: its STARTED record was read */
	uint16_t resume_attempts;  /* recovered: added to its rerun items' attempts */
	fp_job *jr_next;
	size_t jr_done;            /* outcomes appended: the first jr_done of `order` */
	struct jr_resume *resume;  /* recovered, not finished: its items, to run them again */
	uint32_t *resume_map;      /* resumed: the pool's item i is the job's item resume_map[i] */
	size_t resume_n;
	void *jr_job;              /* unfinished: its JOB record's payload, for a compaction */
	size_t jr_job_len;
	uint64_t jr_bytes;         /* its records' bytes in the journal (about) */
	struct jr_inputs *jr_in;   /* a pipeline's done inputs (jobs_journal.c), or NULL */
	char task[];
};

struct fp_jobs {
	fp_pool *pool;
	fp_loop *loop;
	struct fp_jobs_options opts;

	fp_job **buckets;          /* chained hash table by id, power-of-two size */
	size_t nbuckets;
	/* Kept jobs with a key, chained by it: as many buckets as `buckets`. */
	fp_job **ikeys;
	fp_job *all;               /* kept jobs, newest first (seq descending) */
	uint64_t last_seq;
	fp_job *fin_head, *fin_tail;   /* finished jobs, in finishing (= expiry) order */
	size_t nfinished;
	size_t unfinished;
	/* Bytes the finished jobs hold, and of those the ones held by readers. */
	uint64_t fin_bytes, fin_held_bytes;
	/* Forgotten, waiting for their done callback, a callback running or readers. */
	fp_job *orphans;

	/*
	 * The ids of forgotten jobs (jobs_gone.c): a ring of FP_JOBS_GONE_KEPT
	 * records, the oldest overwritten, found through chains of slot numbers
	 * (plus one: 0 ends a chain). Both are allocated at the first forget and
	 * zeroed by the kernel, so what is never used costs nothing.
	 */
	struct gone_rec *gone;
	uint32_t *gone_buckets;
	size_t gone_next, gone_count;

	fp_timer ttl;              /* due when fin_head expires */
	uint8_t id_pool[ID_POOL_BYTES];   /* random bytes not used for an id yet */
	size_t id_pool_left;
	bool closed;
	struct fp_jobs_stats stats;

	/* The journal (jobs_journal.c), when --data-dir gave one. */
	struct fp_journal *journal;
	int journal_err;           /* the last append's error, for the 507 */
	fp_job *jr_dirty;          /* jobs with outcomes to append at the turn's end */
	fp_timer jr_flush;
	struct fp_jobs_recovery recovery;
	uint64_t jr_live;          /* the kept jobs' records' bytes: what a compaction keeps */
	struct jr_compaction *jr_cmp;  /* the compaction running, if any */
	uint64_t jr_retry_at;      /* after a failed one, the size to try again at */
	int jr_compact_err;        /* the last compaction's outcome */
	struct fp_jobs_journal_guest jr_guest;  /* other records kept by compaction */
};

struct fp__job_start {
	enum fp_job_kind kind;
	const char *name;              /* the job's task name */
	size_t n;                      /* items that go in */
	const struct fp_buf *items;    /* apply and map; a pipeline's inputs too, for its estimate */
	const fp_call_options *opts;
	/*
	 * Start the pool call with on_item/on_done and `job` as their data
	 * (a kind may pass callbacks of its own that end by calling these).
	 */
	int (*start)(fp_pool *pool, fp_job *job, const void *arg, fp_item_cb on_item,
		     fp_done_cb on_done, uint64_t *call_id);
	const void *arg;
	const struct fp_job_idem *idem;   /* NULL: no key */
	/* A pipeline's stages and options, for its JOB record. */
	const fp_stage *stages;
	size_t nstages;
	const fp_pipeline_options *popts;
	/*
	 * Taken by fp__jobs_submit() whatever the outcome (freed with ext_free):
	 * once the call started, a refusal after it (the journal's) leaves the
	 * job a tombstone whose done callback still reads it.
	 */
	void *ext;
	void (*ext_free)(void *ext);
	/*
	 * Items to lend to the pool (`items` is then this array) and the text
	 * they point into: fp__jobs_submit() takes them whatever the outcome.
	 */
	struct fp_buf *lent;
	void *lent_text;
};

/* Submit: the common part of every kind (limits, id, lists). */
int fp__jobs_submit(fp_jobs *jobs, const struct fp__job_start *s, fp_job **out);
/* Forget a job (fp_jobs_forget() says DELETED), its id remembered with why. */
void fp__jobs_forget_why(fp_jobs *jobs, fp_job *job, enum fp_job_gone why);
/*
 * Free a forgotten job once the pool, the callbacks running and its readers
 * are all done with it; whoever of them is last calls this.
 */
void fp__job_settle(fp_job *job);
/*
 * What a kind's start function passes to the pool: the on_start callback
 * (data: the job) that makes it running, and its log label, "job ID".
 */
void fp__job_started(fp_pool *pool, uint64_t call_id, void *data);
#define FP__JOB_LABEL_LEN (4 + ID_HEX + 1)
void fp__job_label(const fp_job *job, char *buf);
void *fp__job_ext(const fp_job *job);
/* A tombstone: forgotten while its call was in the pool, keeping nothing. */
bool fp__job_forgotten(const fp_job *job);
uint64_t fp__job_call_id(const fp_job *job);
fp_pool *fp__jobs_pool(const fp_jobs *jobs);

/* One forgotten job's id, 32 bytes. */
struct gone_rec {
	uint8_t id[ID_BYTES];
	uint64_t at_ms;            /* wall clock */
	uint32_t next;             /* the next slot of its chain, plus one; 0 ends it */
	uint8_t why;               /* enum fp_job_gone */
};

/* jobs_table.c: ids and the table by id. */
fp_job *fp__jobs_table_find(const fp_jobs *jobs, const uint8_t *id);
int fp__jobs_table_reserve(fp_jobs *jobs);
void fp__jobs_table_insert(fp_jobs *jobs, fp_job *job);
void fp__jobs_table_remove(fp_jobs *jobs, fp_job *job);
int fp__job_id_generate(fp_jobs *jobs, fp_job *job);
/* job->hex from job->id. */
void fp__job_id_hex(fp_job *job);
/* 32 lowercase hex digits into raw bytes; -EINVAL for anything else. */
int fp__job_id_parse(const char *hex, uint8_t *raw);

/*
 * jobs_idem.c: the index by idempotency key. set copies the key into a job
 * not linked yet; link and unlink follow the table by id; rehash moves the
 * keyed jobs into new buckets (n of them) when the table grows.
 */
int fp__job_idem_set(fp_job *job, const struct fp_job_idem *idem);
void fp__jobs_idem_link(fp_jobs *jobs, fp_job *job);
void fp__jobs_idem_unlink(fp_jobs *jobs, fp_job *job);
void fp__jobs_idem_rehash(fp_jobs *jobs, fp_job **ikeys, size_t n);

/* jobs_memory.c: room under max_results_bytes, estimates, what is kept without room. */
bool fp__jobs_results_room(fp_jobs *jobs, uint64_t need);
uint64_t fp__job_estimate(const struct fp__job_start *s);
/* `r`, or what is kept instead when there is no room for it (filled in `instead`). */
const struct fp_result *fp__job_result_to_keep(fp_job *job, const struct fp_result *r,
					       struct fp_result *instead);

/* jobs_gone.c: remember a forgotten job's id; free what that holds. */
void fp__jobs_gone_add(fp_jobs *jobs, const uint8_t *id, enum fp_job_gone why);
void fp__jobs_gone_free(fp_jobs *jobs);

/* jobs_record.c: a job's memory and its records. */
fp_job *fp__job_alloc(const char *task, size_t n);
/* Items, indices and text; the struct stays (it may be a tombstone). */
void fp__job_release(fp_job *job);
void fp__job_free(fp_job *job);
/* Room for a pipeline's next output. */
int fp__job_outputs_grow(fp_job *job);
/*
 * `bytes` of the job's text pages, counted in its `held`, for texts written
 * in place (a run of values at once); NULL without memory. Not an apply's.
 */
char *fp__job_text_room(fp_job *job, size_t bytes);
/* Keep an outcome in `it` (its text copied into the job's pages). */
void fp__job_record(fp_job *job, struct job_item *it, const struct fp_result *r);
/*
 * The message of an outcome not kept for max_results_bytes: pass it as the
 * result's message and it is stored by reference, costing nothing.
 */
extern const char fp__over_limit_message[];
/* The bytes fp__job_record() would add to the job's `held` for this outcome. */
size_t fp__job_record_need(const fp_job *job, const struct fp_result *r);
/* Start counting the job's `held` in the store's results_bytes (at submission). */
void fp__job_count(fp_job *job);

/*
 * The pool's callbacks of every apply and map (jobs.c), for a recovered job
 * started again (jobs_journal.c); and what both record an outcome with.
 */
void fp__job_item_cb(fp_pool *pool, uint64_t call_id, const struct fp_result *r, void *data);
/* A run of a map's outcomes at once: the form a map on lent items is called back in. */
void fp__job_items_cb(fp_pool *pool, uint64_t call_id, const struct fp_result *r, size_t n,
		      void *data);
/* The pool is done with the job's lent items (its done callback came, or it never started). */
void fp__job_lent_free(fp_job *job);
void fp__job_done_cb(fp_pool *pool, const struct fp_call_summary *s, void *data);
/* The start function of applies and maps (fp__job_start's). */
int fp__job_start_apply_map(fp_pool *pool, fp_job *job, const void *arg, fp_item_cb on_item,
			    fp_done_cb on_done, uint64_t *call_id);
/* Record item `pos`'s outcome (not a pipeline's) and count it. */
void fp__job_outcome(fp_job *job, size_t pos, const struct fp_result *r);
/* End a job: state and finished_at, its TTL from finished_at; watchers told. */
void fp__job_finish(fp_job *job, enum fp_job_state state, uint64_t finished_at);
/* Link a job made by submission or recovery into the table and the lists. */
void fp__jobs_link(fp_jobs *jobs, fp_job *job, size_t n);
/* Forget without remembering its id or writing it down: it was never accepted. */
void fp__jobs_unlink_quiet(fp_jobs *jobs, fp_job *job);

/*
 * jobs_pipeline.c, for a pipeline recovered from the journal: its state made
 * again (the stages, the reduce's among them, named one by one), an output
 * read back appended as if delivered, and the call started again.
 */
void *fp__pipeline_ext_new(fp_jobs *jobs, size_t nstages, bool reduce, bool ordered,
			    bool recovered);
int fp__pipeline_ext_name(void *ext, size_t k, const char *task, size_t len);
void fp__pipeline_ext_free(void *ext);
void fp__job_pipeline_output(fp_job *job, const struct fp_result *r);
/*
 * `input_map` (allocated, taken; NULL: none) says which of the job's
 * inputs each of the call's `n` is, when only some run again.
 */
int fp__job_pipeline_restart(fp_job *job, const fp_stage *stages, size_t nstages,
			     const struct fp_buf *items, size_t n,
			     const fp_pipeline_options *opts, uint32_t *input_map);

/* jobs_journal.c: the store's side of the journal; nothing when there is none. */
struct fp__job_start;
int fp__jobs_journal_job(fp_jobs *jobs, fp_job *job, const struct fp__job_start *s);
void fp__jobs_journal_mark(fp_jobs *jobs, fp_job *job, uint16_t type, uint8_t value,
			   uint64_t when);
/* Outcomes were recorded: append them at the end of the loop turn. */
void fp__jobs_journal_dirty(fp_jobs *jobs, fp_job *job);
/* Append the job's outcomes now (before its END, or its FORGET). */
void fp__jobs_journal_outcomes(fp_jobs *jobs, fp_job *job);
/*
 * A pipeline's input is done (its outputs all delivered): an INPUTS record
 * says so at the end of the turn, after the OUTCOMES with those outputs.
 */
void fp__jobs_journal_input_done(fp_jobs *jobs, fp_job *job, size_t input);
/* The job goes: off the dirty list, its resume state freed. */
void fp__jobs_journal_drop(fp_jobs *jobs, fp_job *job);

/* jobs_watch.c: tell the watchers of an item, or of the end. */
void fp__job_watchers_item(fp_job *job, size_t index);
void fp__job_watchers_end(fp_job *job);

#endif
