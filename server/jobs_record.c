/*
 * A job's records: one 16-byte record per item (a pipeline: per output, with
 * its origin), and the text of values and messages packed into pages that
 * double from 4 KiB. Nothing is allocated per item; consecutive equal
 * messages (a cancelled map's "cancelled" a million times) are stored once.
 * And the bytes all that holds, as the store counts them (`held`).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_impl.h"
#include "forkpool/loop.h"

/* Text pages grow by doubling from 4 KiB, so a big map costs few pages. */
#define PAGE_MIN ((size_t)4 << 10)
/*
 * Up to 8 MiB: pages of 4 MiB and more get transparent huge pages (pool/mem.c),
 * so a million outputs' text (some 14 MB) takes a few faults, not thousands.
 */
#define PAGE_MAX ((size_t)8 << 20)

/* A pipeline's first record arrays hold at least this many outputs. */
#define OUTPUTS_MIN 64

/* Kept instead of a result that could not be stored: the job must still end. */
static const char oom_message[] = "the job store ran out of memory for this result";

const char fp__over_limit_message[] =
	"result not kept: the results this server holds reached its limit"
	" (--max-results-memory); read and delete finished jobs, or raise the limit";

/* The job's `held` and, once it counts, the store's total with it. */
static void held_add(fp_job *job, size_t bytes)
{
	job->held += bytes;
	if (job->counted && job->jobs)
		job->jobs->stats.results_bytes += bytes;
}

void fp__job_count(fp_job *job)
{
	if (job->counted || !job->jobs)
		return;
	job->counted = true;
	job->jobs->stats.results_bytes += job->held;
}

static const char *text_store(fp_job *job, const char *s, size_t len)
{
	struct text_page *pg = job->pages;
	char *d;

	if (job->items == &job->apply_item) {
		/* An apply stores one text: in the job, or in a page of its size. */
		if (len < sizeof(job->apply_text) && !job->apply_text_used && !pg) {
			/* Part of the job, counted with it. */
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
			held_add(job, sizeof(*pg));
			job->pages = pg;
		}
	}
	d = fp__job_text_room(job, len + 1);
	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

char *fp__job_text_room(fp_job *job, size_t bytes)
{
	struct text_page *pg = job->pages;
	char *d;

	if (!pg || pg->cap - pg->used < bytes) {
		size_t cap = pg ? pg->cap * 2 : PAGE_MIN;
		if (cap > PAGE_MAX)
			cap = PAGE_MAX;
		if (cap < bytes)
			cap = bytes;
		if (sizeof(*pg) + cap < cap)
			return NULL;
		struct text_page *np = fp_mem_alloc(sizeof(*np) + cap);
		if (!np)
			return NULL;
		np->cap = cap;
		job->mem_bytes += sizeof(*np) + cap;
		job->mem_blocks++;
		held_add(job, sizeof(*np));
		/*
		 * A page made for one big text is full at once: it goes behind
		 * the open page, whose free space is still good for small ones.
		 */
		if (pg && cap == bytes && pg->cap - pg->used > 0) {
			np->next = pg->next;
			pg->next = np;
		} else {
			np->next = pg;
			job->pages = np;
		}
		pg = np;
	}
	d = pg->data + pg->used;
	pg->used += bytes;
	held_add(job, bytes);
	return d;
}

void fp__job_release(fp_job *job)
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
	if (job->counted && job->jobs)
		job->jobs->stats.results_bytes -= job->held;
	job->held = 0;
}

void fp__job_free(fp_job *job)
{
	fp__job_release(job);
	/* Only ever a job whose call is over (or never began): the pool lets go first. */
	fp__job_lent_free(job);
	if (job->ext_free)
		job->ext_free(job->ext);
	free(job->idem_key);
	free(job);
}

