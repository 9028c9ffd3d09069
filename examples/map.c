/*
 * Embedding forkpool: a pool of pre-forked workers inside your program.
 *
 *   example-map [N]   squares 0..N-1 in the pool, shows a crash being
 *                     contained, and prints the pool's statistics.
 *
 * Build against an installed forkpool with
 *   cc map.c $(pkg-config --cflags --libs forkpool) -o example-map
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <forkpool.h>

static void on_item(fp_pool *pool, uint64_t call, const struct fp_result *r, void *data)
{
	long *sum = data;

	/* r->value is JSON text owned by the pool until this returns. */
	if (r->status == FP_ITEM_OK)
		*sum += strtol(r->value, NULL, 10);
}

static void on_done(fp_pool *pool, const struct fp_call_summary *s, void *data)
{
	printf("map of %zu items: %zu ok, %zu failed\n", s->total, s->ok, s->failed);
	fp_pool_stop(pool);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
	struct fp_pool_stats st;
	struct fp_result r;
	struct fp_buf *items;
	char (*text)[24];
	fp_options opts;
	fp_pool *pool;
	char err[512];
	long sum = 0;
	int rc;

	fp_options_init(&opts);
	opts.workers = 0;                 /* one per CPU */
	opts.max_tasks_per_child = 1000;  /* recycle, as Pool(maxtasksperchild=1000) */
	rc = fp_pool_new(&pool, NULL, &opts, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "fp_pool_new: %s: %s\n", fp_strerror(rc), err);
		return 1;
	}
	printf("pool up: backend %s\n", fp_loop_backend_name(fp_pool_loop(pool)));

	/* Blocking apply: the simplest call. */
	rc = fp_pool_apply(pool, "square", "12", 2, NULL, &r);
	if (rc == 0 && r.status == FP_ITEM_OK)
		printf("square(12) = %s (worker pid %d)\n", r.value, (int)r.pid);
	fp_result_clear(&r);

	/* A crashing task fails its own item, with the signal named. */
	rc = fp_pool_apply(pool, "crash", "\"SIGSEGV\"", 9, NULL, &r);
	if (rc == 0)
		printf("crash -> %s: %s\n", fp_item_status_name(r.status), r.message);
	fp_result_clear(&r);

	/* An asynchronous map with a callback per item. */
	items = calloc(n ? n : 1, sizeof(*items));
	text = calloc(n ? n : 1, sizeof(*text));
	if (!items || !text)
		return 1;
	for (size_t i = 0; i < n; i++) {
		items[i].len = (size_t)snprintf(text[i], sizeof(text[i]), "%zu", i % 1000);
		items[i].base = text[i];
	}
	rc = fp_pool_map_async(pool, "square", items, n, NULL, on_item, on_done, &sum, NULL);
	free(items);   /* the pool copied the items */
	free(text);
	if (rc < 0) {
		fprintf(stderr, "map: %s\n", fp_strerror(rc));
		return 1;
	}
	fp_pool_run(pool);
	long want = 0;
	for (size_t i = 0; i < n; i++)
		want += (long)(i % 1000) * (long)(i % 1000);
	printf("sum of squares: %ld (%s)\n", sum, sum == want ? "correct" : "WRONG");

	fp_pool_stats(pool, &st);
	printf("workers %u, done %llu, failed %llu, crashes %llu, recycles %llu\n",
	       st.workers, (unsigned long long)st.done, (unsigned long long)st.failed,
	       (unsigned long long)st.crashes, (unsigned long long)st.recycles);
	fp_pool_free(pool);
	return sum == want ? 0 : 1;
}
