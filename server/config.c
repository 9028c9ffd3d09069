/*
 * forkpoold's settings from flags, environment and file; see config.h.
 *
 * One table describes every setting (its name, kind, range and help). The
 * sources are applied weakest first (file, environment, flags), each
 * overwriting what came before, so precedence needs no other bookkeeping
 * than, for the lists, which source filled them. Single values are checked
 * in config_value.c, the exec pools' settings in config_exec.c.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"
#include "journal.h"

extern char **environ;

#define OFF(field) FP__CONFIG_OFF(field)
#define DAY_S 86400ull
/* A duration's unit: what a bare number means, as unit_ms. */
#define IN_MS 1
#define IN_S 1000

static const struct fp__config_setting settings[] = {
	{ "listen", K_LIST, OFF(listen), 0, 0, "ADDR",
	  "HOST:PORT, [V6]:PORT or unix:/path; repeatable (default "
	  FP_CONFIG_DEFAULT_LISTEN "); port 0 picks a free port" },
	{ "workers", K_UINT, OFF(workers), 1, 1024, "N",
	  "worker processes (default: one per online CPU)" },
	{ "max-tasks-per-child", K_UINT, OFF(max_tasks_per_child), 0, UINT32_MAX, "N",
	  "recycle a worker after N tasks (default 0: never)" },
	{ "max-tasks-jitter", K_UINT, OFF(max_tasks_jitter), 0, UINT32_MAX, "N",
	  "add up to N to each worker's limit so they do not all recycle at once" },
	{ "max-rss-mb", K_UINT, OFF(max_rss_mb), 0, 1ull << 24, "N",
	  "recycle a worker whose RSS passes N MiB after a task (default 0: no limit)" },
	{ "task-timeout", K_UINT, OFF(task_timeout_ms), 0, 365 * DAY_S * 1000, "DURATION",
	  "default task timeout, 0 for none (default 60s)", IN_MS },
	{ "module", K_LIST, OFF(modules), 0, 0, "PATH",
	  "task module (shared object) to load, by a path with a '/' (./librev.so);"
	  " repeatable" },
	{ "exec", K_LIST, OFF(exec), 0, 0, "NAME=COMMAND",
	  "an exec pool: workers that run COMMAND (split into words, no shell), whose"
	  " tasks are called NAME.task; repeatable" },
	{ "exec-shell", K_LIST, OFF(exec_shell), 0, 0, "NAME=COMMAND",
	  "the same, with COMMAND run by /bin/sh -c; repeatable" },
	{ "exec-workers", K_EXEC_UINT, OFF(exec_workers), 0, 1024, "N",
	  "workers of each exec pool, or NAME=N of pool NAME; repeatable"
	  " (default 0: as many as --workers)" },
	{ "exec-startup-timeout", K_EXEC_UINT, OFF(exec_startup_timeout_ms), 1, 3600000,
	  "DURATION", "how long an exec pool's program has to say ready, or NAME=DURATION"
	  " for pool NAME; repeatable (default 10s)", IN_MS },
	{ "exec-max-tasks-per-child", K_EXEC_UINT, OFF(exec_max_tasks_per_child), 0, UINT32_MAX,
	  "N", "recycle an exec pool's worker after N tasks, 0 never; NAME=N for pool NAME;"
	  " repeatable (default: --max-tasks-per-child)" },
	{ "exec-max-tasks-jitter", K_EXEC_UINT, OFF(exec_max_tasks_jitter), 0, UINT32_MAX, "N",
	  "as --max-tasks-jitter, for exec pools' own max tasks; NAME=N for pool NAME;"
	  " repeatable (default: --max-tasks-jitter with --max-tasks-per-child, else 0)" },
	{ "exec-max-rss-mb", K_EXEC_UINT, OFF(exec_max_rss_mb), 0, 1ull << 24, "N",
	  "recycle an exec pool's worker whose program's RSS passes N MiB, 0 no limit;"
	  " NAME=N for pool NAME; repeatable (default: --max-rss-mb)" },
	{ "exec-task-timeout", K_EXEC_UINT, OFF(exec_task_timeout_ms), 0, 365 * DAY_S * 1000,
	  "DURATION", "default timeout of an exec pool's tasks, 0 none; NAME=DURATION"
	  " for pool NAME; repeatable (default: --task-timeout)", IN_MS },
	{ "limit", K_LIMIT, OFF(limits), 0, 0, "NAME=N",
	  "a concurrency limit: at most N items of the tasks --task-limit puts under NAME"
	  " run at once; repeatable, or a comma-separated list" },
	{ "task-concurrency", K_LIMIT, OFF(task_concurrency), 0, 0, "TASK=N",
	  "at most N items of TASK run at once (a limit of its own, named TASK);"
	  " repeatable, or a comma-separated list" },
	{ "task-limit", K_LIMIT, OFF(task_limits), 0, 0, "TASK=LIMIT",
	  "put TASK under the --limit named LIMIT, shared with the other tasks under it;"
	  " repeatable, or a comma-separated list" },
	{ "loop", K_LOOP, OFF(loop), 0, 0, "auto|uring|epoll",
	  "event-loop backend (default auto: io_uring, else epoll)" },
	{ "token-file", K_PATH, OFF(token_file), 0, 0, "PATH",
	  "file holding the bearer token every request but /v1/health, the"
	  " status page (/, /ui) and /v1/openapi.json must carry; required to listen on a non-loopback address; a warning if group or"
	  " others may read or write it" },
	{ "strict-perms", K_BOOL, OFF(strict_perms), 0, 0, NULL,
	  "refuse to start, instead of warning, when group or others may read or"
	  " write the --token-file" },
	{ "cluster", K_PATH, OFF(cluster), 0, 0, "URL",
	  "experimental (issue 15): join a cluster of nodes through Redis at"
	  " redis://HOST[:PORT][/DB] or unix:/PATH[?db=N]; nodes register and see each"
	  " other in /v1/health and /v1/workers, and jobs are still run by the node that"
	  " took them; Redis unreachable at start is an error (exit 1)" },
	{ "cluster-auth-file", K_PATH, OFF(cluster_auth_file), 0, 0, "PATH",
	  "file holding Redis's password (AUTH); checked as --token-file is" },
	{ "cluster-prefix", K_PATH, OFF(cluster_prefix), 0, 0, "PREFIX",
	  "prefix of every Redis key, so that clusters can share one Redis"
	  " (default forkpool:)" },
	{ "node-name", K_PATH, OFF(node_name), 0, 0, "NAME",
	  "this node's name in the cluster (default hostname:port)" },
	{ "cluster-wait", K_BOOL, OFF(cluster_wait), 0, 0, NULL,
	  "at start, wait for Redis (retrying with backoff, serving meanwhile) instead"
	  " of exiting 1" },
	{ "cluster-buffer", K_SIZE, OFF(cluster_buffer), 1, 1ull << 40, "BYTES",
	  "outcome bytes a node keeps in memory while Redis is away, suffixes k, m, g;"
	  " a chunk whose outcomes do not fit ends its items with the error"
	  " store_unavailable instead (default 64m)" },
	{ "unix-mode", K_MODE, OFF(unix_mode), 0, 0, "MODE",
	  "permissions of unix:/path sockets, in octal, whatever the umask (default"
	  " 0660: the owner and its group may connect)" },
	{ "max-body", K_SIZE, OFF(max_body), 1, 1ull << 40, "BYTES",
	  "largest request body, suffixes k, m, g (default 64m)" },
	{ "max-queue", K_UINT, OFF(max_queue), 1, 1ull << 40, "N",
	  "unfinished items across all jobs (with --cluster: the cluster's); past it, 429"
	  " (default 1000000)" },
	{ "max-jobs", K_UINT, OFF(max_jobs), 1, 1ull << 32, "N",
	  "finished jobs kept; past it the oldest is forgotten (410 Gone) before its"
	  " --job-ttl (default 10000)" },
	{ "max-results-memory", K_SIZE, OFF(max_results_memory), 0, 1ull << 50, "BYTES",
	  "results held by all jobs, suffixes k, m, g; past it the oldest finished jobs are"
	  " forgotten (410 Gone), a job that cannot fit is refused with 507 and a result"
	  " that cannot is not kept (too_large); 0 for no limit (default 1g)" },
	{ "max-connections", K_UINT, OFF(max_connections), 1, 1u << 20, "N",
	  "open connections at most (default 16384); at the cap the longest-idle"
	  " connection is closed to admit a new one, and with none idle the new one is"
	  " closed; the soft RLIMIT_NOFILE is raised to hold them" },
	{ "max-connections-per-ip", K_UINT, OFF(max_connections_per_ip), 0, 1u << 20, "N",
	  "open connections from one client address at most, 0 for no cap (default 0);"
	  " past it that address's longest-idle connection is closed, and with none idle"
	  " the new one is answered 429" },
	{ "header-timeout", K_UINT, OFF(header_timeout_ms), 1, DAY_S * 1000, "DURATION",
	  "a request's line and headers must arrive within this of its first byte (a new"
	  " connection's: of its accept), however they trickle in; else 408 (default 10s)",
	  IN_MS },
	{ "body-timeout", K_UINT, OFF(body_timeout_ms), 1, DAY_S * 1000, "DURATION",
	  "a request body must arrive within this after its headers plus 1 s per"
	  " --body-min-rate bytes received; else 408 (default 20s)", IN_MS },
	{ "body-min-rate", K_SIZE, OFF(body_min_rate), 0, 1ull << 40, "BYTES",
	  "bytes a second a body must keep up after --body-timeout's grace, suffixes k, m,"
	  " g; 0: the whole body within --body-timeout (default 500)" },
	{ "job-ttl", K_UINT, OFF(job_ttl_s), 1, 3650 * DAY_S, "DURATION",
	  "keep finished jobs this long (default 10m)", IN_S },
	{ "drain-timeout", K_UINT, OFF(drain_timeout_s), 0, 7 * DAY_S, "DURATION",
	  "on SIGTERM, wait this long for jobs to finish before cancelling them"
	  " (default 30s)", IN_S },
	{ "data-dir", K_PATH, OFF(data_dir), 0, 0, "DIR",
	  "keep jobs in a journal in DIR (created if missing; one forkpoold per DIR), so"
	  " that they survive a restart or a crash; without it jobs live in memory only" },
	{ "fsync", K_FSYNC, OFF(fsync), 0, 0, "always|interval|never",
	  "when the journal is fsynced: before each submission is answered (always),"
	  " every --fsync-interval (default interval), or when the kernel decides (never)" },
	{ "fsync-interval", K_UINT, OFF(fsync_interval_ms), 1, 3600000, "DURATION",
	  "--fsync interval's period: at most this much is lost on a power loss"
	  " (default 50ms)", IN_MS },
	{ "journal-recover", K_BOOL, OFF(journal_recover), 0, 0, NULL,
	  "start even if the journal is damaged in the middle, skipping the damaged"
	  " records (logged, and counted in /metrics); without it such a journal is refused" },
	{ "journal-compact-size", K_SIZE, OFF(journal_compact_size), 0, 1ull << 50, "BYTES",
	  "rewrite the journal from the live jobs once it is this large and more than twice"
	  " what they need, suffixes k, m, g; 0 never (default 64m)" },
	{ "log-level", K_LEVEL, OFF(log_level), 0, 0, "error|warn|info|debug",
	  "default info" },
	{ "log-format", K_FORMAT, OFF(log_format), 0, 0, "text|json",
	  "default text" },
	{ "config", K_CONFIG, OFF(config_file), 0, 0, "PATH",
	  "read settings from a file of `key = value` lines" },
	{ "help", K_HELP, 0, 0, 0, NULL, "print this and exit" },
	{ "version", K_VERSION, 0, 0, 0, NULL, "print the version and exit" },
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

/* --- values -------------------------------------------------------------- */

static int list_add(struct fp__config_ctx *x, const struct fp__config_setting *s, enum fp__config_source src,
		    const char *where, const char *v)
{
	size_t idx = (size_t)(s - settings);
	bool is_listen = s->off == OFF(listen);
	bool is_exec = s->off == OFF(exec) || s->off == OFF(exec_shell);
	char **list = (char **)((char *)x->c + s->off);
	size_t *n = is_listen ? &x->c->nlisten : s->off == OFF(modules) ? &x->c->nmodules :
		    s->off == OFF(exec) ? &x->c->nexec : &x->c->nexec_shell;
	size_t max = is_listen ? FP_CONFIG_LISTEN_MAX : is_exec ? FP_EXEC_MAX :
		     FP_CONFIG_MODULES_MAX;
	int r;

	if (!*v)
		return fp__config_fail(x, where, "expected %s, got an empty value",
			    is_listen ? "an address" : is_exec ? "NAME=COMMAND" : "a path");
	if (is_listen && (r = fp__config_check_listen(x, where, v)) < 0)
		return r;
	if (is_exec && (r = fp__config_check_exec(x, where, v)) < 0)
		return r;
	if (s->off == OFF(modules) && (r = fp__config_check_module(x, where, v)) < 0)
		return r;
	/* A stronger source replaces the list, it does not add to it. */
	if (x->list_src[idx] != src) {
		while (*n) {
			free(list[--*n]);
			list[*n] = NULL;
		}
		x->list_src[idx] = src;
	}
	if (*n >= max)
		return fp__config_fail(x, where, "at most %zu are allowed", max);
	list[*n] = strdup(v);
	if (!list[*n])
		return -ENOMEM;
	list[++*n] = NULL;
	return 0;
}

static int apply(struct fp__config_ctx *x, const struct fp__config_setting *s, enum fp__config_source src,
		 const char *where, const char *v)
{
	char q[80];

	switch (s->kind) {
	case K_UINT:
		return fp__config_set_uint(x, s, where, v);
	case K_SIZE:
		return fp__config_set_size(x, s, where, v);
	case K_LIST:
		return list_add(x, s, src, where, v);
	case K_EXEC_UINT:
		return fp__config_set_exec_uint(x, s, where, v);
	case K_LIMIT:
		return fp__config_set_limit(x, s, src, &x->list_src[s - settings], where, v);
	case K_PATH:
	case K_CONFIG:
		return fp__config_set_string(x, s, where, v);
	case K_MODE:
		return fp__config_set_mode(x, s, where, v);
	case K_BOOL:
		return fp__config_set_bool(x, s, where, v);
	case K_LOOP:
		if (fp_loop_backend_parse(v, &x->c->loop) < 0)
			return fp__config_fail(x, where, "expected auto, uring or epoll, got \"%s\"",
				    fp__config_quote(v, q, sizeof(q)));
		return 0;
	case K_FSYNC:
		if (fp_fsync_policy_parse(v, &x->c->fsync) < 0)
			return fp__config_fail(x, where, "expected always, interval or never, got \"%s\"",
				    fp__config_quote(v, q, sizeof(q)));
		return 0;
	case K_LEVEL:
		if (fp_dlog_level_parse(v, &x->c->log_level) < 0)
			return fp__config_fail(x, where, "expected error, warn, info or debug, got \"%s\"",
				    fp__config_quote(v, q, sizeof(q)));
		return 0;
	case K_FORMAT:
		if (fp_dlog_format_parse(v, &x->c->log_format) < 0)
			return fp__config_fail(x, where, "expected text or json, got \"%s\"",
				    fp__config_quote(v, q, sizeof(q)));
		return 0;
	case K_HELP:
	case K_VERSION:
		break;
	}
	return 0;
}

/* By name; '_' and '-' are the same so a file may say max_body. */
static const struct fp__config_setting *find_setting(const char *name, size_t len)
{
	size_t i, j;

	for (i = 0; i < NSETTINGS; i++) {
		const char *n = settings[i].name;

		if (strlen(n) != len)
			continue;
		for (j = 0; j < len; j++) {
			char c = name[j] == '_' ? '-' : (char)tolower((unsigned char)name[j]);

			if (c != n[j])
				break;
		}
		if (j == len)
			return &settings[i];
	}
	return NULL;
}

/* --- sources ------------------------------------------------------------- */

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int load_file(struct fp__config_ctx *x, const char *path)
{
	char *line = NULL, *key, *val, *eq, *p, where[PATH_MAX + 64], q[80];
	const struct fp__config_setting *s;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	FILE *f;
	int r = 0;

	f = fopen(path, "re");
	if (!f) {
		snprintf(where, sizeof(where), "--config %s", path);
		return fp__config_fail(x, where, "cannot read it: %s", strerror(errno));
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		snprintf(where, sizeof(where), "%s:%zu", path, lineno);
		if ((size_t)len != strlen(line)) {
			r = fp__config_fail(x, where, "the line holds a NUL byte");
			break;
		}
		key = trim(line);
		if (!*key || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			r = fp__config_fail(x, where, "expected `key = value`, got \"%s\"",
				 fp__config_quote(key, q, sizeof(q)));
			break;
		}
		*eq = '\0';
		val = trim(eq + 1);
		key = trim(key);
		/* A comment after a blank; a quoted value keeps its '#'. */
		if (*val == '"') {
			p = strrchr(val + 1, '"');
			if (!p || (trim(p + 1)[0] && trim(p + 1)[0] != '#')) {
				r = fp__config_fail(x, where, "unterminated or trailing text after a quoted value");
				break;
			}
			*p = '\0';
			val++;
		} else {
			for (p = val; *p; p++) {
				if (*p == '#' && p > val && isspace((unsigned char)p[-1])) {
					*p = '\0';
					val = trim(val);
					break;
				}
			}
		}
		s = find_setting(key, strlen(key));
		if (!s || s->kind == K_HELP || s->kind == K_VERSION) {
			r = fp__config_fail(x, where, "unknown setting \"%s\"", fp__config_quote(key, q, sizeof(q)));
			break;
		}
		if (s->kind == K_CONFIG) {
			r = fp__config_fail(x, where, "a config file cannot name another one");
			break;
		}
		snprintf(where + strlen(where), sizeof(where) - strlen(where), ": %s", s->name);
		r = apply(x, s, SRC_FILE, where, val);
		if (r < 0)
			break;
	}
	if (r == 0 && ferror(f)) {
		snprintf(where, sizeof(where), "--config %s", path);
		r = fp__config_fail(x, where, "cannot read it: %s", strerror(errno));
	}
	free(line);
	fclose(f);
	return r;
}

static void env_name(const struct fp__config_setting *s, char *buf, size_t len)
{
	size_t i, n = strlen("FORKPOOL_");

	memcpy(buf, "FORKPOOL_", n);
	for (i = 0; s->name[i] && n + 1 < len; i++)
		buf[n++] = s->name[i] == '-' ? '_' : (char)toupper((unsigned char)s->name[i]);
	buf[n] = '\0';
}

static const char *env_get(char *const envp[], const char *name)
{
	size_t n = strlen(name);

	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* Repeatable settings whose values hold no commas take a list in one variable. */
static bool comma_separated(const struct fp__config_setting *s)
{
	if (s->kind == K_EXEC_UINT || s->kind == K_LIMIT)
		return true;
	return s->kind == K_LIST && s->off != OFF(exec) && s->off != OFF(exec_shell);
}

static int load_env(struct fp__config_ctx *x, char *const envp[],
		    const struct fp__config_setting *only)
{
	char name[64], *copy, *item, *save;
	const char *v;
	size_t i;
	int r;

	for (i = 0; i < NSETTINGS; i++) {
		const struct fp__config_setting *s = &settings[i];

		if (s->kind == K_HELP || s->kind == K_VERSION)
			continue;
		if ((only && s != only) || (!only && s->kind == K_CONFIG))
			continue;
		env_name(s, name, sizeof(name));
		v = env_get(envp, name);
		/* Empty is unset, as systemd's Environment= and shells make it. */
		if (!v || !*v)
			continue;
		if (!comma_separated(s)) {
			r = apply(x, s, SRC_ENV, name, v);
			if (r < 0)
				return r;
			continue;
		}
		copy = strdup(v);
		if (!copy)
			return -ENOMEM;
		r = 0;
		for (item = strtok_r(copy, ",", &save); item && r == 0;
		     item = strtok_r(NULL, ",", &save))
			r = apply(x, s, SRC_ENV, name, trim(item));
		free(copy);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A flag with its value, collected before any source is applied. */
struct flag {
	const struct fp__config_setting *s;
	const char *value;
	char where[72];
};

static void defaults(struct fp_config *c)
{
	memset(c, 0, sizeof(*c));
	c->task_timeout_ms = 60000;
	c->exec_startup_timeout_ms.all = 10000;
	c->exec_startup_timeout_ms.all_set = true;
	c->max_body = 64ull << 20;
	c->max_queue = 1000000;
	c->max_jobs = 10000;
	c->max_results_memory = 1ull << 30;
	c->cluster_buffer = 64ull << 20;
	c->max_connections = 16384;
	c->header_timeout_ms = 10000;
	c->body_timeout_ms = 20000;
	c->body_min_rate = 500;
	c->job_ttl_s = 600;
	c->drain_timeout_s = 30;
	c->fsync = FP_FSYNC_INTERVAL;
	c->fsync_interval_ms = FP_JOURNAL_FSYNC_INTERVAL_MS;
	c->journal_compact_size = 64ull << 20;
	c->unix_mode = 0660;
	c->loop = FP_LOOP_AUTO;
	c->log_level = FP_LOG_INFO;
	c->log_format = FP_DLOG_TEXT;
}

/* argv[i] as a flag's name, "-h" and "-V" spelled long; NULL (failed in x) when unknown. */
static const struct fp__config_setting *flag_setting(struct fp__config_ctx *x, const char *arg,
						      const char **eq)
{
	const struct fp__config_setting *s;
	char q[80];

	if (strncmp(arg, "--", 2) || !arg[2]) {
		fp__config_fail(x, fp__config_quote(arg, q, sizeof(q)),
				"unexpected argument (flags start with --; see --help)");
		return NULL;
	}
	*eq = strchr(arg + 2, '=');
	s = find_setting(arg + 2, *eq ? (size_t)(*eq - arg - 2) : strlen(arg + 2));
	/* The flag's own spelling: find_setting() also takes '_'. */
	if (s && strncmp(arg + 2, s->name, strlen(s->name)))
		s = NULL;
	if (!s) {
		snprintf(q, sizeof(q), "%.*s", *eq ? (int)(*eq - arg) : 70, arg);
		fp__config_fail(x, q, "unknown flag (see --help)");
	}
	return s;
}

/*
 * Flags first, to know --config and --help; applied last. Fills flags[] and
 * *nflags; returns 0, FP_CONFIG_HELP/VERSION, or a negative errno.
 */
static int read_flags(struct fp__config_ctx *x, int argc, char *const argv[],
		      struct flag *flags, int *nflags)
{
	const struct fp__config_setting *s;
	const char *arg, *eq = NULL;
	int i, action = FP_CONFIG_RUN;

	for (i = 1; i < argc; i++) {
		arg = argv[i];
		if (!strcmp(arg, "-h"))
			arg = "--help";
		else if (!strcmp(arg, "-V"))
			arg = "--version";
		if (!(s = flag_setting(x, arg, &eq)))
			return -EINVAL;
		struct flag *f = &flags[(*nflags)++];

		f->s = s;
		snprintf(f->where, sizeof(f->where), "--%s", s->name);
		if (s->kind == K_HELP || s->kind == K_VERSION) {
			if (eq)
				return fp__config_fail(x, f->where, "takes no value");
			if (s->kind == K_HELP)
				action = FP_CONFIG_HELP;
			else if (action != FP_CONFIG_HELP)
				action = FP_CONFIG_VERSION;
			continue;
		}
		if (eq) {
			f->value = eq + 1;
		} else if (s->kind == K_BOOL) {
			/* A switch: the next argument is not its value. */
			f->value = "true";
		} else if (i + 1 < argc) {
			f->value = argv[++i];
		} else {
			return fp__config_fail(x, f->where, "missing value (%s)", s->metavar);
		}
	}
	return action;
}

/* The sources in rising precedence: the file (--config wins over FORKPOOL_CONFIG), environment, flags. */
static int apply_sources(struct fp__config_ctx *x, char *const envp[], const struct flag *flags,
			 int nflags)
{
	const struct fp__config_setting *config_setting = find_setting("config", 6);
	int i, r;

	for (i = nflags - 1; i >= 0; i--)
		if (flags[i].s == config_setting)
			break;
	if (i >= 0)
		r = apply(x, config_setting, SRC_FLAG, flags[i].where, flags[i].value);
	else
		r = load_env(x, envp, config_setting);
	if (r == 0 && x->c->config_file)
		r = load_file(x, x->c->config_file);
	if (r == 0)
		r = load_env(x, envp, NULL);
	for (i = 0; r == 0 && i < nflags; i++)
		if (flags[i].s != config_setting)
			r = apply(x, flags[i].s, SRC_FLAG, flags[i].where, flags[i].value);
	return r;
}

/* What only the whole configuration can tell: defaults of lists, and settings that need others. */
static int complete(struct fp__config_ctx *x)
{
	struct fp_config *c = x->c;
	int r = 0;

	if (!c->nlisten)
		r = list_add(x, find_setting("listen", 6), SRC_DEFAULT, "--listen",
			     FP_CONFIG_DEFAULT_LISTEN);
	if (r == 0)
		r = fp__config_check_exec_pools(x);
	if (r == 0)
		r = fp__config_check_limits(x);
	if (r == 0 && c->max_tasks_jitter && !c->max_tasks_per_child)
		r = fp__config_fail(x, "--max-tasks-jitter",
			 "needs --max-tasks-per-child: it spreads that limit");
	return r;
}

int fp_config_load(struct fp_config *c, int argc, char *const argv[],
		   char *const envp[], char *errbuf, size_t errlen)
{
	enum fp__config_source list_src[NSETTINGS] = { SRC_DEFAULT };
	struct fp__config_ctx x = { .c = c, .list_src = list_src, .errbuf = errbuf,
				    .errlen = errlen };
	struct flag *flags;
	int nflags = 0, r;

	defaults(c);
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!envp)
		envp = environ;
	flags = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*flags));
	if (!flags)
		return -ENOMEM;

	r = read_flags(&x, argc, argv, flags, &nflags);
	if (r == 0)
		r = apply_sources(&x, envp, flags, nflags);
	if (r == 0)
		r = complete(&x);
	free(flags);
	if (r == -ENOMEM && errbuf && errlen)
		snprintf(errbuf, errlen, "out of memory reading the configuration");
	return r;
}

void fp_config_deinit(struct fp_config *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	for (i = 0; i < c->nmodules; i++)
		free(c->modules[i]);
	for (i = 0; i < c->nexec; i++)
		free(c->exec[i]);
	for (i = 0; i < c->nexec_shell; i++)
		free(c->exec_shell[i]);
	free(c->cluster);
	free(c->cluster_auth_file);
	free(c->cluster_prefix);
	free(c->node_name);
	free(c->token_file);
	free(c->data_dir);
	free(c->config_file);
	memset(c, 0, sizeof(*c));
}

void fp_config_usage(FILE *out)
{
	char left[64], env[64];
	size_t i;

	fprintf(out,
		"Usage: forkpoold [FLAG...]\n"
		"forkpool's HTTP/JSON job service: apply and map tasks over pre-forked workers.\n\n"
		"Flags (each also FORKPOOL_NAME in the environment and `name = value` in the\n"
		"--config file; flags win over the environment, which wins over the file):\n");
	for (i = 0; i < NSETTINGS; i++) {
		const struct fp__config_setting *s = &settings[i];

		if (s->metavar)
			snprintf(left, sizeof(left), "--%s %s", s->name, s->metavar);
		else
			snprintf(left, sizeof(left), "--%s", s->name);
		fprintf(out, "  %-32s %s\n", left, s->help);
		if (s->unit_ms)
			fprintf(out, "  %-32s   a duration: 500ms, 30s, 10m, 1h; a bare number is %s\n",
				"", s->unit_ms == IN_S ? "seconds" : "milliseconds");
		if (s->kind != K_HELP && s->kind != K_VERSION) {
			env_name(s, env, sizeof(env));
			fprintf(out, "  %-32s   env %s%s\n", "", env,
				comma_separated(s) ? " (comma-separated)" : "");
		}
	}
	fprintf(out,
		"\nSignals: SIGTERM/SIGINT drain: running jobs get --drain-timeout (a second exits at once;\n"
		"a terminal's Ctrl-C reaches forkpoold only, not its workers, which are in process\n"
		"groups of their own), SIGHUP restarts every worker. Exit status: 0 after a\n"
		"drain, 1 on a start-up or run-time error, 2 on a bad flag or setting.\n");
}
