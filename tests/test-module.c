/*
 * Task modules: the registry (dlopen, validation, hooks) and the built-in
 * demo module's tasks. The shared objects under tests/modules are found in
 * FP_TEST_MODULE_DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dlfcn.h>

#include "module.h"

#define assert_contains(haystack, needle) do { \
	const char *h_ = (haystack), *n_ = (needle); \
	if (!h_ || !strstr(h_, n_)) \
		fail_msg("expected \"%s\" in \"%s\"", n_, h_ ? h_ : "(null)"); \
} while (0)

/* --- helpers: paths, files, time ------------------------------------------ */

static void module_path(char *buf, size_t len, const char *name)
{
	const char *dir = getenv("FP_TEST_MODULE_DIR");

	if (!dir)
		fail_msg("FP_TEST_MODULE_DIR is not set (run with meson test)");
	snprintf(buf, len, "%s/libfp-%s.so", dir, name);
}

static uint64_t now_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* A fresh hook log (see tests/modules/hooklog.h); its path goes in the environment. */
static void hook_log_start(char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/fp-test-hooks-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(setenv("FP_TEST_HOOK_LOG", path, 1), 0);
}

/* The hook log so far, in a static buffer. */
static const char *hook_log_read(const char *path)
{
	static char buf[4096];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

static void hook_log_stop(const char *path)
{
	unsetenv("FP_TEST_HOOK_LOG");
	unlink(path);
}

/* --- helpers: calling a task through a test host -------------------------- */

/* What a task answered: the test's side of fp_task_ctx. */
struct call {
	fp_task_ctx ctx;
	int answers;        /* how many times ret/error were called: must be 1 */
	char *value;        /* NUL-terminated copy, or NULL */
	size_t value_len;
	char *error;
};

static struct call *call_of(fp_task_ctx *ctx)
{
	return (struct call *)((char *)ctx - offsetof(struct call, ctx));
}

static int host_ret(fp_task_ctx *ctx, const char *json, size_t len)
{
	struct call *c = call_of(ctx);

	c->answers++;
	free(c->value);
	c->value = malloc(len + 1);
	if (!c->value)
		return -ENOMEM;
	memcpy(c->value, json, len);
	c->value[len] = '\0';
	c->value_len = len;
	return 0;
}

static int host_error(fp_task_ctx *ctx, const char *msg)
{
	struct call *c = call_of(ctx);

	c->answers++;
	free(c->error);
	c->error = strdup(msg);
	return c->error ? 0 : -ENOMEM;
}

static int host_worker_slot(fp_task_ctx *ctx)
{
	return 0;
}

static const struct fp_task_host test_host = {
	.abi_version = FP_TASK_ABI_VERSION,
	.ret = host_ret,
	.error = host_error,
	.worker_slot = host_worker_slot,
};

static void call_clear(struct call *c)
{
	free(c->value);
	free(c->error);
	memset(c, 0, sizeof(*c));
}

/* A demo task's function, looked up the way a worker does. */
static fp_task_fn demo_fn(const char *task)
{
	const struct fp_registry_task *t;
	struct fp_registry reg;
	fp_task_fn fn;

	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, NULL, &fp__demo_module, NULL, 0), 0);
	t = fp_registry_find(&reg, task);
	assert_non_null(t);
	fn = t->fn;
	fp_registry_deinit(&reg);
	return fn;
}

/* Run a task here; returns the task's return value. c must be cleared after. */
static int call_task(fp_task_fn fn, const char *args, struct call *c)
{
	memset(c, 0, sizeof(*c));
	c->ctx.host = &test_host;
	return fn(&c->ctx, args, strlen(args));
}

/* Run a demo task and expect exactly one value, which is returned. */
static void assert_task_value(const char *task, const char *args, const char *want)
{
	struct call c;

	assert_int_equal(call_task(demo_fn(task), args, &c), 0);
	assert_int_equal(c.answers, 1);
	if (!c.value)
		fail_msg("%s(%s): expected %s, got error \"%s\"", task, args, want, c.error);
	assert_string_equal(c.value, want);
	assert_int_equal(c.value_len, strlen(want));
	call_clear(&c);
}

/* Run a demo task and expect exactly one error containing `want`. */
static void assert_task_error(const char *task, const char *args, const char *want)
{
	struct call c;

	assert_int_equal(call_task(demo_fn(task), args, &c), 0);
	assert_int_equal(c.answers, 1);
	if (!c.error)
		fail_msg("%s(%s): expected an error, got %s", task, args, c.value);
	assert_contains(c.error, want);
	call_clear(&c);
}

/*
 * Run a demo task in a child, for those that end the process. A child
 * whose task returns exits 100 (answered a value) or 101 (anything else).
 */
