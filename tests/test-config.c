/* forkpoold's configuration: flags, environment, file, precedence, errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define ARGV(...) ((char *const[]){ "forkpoold", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ "forkpoold", __VA_ARGS__ }) / sizeof(char *)))
static char *const no_env[] = { NULL };

struct fx {
	struct fp_config c;
	char err[512];
	char path[64];
};

static int fx_setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	*state = x;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *x = *state;

	fp_config_deinit(&x->c);
	if (x->path[0])
		unlink(x->path);
	free(x);
	return 0;
}

/* Load with argv and env; the config from a previous call is released. */
static int load(struct fx *x, int argc, char *const argv[], char *const env[])
{
	fp_config_deinit(&x->c);
	x->err[0] = '\0';
	return fp_config_load(&x->c, argc, argv, env, x->err, sizeof(x->err));
}

static const char *write_file(struct fx *x, const char *text)
{
	int fd;

	strcpy(x->path, "/tmp/test-config-XXXXXX");
	fd = mkstemp(x->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return x->path;
}

static void defaults_listen_on_loopback_8080(void **state)
{
	struct fx *x = *state;
	char *const argv[] = { "forkpoold", NULL };

	assert_int_equal(load(x, 1, argv, no_env), FP_CONFIG_RUN);
	assert_int_equal(x->c.nlisten, 1);
	assert_string_equal(x->c.listen[0], "127.0.0.1:8080");
	assert_null(x->c.listen[1]);
	assert_int_equal(x->c.workers, 0);
	assert_int_equal(x->c.task_timeout_ms, 60000);
	assert_int_equal(x->c.max_body, 64u << 20);
	assert_int_equal(x->c.drain_timeout_s, 30);
	assert_int_equal(x->c.job_ttl_s, 600);
	assert_int_equal(x->c.loop, FP_LOOP_AUTO);
	assert_int_equal(x->c.log_level, FP_LOG_INFO);
	assert_int_equal(x->c.log_format, FP_DLOG_TEXT);
	assert_null(x->c.token_file);
	assert_int_equal(x->c.nmodules, 0);
}

static void flags_take_separate_or_joined_values(void **state)
{
	struct fx *x = *state;

	assert_int_equal(load(x, ARGC("--workers", "3", "--max-queue=7", "--loop", "epoll",
				      "--log-format=json", "--log-level", "debug",
				      "--task-timeout", "0", "--drain-timeout=5"),
			      ARGV("--workers", "3", "--max-queue=7", "--loop", "epoll",
				   "--log-format=json", "--log-level", "debug",
				   "--task-timeout", "0", "--drain-timeout=5"), no_env), 0);
	assert_int_equal(x->c.workers, 3);
	assert_int_equal(x->c.max_queue, 7);
	assert_int_equal(x->c.loop, FP_LOOP_EPOLL);
	assert_int_equal(x->c.log_format, FP_DLOG_JSON);
	assert_int_equal(x->c.log_level, FP_LOG_DEBUG);
	assert_int_equal(x->c.task_timeout_ms, 0);
	assert_int_equal(x->c.drain_timeout_s, 5);
}

static void bad_integer_names_the_flag_and_the_value(void **state)
{
	struct fx *x = *state;

	assert_int_equal(load(x, ARGC("--workers", "x"), ARGV("--workers", "x"), no_env), -EINVAL);
	assert_string_equal(x->err, "--workers: expected a positive integer, got \"x\"");
	assert_int_equal(load(x, ARGC("--workers", "0"), ARGV("--workers", "0"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--workers: expected an integer from 1 to"));
	assert_int_equal(load(x, ARGC("--workers", "-1"), ARGV("--workers", "-1"), no_env), -EINVAL);
	assert_int_equal(load(x, ARGC("--workers", " 2"), ARGV("--workers", " 2"), no_env), -EINVAL);
	assert_int_equal(load(x, ARGC("--max-queue", "99999999999999999999999"),
			      ARGV("--max-queue", "99999999999999999999999"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--max-queue: expected an integer from 1 to"));
	assert_int_equal(load(x, ARGC("--task-timeout", "1.5"), ARGV("--task-timeout", "1.5"),
			      no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--task-timeout: expected a duration"));
	assert_non_null(strstr(x->err, "got \"1.5\""));
}

static void sizes_take_binary_suffixes(void **state)
{
	static const struct { const char *in; uint64_t out; } ok[] = {
		{ "1", 1 }, { "512k", 512u << 10 }, { "2m", 2u << 20 }, { "1g", 1u << 30 },
		{ "3K", 3u << 10 }, { "10MB", 10u << 20 }, { "1GiB", 1u << 30 }, { "100b", 100 },
	};
	static const char *const bad[] = { "", "k", "1x", "1kk", "-1", "0", "1.5m", "1 m" };
	struct fx *x = *state;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(load(x, 3, ARGV("--max-body", (char *)ok[i].in), no_env), 0);
		assert_true(x->c.max_body == ok[i].out);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(load(x, 3, ARGV("--max-body", (char *)bad[i]), no_env), -EINVAL);
		assert_non_null(strstr(x->err, "--max-body: "));
	}
}

static void memory_limits_from_flags_environment_and_file(void **state)
{
	static char *const env[] = { "FORKPOOL_MAX_RESULTS_MEMORY=2g", "FORKPOOL_MAX_JOBS=50", NULL };
	struct fx *x = *state;

	assert_int_equal(load(x, 1, ARGV(NULL), no_env), 0);
	assert_int_equal(x->c.max_jobs, 10000);
	assert_true(x->c.max_results_memory == 1ull << 30);
	assert_int_equal(load(x, 1, ARGV(NULL), env), 0);
	assert_int_equal(x->c.max_jobs, 50);
	assert_true(x->c.max_results_memory == 2ull << 30);
	assert_int_equal(load(x, ARGC("--max-results-memory", "512k", "--max-jobs=7"),
			      ARGV("--max-results-memory", "512k", "--max-jobs=7"), env), 0);
	assert_int_equal(x->c.max_jobs, 7);
	assert_true(x->c.max_results_memory == 512u << 10);
	/* 0: no limit on memory; a job count of 0 would keep nothing. */
	assert_int_equal(load(x, 3, ARGV("--max-results-memory", "0"), no_env), 0);
	assert_true(x->c.max_results_memory == 0);
	assert_int_equal(load(x, 3, ARGV("--max-jobs", "0"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--max-jobs: expected an integer from 1 to"));
	assert_int_equal(load(x, 3, ARGV("--max-results-memory", "lots"), no_env), -EINVAL);
	assert_string_equal(x->err, "--max-results-memory: expected a size in bytes such as"
			    " 65536, 512k, 64m or 1g, got \"lots\"");
	assert_int_equal(load(x, 3, ARGV("--config", (char *)write_file(x,
			      "max-results-memory = 64m\nmax_jobs = 3\n")), no_env), 0);
	assert_int_equal(x->c.max_jobs, 3);
	assert_true(x->c.max_results_memory == 64u << 20);
}

static void listen_is_repeatable_and_checked(void **state)
{
	struct fx *x = *state;

	assert_int_equal(load(x, 7, ARGV("--listen", "127.0.0.1:0", "--listen", "[::1]:8080",
					 "--listen=unix:/tmp/fp.sock", "--listen", "localhost:1"),
			      no_env), -EINVAL);
	/* argc 7 cut the last value: a missing value is named. */
	assert_string_equal(x->err, "--listen: missing value (ADDR)");
	assert_int_equal(load(x, 8, ARGV("--listen", "127.0.0.1:0", "--listen", "[::1]:8080",
					 "--listen=unix:/tmp/fp.sock", "--listen", "localhost:1"),
			      no_env), 0);
	assert_int_equal(x->c.nlisten, 4);
	assert_string_equal(x->c.listen[1], "[::1]:8080");
	assert_string_equal(x->c.listen[2], "unix:/tmp/fp.sock");
	assert_null(x->c.listen[4]);

	assert_int_equal(load(x, 3, ARGV("--listen", "::1:80"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "in brackets"));
	assert_int_equal(load(x, 3, ARGV("--listen", "127.0.0.1:65536"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "port from 0 to 65535"));
	assert_int_equal(load(x, 3, ARGV("--listen", "127.0.0.1"), no_env), -EINVAL);
	assert_int_equal(load(x, 3, ARGV("--listen", "unix:"), no_env), -EINVAL);
	assert_int_equal(load(x, 3, ARGV("--listen", "[nope]:1"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "not an IPv6 address"));
}

static void unknown_flags_and_arguments_are_named(void **state)
{
	struct fx *x = *state;

	assert_int_equal(load(x, 2, ARGV("--frobnicate"), no_env), -EINVAL);
	assert_string_equal(x->err, "--frobnicate: unknown flag (see --help)");
	assert_int_equal(load(x, 2, ARGV("--frob=1"), no_env), -EINVAL);
	assert_string_equal(x->err, "--frob: unknown flag (see --help)");
	assert_int_equal(load(x, 2, ARGV("--max_body=1"), no_env), -EINVAL);
	assert_int_equal(load(x, 2, ARGV("serve"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "serve: unexpected argument"));
	assert_int_equal(load(x, 2, ARGV("--workers"), no_env), -EINVAL);
	assert_string_equal(x->err, "--workers: missing value (N)");
	assert_int_equal(load(x, 3, ARGV("--loop", "kqueue"), no_env), -EINVAL);
	assert_string_equal(x->err, "--loop: expected auto, uring or epoll, got \"kqueue\"");
	assert_int_equal(load(x, 3, ARGV("--log-level", "loud"), no_env), -EINVAL);
	assert_int_equal(load(x, 3, ARGV("--log-format", "xml"), no_env), -EINVAL);
	assert_int_equal(load(x, 3, ARGV("--max-tasks-jitter", "5"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "needs --max-tasks-per-child"));
}

static void help_and_version_win(void **state)
{
	struct fx *x = *state;

	assert_int_equal(load(x, 3, ARGV("--workers", "x"), no_env), -EINVAL);
	assert_int_equal(load(x, 2, ARGV("--version"), no_env), FP_CONFIG_VERSION);
	assert_int_equal(load(x, 3, ARGV("--version", "--help"), no_env), FP_CONFIG_HELP);
	assert_int_equal(load(x, 2, ARGV("-h"), no_env), FP_CONFIG_HELP);
	assert_int_equal(load(x, 2, ARGV("--help=1"), no_env), -EINVAL);
}

static void environment_is_read_and_flags_win(void **state)
{
	struct fx *x = *state;
	char *const env[] = {
		"FORKPOOL_WORKERS=4", "FORKPOOL_LISTEN=127.0.0.1:1, 127.0.0.1:2",
		"FORKPOOL_MAX_BODY=1m", "FORKPOOL_LOG_FORMAT=json", "FORKPOOL_TOKEN_FILE=",
		"FORKPOOL_MODULE=/a.so,/b.so", "FORKPOOL=ignored", NULL,
	};

	assert_int_equal(load(x, 1, ARGV(NULL), env), 0);
	assert_int_equal(x->c.workers, 4);
	assert_int_equal(x->c.nlisten, 2);
	assert_string_equal(x->c.listen[1], "127.0.0.1:2");
	assert_int_equal(x->c.max_body, 1u << 20);
	assert_int_equal(x->c.log_format, FP_DLOG_JSON);
	/* Empty means unset. */
	assert_null(x->c.token_file);
	assert_int_equal(x->c.nmodules, 2);
	assert_string_equal(x->c.modules[1], "/b.so");

	/* A flag replaces the environment's list, not adds to it. */
	assert_int_equal(load(x, 5, ARGV("--workers", "2", "--listen", "127.0.0.1:3"), env), 0);
	assert_int_equal(x->c.workers, 2);
	assert_int_equal(x->c.nlisten, 1);
	assert_string_equal(x->c.listen[0], "127.0.0.1:3");
	assert_int_equal(x->c.nmodules, 2);

	char *const bad[] = { "FORKPOOL_WORKERS=many", NULL };
	assert_int_equal(load(x, 1, ARGV(NULL), bad), -EINVAL);
	assert_string_equal(x->err, "FORKPOOL_WORKERS: expected a positive integer, got \"many\"");
}

static void exec_pools_are_named_commands(void **state)
{
	struct fx *x = *state;
	char *const env[] = { "FORKPOOL_EXEC=js=node w.js, with a comma", NULL };
	const char *path = write_file(x, "exec = py=python3 \"my worker.py\"\n"
				      "exec-startup-timeout = 2500\n");
	char cfg[512];

	assert_int_equal(load(x, 7, ARGV("--exec", "py=python3 w.py", "--exec-shell",
					 "sh=cat | tr a-z A-Z", "--exec-workers", "3"), no_env), 0);
	assert_int_equal(x->c.nexec, 1);
	assert_string_equal(x->c.exec[0], "py=python3 w.py");
	assert_int_equal(x->c.nexec_shell, 1);
	assert_string_equal(x->c.exec_shell[0], "sh=cat | tr a-z A-Z");
	assert_int_equal(x->c.exec_workers.all, 3);
	assert_int_equal(x->c.exec_startup_timeout_ms.all, 10000);

	/* The environment's value is one command: commas are the command's. */
	assert_int_equal(load(x, 1, ARGV(NULL), env), 0);
	assert_int_equal(x->c.nexec, 1);
	assert_string_equal(x->c.exec[0], "js=node w.js, with a comma");

	snprintf(cfg, sizeof(cfg), "--config=%s", path);
	assert_int_equal(load(x, 2, ARGV(cfg), no_env), 0);
	assert_string_equal(x->c.exec[0], "py=python3 \"my worker.py\"");
	assert_int_equal(x->c.exec_startup_timeout_ms.all, 2500);

	assert_int_equal(load(x, 3, ARGV("--exec", "python3 w.py"), no_env), -EINVAL);
	assert_string_equal(x->err, "--exec: expected NAME=COMMAND with NAME of A-Z a-z 0-9 _ -"
			    " (at most 64), got \"python3 w.py\"");
	assert_int_equal(load(x, 3, ARGV("--exec", "py= "), no_env), -EINVAL);
	assert_string_equal(x->err, "--exec: the command after \"py=\" is empty");
}

/* The pools of the last load as fp_pool_new() takes them. */
static size_t pools(struct fx *x, fp_exec_options *o, char names[FP_EXEC_MAX][72])
{
	return fp_config_exec_pools(&x->c, o, names);
}

static void exec_pools_have_their_own_limits(void **state)
{
	struct fx *x = *state;
	fp_exec_options o[FP_EXEC_MAX];
	char names[FP_EXEC_MAX][72];

	assert_int_equal(load(x, 14, ARGV("--exec", "py=python3 w.py", "--exec-shell", "sh=./w.sh",
					 "--exec-max-tasks-per-child", "py=100",
					 "--exec-task-timeout=60000",
					 "--exec-task-timeout", "sh=0",
					 "--exec-max-rss-mb", "sh=512",
					 "--exec-workers", "py=2"), no_env), 0);
	assert_int_equal(pools(x, o, names), 2);
	assert_string_equal(o[0].name, "py");
	assert_string_equal(o[0].command, "python3 w.py");
	assert_false(o[0].shell);
	assert_int_equal(o[0].max_tasks_per_child, 100);
	assert_int_equal(o[0].timeout_ms, 60000);       /* N: every exec pool's */
	assert_int_equal(o[0].max_rss_bytes, 0);        /* unset: --max-rss-mb */
	assert_int_equal(o[0].workers, 2);
	assert_int_equal(o[0].startup_timeout_ms, 10000);
	assert_string_equal(o[1].name, "sh");
	assert_true(o[1].shell);
	assert_int_equal(o[1].max_tasks_per_child, 0);  /* unset: --max-tasks-per-child */
	assert_int_equal(o[1].timeout_ms, FP_EXEC_NO_LIMIT); /* NAME=0: none, beats N */
	assert_int_equal(o[1].max_rss_bytes, 512ull << 20);
	assert_int_equal(o[1].workers, 0);
	assert_null(o[2].name);
}

static void exec_limits_from_environment_and_file(void **state)
{
	struct fx *x = *state;
	char *const env[] = { "FORKPOOL_EXEC_MAX_TASKS_PER_CHILD=py=50, sh=7",
			      "FORKPOOL_EXEC_TASK_TIMEOUT=py=1000", NULL };
	const char *path = write_file(x, "exec = py=python3 w.py\n"
				      "exec-shell = sh=./w.sh\n"
				      "exec-task-timeout = py=5000\n"
				      "exec_task_timeout = sh=6000\n"
				      "exec-max-tasks-jitter = 3\n");
	fp_exec_options o[FP_EXEC_MAX];
	char names[FP_EXEC_MAX][72], cfg[512];

	snprintf(cfg, sizeof(cfg), "--config=%s", path);
	/* The environment beats the file for py's timeout; sh keeps the file's. */
	assert_int_equal(load(x, 4, ARGV(cfg, "--exec-max-tasks-per-child", "sh=9"), env), 0);
	assert_int_equal(pools(x, o, names), 2);
	assert_int_equal(o[0].max_tasks_per_child, 50);
	assert_int_equal(o[1].max_tasks_per_child, 9);  /* the flag beats the environment */
	assert_int_equal(o[0].timeout_ms, 1000);
	assert_int_equal(o[1].timeout_ms, 6000);
	assert_int_equal(o[0].max_tasks_jitter, 3);
	assert_int_equal(o[1].max_tasks_jitter, 3);
}

static void bad_exec_limits_name_the_option_and_the_pool(void **state)
{
	struct fx *x = *state;
	char *const env[] = { "FORKPOOL_EXEC_MAX_RSS_MB=py=lots", NULL };

	assert_int_equal(load(x, 5, ARGV("--exec", "py=python3 w.py",
					 "--exec-max-tasks-per-child", "py=-1"), no_env), -EINVAL);
	assert_string_equal(x->err, "--exec-max-tasks-per-child (exec pool py): expected N or"
			    " NAME=N with N a non-negative integer, got \"py=-1\"");
	assert_int_equal(load(x, 5, ARGV("--exec", "py=python3 w.py",
					 "--exec-task-timeout", "py=99999999999999"), no_env),
			 -EINVAL);
	assert_string_equal(x->err, "--exec-task-timeout (exec pool py): expected a duration"
			    " from 0ms to 31536000000ms, got \"py=99999999999999\"");
	assert_int_equal(load(x, 5, ARGV("--exec", "py=python3 w.py",
					 "--exec-startup-timeout", "py=0"), no_env), -EINVAL);
	assert_string_equal(x->err, "--exec-startup-timeout (exec pool py): expected a duration"
			    " from 1ms to 3600000ms, got \"py=0\"");
	assert_int_equal(load(x, 5, ARGV("--exec", "py=python3 w.py",
					 "--exec-workers", "p y=2"), no_env), -EINVAL);
	assert_string_equal(x->err, "--exec-workers: expected N or NAME=N with NAME an exec"
			    " pool's name (A-Z a-z 0-9 _ -), got \"p y=2\"");
	assert_int_equal(load(x, 3, ARGV("--exec", "py=python3 w.py"), env), -EINVAL);
	assert_string_equal(x->err, "FORKPOOL_EXEC_MAX_RSS_MB (exec pool py): expected N or"
			    " NAME=N with N a non-negative integer, got \"py=lots\"");

	/* A pool nobody defined, wherever it was named. */
	assert_int_equal(load(x, 5, ARGV("--exec", "py=python3 w.py",
					 "--exec-task-timeout", "pyy=100"), no_env), -EINVAL);
	assert_string_equal(x->err, "--exec-task-timeout: no exec pool is named \"pyy\" (--exec"
			    " or --exec-shell pyy=COMMAND makes one)");
	const char *path = write_file(x, "exec-max-tasks-per-child = ocr=5\n");
	char cfg[512];

	snprintf(cfg, sizeof(cfg), "--config=%s", path);
	assert_int_equal(load(x, 2, ARGV(cfg), no_env), -EINVAL);
	snprintf(cfg, sizeof(cfg), "%s:1: exec-max-tasks-per-child: no exec pool is named"
		 " \"ocr\"", path);
	assert_non_null(strstr(x->err, cfg));

	/* A jitter with nothing to spread, as for --max-tasks-jitter. */
	assert_int_equal(load(x, 5, ARGV("--exec", "py=python3 w.py",
					 "--exec-max-tasks-jitter", "py=10"), no_env), -EINVAL);
	assert_string_equal(x->err, "--exec-max-tasks-jitter: exec pool py has no max tasks per"
			    " child to spread (--exec-max-tasks-per-child py=N or"
			    " --max-tasks-per-child)");
	assert_int_equal(load(x, 7, ARGV("--exec", "py=python3 w.py", "--max-tasks-per-child",
					 "500", "--exec-max-tasks-jitter", "py=10"), no_env), 0);
}

static void file_is_weakest_and_reports_its_line(void **state)
{
	struct fx *x = *state;
	const char *path = write_file(x,
		"# forkpoold settings\n"
		"\n"
		"workers = 6\n"
		"  max_queue=9   # trailing comment\n"
		"listen = 127.0.0.1:11\n"
		"listen = 127.0.0.1:12\n"
		"token-file = \"/etc/fp token#1\"\n"
		"job-ttl = 60\n");
	char *const env[] = { "FORKPOOL_JOB_TTL=70", NULL };

	assert_int_equal(load(x, 3, ARGV("--config", (char *)path), env), 0);
	assert_int_equal(x->c.workers, 6);
	assert_int_equal(x->c.max_queue, 9);
	assert_int_equal(x->c.nlisten, 2);
	assert_string_equal(x->c.listen[0], "127.0.0.1:11");
	assert_string_equal(x->c.token_file, "/etc/fp token#1");
	assert_int_equal(x->c.job_ttl_s, 70);
	assert_string_equal(x->c.config_file, path);

	/* The environment's list replaces the file's; a flag beats both. */
	char *const env2[] = { "FORKPOOL_LISTEN=127.0.0.1:21", "FORKPOOL_WORKERS=1", NULL };
	assert_int_equal(load(x, 5, ARGV("--config", (char *)path, "--workers", "2"), env2), 0);
	assert_int_equal(x->c.nlisten, 1);
	assert_string_equal(x->c.listen[0], "127.0.0.1:21");
	assert_int_equal(x->c.workers, 2);

	/* FORKPOOL_CONFIG names the file too. */
	char env3_config[128];
	snprintf(env3_config, sizeof(env3_config), "FORKPOOL_CONFIG=%s", path);
	char *const env3[] = { env3_config, NULL };
	assert_int_equal(load(x, 1, ARGV(NULL), env3), 0);
	assert_int_equal(x->c.workers, 6);
}

static void file_errors_name_path_line_and_key(void **state)
{
	struct fx *x = *state;
	char want[256];
	const char *path = write_file(x, "workers = 2\n\nmax-body = lots\n");

	assert_int_equal(load(x, 3, ARGV("--config", (char *)path), no_env), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: max-body: expected a size", path);
	assert_true(strncmp(x->err, want, strlen(want)) == 0);
	unlink(path);

	path = write_file(x, "colour = blue\n");
	assert_int_equal(load(x, 3, ARGV("--config", (char *)path), no_env), -EINVAL);
	snprintf(want, sizeof(want), "%s:1: unknown setting \"colour\"", path);
	assert_string_equal(x->err, want);
	unlink(path);

	path = write_file(x, "just words\n");
	assert_int_equal(load(x, 3, ARGV("--config", (char *)path), no_env), -EINVAL);
	assert_non_null(strstr(x->err, ":1: expected `key = value`"));
	unlink(path);

	path = write_file(x, "config = /etc/other\n");
	assert_int_equal(load(x, 3, ARGV("--config", (char *)path), no_env), -EINVAL);
	unlink(path);
	x->path[0] = '\0';

	assert_int_equal(load(x, 3, ARGV("--config", "/nonexistent/forkpoold.conf"), no_env),
			 -EINVAL);
	assert_string_equal(x->err, "--config /nonexistent/forkpoold.conf: cannot read it:"
			    " No such file or directory");
}

static void modules_are_limited(void **state)
{
	struct fx *x = *state;
	char *argv[2 + 2 * (FP_CONFIG_MODULES_MAX + 1)];
	int i, argc = 1;

	argv[0] = "forkpoold";
	for (i = 0; i < FP_CONFIG_MODULES_MAX; i++) {
		argv[argc++] = "--module";
		argv[argc++] = "/m.so";
	}
	argv[argc] = NULL;
	assert_int_equal(load(x, argc, argv, no_env), 0);
	assert_int_equal(x->c.nmodules, FP_CONFIG_MODULES_MAX);
	assert_null(x->c.modules[FP_CONFIG_MODULES_MAX]);
	argv[argc++] = "--module";
	argv[argc++] = "/one-too-many.so";
	argv[argc] = NULL;
	assert_int_equal(load(x, argc, argv, no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--module: at most"));
}

static void durations_take_units_and_bare_numbers_keep_theirs(void **state)
{
	struct fx *x = *state;
	const char *path = write_file(x, "task-timeout = 2s\njob-ttl = 1h\n");
	char *const env[] = { "FORKPOOL_DRAIN_TIMEOUT=1m", NULL };
	fp_exec_options o[FP_EXEC_MAX];
	char names[FP_EXEC_MAX][72], cfg[512];

	assert_int_equal(load(x, ARGC("--task-timeout", "500ms", "--job-ttl", "10m",
				      "--drain-timeout", "45"),
			      ARGV("--task-timeout", "500ms", "--job-ttl", "10m",
				   "--drain-timeout", "45"), no_env), 0);
	assert_int_equal(x->c.task_timeout_ms, 500);
	assert_int_equal(x->c.job_ttl_s, 600);
	assert_int_equal(x->c.drain_timeout_s, 45);      /* bare: seconds, as documented */
	assert_int_equal(load(x, ARGC("--task-timeout", "30s"), ARGV("--task-timeout", "30s"),
			      no_env), 0);
	assert_int_equal(x->c.task_timeout_ms, 30000);
	assert_int_equal(load(x, ARGC("--task-timeout", "1h"), ARGV("--task-timeout", "1h"),
			      no_env), 0);
	assert_int_equal(x->c.task_timeout_ms, 3600000);
	assert_int_equal(load(x, ARGC("--task-timeout", "250"), ARGV("--task-timeout", "250"),
			      no_env), 0);
	assert_int_equal(x->c.task_timeout_ms, 250);     /* bare: milliseconds */
	assert_int_equal(load(x, ARGC("--job-ttl", "3000ms"), ARGV("--job-ttl", "3000ms"),
			      no_env), 0);
	assert_int_equal(x->c.job_ttl_s, 3);
	assert_int_equal(load(x, ARGC("--task-timeout", "0s"), ARGV("--task-timeout", "0s"),
			      no_env), 0);
	assert_int_equal(x->c.task_timeout_ms, 0);

	/* The file and the environment take them too. */
	snprintf(cfg, sizeof(cfg), "--config=%s", path);
	assert_int_equal(load(x, 2, ARGV(cfg), env), 0);
	assert_int_equal(x->c.task_timeout_ms, 2000);
	assert_int_equal(x->c.job_ttl_s, 3600);
	assert_int_equal(x->c.drain_timeout_s, 60);

	/* And the exec pools' own, as N and as NAME=N. */
	assert_int_equal(load(x, ARGC("--exec", "py=python3 w.py", "--exec-task-timeout", "py=2s",
				      "--exec-startup-timeout", "1m"),
			      ARGV("--exec", "py=python3 w.py", "--exec-task-timeout", "py=2s",
				   "--exec-startup-timeout", "1m"), no_env), 0);
	assert_int_equal(fp_config_exec_pools(&x->c, o, names), 1);
	assert_int_equal(o[0].timeout_ms, 2000);
	assert_int_equal(o[0].startup_timeout_ms, 60000);
}

static void bad_durations_name_the_flag_and_the_units(void **state)
{
	struct fx *x = *state;

	assert_int_equal(load(x, ARGC("--task-timeout", "5x"), ARGV("--task-timeout", "5x"),
			      no_env), -EINVAL);
	assert_string_equal(x->err, "--task-timeout: expected a duration such as 500ms, 30s, 10m"
			    " or 1h (ms, s, m or h; a bare number is milliseconds), got \"5x\"");
	assert_int_equal(load(x, ARGC("--job-ttl", "ms"), ARGV("--job-ttl", "ms"), no_env),
			 -EINVAL);
	assert_non_null(strstr(x->err, "--job-ttl: expected a duration"));
	assert_non_null(strstr(x->err, "a bare number is seconds"));
	assert_int_equal(load(x, ARGC("--job-ttl", "10M"), ARGV("--job-ttl", "10M"), no_env),
			 -EINVAL);
	assert_int_equal(load(x, ARGC("--job-ttl", "1 h"), ARGV("--job-ttl", "1 h"), no_env),
			 -EINVAL);
	/* Seconds cannot hold 1500 ms: said, not rounded. */
	assert_int_equal(load(x, ARGC("--job-ttl", "1500ms"), ARGV("--job-ttl", "1500ms"),
			      no_env), -EINVAL);
	assert_string_equal(x->err, "--job-ttl: \"1500ms\" is not a whole number of seconds");
	/* Out of range, in the flag's own terms. */
	assert_int_equal(load(x, ARGC("--drain-timeout", "200h"), ARGV("--drain-timeout", "200h"),
			      no_env), -EINVAL);
	assert_string_equal(x->err, "--drain-timeout: expected a duration from 0s to 604800s,"
			    " got \"200h\"");
	assert_int_equal(load(x, ARGC("--task-timeout", "99999999999999999h"),
			      ARGV("--task-timeout", "99999999999999999h"), no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--task-timeout: expected a duration from 0ms to"));
	assert_int_equal(load(x, ARGC("--exec", "py=w", "--exec-task-timeout", "py=2parsecs"),
			      ARGV("--exec", "py=w", "--exec-task-timeout", "py=2parsecs"), no_env),
			 -EINVAL);
	assert_non_null(strstr(x->err, "--exec-task-timeout (exec pool py): expected"));
	assert_non_null(strstr(x->err, "2parsecs"));
	assert_int_equal(load(x, 1, ARGV(NULL), (char *const[]){ "FORKPOOL_JOB_TTL=5 days", NULL }),
			 -EINVAL);
	assert_non_null(strstr(x->err, "FORKPOOL_JOB_TTL: expected a duration"));
}

static void help_says_each_duration_unit(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	assert_non_null(f);
	fp_config_usage(f);
	fclose(f);
	assert_non_null(strstr(text, "--task-timeout DURATION"));
	assert_non_null(strstr(text, "--job-ttl DURATION"));
	assert_non_null(strstr(text, "a bare number is milliseconds"));
	assert_non_null(strstr(text, "a bare number is seconds"));
	assert_non_null(strstr(text, "--unix-mode MODE"));
	assert_non_null(strstr(text, "--strict-perms"));
	free(text);
}

static void module_needs_a_path(void **state)
{
	struct fx *x = *state;

	assert_int_equal(load(x, ARGC("--module", "librev.so"), ARGV("--module", "librev.so"),
			      no_env), -EINVAL);
	assert_string_equal(x->err, "--module: \"librev.so\" is not a path: write ./librev.so for"
			    " the file in the working directory (a name without a '/' would be"
			    " looked up in the system's library path)");
	assert_int_equal(load(x, 1, ARGV(NULL), (char *const[]){ "FORKPOOL_MODULE=/a.so,b.so",
								  NULL }), -EINVAL);
	assert_non_null(strstr(x->err, "FORKPOOL_MODULE: \"b.so\" is not a path: write ./b.so"));
	assert_int_equal(load(x, ARGC("--module", "./librev.so", "--module", "lib/x.so"),
			      ARGV("--module", "./librev.so", "--module", "lib/x.so"), no_env), 0);
	assert_string_equal(x->c.modules[0], "./librev.so");
	assert_string_equal(x->c.modules[1], "lib/x.so");
}

static void unix_mode_and_strict_perms(void **state)
{
	struct fx *x = *state;
	const char *path;
	char cfg[512];

	assert_int_equal(load(x, 1, ARGV(NULL), no_env), 0);
	assert_int_equal(x->c.unix_mode, 0660);
	assert_false(x->c.strict_perms);
	assert_int_equal(load(x, ARGC("--unix-mode", "0600", "--strict-perms"),
			      ARGV("--unix-mode", "0600", "--strict-perms"), no_env), 0);
	assert_int_equal(x->c.unix_mode, 0600);
	assert_true(x->c.strict_perms);
	/* Octal with or without the leading 0, as chmod takes it. */
	assert_int_equal(load(x, ARGC("--unix-mode=666"), ARGV("--unix-mode=666"), no_env), 0);
	assert_int_equal(x->c.unix_mode, 0666);
	assert_int_equal(load(x, ARGC("--unix-mode", "0999"), ARGV("--unix-mode", "0999"), no_env),
			 -EINVAL);
	assert_string_equal(x->err, "--unix-mode: expected an octal mode from 0 to 0777 such as"
			    " 0660, got \"0999\"");
	assert_int_equal(load(x, ARGC("--unix-mode", "01777"), ARGV("--unix-mode", "01777"),
			      no_env), -EINVAL);
	assert_int_equal(load(x, ARGC("--unix-mode", "rw"), ARGV("--unix-mode", "rw"), no_env),
			 -EINVAL);
	/* A switch: no value on the command line takes the next argument. */
	assert_int_equal(load(x, ARGC("--strict-perms", "--workers", "2"),
			      ARGV("--strict-perms", "--workers", "2"), no_env), 0);
	assert_true(x->c.strict_perms);
	assert_int_equal(x->c.workers, 2);
	assert_int_equal(load(x, ARGC("--strict-perms=false"), ARGV("--strict-perms=false"),
			      (char *const[]){ "FORKPOOL_STRICT_PERMS=1", NULL }), 0);
	assert_false(x->c.strict_perms);
	assert_int_equal(load(x, 1, ARGV(NULL), (char *const[]){ "FORKPOOL_STRICT_PERMS=yes",
								  NULL }), 0);
	assert_true(x->c.strict_perms);
	assert_int_equal(load(x, ARGC("--strict-perms=maybe"), ARGV("--strict-perms=maybe"),
			      no_env), -EINVAL);
	assert_string_equal(x->err, "--strict-perms: expected true or false (also 1/0, yes/no,"
			    " on/off), got \"maybe\"");
	path = write_file(x, "strict-perms = true\nunix-mode = 0640\n");
	snprintf(cfg, sizeof(cfg), "--config=%s", path);
	assert_int_equal(load(x, 2, ARGV(cfg), no_env), 0);
	assert_true(x->c.strict_perms);
	assert_int_equal(x->c.unix_mode, 0640);
}

/* The token file with `mode`: read with or without --strict-perms. */
static int read_token_mode(struct fx *x, mode_t mode, bool strict, char **token, char *warn,
			   size_t warnlen)
{
	const char *path;

	if (x->path[0])
		unlink(x->path);
	path = write_file(x, "  s3cret\n");
	assert_int_equal(chmod(path, mode), 0);
	assert_int_equal(load(x, strict ? 4 : 3, ARGV("--token-file", (char *)path,
						      strict ? "--strict-perms" : NULL), no_env), 0);
	*token = NULL;
	return fp_config_read_token(&x->c, token, warn, warnlen, x->err, sizeof(x->err));
}

static void token_file_open_to_others_warns_or_is_refused(void **state)
{
	struct fx *x = *state;
	char warn[512], want[512], *token;

	assert_int_equal(read_token_mode(x, 0600, false, &token, warn, sizeof(warn)), 0);
	assert_string_equal(token, "s3cret");
	assert_string_equal(warn, "");
	free(token);
	assert_int_equal(read_token_mode(x, 0400, true, &token, warn, sizeof(warn)), 0);
	assert_string_equal(warn, "");
	free(token);

	assert_int_equal(read_token_mode(x, 0644, false, &token, warn, sizeof(warn)), 0);
	assert_string_equal(token, "s3cret");
	snprintf(want, sizeof(want), "--token-file %s: readable or writable by group or others"
		 " (mode 0644); make it private with chmod 600 %s (--strict-perms refuses to"
		 " start instead)", x->path, x->path);
	assert_string_equal(warn, want);
	free(token);
	assert_int_equal(read_token_mode(x, 0620, false, &token, warn, sizeof(warn)), 0);
	assert_non_null(strstr(warn, "(mode 0620)"));
	free(token);

	assert_int_equal(read_token_mode(x, 0640, true, &token, warn, sizeof(warn)), -EPERM);
	assert_null(token);
	snprintf(want, sizeof(want), "--token-file %s: readable or writable by group or others"
		 " (mode 0640), and --strict-perms is set; make it private with chmod 600 %s",
		 x->path, x->path);
	assert_string_equal(x->err, want);
}

/* The connection limits and request deadlines (issue 13): defaults and flags. */
static void connection_limits_and_deadlines(void **state)
{
	struct fx *x = *state;
	char *const argv[] = { "forkpoold", NULL };

	assert_int_equal(load(x, 1, argv, no_env), FP_CONFIG_RUN);
	assert_int_equal(x->c.max_connections, 16384);
	assert_int_equal(x->c.max_connections_per_ip, 0);
	assert_int_equal(x->c.header_timeout_ms, 10000);
	assert_int_equal(x->c.body_timeout_ms, 20000);
	assert_int_equal(x->c.body_min_rate, 500);

	assert_int_equal(load(x, ARGC("--max-connections-per-ip", "8", "--header-timeout", "2500",
				      "--body-timeout=3s", "--body-min-rate", "1k"),
			      ARGV("--max-connections-per-ip", "8", "--header-timeout", "2500",
				   "--body-timeout=3s", "--body-min-rate", "1k"), no_env), 0);
	assert_int_equal(x->c.max_connections_per_ip, 8);
	assert_int_equal(x->c.header_timeout_ms, 2500);
	assert_int_equal(x->c.body_timeout_ms, 3000);
	assert_int_equal(x->c.body_min_rate, 1024);
	assert_int_equal(load(x, ARGC("--body-min-rate", "0"), ARGV("--body-min-rate", "0"),
			      no_env), 0);
	assert_int_equal(x->c.body_min_rate, 0);

	/* A deadline is never off: 0 is refused, naming the flag. */
	assert_int_equal(load(x, ARGC("--header-timeout", "0"), ARGV("--header-timeout", "0"),
			      no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--header-timeout: "));
	assert_int_equal(load(x, ARGC("--body-timeout", "0"), ARGV("--body-timeout", "0"),
			      no_env), -EINVAL);
	assert_non_null(strstr(x->err, "--body-timeout: "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
		T(defaults_listen_on_loopback_8080),
		T(flags_take_separate_or_joined_values),
		T(bad_integer_names_the_flag_and_the_value),
		T(sizes_take_binary_suffixes),
		T(memory_limits_from_flags_environment_and_file),
		T(listen_is_repeatable_and_checked),
		T(unknown_flags_and_arguments_are_named),
		T(help_and_version_win),
		T(environment_is_read_and_flags_win),
		T(file_is_weakest_and_reports_its_line),
		T(file_errors_name_path_line_and_key),
		T(modules_are_limited),
		T(exec_pools_are_named_commands),
		T(exec_pools_have_their_own_limits),
		T(exec_limits_from_environment_and_file),
		T(bad_exec_limits_name_the_option_and_the_pool),
		T(durations_take_units_and_bare_numbers_keep_theirs),
		T(bad_durations_name_the_flag_and_the_units),
		T(help_says_each_duration_unit),
		T(module_needs_a_path),
		T(unix_mode_and_strict_perms),
		T(token_file_open_to_others_warns_or_is_refused),
		T(connection_limits_and_deadlines),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
