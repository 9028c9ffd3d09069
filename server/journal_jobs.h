/*
 * What the job store writes in the journal, and reads back: one record
 * type per event of a job's life, encoded with journal_format.h's fields.
 * The store's own structs are not seen here (jobs_journal.c translates), so
 * the file format changes only when this file does.
 *
 *   JOB       accepted: id, kind, created_at, idempotency key and body
 *             hash, the call's options (a pipeline's stages and reduce),
 *             and every item as received (its JSON text); then, for an
 *             apply or a map with one, its own concurrency (a u32 after
 *             the items, left out when 0, so that records written before
 *             it was kept read as they did and a journal without any reads
 *             in an older build)
 *   STARTED   its first item was handed to a worker: started_at
 *   OUTCOMES  some items' (a pipeline's outputs') values or errors, with
 *             attempts, and a pipeline output's input index and stage:
 *             what finished in one loop turn is one record. Written as
 *             OUTCOMES_PACKED (type 9: varints, each place as the distance
 *             from the one before, some 15 bytes a map's item instead of
 *             24); type 3, fixed-width, is what older builds wrote, still
 *             read
 *   END       finished: state and finished_at
 *   CANCEL    a cancel was asked for
 *   FORGET    forgotten (deleted, expired): the reason, a byte the store
 *             gives meaning to
 *   RERUN     a pipeline started again after a restart: the outputs and
 *             INPUTS recorded before it are void, so a second restart
 *             does not give them twice (those it keeps are written again
 *             after it, in their new places)
 *   INPUTS    some of a pipeline's inputs are done: every output they
 *             made is in an OUTCOMES record before this one (the pool
 *             tells, fp_pipeline_options.on_input_done)
 *
 * Replaying is idempotent by design: an outcome for an item that has one,
 * a second END or JOB for a known id, a FORGET for an unknown one change
 * nothing; a pipeline's outputs carry their place (pos), and one whose
 * place is already filled is the same output said again. Compaction relies
 * on it (records of the live state, then those appended meanwhile, may say
 * a thing twice).
 *
 * A pipeline left unfinished resumes from its inputs that are not done:
 * the outputs of those an INPUTS record names are kept, the others' are
 * dropped (they were partial: an input's outputs come from every stage,
 * a generator's at any time) and those inputs run again. A pipeline with a
 * reduce reruns whole: its values are folded together and belong to no
 * input, so none is ever done on its own. INPUTS is a record type that
 * older builds do not know: they refuse such a journal naming the type
 * and offset, while this build reads every older journal (one without
 * INPUTS simply reruns its pipelines whole, as those builds did).
 */
#ifndef FP_SERVER_JOURNAL_JOBS_H
#define FP_SERVER_JOURNAL_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal_format.h"

enum fp_jr_type {
	FP_JR_JOB = 1,
	FP_JR_STARTED = 2,
	FP_JR_OUTCOMES = 3,
	FP_JR_END = 4,
	FP_JR_CANCEL = 5,
	FP_JR_FORGET = 6,
	FP_JR_RERUN = 7,
	FP_JR_INPUTS = 8,
	FP_JR_OUTCOMES_PACKED = 9,
	/* 10 and 11: the shared values' KV_SET and KV_DEL (kv_journal.h). */
};

#define FP_JR_ID_BYTES 16

/* The options of an apply's or a map's call, or of one pipeline stage. */
struct fp_jr_opts {
	const char *task;               /* not NUL-terminated when decoded */
	size_t task_len;
	int64_t timeout_ms;
	uint32_t retries;
	uint32_t retry_on;
	uint64_t chunksize;             /* apply, map */
	uint32_t concurrency;           /* apply, map: 0 none */
	uint32_t workers;               /* a stage */
	uint64_t buffer;                /* a stage */
};

/* An item as received: its JSON text. */
struct fp_jr_item {
	const char *text;
	size_t len;
};

struct fp_jr_job {
	uint8_t id[FP_JR_ID_BYTES];
	uint8_t kind;                   /* enum fp_job_kind */
	uint64_t created_at;
	const char *idem_key;           /* NULL when none */
	size_t idem_key_len;
	uint64_t body_hash;
	/* Apply and map: opts. A pipeline: its stages, reduce and order. */
	struct fp_jr_opts opts;
	size_t nstages;
	struct fp_jr_opts *stages;      /* decoded: allocated */
	const char *reduce;             /* NULL: none */
	size_t reduce_len;
	uint64_t reduce_batch;
	bool ordered;
	size_t n;
	struct fp_jr_item *items;       /* decoded: allocated */
};