static pid_t run_in_child(const char *task, const char *args)
{
	fp_task_fn fn = demo_fn(task);
	struct call c;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		call_task(fn, args, &c);
		_exit(c.value ? 100 : 101);
	}
	return pid;
}

/* Wait up to timeout_ms for pid to end; 1 with *status when it did, else 0. */
static int wait_bounded(pid_t pid, long timeout_ms, int *status)
{
	uint64_t deadline = now_ms(CLOCK_MONOTONIC) + (uint64_t)timeout_ms;
	pid_t r;

	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 1;
		assert_true(r == 0 || (r < 0 && errno == EINTR));
		if (now_ms(CLOCK_MONOTONIC) >= deadline)
			return 0;
		sleep_ms(2);
	}
}

/* Wait (at most 10 s) for pid to end and return its status. */
static int wait_status(pid_t pid)
{
	int status = 0;

	if (!wait_bounded(pid, 10000, &status)) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("child %ld did not end within 10 s", (long)pid);
	}
	return status;
}

static void assert_task_signal(const char *task, const char *args, int sig)
{
	int status = wait_status(run_in_child(task, args));

	if (!WIFSIGNALED(status))
		fail_msg("%s(%s): expected signal %d, got status 0x%x", task, args, sig, status);
	assert_int_equal(WTERMSIG(status), sig);
}

static void assert_task_exit(const char *task, const char *args, int code)
{
	int status = wait_status(run_in_child(task, args));

	if (!WIFEXITED(status))
		fail_msg("%s(%s): expected exit %d, got status 0x%x", task, args, code, status);
	assert_int_equal(WEXITSTATUS(status), code);
}

/* --- the registry ---------------------------------------------------------- */

/*
 * Add a module that must be refused: FP_EMODULE, a message holding each of
 * the NULL-terminated `needles`, and the registry left as it was.
 */
static void assert_refused(struct fp_registry *reg, const char *path,
			   const struct fp_module *def, ...)
{
	size_t nmodules = reg->nmodules, ntasks = reg->ntasks;
	char err[1024] = "";
	const char *needle;
	va_list ap;

	assert_int_equal(fp_registry_add(reg, path, def, err, sizeof(err)), FP_EMODULE);
	va_start(ap, def);
	while ((needle = va_arg(ap, const char *)))
		assert_contains(err, needle);
	va_end(ap);
	assert_int_equal(reg->nmodules, nmodules);
	assert_int_equal(reg->ntasks, ntasks);
}

/* A refused module must have been dlclose()d: RTLD_NOLOAD finds only open ones. */
static void assert_not_open(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);

	if (h) {
		dlclose(h);
		fail_msg("%s is still loaded after being refused", path);
	}
}

static void demo_tasks_are_listed_in_order_and_found_by_name(void **state)
{
	static const char *const order[] = {
		"echo", "square", "sleep", "spin", "pid", "crash", "exit",
		"hang", "fail", "alloc", "bytes", "range", "words", "lower", "sum",
		"count", "incr", "get", "watch", "lock",
	};
	struct fp_registry reg;
	size_t i;

	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, NULL, &fp__demo_module, NULL, 0), 0);
	assert_int_equal(reg.nmodules, 1);
	assert_int_equal(reg.ntasks, sizeof(order) / sizeof(order[0]));
	for (i = 0; i < reg.ntasks; i++) {
		const struct fp_registry_task *t = fp_registry_find(&reg, order[i]);

		assert_string_equal(reg.info[i].name, order[i]);
		assert_string_equal(reg.info[i].module, "demo");
		assert_non_null(reg.info[i].doc);
		assert_non_null(t);
		assert_string_equal(t->name, order[i]);
		assert_int_equal(t->module, 0);
		assert_ptr_equal(t->fn, fp__demo_module.tasks[i].fn);
	}
	/* Sorted for bsearch. */
	for (i = 1; i < reg.ntasks; i++)
		assert_true(strcmp(reg.tasks[i - 1].name, reg.tasks[i].name) < 0);
	assert_null(fp_registry_find(&reg, "nope"));
	assert_null(fp_registry_find(&reg, "squar"));
	assert_null(fp_registry_find(&reg, "squaree"));
	assert_null(fp_registry_find(&reg, ""));
	assert_null(fp_registry_find(&reg, NULL));
	fp_registry_deinit(&reg);
	assert_int_equal(reg.nmodules, 0);
	assert_null(fp_registry_find(&reg, "echo"));
}

