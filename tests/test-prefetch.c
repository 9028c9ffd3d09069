/*
 * A busy worker's second chunk (dispatch.c, may_prefetch()): while no worker
 * is idle, a worker running quick work is sent its next chunk ahead. These
 * pin down that the chunk held that way is accounted like the one running:
 * a death requeues both and blames only the running item, each item keeps
 * its own timeout, and a cancel of the held chunk's call ends only that call.
 * Runs once per loop backend (FORKPOOL_LOOP in the environment).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "forkpool.h"
#include "fp_test.h"
#include "fp_test_pool.h"
#include "forkpool/loop.h"
#include "pool_impl.h"

#define N 8          /* items of the map a test looks at: two chunks of CHUNK */
#define CHUNK 4
/*
 * Items of `spin 0` after those: a chunk is sent ahead only while the queue
 * is long (FP_PREFETCH_BACKLOG), so every test queues that many more.
 */
#define TAIL FP_PREFETCH_BACKLOG
#define MAX_ITEMS (N + TAIL)

struct calls {
	fp_pool *pool;
	struct fp_result r[2][MAX_ITEMS];
	unsigned seen[2][MAX_ITEMS];
	int done[2];
	size_t n[2];
};

/* One set of callbacks per call: the data pointer says which. */
struct call_ref {
	struct calls *c;
	unsigned k;
};

static void ref_item(fp_pool *p, uint64_t id, const struct fp_result *r, void *data)
{
	struct call_ref *ref = data;
	struct calls *c = ref->c;
	struct fp_result *dst;

	(void)p;
	(void)id;
	assert_true(r->index < c->n[ref->k]);
	c->seen[ref->k][r->index]++;
	dst = &c->r[ref->k][r->index];
	fp_result_clear(dst);
	*dst = *r;
	dst->value = r->value ? strndup(r->value, r->value_len) : NULL;
	dst->message = r->message ? strdup(r->message) : NULL;
}

static void ref_done(fp_pool *p, const struct fp_call_summary *s, void *data)
{
	struct call_ref *ref = data;

	(void)p;
	(void)s;
	ref->c->done[ref->k] = 1;
}

/*
 * The tests use `spin` (CPU milliseconds): `spin 0` takes microseconds, where
 * even `sleep 0` takes a timer's slack and a wake-up, too close to what counts
 * as quick. Chunks are held only behind quick work, so first the pool must
 * take spin for quick: its estimate jumps up on any slow run (a fresh
 * worker's first ones, a preemption on a busy machine) and halves the gap to
 * each quicker one. Maps of `spin 0` until it is (read from the pool itself:
 * on a loaded machine one outlier among the last runs is enough to miss).
 */
#define WARM 256

static void warm_spin(fp_pool *p)
{
	static struct fp_buf items[WARM];
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	const struct fp_registry_task *t = fp_registry_find(&p->reg, "spin");
	int tries;

	assert_non_null(t);
	o.chunksize = WARM;
	for (size_t i = 0; i < WARM; i++)
		items[i] = (struct fp_buf){ "0", 1 };
	for (tries = 0; tries < 50; tries++) {
		struct fp_result *r = NULL;
		size_t ix = (size_t)(t - p->reg.tasks);

		assert_int_equal(fp_pool_map(p, "spin", items, WARM, &o, &r), 0);
		for (size_t i = 0; i < WARM; i++)
			assert_int_equal(r[i].status, FP_ITEM_OK);
		fp_results_free(r, WARM);
		if (p->groups[0]->task_us && ix < p->groups[0]->ntask_us &&
		    p->groups[0]->task_us[ix] <= FP_BATCH_QUICK_US)
			break;
	}
	assert_true(tries < 50);
}

/* args[0..n), then `tail` items of `spin 0`, in chunks of CHUNK. */
static void submit_map_tail(struct calls *c, struct call_ref *ref, unsigned k,
			    const char *const *args, size_t n, size_t tail, int64_t timeout_ms,
			    uint64_t *id)
{
	static struct fp_buf items[MAX_ITEMS];
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;

	o.chunksize = CHUNK;
	o.timeout_ms = timeout_ms;
	for (size_t i = 0; i < n + tail; i++)
		items[i] = i < n ? (struct fp_buf){ (char *)args[i], strlen(args[i]) }
				 : (struct fp_buf){ "0", 1 };
	ref->c = c;
	ref->k = k;
	c->n[k] = n + tail;
	assert_int_equal(fp_pool_map_async(c->pool, "spin", items, n + tail, &o, ref_item,
					   ref_done, ref, id), 0);
}

