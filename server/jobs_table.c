/*
 * The job store's ids and its table: 128 random bits per job from a pool of
 * getrandom() bytes, printed as 32 hex digits, found through a chained hash
 * table that doubles as it fills (and the index by key with it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "jobs_impl.h"

static size_t id_hash(const uint8_t *id)
{
	uint64_t h;

	/* The bits are random already: any 64 of them are a fine hash. */
	memcpy(&h, id, sizeof(h));
	return (size_t)h;
}

fp_job *fp__jobs_table_find(const fp_jobs *jobs, const uint8_t *id)
{
	fp_job *job = jobs->buckets[id_hash(id) & (jobs->nbuckets - 1)];

	while (job && memcmp(job->id, id, ID_BYTES) != 0)
		job = job->hnext;
	return job;
}

/*
 * Room for one more job at a load of at most 1; done before the pool is
 * asked. The index by idempotency key (jobs_idem.c) grows with it, so that
 * linking a job into either never fails.
 */
int fp__jobs_table_reserve(fp_jobs *jobs)
{
	size_t n = jobs->nbuckets * 2, i;
	fp_job **b, **ik;

	if (jobs->stats.jobs < jobs->nbuckets)
		return 0;
	b = calloc(n, sizeof(*b));
	ik = calloc(n, sizeof(*ik));
	if (!b || !ik) {
		free(b);
		free(ik);
		return -ENOMEM;
	}
	fp__jobs_idem_rehash(jobs, ik, n);
	free(jobs->ikeys);
	jobs->ikeys = ik;
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

void fp__jobs_table_insert(fp_jobs *jobs, fp_job *job)
{
	fp_job **head = &jobs->buckets[id_hash(job->id) & (jobs->nbuckets - 1)];

	job->hnext = *head;
	*head = job;
}

void fp__jobs_table_remove(fp_jobs *jobs, fp_job *job)
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

void fp__job_id_hex(fp_job *job)
{
	static const char hexdigits[] = "0123456789abcdef";

	for (size_t i = 0; i < ID_BYTES; i++) {
		job->hex[2 * i] = hexdigits[job->id[i] >> 4];
		job->hex[2 * i + 1] = hexdigits[job->id[i] & 15];
	}
	job->hex[ID_HEX] = '\0';
}

int fp__job_id_generate(fp_jobs *jobs, fp_job *job)
{
	int err;

	do {
		err = id_random(jobs, job->id);
		if (err)
			return err;
		/* 2^-128 per pair; checked anyway, a duplicate would shadow a job. */
	} while (fp__jobs_table_find(jobs, job->id));
	fp__job_id_hex(job);
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

int fp__job_id_parse(const char *hex, uint8_t *raw)
{
	/* Exactly 32 lowercase hex digits: ids are compared as their text is printed. */
	for (size_t i = 0; i < ID_BYTES; i++) {
		int hi = hex_value(hex[2 * i]);
		int lo = hi < 0 ? -1 : hex_value(hex[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		raw[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[ID_HEX] == '\0' ? 0 : -EINVAL;
}

fp_job *fp_jobs_find(fp_jobs *jobs, const char *id)
{
	uint8_t raw[ID_BYTES];

	if (!jobs || !id || fp__job_id_parse(id, raw) < 0)
		return NULL;
	return fp__jobs_table_find(jobs, raw);
}