static void good_module_tasks_are_found_and_callable(void **state)
{
	struct fp_registry reg;
	const struct fp_registry_task *t;
	char path[PATH_MAX], err[512] = "";
	struct call c;

	module_path(path, sizeof(path), "good");
	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, NULL, &fp__demo_module, err, sizeof(err)), 0);
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(reg.nmodules, 2);
	assert_non_null(reg.modules[1].handle);
	assert_string_equal(reg.modules[1].path, path);
	assert_string_equal(reg.modules[1].name, "good");

	/* Load order in info[]: demo's tasks, then good's. */
	assert_int_equal(reg.ntasks, 25);
	assert_string_equal(reg.info[20].name, "good.add");
	assert_string_equal(reg.info[20].module, "good");
	assert_string_equal(reg.info[20].doc, "[a, b] -> a + b");
	assert_string_equal(reg.info[21].name, "good.state");
	assert_string_equal(reg.info[22].name, "good.enoent");
	assert_string_equal(reg.info[23].name, "good.say");
	assert_string_equal(reg.info[24].name, "good.badjson");

	t = fp_registry_find(&reg, "good.add");
	assert_non_null(t);
	assert_int_equal(t->module, 1);
	assert_int_equal(call_task(t->fn, "[2, 40]", &c), 0);
	assert_int_equal(c.answers, 1);
	assert_string_equal(c.value, "42");
	call_clear(&c);
	assert_int_equal(call_task(t->fn, "\"no\"", &c), 0);
	assert_string_equal(c.error, "good.add: expected [a, b]");
	call_clear(&c);

	t = fp_registry_find(&reg, "good.enoent");
	assert_non_null(t);
	assert_int_equal(call_task(t->fn, "null", &c), -ENOENT);
	assert_int_equal(c.answers, 0);
	call_clear(&c);

	assert_non_null(fp_registry_find(&reg, "square"));
	fp_registry_deinit(&reg);
}

static void missing_file_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];

	module_path(path, sizeof(path), "does-not-exist");
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path, "cannot load", "No such file", NULL);
	fp_registry_deinit(&reg);
}

/*
 * A name without a '/' is not searched in the working directory by dlopen(),
 * and a reload would read it from there: refused, saying what to write.
 */
static void name_without_a_slash_is_refused_with_the_path_to_write(void **state)
{
	struct fp_registry reg;

	fp_registry_init(&reg);
	assert_refused(&reg, "librev.so", NULL, "module librev.so", "./librev.so", NULL);
	assert_refused(&reg, "libc.so.6", NULL, "./libc.so.6", NULL);
	fp_registry_deinit(&reg);
}

static void file_that_is_not_a_shared_object_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/fp-test-notelf-XXXXXX.so",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	fd = mkstemps(path, 3);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not an ELF file, just text\n", 27), 27);
	close(fd);
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path, "cannot load", NULL);
	fp_registry_deinit(&reg);
	unlink(path);
}

static void module_without_fp_module_symbol_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];

	module_path(path, sizeof(path), "nosym");
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path, "no `fp_module` symbol", "FP_MODULE()", NULL);
	assert_not_open(path);
	fp_registry_deinit(&reg);
}

static void module_built_for_another_abi_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];

	module_path(path, sizeof(path), "badabi");
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path,
		       "built for ABI 7, this forkpool speaks ABI 1 to 3", NULL);
	assert_not_open(path);
	assert_null(fp_registry_find(&reg, "badabi.nop"));
	fp_registry_deinit(&reg);
}

static void duplicate_name_within_a_module_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];

	module_path(path, sizeof(path), "dupname");
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path, "\"dup.same\"", "defined twice", NULL);
	assert_null(fp_registry_find(&reg, "dup.other"));
	assert_not_open(path);
	fp_registry_deinit(&reg);
}

static void duplicate_name_across_modules_names_both(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX], err[1024];

	module_path(path, sizeof(path), "dupdemo");

	/* The file clashes with the built-in already there... */
	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, NULL, &fp__demo_module, NULL, 0), 0);
	assert_refused(&reg, path, NULL, "module ", path, "\"square\"",
		       "already defined by module demo (built-in)", NULL);
	assert_null(fp_registry_find(&reg, "dupdemo.ok"));
	assert_not_open(path);
	/* ...and the registry still works: the demo's square is the demo's. */
	assert_ptr_equal(fp_registry_find(&reg, "square")->fn, fp__demo_module.tasks[1].fn);
	fp_registry_deinit(&reg);

	/* ...and the other way round, the built-in clashes with the file. */
	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	assert_refused(&reg, NULL, &fp__demo_module, "module demo (built-in)",
		       "\"square\"", "already defined by module", path, NULL);
	assert_null(fp_registry_find(&reg, "echo"));
	assert_non_null(fp_registry_find(&reg, "dupdemo.ok"));
	fp_registry_deinit(&reg);
}