/* args[0..n), then TAIL items of `spin 0`. */
static void submit_map(struct calls *c, struct call_ref *ref, unsigned k,
		       const char *const *args, size_t n, int64_t timeout_ms, uint64_t *id)
{
	submit_map_tail(c, ref, k, args, n, TAIL, timeout_ms, id);
}

struct held_probe {
	fp_pool *pool;
	uint64_t running;
};

/*
 * At least `running` items on the one worker, more than a chunk: it holds
 * two. (A quick item's answer may wait in the worker, unsent, while a slow
 * one runs: still running as far as the master knows.)
 */
static int holds_both(void *data)
{
	struct held_probe *h = data;
	struct fp_pool_stats st;

	fp_pool_stats(h->pool, &st);
	return st.running >= h->running;
}

/* The one worker has run its current item for 50 ms: the slow one, not a `spin 0`. */
static int running_slow(void *data)
{
	struct fp_worker_stats ws[2];

	return fp_pool_workers(data, ws, 2) == 1 && ws[0].task &&
	       fp_now_ms() >= ws[0].task_started_ms + 50;
}

static int both_done(void *data)
{
	struct calls *c = data;

	return c->done[0] && (c->n[1] == 0 || c->done[1]);
}

static int one_done(void *data)
{
	return ((struct calls *)data)->done[0];
}

static void calls_clear(struct calls *c)
{
	for (unsigned k = 0; k < 2; k++)
		for (size_t i = 0; i < MAX_ITEMS; i++)
			fp_result_clear(&c->r[k][i]);
	free(c);
}

/* Every item of call k answered once and well, from `from` on. */
static void all_ok_from(const struct calls *c, unsigned k, size_t from)
{
	for (size_t i = from; i < c->n[k]; i++) {
		assert_int_equal(c->seen[k][i], 1);
		assert_int_equal(c->r[k][i].status, FP_ITEM_OK);
	}
}

static struct calls *calls_new(void)
{
	struct calls *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->pool = fp_test_pool(1);
	warm_spin(c->pool);
	return c;
}

static void calls_free(struct calls *c)
{
	fp_pool_free(c->pool);
	calls_clear(c);
}

static void death_with_a_held_chunk_requeues_both_and_blames_the_running_item(void **state)
{
	/* Item 1 is running (3 s of CPU) when the worker dies; items 4..7 are held. */
	static const char *const args[N] = { "0", "3000", "0", "0", "0", "0", "0", "0" };
	struct calls *c = calls_new();
	struct call_ref ref;
	struct fp_worker_stats ws[2];
	struct fp_pool_stats st;
	pid_t dead;

	(void)state;
	submit_map(c, &ref, 0, args, N, -1, NULL);
	assert_true(fp_test_run_until(c->pool, holds_both, &(struct held_probe){ c->pool, N - 1 },
				      10000));
	assert_true(fp_test_run_until(c->pool, running_slow, c->pool, 10000));
	assert_int_equal(fp_pool_workers(c->pool, ws, 2), 1);
	dead = ws[0].pid;
	assert_true(dead > 0);
	assert_int_equal(kill(dead, SIGKILL), 0);
	assert_true(fp_test_run_until(c->pool, one_done, c, 30000));

	assert_int_equal(c->seen[0][1], 1);
	assert_int_equal(c->r[0][1].status, FP_ITEM_CRASH);
	assert_non_null(strstr(c->r[0][1].message, "SIGKILL"));
	all_ok_from(c, 0, 2);
	assert_int_equal(c->seen[0][0], 1);
	assert_int_equal(c->r[0][0].status, FP_ITEM_OK);
	/*
	 * Both chunks ran again elsewhere (item 0's answer may have been sent);
	 * items 2..7 had not started, so they used no attempt.
	 */
	assert_int_equal(c->r[0][1].attempts, 1);
	for (size_t i = 2; i < N; i++) {
		assert_int_equal(c->r[0][i].attempts, 1);
		assert_int_not_equal(c->r[0][i].pid, dead);
	}
	fp_pool_stats(c->pool, &st);
	assert_int_equal(st.crashes, 1);
	assert_int_equal(st.failed, 1);
	calls_free(c);
}