/* Append a JOB record to b (fp_jrec_begin/end around it). */
int fp_jr_put_job(struct sbuf *b, const struct fp_jr_job *job);
/*
 * Decode a JOB record's payload: the strings and items point into it; the
 * stage and item arrays are allocated (fp_jr_job_clear frees them).
 * -EBADMSG when a field is missing or out of range, -ENOMEM.
 */
int fp_jr_get_job(const struct fp_jrec *r, struct fp_jr_job *out);
void fp_jr_job_clear(struct fp_jr_job *job);

/* One item's (or pipeline output's) outcome. */
struct fp_jr_outcome {
	uint32_t pos;                   /* the item, or the output's place */
	uint8_t status;                 /* fp_item_status */
	uint32_t attempts;
	uint32_t index, stage;          /* a pipeline output's origin */
	const char *text;               /* value (status OK) or message */
	size_t len;
};

/*
 * OUTCOMES is built in three steps: begin (the job's id; whether entries
 * carry an origin), one put per outcome, end (fills in the count); the
 * record's type is fp_jr_outcomes_type()'s. Decoded with get_begin (either
 * type) then get_next until it returns 0.
 *
 * The payload: id, u8 origin, u32 count, then each entry. Packed: varints
 * of the place's distance from the one before (zigzag: pos - prev - 1, the
 * first's prev being -1), status, attempts, [index, stage,] the text's
 * length, then the text. Fixed (type 3): u32 pos, u8 status, u32 attempts,
 * [u32 index, u32 stage,] the text as a byte string.
 */
struct fp_jr_outcomes {
	struct sbuf *b;
	size_t count_at;
	uint32_t count;
	bool origin;
	bool packed;
	int64_t prev;                   /* packed: the place before */
	/* Decoding. */
	struct fp_jcur cur;
	uint32_t left;
};

size_t fp_jr_outcomes_begin(struct fp_jr_outcomes *o, struct sbuf *b,
			    const uint8_t id[FP_JR_ID_BYTES], bool origin);
/* As begin, in the layout of `type` (FP_JR_OUTCOMES: as older builds wrote it). */
size_t fp_jr_outcomes_begin_as(struct fp_jr_outcomes *o, struct sbuf *b,
			       const uint8_t id[FP_JR_ID_BYTES], bool origin, uint16_t type);
uint16_t fp_jr_outcomes_type(const struct fp_jr_outcomes *o);
void fp_jr_outcomes_put(struct fp_jr_outcomes *o, const struct fp_jr_outcome *e);
void fp_jr_outcomes_end(struct fp_jr_outcomes *o);

int fp_jr_outcomes_get_begin(struct fp_jr_outcomes *o, const struct fp_jrec *r,
			     uint8_t id[FP_JR_ID_BYTES]);
/* 1 and *e, 0 at the end, -EBADMSG. */
int fp_jr_outcomes_get_next(struct fp_jr_outcomes *o, struct fp_jr_outcome *e);

/*
 * The small records: id and one value. STARTED: started_at; END: state
 * (value) and finished_at (when); CANCEL: none; FORGET: the reason;
 * RERUN: when.
 */
struct fp_jr_mark {
	uint8_t id[FP_JR_ID_BYTES];
	uint8_t value;
	uint64_t when;
};

void fp_jr_put_mark(struct sbuf *b, const struct fp_jr_mark *m);
int fp_jr_get_mark(const struct fp_jrec *r, struct fp_jr_mark *out);

/*
 * INPUTS: the job's id, then the done inputs' indices (u32 each). get
 * fills *idx with an allocated array of *n of them (free it); -EBADMSG,
 * -ENOMEM.
 */
void fp_jr_put_inputs(struct sbuf *b, const uint8_t id[FP_JR_ID_BYTES], const uint32_t *idx,
		      size_t n);
int fp_jr_get_inputs(const struct fp_jrec *r, uint8_t id[FP_JR_ID_BYTES], uint32_t **idx,
		     size_t *n);

/* "JOB", "OUTCOMES", ... for messages; "unknown" otherwise. */
const char *fp_jr_type_name(uint16_t type);

#endif