static void invalid_task_name_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];

	module_path(path, sizeof(path), "badname");
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path, "task #2", "invalid name \"bad name/1\"",
		       "[A-Za-z0-9_.-]", NULL);
	assert_null(fp_registry_find(&reg, "badname.fine"));
	assert_not_open(path);
	fp_registry_deinit(&reg);
}

static void task_without_function_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];

	module_path(path, sizeof(path), "nullfn");
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path, "\"nullfn.nothing\"", "no function", NULL);
	assert_not_open(path);
	fp_registry_deinit(&reg);
}

static void empty_task_table_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX];

	module_path(path, sizeof(path), "empty");
	fp_registry_init(&reg);
	assert_refused(&reg, path, NULL, path, "task table is empty", NULL);
	assert_not_open(path);
	fp_registry_deinit(&reg);
}

static int nop_task(fp_task_ctx *ctx, const char *args, size_t len)
{
	return 0;
}

/* Descriptors no shared object is needed for: passed in as built-ins. */
static void bad_descriptors_are_refused(void **state)
{
	static const struct fp_module null_table = {
		.abi_version = FP_TASK_ABI_VERSION, .name = "nulltable", .tasks = NULL,
	};
	/* 64 characters is the longest name allowed. */
	static const struct fp_task long_ok[] = {
		{ "a123456789b123456789c123456789d123456789e123456789f123456789g123",
		  nop_task, NULL },
		{ NULL, NULL, NULL },
	};
	static const struct fp_task too_long[] = {
		{ "a123456789b123456789c123456789d123456789e123456789f123456789g1234",
		  nop_task, NULL },
		{ NULL, NULL, NULL },
	};
	static const struct fp_task empty_name[] = {
		{ "", nop_task, NULL },
		{ NULL, NULL, NULL },
	};
	static const struct fp_task control_char[] = {
		{ "tab\there", nop_task, NULL },
		{ NULL, NULL, NULL },
	};
	const struct fp_module long_ok_mod = {
		.abi_version = FP_TASK_ABI_VERSION, .name = "longok", .tasks = long_ok,
	};
	const struct fp_module too_long_mod = {
		.abi_version = FP_TASK_ABI_VERSION, .name = "toolong", .tasks = too_long,
	};
	const struct fp_module empty_name_mod = {
		.abi_version = FP_TASK_ABI_VERSION, .name = "emptyname", .tasks = empty_name,
	};
	const struct fp_module control_mod = {
		.abi_version = FP_TASK_ABI_VERSION, .name = "ctl", .tasks = control_char,
	};
	static const char *const no_such_generator[] = { "a123", NULL };
	const struct fp_module bad_generator_mod = {
		.abi_version = FP_TASK_ABI_VERSION, .name = "badgen", .tasks = long_ok,
		.generators = no_such_generator,
	};
	struct fp_registry reg;
	char err[256];

	fp_registry_init(&reg);
	assert_refused(&reg, NULL, &null_table, "module nulltable (built-in)",
		       "task table is NULL", NULL);
	assert_refused(&reg, NULL, &too_long_mod, "module toolong (built-in)",
		       "invalid name", "1 to 64", NULL);
	assert_refused(&reg, NULL, &empty_name_mod, "invalid name \"\"", NULL);
	/* A name is quoted with what could corrupt a log line replaced. */
	assert_refused(&reg, NULL, &control_mod, "invalid name \"tab?here\"", NULL);
	/* A generator must be one of the module's own tasks. */
	assert_refused(&reg, NULL, &bad_generator_mod, "module badgen (built-in)",
		       "generators names \"a123\", which is not in its task table", NULL);
	assert_int_equal(fp_registry_add(&reg, NULL, &long_ok_mod, err, sizeof(err)), 0);
	assert_non_null(fp_registry_find(&reg, long_ok[0].name));
	/* Neither a path nor a descriptor is a caller's bug. */
	assert_int_equal(fp_registry_add(&reg, NULL, NULL, err, sizeof(err)), -EINVAL);
	fp_registry_deinit(&reg);
}

static void same_module_twice_is_refused(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX], err[512];

	module_path(path, sizeof(path), "good");
	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	assert_refused(&reg, path, NULL, path, "already loaded", NULL);
	/* The refused second dlopen() must not have closed the first. */
	assert_non_null(fp_registry_find(&reg, "good.add"));
	assert_int_equal(fp_registry_add(&reg, NULL, &fp__demo_module, err, sizeof(err)), 0);
	assert_refused(&reg, NULL, &fp__demo_module, "module demo (built-in)",
		       "already loaded", NULL);
	fp_registry_deinit(&reg);
}

static void error_buffer_may_be_small_or_absent(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX], err[8];

	module_path(path, sizeof(path), "badabi");
	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, path, NULL, NULL, 0), FP_EMODULE);
	memset(err, 'z', sizeof(err));
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), FP_EMODULE);
	assert_int_equal(err[sizeof(err) - 1], '\0');
	assert_memory_equal(err, "module ", 7);
	fp_registry_deinit(&reg);
}

