/*
 * The job store: one pool call per job, every item's outcome kept after the
 * call ends, jobs found by a random id, forgotten after a TTL.
 *
 * Memory, so that a million-item map stays cheap: a job is one struct, one
 * array of 16-byte item records, one array of completion indices, and the
 * text of values and messages packed into pages that double from 4 KiB to
 * 1 MiB. Nothing is allocated per item. Consecutive equal messages (a
 * cancelled map's "cancelled" a million times) are stored once.
 *
 * Lifetime against the pool: the pool calls back only from its loop, and
 * always ends a call with its done callback, also after fp_pool_cancel() and
 * in fp_pool_free()'s shutdown. So a job whose call is still in the pool is
 * never freed outright: when it is forgotten (or the store freed) its call is
 * cancelled, its items and text are released, and the bare struct stays as a
 * tombstone - `forgotten`, on the store's orphan list, or with `jobs` NULL
 * once the store is gone - until the done callback frees it. Late item
 * callbacks see the tombstone and keep nothing.
 *
 * Callbacks into watchers may unwatch anything and forget anything: a job
 * that is being called back (`busy`) is unlinked by fp_jobs_forget() at once
 * but freed by the callback that is running, when it returns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "jobs_impl.h"
#include "loop.h"
#include "mem.h"

#define ID_BYTES 16
#define ID_HEX (2 * ID_BYTES)

/* A map's text pages grow by doubling from 4 KiB, so a big map costs few pages. */
#define PAGE_MIN ((size_t)4 << 10)
#define PAGE_MAX ((size_t)1 << 20)

/*
 * An apply keeps one text, mostly a few bytes: it lives in the job itself
 * when it fits here, else in a page of its own exact size. A 4 KiB page per
 * apply was a calloc and a page fault per request under a stream of applies
 * (docs/PROFILE-http-apply.md).
 */
#define APPLY_TEXT_INLINE 48

/* Ids are drawn from getrandom() this many at a time: one syscall per 32 jobs. */
#define ID_POOL_BYTES (32 * ID_BYTES)

#define TABLE_MIN 64

/* The longest the TTL timer sleeps: a longer TTL is reached by re-arming. */
#define TTL_TIMER_MAX_MS ((uint64_t)24 * 3600 * 1000)

/* Kept instead of a result that could not be stored: the job must still end. */
static const char oom_message[] = "the job store ran out of memory for this result";

struct text_page {
	struct text_page *next;
	size_t used, cap;
	char data[];
};

/* 16 bytes: a million items are 16 MB of records. */
struct job_item {
	const char *text;          /* the value (OK) or the message, NUL-terminated */
	uint32_t len;              /* the value's length */
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
	size_t total, ndone, nfailed;
	uint64_t created_at, finished_at;   /* wall clock */
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
	struct text_page *pages;   /* the open page first */
	const char *last_msg;      /* for storing a repeated message once */
	size_t last_msg_len;
	size_t mem_bytes, mem_blocks;

	struct fp_job_watch *watchers;
	struct fp_job_watch *cursor;   /* next watcher of the on_item round */
	unsigned busy;             /* callbacks into watchers running now */
	bool finished;             /* the pool's done callback came */
	bool ended;                /* watchers had on_end; no new ones link */
	bool forgotten;            /* out of the table and lists */
	bool cancel_requested;
	bool apply_text_used;
	bool overflowed;           /* a pipeline cancelled for passing max_outputs */
	char task[];
};

struct fp_jobs {
	fp_pool *pool;
	fp_loop *loop;
	struct fp_jobs_options opts;

	fp_job **buckets;          /* chained hash table by id, power-of-two size */
	size_t nbuckets;
	fp_job *all;               /* kept jobs, newest first */
	fp_job *fin_head, *fin_tail;   /* finished jobs, in finishing (= expiry) order */
	size_t nfinished;
	size_t unfinished;
	fp_job *orphans;           /* forgotten, waiting for their done callback */

	fp_timer ttl;              /* due when fin_head expires */
	uint8_t id_pool[ID_POOL_BYTES];   /* random bytes not used for an id yet */
	size_t id_pool_left;
	bool closed;
	struct fp_jobs_stats stats;
};

/* --- names --------------------------------------------------------------- */