static void held_chunk_items_keep_their_own_timeouts(void **state)
{
	/*
	 * With a 1000 ms timeout: item 0 takes 150 ms of CPU, so the worker is
	 * still on its first chunk when the second is held; item 5 of the held
	 * chunk overruns, timed from its own start, not the chunk's.
	 */
	static const char *const args[N] = { "150", "0", "0", "0", "0", "5000", "0", "0" };
	struct calls *c = calls_new();
	struct call_ref ref;
	struct fp_pool_stats st;

	(void)state;
	submit_map(c, &ref, 0, args, N, 1000, NULL);
	assert_true(fp_test_run_until(c->pool, holds_both, &(struct held_probe){ c->pool, N },
				      10000));
	assert_true(fp_test_run_until(c->pool, one_done, c, 30000));
	assert_int_equal(c->seen[0][5], 1);
	assert_int_equal(c->r[0][5].status, FP_ITEM_TIMEOUT);
	assert_non_null(strstr(c->r[0][5].message, "1000 ms timeout"));
	all_ok_from(c, 0, 6);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(c->seen[0][i], 1);
		assert_int_equal(c->r[0][i].status, FP_ITEM_OK);
	}
	/* Item 0 ran within its 1000 ms and was not blamed for item 5's overrun. */
	assert_int_equal(c->r[0][0].attempts, 1);
	fp_pool_stats(c->pool, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.crashes, 0);
	calls_free(c);
}

/*
 * Cancel call 1 (id1) of c, run both to their end, and check the outcome:
 * call 0 all ok, its item 1 run `attempts` times; every item of call 1
 * ended once, cancelled; no crash counted. Frees c.
 */
static void cancel_second_call(struct calls *c, uint64_t id1, unsigned attempts)
{
	struct fp_pool_stats st;

	assert_int_equal(fp_pool_cancel(c->pool, id1), 0);
	assert_true(fp_test_run_until(c->pool, both_done, c, 30000));
	all_ok_from(c, 0, 0);
	assert_int_equal(c->r[0][1].attempts, attempts);
	for (size_t i = 0; i < c->n[1]; i++) {
		assert_int_equal(c->seen[1][i], 1);
		assert_int_equal(c->r[1][i].status, FP_ITEM_CANCELLED);
	}
	fp_pool_stats(c->pool, &st);
	assert_int_equal(st.crashes, 0);
	calls_free(c);
}

static void cancel_of_a_queued_call_leaves_the_held_chunk_alone(void **state)
{
	/* Call 0 runs a 500 ms item with its next chunk held; call 1, queued, is cancelled. */
	static const char *const slow[CHUNK] = { "0", "500", "0", "0" };
	static const char *const quick[CHUNK] = { "0", "0", "0", "0" };
	struct calls *c = calls_new();
	struct call_ref ref0, ref1;
	uint64_t id1;

	(void)state;
	/* Call 0: its slow chunk, then TAIL items queued behind it. */
	submit_map(c, &ref0, 0, slow, CHUNK, -1, NULL);
	assert_true(fp_test_run_until(c->pool, running_slow, c->pool, 10000));
	/* Call 1 queues behind call 0's tail: the held chunk is call 0's second. */
	submit_map(c, &ref1, 1, quick, CHUNK, -1, &id1);
	assert_true(fp_test_run_until(c->pool, holds_both,
				      &(struct held_probe){ c->pool, CHUNK + CHUNK - 1 }, 10000));
	/* Call 1 held nothing on the worker: the worker lives, call 0 all runs once. */
	cancel_second_call(c, id1, 1);
}

static void cancel_of_a_call_whose_chunk_is_held_kills_and_requeues_the_other(void **state)
{
	/*
	 * Call 0 is one slow chunk of CHUNK items; call 1 (all quick, long)
	 * goes on the worker as its held chunk. Cancelling call 1 kills the
	 * worker for it: call 0's items run again, none blamed.
	 */
	static const char *const slow[CHUNK] = { "0", "500", "0", "0" };
	static const char *const quick[CHUNK] = { "0", "0", "0", "0" };
	struct calls *c = calls_new();
	struct call_ref ref0, ref1;
	uint64_t id1;

	(void)state;
	submit_map_tail(c, &ref0, 0, slow, CHUNK, 0, -1, NULL);
	assert_true(fp_test_run_until(c->pool, running_slow, c->pool, 10000));
	submit_map(c, &ref1, 1, quick, CHUNK, -1, &id1);
	assert_true(fp_test_run_until(c->pool, holds_both,
				      &(struct held_probe){ c->pool, CHUNK + CHUNK - 1 }, 10000));
	/* Killed for the other call's cancel: run again, not blamed. */
	cancel_second_call(c, id1, 2);
}