/* good.state's count of load hooks run in this process. */
static int good_loads(struct fp_registry *reg)
{
	const struct fp_registry_task *t = fp_registry_find(reg, "good.state");
	struct call c;
	int n = -1;

	assert_non_null(t);
	assert_int_equal(call_task(t->fn, "null", &c), 0);
	assert_non_null(c.value);
	assert_int_equal(sscanf(c.value, "{\"load\":%d,", &n), 1);
	call_clear(&c);
	return n;
}

static void load_hooks_run_in_order_and_unload_in_reverse(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX], log[PATH_MAX], err[512] = "";
	int loads;

	hook_log_start(log, sizeof(log));
	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, NULL, &fp__demo_module, err, sizeof(err)), 0);
	module_path(path, sizeof(path), "good");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	module_path(path, sizeof(path), "second");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	/* Adding runs no hook. */
	assert_string_equal(hook_log_read(log), "");

	loads = good_loads(&reg);
	assert_int_equal(fp_registry_load(&reg, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(hook_log_read(log), "good:load\nsecond:load\n");
	assert_int_equal(good_loads(&reg), loads + 1);
	assert_true(reg.modules[0].loaded && reg.modules[1].loaded && reg.modules[2].loaded);

	/* Again: nothing left to load. */
	assert_int_equal(fp_registry_load(&reg, err, sizeof(err)), 0);
	assert_int_equal(good_loads(&reg), loads + 1);

	fp_registry_deinit(&reg);
	assert_string_equal(hook_log_read(log),
			    "good:load\nsecond:load\nsecond:unload\ngood:unload\n");
	assert_int_equal(reg.nmodules, 0);
	assert_null(reg.modules);
	hook_log_stop(log);
}

static void failing_load_hook_stops_loading_and_is_not_unloaded(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX], lpath[PATH_MAX], log[PATH_MAX], err[512] = "";

	hook_log_start(log, sizeof(log));
	fp_registry_init(&reg);
	module_path(path, sizeof(path), "good");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	module_path(lpath, sizeof(lpath), "loadfail");
	assert_int_equal(fp_registry_add(&reg, lpath, NULL, err, sizeof(err)), 0);
	module_path(path, sizeof(path), "second");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);

	assert_int_equal(fp_registry_load(&reg, err, sizeof(err)), FP_EMODULE);
	assert_contains(err, "module ");
	assert_contains(err, lpath);
	assert_contains(err, "load hook failed: ");
	assert_contains(err, strerror(EACCES));
	/* The modules after the failing one were not loaded. */
	assert_string_equal(hook_log_read(log), "good:load\nloadfail:load\n");
	assert_true(reg.modules[0].loaded);
	assert_false(reg.modules[1].loaded);
	assert_false(reg.modules[2].loaded);

	/* Only what loaded is unloaded. */
	fp_registry_deinit(&reg);
	assert_string_equal(hook_log_read(log),
			    "good:load\nloadfail:load\ngood:unload\n");
	hook_log_stop(log);
}

static void worker_hooks_run_in_order_and_fini_in_reverse(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX], log[PATH_MAX], err[512] = "";

	fp_registry_init(&reg);
	assert_int_equal(fp_registry_add(&reg, NULL, &fp__demo_module, err, sizeof(err)), 0);
	module_path(path, sizeof(path), "good");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	module_path(path, sizeof(path), "second");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	assert_int_equal(fp_registry_load(&reg, err, sizeof(err)), 0);

	hook_log_start(log, sizeof(log));
	assert_int_equal(fp_registry_worker_init(&reg, err, sizeof(err)), 0);
	assert_string_equal(hook_log_read(log), "good:worker_init\nsecond:worker_init\n");
	fp_registry_worker_fini(&reg);
	/* Twice is once: a worker may reach its exit path from two places. */
	fp_registry_worker_fini(&reg);
	assert_string_equal(hook_log_read(log),
			    "good:worker_init\nsecond:worker_init\n"
			    "second:worker_fini\ngood:worker_fini\n");
	fp_registry_deinit(&reg);
	hook_log_stop(log);
}

