/*
 * A worker's shared-value call (worker_kv.c): the answer is picked out of a
 * socket that already carries the worker's next frames, which all reach the
 * main loop's reader afterwards, whole and in order, while the running
 * task's arguments (in the reader's buffer) stay as they were.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame_reader.h"
#include "kv_wire.h"
#include "worker_kv.h"
#include "worker_main.h"

struct buf {
	char data[8192];
	size_t len;
};

static void put(struct buf *b, const void *p, size_t n)
{
	assert_true(b->len + n <= sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void put_task(struct buf *b, uint64_t id, const char *name, const char *args)
{
	struct fp_frame_header h;
	size_t nl = strlen(name) + 1, al = strlen(args);

	fp_frame_header_init(&h, FP_FRAME_TASK, id, (uint32_t)(nl + al), 0);
	put(b, &h, sizeof(h));
	put(b, name, nl);
	put(b, args, al);
}

/* A TASKS frame of task `name`, its items the strings in args. */
static void put_tasks(struct buf *b, uint64_t id0, const char *name, const char *const *args,
		      uint32_t n)
{
	size_t total = 0;
	char *p;

	for (uint32_t i = 0; i < n; i++)
		total += strlen(args[i]);
	p = fp_frame_put_tasks(b->data + b->len, id0, n, name, (uint32_t)strlen(name),
			       (uint32_t)fp_frame_tasks_len(n, strlen(name), total), 0, 0);
	for (uint32_t i = 0; i < n; i++)
		p = fp_frame_put_tasks_item(p, args[i], (uint32_t)strlen(args[i]));
	b->len = (size_t)(p - b->data);
}

static void put_reply(struct buf *b, uint64_t id, int err, int64_t number, const char *value)
{
	struct fp_kv_wire_reply w = {
		.err = err, .number = number, .has_value = value != NULL,
		.value_len = value ? (uint32_t)strlen(value) : 0,
	};
	struct fp_frame_header h;

	fp_frame_header_init(&h, FP_FRAME_KV_REPLY, id, (uint32_t)(sizeof(w) + w.value_len), 0);
	put(b, &h, sizeof(h));
	put(b, &w, sizeof(w));
	if (value)
		put(b, value, w.value_len);
}