/* Records double, like the text pages. */
int fp__job_outputs_grow(fp_job *job)
{
	size_t cap = job->cap * 2, rec = sizeof(*job->items) + sizeof(*job->origins);
	struct job_item *items;
	struct job_origin *origins;

	if (!job->cap) {
		/*
		 * First room for as many outputs as inputs (up to max_outputs):
		 * most pipelines make about one output per input, and growing
		 * by doubling copied every record some twenty times over for a
		 * million outputs. Big arrays are mappings, so what is never
		 * filled (a reduce's single output) costs address space only.
		 */
		uint64_t most = job->jobs ? job->jobs->opts.max_outputs : 0;
		cap = job->inputs;
		if (most && cap > most)
			cap = (size_t)most;
		if (cap < OUTPUTS_MIN)
			cap = OUTPUTS_MIN;
	}

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

fp_job *fp__job_alloc(const char *task, size_t n)
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
	/* A map's records are all written in the end: counted from the start. */
	job->held = job->mem_bytes + (n > 1 ? n * (sizeof(*job->items) + sizeof(*job->order)) : 0);
	if (n == 1) {
		/* An apply: its item and completion index are part of the job. */
		job->items = &job->apply_item;
		job->order = &job->apply_order;
	} else if (n) {
		job->items = fp_mem_alloc(n * sizeof(*job->items));
		job->order = fp_mem_alloc(n * sizeof(*job->order));
		if (!job->items || !job->order) {
			fp__job_free(job);
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


/* A message that is stored once already: the last one, or our own. */
static const char *message_kept(const fp_job *job, const char *msg, size_t len)
{
	if (msg == fp__over_limit_message)
		return msg;
	if (job->last_msg && job->last_msg_len == len && memcmp(job->last_msg, msg, len) == 0)
		return job->last_msg;
	return NULL;
}

/* `msg`, a NUL and `tb` stored as one text; *len covers both (not the last NUL). */
static const char *message_with_traceback(fp_job *job, const char *msg, const char *tb,
					  size_t *len)
{
	size_t mlen = strlen(msg), tlen = strlen(tb);
	const char *text;
	char *both;

	*len = 0;
	if (mlen + 1 + tlen > UINT32_MAX || !(both = malloc(mlen + 1 + tlen)))
		return NULL;
	memcpy(both, msg, mlen + 1);
	memcpy(both + mlen + 1, tb, tlen);
	text = text_store(job, both, mlen + 1 + tlen);
	free(both);
	if (text)
		*len = mlen + 1 + tlen;
	return text;
}

size_t fp__job_record_need(const fp_job *job, const struct fp_result *r)
{
	size_t need = job->origins ? sizeof(struct job_item) + sizeof(struct job_origin) : 0;
	const char *msg;

	if (r->status == FP_ITEM_OK) {
		if (job->items == &job->apply_item && r->value_len < sizeof(job->apply_text) &&
		    !job->apply_text_used && !job->pages)
			return need;
		return need + r->value_len + 1;
	}
	msg = r->message ? r->message : fp_item_status_name(r->status);
	if (r->traceback)
		return need + strlen(msg) + 1 + strlen(r->traceback) + 1;
	return message_kept(job, msg, strlen(msg)) ? need : need + strlen(msg) + 1;
}

void fp__job_record(fp_job *job, struct job_item *it, const struct fp_result *r)
{
	fp_item_status status = r->status;
	const char *text = NULL;
	size_t len = 0;

	/* A pipeline's output record (counted as its text is, once written). */
	if (job->origins)
		held_add(job, sizeof(struct job_item) + sizeof(struct job_origin));
	if (status == FP_ITEM_OK) {
		if (r->value_len <= UINT32_MAX)
			text = text_store(job, r->value ? r->value : "", r->value_len);
		len = r->value_len;
	} else if (r->traceback) {
		/* Message NUL traceback, in one text; never shared with another item. */
		text = message_with_traceback(job, r->message ? r->message : "", r->traceback, &len);
	} else {
		const char *msg = r->message ? r->message : fp_item_status_name(status);
		len = strlen(msg);
		if ((text = message_kept(job, msg, len))) {
			/* Stored once already. */
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
		if (it->len)
			out->traceback = it->text + strlen(it->text) + 1;
	}
}

size_t fp_job_values(const fp_job *job, size_t k, bool completion,
		     struct fp_job_value *out, size_t max)
{
	const struct job_item *items = job->items;
	size_t n = 0, end;

	if (!items)
		return 0;
	if (job->kind == FP_JOB_PIPELINE) {
		/* Outputs are appended finished: every one below total can be read. */
		if (k >= job->total)
			return 0;
		if (job->total - k < max)
			max = job->total - k;
		for (; n < max && items[k + n].status == FP_ITEM_OK; n++)
			out[n] = (struct fp_job_value){ items[k + n].text, items[k + n].len,
						       job->origins[k + n].index };
		return n;
	}
	if (completion) {
		end = job->ndone + job->nfailed;
		if (k >= end || !job->order)
			return 0;
		if (end - k < max)
			max = end - k;
		for (; n < max; n++) {
			uint32_t i = job->order[k + n];
			if (items[i].status != FP_ITEM_OK)
				break;
			out[n] = (struct fp_job_value){ items[i].text, items[i].len, i };
		}
		return n;
	}
	if (k >= job->total)
		return 0;
	if (job->total - k < max)
		max = job->total - k;
	for (; n < max && items[k + n].finished && items[k + n].status == FP_ITEM_OK; n++)
		out[n] = (struct fp_job_value){ items[k + n].text, items[k + n].len,
					       (uint32_t)(k + n) };
	return n;
}

size_t fp_job_completed_index(const fp_job *job, size_t k)
{
	if (k >= job->ndone + job->nfailed)
		return SIZE_MAX;
	if (job->kind == FP_JOB_PIPELINE)
		return k;
	return job->order ? job->order[k] : SIZE_MAX;
}