static void failing_worker_init_names_module_and_undoes_the_others(void **state)
{
	struct fp_registry reg;
	char path[PATH_MAX], ipath[PATH_MAX], log[PATH_MAX], err[512] = "";

	fp_registry_init(&reg);
	module_path(path, sizeof(path), "good");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	module_path(ipath, sizeof(ipath), "initfail");
	assert_int_equal(fp_registry_add(&reg, ipath, NULL, err, sizeof(err)), 0);
	module_path(path, sizeof(path), "second");
	assert_int_equal(fp_registry_add(&reg, path, NULL, err, sizeof(err)), 0);
	assert_int_equal(fp_registry_load(&reg, err, sizeof(err)), 0);

	hook_log_start(log, sizeof(log));
	assert_int_equal(fp_registry_worker_init(&reg, err, sizeof(err)), FP_EMODULE);
	assert_contains(err, ipath);
	assert_contains(err, "worker_init failed: ");
	assert_contains(err, strerror(EIO));
	/* good was finalised, initfail's fini never ran, second never started. */
	assert_string_equal(hook_log_read(log),
			    "good:worker_init\ninitfail:worker_init\ngood:worker_fini\n");
	fp_registry_worker_fini(&reg);
	assert_string_equal(hook_log_read(log),
			    "good:worker_init\ninitfail:worker_init\ngood:worker_fini\n");
	fp_registry_deinit(&reg);
	hook_log_stop(log);
}

static void deinit_accepts_zeroed_and_empty_registries(void **state)
{
	struct fp_registry reg;
	char err[64];

	memset(&reg, 0, sizeof(reg));
	fp_registry_deinit(&reg);
	fp_registry_init(&reg);
	assert_int_equal(fp_registry_load(&reg, err, sizeof(err)), 0);
	assert_int_equal(fp_registry_worker_init(&reg, err, sizeof(err)), 0);
	fp_registry_worker_fini(&reg);
	fp_registry_deinit(&reg);
	fp_registry_deinit(&reg);
	assert_int_equal(reg.nmodules, 0);
	assert_int_equal(reg.ntasks, 0);
}

/* --- the demo tasks -------------------------------------------------------- */

static void square_keeps_integers_integers(void **state)
{
	assert_task_value("square", "7", "49");
	assert_task_value("square", "-3", "9");
	assert_task_value("square", "0", "0");
	assert_task_value("square", "-0", "0");
	assert_task_value("square", " 12\n", "144");
	/* The largest int64 whose square fits. */
	assert_task_value("square", "3037000499", "9223372030926249001");
	assert_task_value("square", "-3037000499", "9223372030926249001");
	/* Integers of every length it reads by hand (up to 18 digits) and past it. */
	assert_task_value("square", "123456789012345678", "1.5241578753238836e+34");
	assert_task_value("square", "-123456789012345678", "1.5241578753238836e+34");
	assert_task_value("square", "1234567890123456789", "1.5241578753238835e+36");
	for (long long k = -200000; k <= 200000; k += 7) {
		char in[32], want[32];

		snprintf(in, sizeof(in), "%lld", k * 15173);
		snprintf(want, sizeof(want), "%lld", k * 15173 * k * 15173);
		assert_task_value("square", in, want);
	}
}

static void square_of_floats_and_big_integers(void **state)
{
	struct call c;

	assert_task_value("square", "1.5", "2.25");
	assert_task_value("square", "-2.5e2", "62500");
	assert_task_value("square", "2.0", "4");
	assert_task_value("square", "0.5", "0.25");
	/* %.17g would say 0.089999999999999997. */
	assert_task_value("square", "0.3", "0.09");
	assert_task_value("square", "-1e3", "1000000");

	/* The shortest text that reads back exactly. */
	assert_int_equal(call_task(demo_fn("square"), "0.1", &c), 0);
	assert_non_null(c.value);
	assert_true(strtod(c.value, NULL) == 0.1 * 0.1);
	assert_string_equal(c.value, "0.010000000000000002");
	call_clear(&c);

	/* Past int64_t the square becomes a double rather than wrapping. */
	assert_int_equal(call_task(demo_fn("square"), "3037000500", &c), 0);
	assert_non_null(c.value);
	assert_true(strtod(c.value, NULL) == 3037000500.0 * 3037000500.0);
	assert_non_null(strchr(c.value, 'e'));
	call_clear(&c);
	assert_int_equal(call_task(demo_fn("square"), "99999999999999999999", &c), 0);
	assert_non_null(c.value);
	assert_true(strtod(c.value, NULL) == 1e20 * 1e20);
	call_clear(&c);

	assert_task_error("square", "1e200", "too large");
}

static void square_refuses_what_is_not_a_json_number(void **state)
{
	static const char *const bad[] = {
		"\"seven\"", "seven", "", " ", "1 2", "+1", "01", "1.", ".5", "1e",
		"inf", "nan", "0x10", "[1]", "null", "-", "1,",
	};
	char want[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(want, sizeof(want), "square: expected a number, got %s",
			 *bad[i] ? bad[i] : "nothing");
		assert_task_error("square", bad[i], want);
	}
	/* A long argument is quoted only in part. */
	assert_task_error("square",
		     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
		     "got \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...");
}

