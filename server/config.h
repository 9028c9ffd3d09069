/*
 * forkpoold's configuration: command-line flags, FORKPOOL_* environment
 * variables and an optional `key = value` file, in that order of precedence
 * (flags win, then the environment, then the file, then the defaults).
 *
 * Every setting has one name used three ways: `--max-body 1m` on the command
 * line, `FORKPOOL_MAX_BODY=1m` in the environment, `max-body = 1m` (or
 * `max_body`) in the file. The repeatable ones (listen, module) take a
 * comma-separated list in the environment and one line each in the file
 * (exec and exec-shell, whose commands hold commas, take one per variable); a
 * source that names them replaces what a weaker source said.
 *
 * An exec pool's own settings (exec-workers, exec-startup-timeout,
 * exec-max-tasks-per-child, exec-max-tasks-jitter, exec-max-rss-mb,
 * exec-task-timeout) take `N`, for every exec pool, or `NAME=N`, for pool
 * NAME only; they repeat (a comma-separated list in the environment), and
 * NAME=N beats N for pool NAME whichever source said which. For the same N
 * or NAME, the stronger source wins as usual. A NAME that no --exec or
 * --exec-shell defines is an error.
 *
 * Durations (task-timeout, job-ttl, drain-timeout, the exec pools' timeouts)
 * take a unit, 500ms, 30s, 10m or 1h; a bare number is in the unit its field
 * is kept in (ms or s, as the field's name says), and a value that unit
 * cannot hold (1500ms for seconds) is an error, not rounded.
 *
 * The file is named by --config PATH or FORKPOOL_CONFIG. Lines are
 * `key = value`; blank lines and lines starting with '#' are skipped, as is
 * anything after a '#' that follows a blank; a value may be double-quoted.
 */
#ifndef FP_SERVER_CONFIG_H
#define FP_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "forkpool.h"
#include "journal.h"
#include "dlog.h"

#define FP_CONFIG_LISTEN_MAX 16
/* fp_options.modules is NULL-terminated. */
#define FP_CONFIG_MODULES_MAX (FP_MODULES_MAX - 1)

#define FP_CONFIG_DEFAULT_LISTEN "127.0.0.1:8080"

/* Concurrency limits: --limit NAME=N, --task-concurrency TASK=N, --task-limit TASK=LIMIT. */
#define FP_CONFIG_LIMITS_MAX 64
struct fp_config_limits {
	size_t n;
	struct fp_config_limit {
		char name[129];            /* the limit's, or the task's */
		char limit[65];            /* --task-limit: the limit's name */
		unsigned max;              /* --limit, --task-concurrency: N */
		char where[96];            /* who said it */
	} v[FP_CONFIG_LIMITS_MAX];
};

/* An exec pool setting: one value for all exec pools, and some by name. */
struct fp_config_exec_value {
	bool all_set;
	uint64_t all;
	size_t n;
	struct fp_config_exec_entry {
		char name[65];
		uint64_t value;
		char where[96];            /* who said it, for an unknown NAME */
	} by_name[FP_EXEC_MAX];
};

struct fp_config {
	char *listen[FP_CONFIG_LISTEN_MAX + 1];   /* NULL-terminated, never empty after load */
	size_t nlisten;
	char *modules[FP_CONFIG_MODULES_MAX + 1]; /* NULL-terminated */
	size_t nmodules;
	/* Exec pools: "NAME=COMMAND", split by argv rules or run by /bin/sh. */
	char *exec[FP_EXEC_MAX + 1];       /* NULL-terminated */
	size_t nexec;
	char *exec_shell[FP_EXEC_MAX + 1];
	size_t nexec_shell;
	/* Their own settings, each N for all of them or NAME=N (config_exec.c). */
	struct fp_config_exec_value exec_workers;            /* 0: as many as --workers */
	struct fp_config_exec_value exec_startup_timeout_ms;
	struct fp_config_exec_value exec_max_tasks_per_child;/* 0: never; unset: --max-tasks-per-child */
	struct fp_config_exec_value exec_max_tasks_jitter;
	struct fp_config_exec_value exec_max_rss_mb;         /* 0: none; unset: --max-rss-mb */
	struct fp_config_exec_value exec_task_timeout_ms;    /* 0: none; unset: --task-timeout */
	/* Concurrency limits (config_limit.c), handed to the pool by fp_config_apply_limits(). */
	struct fp_config_limits limits, task_concurrency, task_limits;
	char *token_file;                  /* NULL: no authentication */
	bool strict_perms;                 /* a token file open to others: refuse, not warn */
	uint64_t unix_mode;                /* unix:/path sockets' permissions (0660) */
	char *config_file;                 /* the file that was read, or NULL */

