/*
 * The job store's idempotency keys: the index from a key to the kept job
 * that holds it, and the hash a request is known by. A key lives in its job
 * and leaves with it, so the index holds no more than the jobs kept.
 *
 * The index is a chained hash table with as many buckets as the table by id
 * (jobs_table.c grows both at once), so linking a job never allocates: a
 * submission that the pool accepted cannot then fail for its key.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_impl.h"

int fp_idem_key_check(const char *key, size_t len)
{
	if (!key || len == 0 || len > FP_IDEM_KEY_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
			return -EINVAL;
	return 0;
}

/*
 * Two multiplications by odd constants and two xor-shifts: each step is a
 * bijection, so one word in never collides with another, and every input
 * bit reaches every output bit.
 */
static uint64_t mix(uint64_t x)
{
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 32;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 29;
	return x;
}

/* Little-endian whatever the machine, so that a hash written in a journal means one thing. */
static uint64_t load_le(const unsigned char *p, size_t n)
{
	uint64_t w = 0;

	for (size_t i = 0; i < n; i++)
		w |= (uint64_t)p[i] << (8 * i);
	return w;
}

uint64_t fp_idem_hash(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t n = len;

	/* A word at a time: a 64 MiB body hashes in tens of milliseconds. */
	for (; n >= 8; p += 8, n -= 8)
		h = mix(h ^ load_le(p, 8));
	/* The tail (0 to 7 bytes), then the piece's length: where one piece ends is hashed. */
	h = mix(h ^ load_le(p, n));
	return mix(h ^ (uint64_t)len);
}

static size_t key_slot(const char *key, size_t len)
{
	return (size_t)fp_idem_hash(FP_IDEM_HASH_INIT, key, len);
}

fp_job *fp_jobs_idem_find(const fp_jobs *jobs, const char *key, size_t len)
{
	fp_job *job;

	if (!jobs || !key || !len)
		return NULL;
	job = jobs->ikeys[key_slot(key, len) & (jobs->nbuckets - 1)];
	while (job && (job->idem_len != len || memcmp(job->idem_key, key, len) != 0))
		job = job->inext;
	return job;
}

int fp__job_idem_set(fp_job *job, const struct fp_job_idem *idem)
{
	char *key;

	if (fp_idem_key_check(idem->key, idem->len) < 0)
		return -EINVAL;
	key = malloc(idem->len + 1);
	if (!key)
		return -ENOMEM;
	memcpy(key, idem->key, idem->len);
	key[idem->len] = '\0';
	free(job->idem_key);
	job->idem_key = key;
	job->idem_len = idem->len;
	job->idem_hash = idem->hash;
	job->idem_slot = key_slot(key, idem->len);
	return 0;
}

void fp__jobs_idem_link(fp_jobs *jobs, fp_job *job)
{
	fp_job **head;

	if (!job->idem_key)
		return;
	head = &jobs->ikeys[job->idem_slot & (jobs->nbuckets - 1)];
	job->inext = *head;
	*head = job;
}

void fp__jobs_idem_unlink(fp_jobs *jobs, fp_job *job)
{
	fp_job **p;

	if (!job->idem_key)
		return;
	p = &jobs->ikeys[job->idem_slot & (jobs->nbuckets - 1)];
	while (*p && *p != job)
		p = &(*p)->inext;
	if (*p)
		*p = job->inext;
	job->inext = NULL;
	/* Gone from the index, the key is nobody's: a new job may take it. */
	free(job->idem_key);
	job->idem_key = NULL;
	job->idem_len = 0;
}

void fp__jobs_idem_rehash(fp_jobs *jobs, fp_job **ikeys, size_t n)
{
	for (size_t i = 0; i < jobs->nbuckets; i++) {
		fp_job *job, *next;
		for (job = jobs->ikeys[i]; job; job = next) {
			size_t h = job->idem_slot & (n - 1);
			next = job->inext;
			job->inext = ikeys[h];
			ikeys[h] = job;
		}
	}
}

int fp_jobs_idem_attach(fp_jobs *jobs, fp_job *job, const struct fp_job_idem *idem)
{
	fp_job *holder;
	int err;

	if (!jobs || !job || !idem || job->forgotten || job->jobs != jobs)
		return -EINVAL;
	if (fp_idem_key_check(idem->key, idem->len) < 0)
		return -EINVAL;
	holder = fp_jobs_idem_find(jobs, idem->key, idem->len);
	if (holder == job && job->idem_hash == idem->hash)
		return 0;
	if (job->idem_key)
		return -EALREADY;
	if (holder)
		return -EEXIST;
	err = fp__job_idem_set(job, idem);
	if (err)
		return err;
	fp__jobs_idem_link(jobs, job);
	return 0;
}

bool fp_job_idem(const fp_job *job, struct fp_job_idem *out)
{
	if (!job->idem_key) {
		*out = (struct fp_job_idem){ NULL, 0, 0 };
		return false;
	}
	*out = (struct fp_job_idem){ job->idem_key, job->idem_len, job->idem_hash };
	return true;
}