static void echo_returns_its_arguments(void **state)
{
	assert_task_value("echo", "{\"a\": [1, 2.5, \"x\"], \"b\": null}",
		     "{\"a\": [1, 2.5, \"x\"], \"b\": null}");
	assert_task_value("echo", "\"\"", "\"\"");
	assert_task_value("echo", "null", "null");
}

static void fail_uses_a_strings_text_or_the_json(void **state)
{
	struct call c;

	assert_task_error("fail", "\"boom: \\\"quoted\\\"\"", "boom: \"quoted\"");
	assert_task_error("fail", "{\"code\": 3}", "{\"code\": 3}");
	assert_task_error("fail", "42", "42");
	assert_int_equal(call_task(demo_fn("fail"), "\"exact\"", &c), 0);
	assert_null(c.value);
	assert_string_equal(c.error, "exact");
	call_clear(&c);
}

static void bytes_returns_a_string_of_n_bytes(void **state)
{
	const size_t big = (size_t)64 << 20;
	struct call c;
	char args[32];
	size_t i;

	assert_task_value("bytes", "0", "\"\"");
	assert_task_value("bytes", "5", "\"xxxxx\"");

	snprintf(args, sizeof(args), "%zu", big);
	assert_int_equal(call_task(demo_fn("bytes"), args, &c), 0);
	assert_non_null(c.value);
	assert_int_equal(c.value_len, big + 2);
	assert_int_equal(c.value[0], '"');
	assert_int_equal(c.value[big + 1], '"');
	for (i = 1; i <= big; i++)
		if (c.value[i] != 'x')
			fail_msg("byte %zu is 0x%02x", i, (unsigned char)c.value[i]);
	call_clear(&c);

	assert_task_error("bytes", "-1", "bytes: expected a whole number of bytes");
	assert_task_error("bytes", "1.5", "bytes: expected a whole number of bytes");
	assert_task_error("bytes", "\"x\"", "bytes: expected");
}

static void pid_is_the_callers(void **state)
{
	char want[32];

	snprintf(want, sizeof(want), "%ld", (long)getpid());
	assert_task_value("pid", "null", want);
}

static void sleep_waits_and_returns_its_argument(void **state)
{
	uint64_t t0 = now_ms(CLOCK_MONOTONIC);

	assert_task_value("sleep", "30", "30");
	assert_true(now_ms(CLOCK_MONOTONIC) - t0 >= 30);
	assert_task_value("sleep", " 1.5 ", "1.5");
	assert_task_value("sleep", "0", "0");
	assert_task_error("sleep", "-1", "sleep: expected milliseconds");
	assert_task_error("sleep", "\"soon\"", "sleep: expected milliseconds");
}

static void spin_burns_cpu_and_returns_its_argument(void **state)
{
	uint64_t c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);

	/* Busy, not asleep: it burns the CPU time it was asked for. */
	assert_task_value("spin", "50", "50");
	assert_true(now_ms(CLOCK_PROCESS_CPUTIME_ID) - c0 >= 50);
	assert_task_error("spin", "[]", "spin: expected milliseconds");
}

/* Resident set in bytes, from /proc/self/statm. */
static size_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void alloc_grows_the_resident_set(void **state)
{
	fp_task_fn fn = demo_fn("alloc");
	int status;
	pid_t pid;

	/* In a child: the memory is kept for the life of the process. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		size_t before = rss_bytes();
		struct call c;

		call_task(fn, "16", &c);
		if (!c.value || strcmp(c.value, "16") != 0)
			_exit(2);
		call_task(fn, "0", &c);
		if (!c.value || strcmp(c.value, "0") != 0)
			_exit(3);
		/* Every page touched: at least 15 of the 16 MiB are resident. */
		_exit(rss_bytes() >= before + ((size_t)15 << 20) ? 0 : 4);
	}
	status = wait_status(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_task_error("alloc", "-1", "alloc: expected a whole number of MiB");
	assert_task_error("alloc", "0.5", "alloc: expected a whole number of MiB");
}

static void crash_dies_of_segv_or_the_named_signal(void **state)
{
	assert_task_signal("crash", "null", SIGSEGV);
	assert_task_signal("crash", "", SIGSEGV);
	assert_task_signal("crash", "\"SIGABRT\"", SIGABRT);
	assert_task_signal("crash", "\"BUS\"", SIGBUS);
	assert_task_signal("crash", "\"SIGFPE\"", SIGFPE);
	assert_task_signal("crash", "\"SIGKILL\"", SIGKILL);
	assert_task_signal("crash", "9", SIGKILL);
	assert_task_signal("crash", "15", SIGTERM);
}