static void write_all(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* The next frame the reader hands out must be a TASK with this id and args. */
static void expect_task(struct fp_frame_reader *r, uint64_t id, const char *args)
{
	struct fp_frame_header h;
	const char *payload;

	assert_int_equal(fp_frame_reader_next(r, &h, &payload), 1);
	assert_int_equal(h.type, FP_FRAME_TASK);
	assert_int_equal(h.id, id);
	if (!r->item_name)
		payload += strlen(payload) + 1;
	assert_string_equal(payload, args);
}

/* The KV request the worker sent: its op and key. */
static void expect_request(int fd, uint64_t id, fp_kv_op op, const char *key)
{
	struct fp_frame_header h;
	struct fp_kv_wire_req w;
	char k[64];

	assert_int_equal(read(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	assert_int_equal(h.type, FP_FRAME_KV);
	assert_int_equal(h.id, id);
	assert_int_equal(read(fd, &w, sizeof(w)), (ssize_t)sizeof(w));
	assert_int_equal(w.op, op);
	assert_int_equal(w.key_len, strlen(key));
	assert_int_equal(h.len, sizeof(w) + w.key_len + w.value_len + w.expect_len);
	assert_int_equal(read(fd, k, h.len - sizeof(w)), (ssize_t)(h.len - sizeof(w)));
	assert_memory_equal(k, key, w.key_len);
}

static void answer_behind_prefetched_frames_keeps_them_in_order(void **state)
{
	static const char *const items[] = { "1", "2", "3" };
	struct fp_kv_request req = { .op = FP_KV_INCR, .key = "c", .key_len = 1, .by = 1 };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	struct fp_worker_kv k;
	struct fp_kv_reply rep;
	struct buf held = { .len = 0 }, later = { .len = 0 };
	const char *args;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fp_frame_reader_init(&r, 4096);
	fp__worker_kv_init(&k, sv[0], &r);

	/* The reader holds a packed chunk and the first 10 bytes of the next frame. */
	put_tasks(&held, 10, "square", items, 3);
	put_task(&held, 20, "echo", "[5]");
	assert_int_equal(fp_frame_reader_feed(&r, held.data, held.len - 14 - sizeof(h) + 10), 0);
	/* The running task is item 10: its args point into the reader. */
	assert_int_equal(fp_frame_reader_next(&r, &h, &args), 1);
	assert_string_equal(args, "1");

	/* The socket: the rest of that frame, another, the answer, one more. */
	put(&later, held.data + held.len - 14 - sizeof(h) + 10, 14 + sizeof(h) - 10);
	put_task(&later, 21, "echo", "[6]");
	put_reply(&later, 1, 0, 7, "7");
	put_task(&later, 22, "echo", "[7]");
	write_all(sv[1], later.data, later.len);

	assert_int_equal(fp__worker_kv_call(&k, &req, &rep), 0);
	assert_int_equal(rep.err, 0);
	assert_int_equal(rep.number, 7);
	assert_string_equal(rep.value, "7");
	expect_request(sv[1], 1, FP_KV_INCR, "c");
	assert_string_equal(args, "1");

	/* The main loop goes on: the chunk's other items, then what the call kept. */
	expect_task(&r, 11, "2");
	expect_task(&r, 12, "3");
	assert_int_equal(fp_frame_reader_next(&r, &h, &args), 0);
	assert_int_equal(fp__worker_kv_take(&k), 1);
	expect_task(&r, 20, "[5]");
	expect_task(&r, 21, "[6]");
	expect_task(&r, 22, "[7]");
	assert_int_equal(fp_frame_reader_next(&r, &h, &args), 0);
	assert_int_equal(fp__worker_kv_take(&k), 0);

	fp__worker_kv_deinit(&k);
	fp_frame_reader_deinit(&r);
	close(sv[0]);
	close(sv[1]);
}

static void calls_in_a_row_keep_what_the_first_read_past(void **state)
{
	struct fp_kv_request get = { .op = FP_KV_GET, .key = "doc", .key_len = 3 };
	struct fp_frame_reader r;
	struct fp_frame_header h;
	struct fp_worker_kv k;
	struct fp_kv_reply rep;
	struct buf b = { .len = 0 };
	const char *p;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fp_frame_reader_init(&r, 4096);
	fp__worker_kv_init(&k, sv[0], &r);
	put_task(&b, 30, "echo", "30");
	put_reply(&b, 1, 0, 0, "{\"a\":1}");
	put_task(&b, 31, "echo", "31");
	put_reply(&b, 2, -ENOENT, 0, NULL);
	put_task(&b, 32, "echo", "32");
	write_all(sv[1], b.data, b.len);

	assert_int_equal(fp__worker_kv_call(&k, &get, &rep), 0);
	assert_string_equal(rep.value, "{\"a\":1}");
	/* The wrappers: -ENOENT is the call's answer, not a failure to call. */
	assert_int_equal(fp__worker_kv_get(&k, "doc", &p, NULL), -ENOENT);
	expect_request(sv[1], 1, FP_KV_GET, "doc");
	expect_request(sv[1], 2, FP_KV_GET, "doc");
	assert_int_equal(fp__worker_kv_take(&k), 1);
	expect_task(&r, 30, "30");
	expect_task(&r, 31, "31");
	expect_task(&r, 32, "32");
	assert_int_equal(fp_frame_reader_next(&r, &h, &p), 0);

	fp__worker_kv_deinit(&k);
	fp_frame_reader_deinit(&r);
	close(sv[0]);
	close(sv[1]);
}

/* An answer to another call is the master's mistake: the worker stops, as on any bad frame. */
static void answer_with_the_wrong_id_ends_the_worker(void **state)
{
	struct fp_kv_request req = { .op = FP_KV_DEL, .key = "x", .key_len = 1 };
	struct buf b = { .len = 0 };
	int sv[2], status;
	pid_t pid;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	put_reply(&b, 5, 0, 0, NULL);
	write_all(sv[1], b.data, b.len);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fp_frame_reader r;
		struct fp_worker_kv k;
		struct fp_kv_reply rep;

		fp_frame_reader_init(&r, 4096);
		fp__worker_kv_init(&k, sv[0], &r);
		(void)fp__worker_kv_call(&k, &req, &rep);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), FP_WORKER_EXIT_PROTOCOL);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(answer_behind_prefetched_frames_keeps_them_in_order),
		cmocka_unit_test(calls_in_a_row_keep_what_the_first_read_past),
		cmocka_unit_test(answer_with_the_wrong_id_ends_the_worker),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