static const char *const state_names[] = {
	[FP_JOB_QUEUED] = "queued",
	[FP_JOB_RUNNING] = "running",
	[FP_JOB_DONE] = "done",
	[FP_JOB_FAILED] = "failed",
	[FP_JOB_CANCELLED] = "cancelled",
};

const char *fp_job_kind_name(enum fp_job_kind kind)
{
	return kind == FP_JOB_APPLY ? "apply" : kind == FP_JOB_MAP ? "map" :
	       kind == FP_JOB_PIPELINE ? "pipeline" : "unknown";
}

const char *fp_job_state_name(enum fp_job_state state)
{
	if ((unsigned)state < sizeof(state_names) / sizeof(state_names[0]))
		return state_names[state];
	return "unknown";
}

int fp_job_state_parse(const char *name, enum fp_job_state *out)
{
	for (unsigned i = 0; name && i < sizeof(state_names) / sizeof(state_names[0]); i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum fp_job_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

void fp_jobs_options_init(struct fp_jobs_options *o)
{
	o->ttl_ms = 10 * 60 * 1000;
	o->max_queue = 1000000;
	o->max_jobs = 10000;
	o->max_outputs = 10000000;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- ids and the table --------------------------------------------------- */

static size_t id_hash(const uint8_t *id)
{
	uint64_t h;

	/* The bits are random already: any 64 of them are a fine hash. */
	memcpy(&h, id, sizeof(h));
	return (size_t)h;
}

static fp_job *table_find(const fp_jobs *jobs, const uint8_t *id)
{
	fp_job *job = jobs->buckets[id_hash(id) & (jobs->nbuckets - 1)];

	while (job && memcmp(job->id, id, ID_BYTES) != 0)
		job = job->hnext;
	return job;
}

/* Room for one more job at a load of at most 1; done before the pool is asked. */
static int table_reserve(fp_jobs *jobs)
{
	size_t n = jobs->nbuckets * 2, i;
	fp_job **b;

	if (jobs->stats.jobs < jobs->nbuckets)
		return 0;
	b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (i = 0; i < jobs->nbuckets; i++) {
		fp_job *job, *next;
		for (job = jobs->buckets[i]; job; job = next) {
			size_t h = id_hash(job->id) & (n - 1);
			next = job->hnext;
			job->hnext = b[h];
			b[h] = job;
		}
	}
	free(jobs->buckets);
	jobs->buckets = b;
	jobs->nbuckets = n;
	return 0;
}

static void table_insert(fp_jobs *jobs, fp_job *job)
{
	fp_job **head = &jobs->buckets[id_hash(job->id) & (jobs->nbuckets - 1)];

	job->hnext = *head;
	*head = job;
}

static void table_remove(fp_jobs *jobs, fp_job *job)
{
	fp_job **p = &jobs->buckets[id_hash(job->id) & (jobs->nbuckets - 1)];

	while (*p && *p != job)
		p = &(*p)->hnext;
	if (*p)
		*p = job->hnext;
	job->hnext = NULL;
}

/*
 * 16 bytes from the pool of random bytes, refilled from getrandom() when it
 * runs dry. Each byte is used once, so ids stay as unguessable as before.
 */
static int id_random(fp_jobs *jobs, uint8_t *out)
{
	if (jobs->id_pool_left < ID_BYTES) {
		size_t got = 0;
		while (got < ID_POOL_BYTES) {
			ssize_t r = getrandom(jobs->id_pool + got, ID_POOL_BYTES - got, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			got += (size_t)r;
		}
		jobs->id_pool_left = ID_POOL_BYTES;
	}
	jobs->id_pool_left -= ID_BYTES;
	memcpy(out, jobs->id_pool + jobs->id_pool_left, ID_BYTES);
	/* Not kept in memory after use. */
	memset(jobs->id_pool + jobs->id_pool_left, 0, ID_BYTES);
	return 0;
}

static int id_generate(fp_jobs *jobs, fp_job *job)
{
	static const char hexdigits[] = "0123456789abcdef";
	int err;

	do {
		err = id_random(jobs, job->id);
		if (err)
			return err;
		/* 2^-128 per pair; checked anyway, a duplicate would shadow a job. */
	} while (table_find(jobs, job->id));
	for (size_t i = 0; i < ID_BYTES; i++) {
		job->hex[2 * i] = hexdigits[job->id[i] >> 4];
		job->hex[2 * i + 1] = hexdigits[job->id[i] & 15];
	}
	job->hex[ID_HEX] = '\0';
	return 0;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

fp_job *fp_jobs_find(fp_jobs *jobs, const char *id)
{
	uint8_t raw[ID_BYTES];

	if (!jobs || !id)
		return NULL;
	/* Exactly 32 lowercase hex digits: ids are compared as their text is printed. */
	for (size_t i = 0; i < ID_BYTES; i++) {
		int hi = hex_value(id[2 * i]);
		int lo = hi < 0 ? -1 : hex_value(id[2 * i + 1]);
		if (lo < 0)
			return NULL;
		raw[i] = (uint8_t)(hi << 4 | lo);
	}
	if (id[ID_HEX] != '\0')
		return NULL;
	return table_find(jobs, raw);
}

/* --- a job's memory ------------------------------------------------------ */

static const char *text_store(fp_job *job, const char *s, size_t len)
{
	struct text_page *pg = job->pages;
	char *d;

	if (job->items == &job->apply_item) {
		/* An apply stores one text: in the job, or in a page of its size. */
		if (len < sizeof(job->apply_text) && !job->apply_text_used && !pg) {
			job->apply_text_used = true;
			memcpy(job->apply_text, s, len);
			job->apply_text[len] = '\0';
			return job->apply_text;
		}
		if (!pg) {
			if (len > SIZE_MAX - sizeof(*pg) - 1)
				return NULL;
			pg = fp_mem_alloc(sizeof(*pg) + len + 1);
			if (!pg)
				return NULL;
			pg->cap = len + 1;
			job->mem_bytes += sizeof(*pg) + len + 1;
			job->mem_blocks++;
			job->pages = pg;
		}
	}
	if (!pg || pg->cap - pg->used < len + 1) {
		size_t cap = pg ? pg->cap * 2 : PAGE_MIN;
		if (cap > PAGE_MAX)
			cap = PAGE_MAX;
		if (cap < len + 1)
			cap = len + 1;
		if (sizeof(*pg) + cap < cap)
			return NULL;
		struct text_page *np = fp_mem_alloc(sizeof(*np) + cap);
		if (!np)
			return NULL;
		np->cap = cap;
		job->mem_bytes += sizeof(*np) + cap;
		job->mem_blocks++;
		/*
		 * A page made for one big text is full at once: it goes behind
		 * the open page, whose free space is still good for small ones.
		 */
		if (pg && cap == len + 1 && pg->cap - pg->used > 0) {
			np->next = pg->next;
			pg->next = np;
		} else {
			np->next = pg;
			job->pages = np;
		}
		pg = np;
	}
	d = pg->data + pg->used;
	pg->used += len + 1;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* Items, indices and text; the struct stays (it may be a tombstone). */
static void job_release(fp_job *job)
{
	struct text_page *pg;

	while ((pg = job->pages)) {
		job->pages = pg->next;
		fp_mem_free(pg);
	}
	if (job->items != &job->apply_item) {
		fp_mem_free(job->items);
		fp_mem_free(job->order);
	}
	fp_mem_free(job->origins);
	job->items = NULL;
	job->order = NULL;
	job->origins = NULL;
	job->cap = 0;
	job->last_msg = NULL;
	job->mem_bytes = 0;
	job->mem_blocks = 0;
}

static void job_free(fp_job *job)
{
	job_release(job);
	if (job->ext_free)
		job->ext_free(job->ext);
	free(job);
}

/* Room for a pipeline's next output: records double, like the text pages. */
static int outputs_grow(fp_job *job)
{
	size_t cap = job->cap ? job->cap * 2 : 64, rec = sizeof(*job->items) + sizeof(*job->origins);
	struct job_item *items;
	struct job_origin *origins;

	/* Positions are 32-bit, as completion indices are. */
	if (cap > (size_t)UINT32_MAX + 1)
		cap = (size_t)UINT32_MAX + 1;
	if (cap <= job->cap || cap > SIZE_MAX / rec)
		return -E2BIG;
	items = fp_mem_alloc(cap * sizeof(*items));
	origins = fp_mem_alloc(cap * sizeof(*origins));
	if (!items || !origins) {
		fp_mem_free(items);
		fp_mem_free(origins);
		return -ENOMEM;
	}
	if (job->total) {
		memcpy(items, job->items, job->total * sizeof(*items));
		memcpy(origins, job->origins, job->total * sizeof(*origins));
	}
	fp_mem_free(job->items);
	fp_mem_free(job->origins);
	job->items = items;
	job->origins = origins;
	job->mem_bytes += (cap - job->cap) * rec;
	if (!job->cap)
		job->mem_blocks += 2;
	job->cap = cap;
	return 0;
}

static fp_job *job_alloc(const char *task, size_t n)
{
	size_t tlen = strlen(task);
	fp_job *job = calloc(1, sizeof(*job) + tlen + 1);

	/* 20 bytes an item must not wrap where size_t is 32 bits. */
	if (n > SIZE_MAX / (sizeof(struct job_item) + sizeof(uint32_t)) || !job) {
		free(job);
		return NULL;
	}
	memcpy(job->task, task, tlen + 1);
	job->total = n;
	job->mem_bytes = sizeof(*job) + tlen + 1;
	job->mem_blocks = 1;
	if (n == 1) {
		/* An apply: its item and completion index are part of the job. */
		job->items = &job->apply_item;
		job->order = &job->apply_order;
	} else if (n) {
		job->items = fp_mem_alloc(n * sizeof(*job->items));
		job->order = fp_mem_alloc(n * sizeof(*job->order));
		if (!job->items || !job->order) {
			job_free(job);
			return NULL;
		}
		job->mem_bytes += n * (sizeof(*job->items) + sizeof(*job->order));
		job->mem_blocks += 2;
	}
	return job;
}

void fp_job_memory(const fp_job *job, size_t *bytes, size_t *blocks)
{
	if (bytes)
		*bytes = job->mem_bytes;
	if (blocks)
		*blocks = job->mem_blocks;
}

/* --- lists and states ---------------------------------------------------- */

static void set_state(fp_job *job, enum fp_job_state s)
{
	if (job->jobs && !job->forgotten) {
		job->jobs->stats.by_state[job->state]--;
		job->jobs->stats.by_state[s]++;
	}
	job->state = s;
}

static void finished_unlink(fp_jobs *jobs, fp_job *job)
{
	if (job->fprev)
		job->fprev->fnext = job->fnext;
	else
		jobs->fin_head = job->fnext;
	if (job->fnext)
		job->fnext->fprev = job->fprev;
	else
		jobs->fin_tail = job->fprev;
	job->fprev = job->fnext = NULL;
	jobs->nfinished--;
}

static void orphan_unlink(fp_jobs *jobs, fp_job *job)
{
	if (job->fprev)
		job->fprev->fnext = job->fnext;
	else
		jobs->orphans = job->fnext;
	if (job->fnext)
		job->fnext->fprev = job->fprev;
	job->fprev = job->fnext = NULL;
}

static void ttl_cb(fp_timer *t);

/*
 * One timer for every finished job: the TTL is the same for all, so the
 * oldest finished job always expires first and the timer follows the head.
 */
static void ttl_arm(fp_jobs *jobs)
{
	uint64_t now, due, delay;

	if (!jobs->fin_head) {
		fp_timer_stop(&jobs->ttl);
		return;
	}
	due = jobs->fin_head->expire_ms;
	if (fp_timer_active(&jobs->ttl) && jobs->ttl.due_ms <= due)
		return;
	now = fp_now_ms();
	delay = due > now ? due - now : 0;
	if (delay > TTL_TIMER_MAX_MS)
		delay = TTL_TIMER_MAX_MS;
	/* Should the backend refuse, the next job to finish tries again. */
	fp_timer_start(jobs->loop, &jobs->ttl, delay, ttl_cb);
}

static void ttl_cb(fp_timer *t)
{
	fp_jobs *jobs = t->data;
	uint64_t now = fp_now_ms();

	while (jobs->fin_head && jobs->fin_head->expire_ms <= now)
		fp_jobs_forget(jobs, jobs->fin_head);
	ttl_arm(jobs);
}

/* --- watchers ------------------------------------------------------------ */

void fp_job_watch(fp_job *job, struct fp_job_watch *w)
{
	w->prev = w->next = NULL;
	w->job = NULL;
	if (!job || job->ended)
		return;
	/*
	 * At the head: a watcher added during an on_item round is not reached
	 * by that round, so it hears only of items recorded after it watched.
	 */
	w->job = job;
	w->next = job->watchers;
	if (job->watchers)
		job->watchers->prev = w;
	job->watchers = w;
}

void fp_job_unwatch(struct fp_job_watch *w)
{
	fp_job *job = w->job;

	if (!job)
		return;
	if (job->cursor == w)
		job->cursor = w->next;
	if (w->prev)
		w->prev->next = w->next;
	else
		job->watchers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->job = NULL;
}

int fp_job_watch_forget(fp_job *job, struct fp_job_watch *w)
{
	w->prev = w->next = NULL;
	w->job = NULL;
	if (!job || !job->finished || job->forgotten)
		return -EINVAL;
	/* A finished job's list held only watchers of its end, all gone by now. */
	w->job = job;
	w->next = job->watchers;
	if (job->watchers)
		job->watchers->prev = w;
	job->watchers = w;
	return 0;
}

static void watchers_item(fp_job *job, size_t index)
{
	struct fp_job_watch *w = job->watchers;

	/*
	 * The cursor lives in the job so that fp_job_unwatch() can move it past
	 * a watcher removed from inside a callback. Rounds never nest: the pool
	 * does not call back from inside a callback, and on_end rounds take
	 * watchers off the head without a cursor.
	 */
	job->busy++;
	while (w && !job->ended) {
		job->cursor = w->next;
		if (w->on_item)
			w->on_item(w, job, index);
		w = job->cursor;
	}
	job->cursor = NULL;
	job->busy--;
}

static void watchers_end(fp_job *job)
{
	struct fp_job_watch *w;

	/* `ended` first: a watcher watching again from on_end is not linked. */
	job->ended = true;
	job->busy++;
	while ((w = job->watchers)) {
		fp_job_unwatch(w);
		if (w->on_end)
			w->on_end(w, job);
	}
	job->busy--;
}

/* --- the pool's callbacks ------------------------------------------------ */

static void item_record(fp_job *job, struct job_item *it, const struct fp_result *r)
{
	fp_item_status status = r->status;
	const char *text = NULL;
	size_t len = 0;

	if (status == FP_ITEM_OK) {
		if (r->value_len <= UINT32_MAX)
			text = text_store(job, r->value ? r->value : "", r->value_len);
		len = r->value_len;
	} else {
		const char *msg = r->message ? r->message : fp_item_status_name(status);
		len = strlen(msg);
		if (job->last_msg && job->last_msg_len == len &&
		    memcmp(job->last_msg, msg, len) == 0) {
			text = job->last_msg;
		} else if ((text = text_store(job, msg, len))) {
			job->last_msg = text;
			job->last_msg_len = len;
		}
		len = 0;
	}
	if (!text) {
		/* The outcome is lost, not the item: it still ends, as an error. */
		status = status == FP_ITEM_OK ? FP_ITEM_TOO_LARGE : status;
		text = oom_message;
		len = 0;
	}
	it->text = text;
	it->len = (uint32_t)len;
	it->status = (uint8_t)status;
	it->attempts = r->attempts > UINT16_MAX ? UINT16_MAX : (uint16_t)r->attempts;
	it->finished = 1;
}

/*
 * An item (or a pipeline's output) at `pos` has its answer recorded: count
 * it, and tell the job's watchers. The pool does not say when an item
 * starts, so a job is running from its first answer.
 */
static void item_counted(fp_job *job, const struct job_item *it, size_t pos)
{
	fp_jobs *jobs = job->jobs;

	if (it->status == FP_ITEM_OK) {
		job->ndone++;
		jobs->stats.items_ok++;
	} else {
		job->nfailed++;
		jobs->stats.items_failed++;
	}
	if (job->state == FP_JOB_QUEUED)
		set_state(job, FP_JOB_RUNNING);
	watchers_item(job, pos);
}

/*
 * A pipeline's output (or error) as it is delivered: appended, so that
 * readers see outputs in delivery order. Its inputs leave the queue count
 * when the call ends: only then is it known that an input owes nothing more.
 */
static void output_append(fp_job *job, const struct fp_result *r)
{
	fp_jobs *jobs = job->jobs;
	size_t pos = job->total;
	struct job_item *it;

	if (jobs->opts.max_outputs && pos >= jobs->opts.max_outputs && !job->overflowed) {
		/* Memory is bounded: stop the pipeline rather than keep everything it makes. */
		job->overflowed = true;
		fp_jobs_cancel(jobs, job);
	}
	if (job->overflowed || (pos == job->cap && outputs_grow(job) < 0)) {
		/* Counted, so the document says outputs are missing. */
		job->nlost++;
		jobs->stats.items_failed++;
		return;
	}
	it = &job->items[pos];
	item_record(job, it, r);
	job->origins[pos] = (struct job_origin){ (uint32_t)r->index, r->stage };
	job->total++;
	item_counted(job, it, pos);
}

static void job_item_cb(fp_pool *pool, uint64_t call_id, const struct fp_result *r,
			void *data)
{
	fp_job *job = data;
	fp_jobs *jobs = job->jobs;
	struct job_item *it;

	if (job->forgotten) {
		/* A tombstone keeps nothing; its items still leave the queue count. */
		if (jobs) {
			if (job->kind != FP_JOB_PIPELINE)
				jobs->stats.items_pending--;
			if (r->status == FP_ITEM_OK)
				jobs->stats.items_ok++;
			else
				jobs->stats.items_failed++;
		}
		return;
	}
	if (job->kind == FP_JOB_PIPELINE) {
		output_append(job, r);
		return;
	}
	if (r->index >= job->total || job->items[r->index].finished)
		return;
	it = &job->items[r->index];
	item_record(job, it, r);
	job->order[job->ndone + job->nfailed] = (uint32_t)r->index;
	jobs->stats.items_pending--;
	item_counted(job, it, r->index);
}

static void job_done_cb(fp_pool *pool, const struct fp_call_summary *s, void *data)
{
	fp_job *job = data;
	fp_jobs *jobs = job->jobs;
	uint64_t now;

	if (job->kind == FP_JOB_PIPELINE && jobs)
		jobs->stats.items_pending -= job->inputs;
	if (job->forgotten) {
		/* The last word from the pool: the tombstone can go. */
		if (jobs)
			orphan_unlink(jobs, job);
		job_free(job);
		return;
	}
	job->finished = true;
	/* Durations are finished_at - created_at: a clock stepped back gives 0, not 2^64. */
	job->finished_at = wall_ms();
	if (job->finished_at < job->created_at)
		job->finished_at = job->created_at;
	if (s->cancelled)
		set_state(job, FP_JOB_CANCELLED);
	else
		set_state(job, job->nfailed ? FP_JOB_FAILED : FP_JOB_DONE);
	jobs->unfinished--;

	now = fp_now_ms();
	job->expire_ms = jobs->opts.ttl_ms > UINT64_MAX - now ? UINT64_MAX
							      : now + jobs->opts.ttl_ms;
	job->fprev = jobs->fin_tail;
	if (jobs->fin_tail)
		jobs->fin_tail->fnext = job;
	else
		jobs->fin_head = job;
	jobs->fin_tail = job;
	jobs->nfinished++;

	watchers_end(job);
	if (job->forgotten) {
		/* Forgotten by a watcher: fp_jobs_forget() left the freeing to us. */
		job_free(job);
	}
	while (jobs->nfinished > jobs->opts.max_jobs)
		fp_jobs_forget(jobs, jobs->fin_head);
	ttl_arm(jobs);
}

/* --- the store ----------------------------------------------------------- */

int fp_jobs_new(fp_jobs **out, fp_pool *pool, const struct fp_jobs_options *o)
{
	fp_jobs *jobs;

	*out = NULL;
	if (!pool)
		return -EINVAL;
	jobs = calloc(1, sizeof(*jobs));
	if (!jobs)
		return -ENOMEM;
	jobs->buckets = calloc(TABLE_MIN, sizeof(*jobs->buckets));
	if (!jobs->buckets) {
		free(jobs);
		return -ENOMEM;
	}
	jobs->nbuckets = TABLE_MIN;
	jobs->pool = pool;
	jobs->loop = fp_pool_loop(pool);
	if (o)
		jobs->opts = *o;
	else
		fp_jobs_options_init(&jobs->opts);
	jobs->ttl.data = jobs;
	*out = jobs;
	return 0;
}

void fp_jobs_free(fp_jobs *jobs)
{
	fp_job *job;

	if (!jobs)
		return;
	fp_timer_stop(&jobs->ttl);
	while ((job = jobs->all)) {
		struct fp_job_watch *w;

		jobs->all = job->next;
		/* No callbacks from here: watches are only unlinked. */
		while ((w = job->watchers))
			fp_job_unwatch(w);
		if (job->finished) {
			job_free(job);
			continue;
		}
		/* In the pool still: a tombstone until its done callback. */
		fp_pool_cancel(jobs->pool, job->call_id);
		job->forgotten = true;
		job->ended = true;
		job->jobs = NULL;
		job->prev = job->next = job->hnext = NULL;
		job_release(job);
	}
	for (job = jobs->orphans; job; job = job->fnext)
		job->jobs = NULL;
	free(jobs->buckets);
	free(jobs);
}

static int start_apply_map(fp_pool *pool, fp_job *job, const void *arg, fp_item_cb on_item,
			   fp_done_cb on_done, uint64_t *call_id)
{
	const struct fp__job_start *s = arg;

	if (s->kind == FP_JOB_APPLY)
		return fp_pool_apply_async(pool, s->name, s->items[0].base, s->items[0].len,
					   s->opts, on_item, on_done, job, call_id);
	return fp_pool_map_async(pool, s->name, s->items, s->n, s->opts, on_item, on_done,
				 job, call_id);
}

int fp_jobs_submit(fp_jobs *jobs, enum fp_job_kind kind, const char *task,
		   const struct fp_buf *items, size_t n, const fp_call_options *opts,
		   fp_job **out)
{
	struct fp__job_start s = {
		.kind = kind, .name = task, .n = n, .items = items, .opts = opts,
		.start = start_apply_map,
	};

	s.arg = &s;
	if (out)
		*out = NULL;
	if (!task || (n && !items) || (kind == FP_JOB_APPLY && n != 1) ||
	    (kind != FP_JOB_APPLY && kind != FP_JOB_MAP))
		return -EINVAL;
	return fp__jobs_submit(jobs, &s, out);
}

int fp__jobs_submit(fp_jobs *jobs, const struct fp__job_start *s, fp_job **out)
{
	bool pipeline = s->kind == FP_JOB_PIPELINE;
	size_t n = s->n;
	uint64_t room;
	fp_job *job;
	int err;

	if (out)
		*out = NULL;
	if (!jobs || !s->name || !s->start)
		return -EINVAL;
	if (jobs->closed)
		return FP_ESTOPPED;
	/* Completion indices are 32-bit, as the pool's own item numbers are. */
	if (n > UINT32_MAX)
		return -E2BIG;
	room = jobs->stats.items_pending >= jobs->opts.max_queue ? 0 :
	       jobs->opts.max_queue - jobs->stats.items_pending;
	if (n > room) {
		jobs->stats.rejected++;
		return -EBUSY;
	}
	/* A pipeline's records are made as its outputs come. */
	job = job_alloc(s->name, pipeline ? 0 : n);
	if (!job)
		return -ENOMEM;
	err = table_reserve(jobs);
	if (err)
		goto err_job;
	err = id_generate(jobs, job);
	if (err)
		goto err_job;
	job->jobs = jobs;
	job->kind = s->kind;
	job->inputs = n;
	job->state = FP_JOB_QUEUED;
	job->created_at = wall_ms();
	/* The start function may reach the ext; the job owns it only once started. */
	job->ext = s->ext;
	err = s->start(jobs->pool, job, s->arg, job_item_cb, job_done_cb, &job->call_id);
	if (err)
		goto err_job;

	/* The pool calls back from its loop only: linking after it is safe. */
	job->ext_free = s->ext_free;
	table_insert(jobs, job);
	job->next = jobs->all;
	if (jobs->all)
		jobs->all->prev = job;
	jobs->all = job;
	jobs->stats.jobs++;
	jobs->stats.by_state[FP_JOB_QUEUED]++;
	jobs->stats.items_pending += n;
	jobs->stats.submitted++;
	jobs->unfinished++;
	if (out)
		*out = job;
	return 0;

err_job:
	job_free(job);
	return err;
}

int fp_jobs_cancel(fp_jobs *jobs, fp_job *job)
{
	int err;

	if (job->finished || job->forgotten)
		return -EALREADY;
	err = fp_pool_cancel(jobs->pool, job->call_id);
	/* The pool refuses a second cancel of the same call; to us it is done. */
	if (err == -ENOENT && job->cancel_requested)
		err = 0;
	if (err == 0)
		job->cancel_requested = true;
	return err;
}

void fp_jobs_forget(fp_jobs *jobs, fp_job *job)
{
	if (!jobs || !job || job->forgotten)
		return;
	table_remove(jobs, job);
	if (job->prev)
		job->prev->next = job->next;
	else
		jobs->all = job->next;
	if (job->next)
		job->next->prev = job->prev;
	job->prev = job->next = NULL;
	jobs->stats.jobs--;
	jobs->stats.by_state[job->state]--;
	job->forgotten = true;

	if (job->finished) {
		finished_unlink(jobs, job);
		if (!jobs->fin_head)
			fp_timer_stop(&jobs->ttl);
		/* Only fp_job_watch_forget() watchers are left; `forgotten` keeps new ones out. */
		watchers_end(job);
		if (!job->busy)
			job_free(job);
		return;
	}

	/* Still in the pool: cancel it, tell the watchers, keep a tombstone. */
	jobs->unfinished--;
	fp_pool_cancel(jobs->pool, job->call_id);
	job->fnext = jobs->orphans;
	if (jobs->orphans)
		jobs->orphans->fprev = job;
	jobs->orphans = job;
	watchers_end(job);
	job_release(job);
}

size_t fp_jobs_list(fp_jobs *jobs, const enum fp_job_state *state, fp_job **out,
		    size_t max)
{
	size_t n = 0;

	for (fp_job *job = jobs->all; job && n < max; job = job->next)
		if (!state || job->state == *state)
			out[n++] = job;
	return n;
}

void fp_jobs_stats(const fp_jobs *jobs, struct fp_jobs_stats *out)
{
	*out = jobs->stats;
}

void fp_jobs_close(fp_jobs *jobs)
{
	jobs->closed = true;
}

size_t fp_jobs_unfinished(const fp_jobs *jobs)
{
	return jobs->unfinished;
}

/* --- one job ------------------------------------------------------------- */

const char *fp_job_id(const fp_job *job) { return job->hex; }
enum fp_job_kind fp_job_kind(const fp_job *job) { return job->kind; }
const char *fp_job_task(const fp_job *job) { return job->task; }
enum fp_job_state fp_job_state(const fp_job *job) { return job->state; }
bool fp_job_finished(const fp_job *job) { return job->finished; }
size_t fp_job_total(const fp_job *job) { return job->total; }
size_t fp_job_done(const fp_job *job) { return job->ndone; }
size_t fp_job_failed(const fp_job *job) { return job->nfailed; }
size_t fp_job_inputs(const fp_job *job) { return job->inputs; }
size_t fp_job_lost(const fp_job *job) { return job->nlost; }
bool fp_job_overflowed(const fp_job *job) { return job->overflowed; }
void *fp__job_ext(const fp_job *job) { return job->ext; }
bool fp__job_forgotten(const fp_job *job) { return job->forgotten; }
uint64_t fp__job_call_id(const fp_job *job) { return job->call_id; }
fp_pool *fp__jobs_pool(const fp_jobs *jobs) { return jobs->pool; }
uint64_t fp_job_created_at(const fp_job *job) { return job->created_at; }
uint64_t fp_job_finished_at(const fp_job *job) { return job->finished_at; }

void fp_job_item(const fp_job *job, size_t i, struct fp_job_item *out)
{
	const struct job_item *it;

	memset(out, 0, sizeof(*out));
	if (i >= job->total || !job->items || !job->items[i].finished)
		return;
	it = &job->items[i];
	out->finished = true;
	out->index = job->origins ? job->origins[i].index : i;
	out->stage = job->origins ? job->origins[i].stage : 0;
	out->status = (fp_item_status)it->status;
	out->attempts = it->attempts;
	if (it->status == FP_ITEM_OK) {
		out->value = it->text;
		out->value_len = it->len;
	} else {
		out->message = it->text;
	}
}

size_t fp_job_completed_index(const fp_job *job, size_t k)
{
	if (k >= job->ndone + job->nfailed)
		return SIZE_MAX;
	if (job->kind == FP_JOB_PIPELINE)
		return k;
	return job->order ? job->order[k] : SIZE_MAX;
}