/* Every item of the first chunk is answered. */
static int first_chunk_answered(void *data)
{
	struct calls *c = data;

	for (size_t i = 0; i < CHUNK; i++)
		if (!c->seen[0][i])
			return 0;
	return 1;
}

static void first_chunk_is_answered_before_the_held_one_runs_out(void **state)
{
	/*
	 * Item 0 keeps the first chunk running while the second is held;
	 * items 1..3 are quick, and their answers must leave at the chunk's
	 * end (FP_FRAME_FLUSH on its last TASK), not wait in the worker behind
	 * item 5's 5 s: the master needs them to send more work.
	 */
	static const char *const args[N] = { "150", "0", "0", "0", "0", "5000", "0", "0" };
	struct calls *c = calls_new();
	struct call_ref ref;
	uint64_t id;

	(void)state;
	submit_map(c, &ref, 0, args, N, -1, &id);
	assert_true(fp_test_run_until(c->pool, holds_both, &(struct held_probe){ c->pool, N },
				      10000));
	assert_true(fp_test_run_until(c->pool, first_chunk_answered, c, 10000));
	/* Item 5 takes 5 s of CPU: far from done when the first chunk's answers came. */
	assert_int_equal(c->seen[0][5], 0);
	for (size_t i = 0; i < CHUNK; i++)
		assert_int_equal(c->r[0][i].status, FP_ITEM_OK);
	assert_int_equal(fp_pool_cancel(c->pool, id), 0);
	assert_true(fp_test_run_until(c->pool, one_done, c, 30000));
	calls_free(c);
}

static void no_chunk_is_held_while_the_queue_is_short(void **state)
{
	/*
	 * Two calls of one chunk each: the second waits in the queue, not
	 * behind the first's slow item, so that a worker coming free would
	 * find it (a short queue is all that is left to do).
	 */
	static const char *const slow[CHUNK] = { "0", "300", "0", "0" };
	struct calls *c = calls_new();
	struct call_ref ref0, ref1;
	fp_call_options o = FP_CALL_OPTIONS_DEFAULT;
	struct fp_buf items[CHUNK];
	struct fp_pool_stats st;

	(void)state;
	o.chunksize = CHUNK;
	for (size_t i = 0; i < CHUNK; i++)
		items[i] = (struct fp_buf){ (char *)slow[i], strlen(slow[i]) };
	for (unsigned k = 0; k < 2; k++) {
		ref0 = (struct call_ref){ c, 0 };
		ref1 = (struct call_ref){ c, 1 };
		c->n[k] = CHUNK;
		assert_int_equal(fp_pool_map_async(c->pool, "spin", items, CHUNK, &o, ref_item,
						   ref_done, k ? &ref1 : &ref0, NULL), 0);
		if (!k)
			assert_true(fp_test_run_until(c->pool, running_slow, c->pool, 10000));
	}
	fp_pool_stats(c->pool, &st);
	assert_int_equal(st.queued, CHUNK);
	assert_true(st.running <= CHUNK);
	assert_true(fp_test_run_until(c->pool, both_done, c, 30000));
	all_ok_from(c, 0, 0);
	all_ok_from(c, 1, 0);
	calls_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(death_with_a_held_chunk_requeues_both_and_blames_the_running_item),
		cmocka_unit_test(held_chunk_items_keep_their_own_timeouts),
		cmocka_unit_test(cancel_of_a_queued_call_leaves_the_held_chunk_alone),
		cmocka_unit_test(cancel_of_a_call_whose_chunk_is_held_kills_and_requeues_the_other),
		cmocka_unit_test(first_chunk_is_answered_before_the_held_one_runs_out),
		cmocka_unit_test(no_chunk_is_held_while_the_queue_is_short),
	};

	if (fp_test_backend_missing())
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