	/* The cluster (issue 15): NULL url, a single node. */
	char *cluster;                     /* redis://HOST[:PORT][/DB] or unix:/PATH */
	char *cluster_auth_file;           /* Redis's password; NULL: no AUTH */
	char *cluster_prefix;              /* NULL: "forkpool:" */
	char *node_name;                   /* NULL: hostname:port */
	bool cluster_wait;                 /* Redis down at start: wait, not exit 1 */
	uint64_t cluster_buffer;           /* outcome bytes kept while Redis is away */

	uint64_t workers;                  /* 0: one per online CPU */
	uint64_t max_tasks_per_child;      /* 0: never recycle by count */
	uint64_t max_tasks_jitter;
	uint64_t max_rss_mb;               /* 0: no limit */
	uint64_t task_timeout_ms;          /* 0: none */
	uint64_t max_body;                 /* bytes */
	uint64_t max_queue;                /* unfinished items across jobs */
	uint64_t max_jobs;                 /* finished jobs kept */
	uint64_t max_results_memory;       /* bytes of results held; 0: no limit */
	uint64_t max_connections;
	uint64_t max_connections_per_ip;   /* 0: no cap */
	uint64_t header_timeout_ms;
	uint64_t body_timeout_ms;          /* the body's grace ... */
	uint64_t body_min_rate;            /* ... plus 1 s per this many bytes; 0: none */
	uint64_t job_ttl_s;
	uint64_t drain_timeout_s;          /* 0: cancel at once on SIGTERM */
	char *data_dir;                    /* the journal's directory; NULL: memory only */
	enum fp_fsync_policy fsync;
	uint64_t fsync_interval_ms;
	bool journal_recover;              /* skip damage in the middle of the journal */
	uint64_t journal_compact_size;     /* compaction's threshold; 0: never */

	fp_loop_backend loop;
	fp_log_level log_level;
	enum fp_dlog_format log_format;
};

enum fp_config_action {
	FP_CONFIG_RUN = 0,
	FP_CONFIG_HELP,      /* --help: print fp_config_usage(), exit 0 */
	FP_CONFIG_VERSION,   /* --version */
};

/*
 * Fill `c` from argv (argv[0] is the program), envp (NULL: environ) and the
 * config file they name. Returns an fp_config_action, or -EINVAL (or
 * -ENOMEM) with one line in errbuf naming the flag, variable or file line and
 * what was wrong, e.g. `--workers: expected a positive integer, got "x"`.
 * Call fp_config_deinit() in every case.
 */
int fp_config_load(struct fp_config *c, int argc, char *const argv[],
		   char *const envp[], char *errbuf, size_t errlen);
void fp_config_deinit(struct fp_config *c);

void fp_config_usage(FILE *out);

/*
 * The bearer token from c->token_file (config_token.c): the file's text
 * without surrounding blanks, one word. A file that group or others may read
 * or write is a warning, written to `warn` ("" when none), or with
 * c->strict_perms -EPERM. On error, -errno or -EINVAL with one line in
 * `err`. The caller frees *token (a secret: explicit_bzero() it first).
 */
int fp_config_read_token(const struct fp_config *c, char **token, char *warn, size_t warnlen,
			 char *err, size_t errlen);

/*
 * The Redis password from c->cluster_auth_file, read and checked as the
 * token file is (one word, a warning or with --strict-perms an error when
 * group or others may read or write it). Same contract as above.
 */
int fp_config_read_cluster_password(const struct fp_config *c, char **password, char *warn,
				    size_t warnlen, char *err, size_t errlen);

/*
 * The exec pools as fp_pool_new() takes them, in the order --exec then
 * --exec-shell: name (copied into names[i]), command, and each pool's own
 * settings, with 0 where it has none (the pool's then) and FP_EXEC_NO_LIMIT
 * where it says 0 (none). Returns how many; the rest of `out` is zeroed.
 * The commands point into `c`.
 */
size_t fp_config_exec_pools(const struct fp_config *c, fp_exec_options out[FP_EXEC_MAX],
			    char names[FP_EXEC_MAX][72]);

/*
 * Give the pool the limits: --limit, then --task-concurrency, then
 * --task-limit (config_limit.c). Checked when loaded, so only memory can
 * fail: a negative errno, the setting it was in errbuf.
 */
int fp_config_apply_limits(const struct fp_config *c, fp_pool *pool, char *errbuf, size_t errlen);

#endif