static void crash_refuses_unknown_signals(void **state)
{
	/* These return without harm, so they can run in this process. */
	assert_task_error("crash", "\"SIGNOPE\"", "crash: expected");
	assert_task_error("crash", "0", "crash: expected");
	assert_task_error("crash", "99999", "crash: expected");
	assert_task_error("crash", "{", "crash: expected");
	/* SIGCHLD's default is to ignore: the task notices it is still alive. */
	assert_task_exit("crash", "17", 101);
}

static void exit_exits_with_the_status(void **state)
{
	assert_task_exit("exit", "3", 3);
	assert_task_exit("exit", "0", 0);
	assert_task_exit("exit", "null", 1);
	assert_task_exit("exit", "", 1);
	assert_task_error("exit", "256", "exit: expected");
	assert_task_error("exit", "\"3\"", "exit: expected");
}

/* Whether pid ignores sig, from the SigIgn mask in /proc/<pid>/status. */
static int ignores_signal(pid_t pid, int sig)
{
	char path[64], line[256];
	unsigned long long mask = 0;
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigIgn: %llx", &mask) == 1)
			found = 1;
	fclose(f);
	return found && (mask & (1ull << (sig - 1)));
}

static void hang_survives_sigterm_and_dies_of_sigkill(void **state)
{
	uint64_t deadline;
	int status = 0;
	pid_t pid;

	pid = run_in_child("hang", "null");
	/* SIGTERM before the task ignores it would kill the child: wait for that. */
	deadline = now_ms(CLOCK_MONOTONIC) + 10000;
	while (!ignores_signal(pid, SIGTERM)) {
		if (now_ms(CLOCK_MONOTONIC) > deadline || waitpid(pid, &status, WNOHANG) == pid) {
			kill(pid, SIGKILL);
			fail_msg("hang never ignored SIGTERM (status 0x%x)", status);
		}
		sleep_ms(2);
	}
	assert_int_equal(kill(pid, SIGTERM), 0);
	/*
	 * Surviving is the absence of an event, so it can only be watched for a
	 * while: a fatal SIGTERM would have ended it well within 300 ms.
	 */
	if (wait_bounded(pid, 300, &status))
		fail_msg("hang died of SIGTERM (status 0x%x)", status);
	assert_int_equal(kill(pid, SIGKILL), 0);
	status = wait_status(pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(demo_tasks_are_listed_in_order_and_found_by_name),
		cmocka_unit_test(good_module_tasks_are_found_and_callable),
		cmocka_unit_test(missing_file_is_refused),
		cmocka_unit_test(name_without_a_slash_is_refused_with_the_path_to_write),
		cmocka_unit_test(file_that_is_not_a_shared_object_is_refused),
		cmocka_unit_test(module_without_fp_module_symbol_is_refused),
		cmocka_unit_test(module_built_for_another_abi_is_refused),
		cmocka_unit_test(duplicate_name_within_a_module_is_refused),
		cmocka_unit_test(duplicate_name_across_modules_names_both),
		cmocka_unit_test(invalid_task_name_is_refused),
		cmocka_unit_test(task_without_function_is_refused),
		cmocka_unit_test(empty_task_table_is_refused),
		cmocka_unit_test(bad_descriptors_are_refused),
		cmocka_unit_test(same_module_twice_is_refused),
		cmocka_unit_test(error_buffer_may_be_small_or_absent),
		cmocka_unit_test(load_hooks_run_in_order_and_unload_in_reverse),
		cmocka_unit_test(failing_load_hook_stops_loading_and_is_not_unloaded),
		cmocka_unit_test(worker_hooks_run_in_order_and_fini_in_reverse),
		cmocka_unit_test(failing_worker_init_names_module_and_undoes_the_others),
		cmocka_unit_test(deinit_accepts_zeroed_and_empty_registries),
		cmocka_unit_test(square_keeps_integers_integers),
		cmocka_unit_test(square_of_floats_and_big_integers),
		cmocka_unit_test(square_refuses_what_is_not_a_json_number),
		cmocka_unit_test(echo_returns_its_arguments),
		cmocka_unit_test(fail_uses_a_strings_text_or_the_json),
		cmocka_unit_test(bytes_returns_a_string_of_n_bytes),
		cmocka_unit_test(pid_is_the_callers),
		cmocka_unit_test(sleep_waits_and_returns_its_argument),
		cmocka_unit_test(spin_burns_cpu_and_returns_its_argument),
		cmocka_unit_test(alloc_grows_the_resident_set),
		cmocka_unit_test(crash_dies_of_segv_or_the_named_signal),
		cmocka_unit_test(crash_refuses_unknown_signals),
		cmocka_unit_test(exit_exits_with_the_status),
		cmocka_unit_test(hang_survives_sigterm_and_dies_of_sigkill),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
