/*
 * forkpool's command line: options anywhere after the subcommand (GNU
 * style: `--name VALUE`, `--name=VALUE`, `-q`, `--` ends them), checked
 * against the subcommand's own table so that an option it does not take is
 * a usage error naming it, never silently ignored.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
/* An Idempotency-Key is an id (a UUID is 36), not a document. */
#define IDEMPOTENCY_KEY_MAX 255

struct opt_info {
	const char *name;       /* without the dashes */
	char short_name;        /* 0: none */
	const char *arg;        /* the value's name in --help; NULL: a flag */
	const char *help;
};

static const struct opt_info opt_infos[OPT_COUNT_] = {
	[OPT_HELP] = { "help", 'h', NULL, "print this and exit" },
	[OPT_URL] = { "url", 0, "URL", "the server: http://HOST:PORT or unix:/path "
		      "(default $FORKPOOL_URL, else " DEFAULT_URL ")" },
	[OPT_TOKEN_FILE] = { "token-file", 0, "PATH", "send the bearer token in PATH "
			     "(default $FORKPOOL_TOKEN_FILE)" },
	[OPT_TIMEOUT] = { "timeout", 0, "DURATION", "give up after DURATION (500ms, 30s, 10m, 1h;"
			  " a bare number is seconds) with exit status 3; the job goes on" },
	[OPT_IDEMPOTENCY_KEY] = { "idempotency-key", 0, "KEY", "send KEY as the Idempotency-Key"
				  " header, so that a retried submission is one job" },
	[OPT_QUIET] = { "quiet", 'q', NULL, "no progress bar (there is none when stderr is not a"
			" terminal)" },
	[OPT_DETACH] = { "detach", 'd', NULL, "print the job's id once it is submitted and exit" },
	[OPT_COMPLETION] = { "completion", 0, NULL, "results in completion order (default: input"
			     " order)" },
	[OPT_VALUES] = { "values", 0, NULL, "print each value alone on its line, not"
			 " {\"index\":I,\"value\":V}; failed items print nothing on stdout" },
	[OPT_TASK_TIMEOUT] = { "task-timeout", 0, "DURATION", "each item's timeout on the server"
			       " (a bare number is milliseconds; default the server's)" },
	[OPT_RETRIES] = { "retries", 0, "N", "run an item that crashes or times out up to N more"
			  " times" },
	[OPT_CHUNKSIZE] = { "chunksize", 0, "N", "items handed to a worker at a time (default 0:"
			    " the server picks)" },
	[OPT_CONCURRENCY] = { "concurrency", 0, "N", "at most N of the job's items at once (a"
			      " pipeline: N caps every stage's workers)" },
	[OPT_REDUCE] = { "reduce", 0, "TASK", "fold every output with TASK (associative, like"
			 " sum); its value is the one result" },
	[OPT_BATCH] = { "batch", 0, "N", "outputs the reduce folds per call" },
	[OPT_WORKERS] = { "workers", 0, "LIST", "each stage's cap on workers at a time, comma"
			  "-separated (,1 caps the second stage at 1)" },
	[OPT_BUFFER] = { "buffer", 0, "LIST", "each stage's buffer, comma-separated (default"
			 " 1024 each)" },
	[OPT_STATE] = { "state", 0, "STATE", "only jobs in STATE: queued, running, done, failed,"
			" cancelled" },
	[OPT_LIMIT] = { "limit", 0, "N", "at most N jobs, newest first (default 100)" },
	[OPT_JSON] = { "json", 0, NULL, "print the server's JSON instead of a table" },
	[OPT_INTERVAL] = { "interval", 0, "DURATION", "refresh every DURATION (default 1s; a bare"
			   " number is seconds)" },
};

/* Every subcommand takes these. */
static const enum cli_opt common_opts[] = { OPT_URL, OPT_TOKEN_FILE, OPT_TIMEOUT, OPT_HELP,
					    OPT_END };

void cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "forkpool %s: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see forkpool %s --help)\n", cmd->name);
}

static bool takes(const struct cli_command *cmd, enum cli_opt id)
{
	for (const enum cli_opt *o = common_opts; *o; o++)
		if (*o == id)
			return true;
	for (const enum cli_opt *o = cmd->opts; *o; o++)
		if (*o == id)
			return true;
	return false;
}

static void help_opts(FILE *f, const enum cli_opt *opts)
{
	char head[64];

	for (const enum cli_opt *o = opts; *o; o++) {
		const struct opt_info *oi = &opt_infos[*o];
		snprintf(head, sizeof(head), "%s%c%s--%s%s%s", oi->short_name ? "-" : "",
			 oi->short_name ? oi->short_name : ' ', oi->short_name ? ", " : " ",
			 oi->name, oi->arg ? " " : "", oi->arg ? oi->arg : "");
		fprintf(f, "  %-28s %s\n", oi->short_name ? head : head + 2, oi->help);
	}
}

void cli_args_help(const struct cli_command *cmd, FILE *f)
{
	fprintf(f, "Usage: forkpool %s%s%s [OPTION...]\n%s\n", cmd->name,
		*cmd->synopsis ? " " : "", cmd->synopsis, cmd->description);
	if (cmd->opts[0]) {
		fprintf(f, "\nOptions:\n");
		help_opts(f, cmd->opts);
	}
	fprintf(f, "\nCommon options:\n");
	help_opts(f, common_opts);
	fprintf(f, "\nExit status: 0 success, 1 some items failed (or the job did), 2 a usage"
		" error,\n3 the server could not be reached, refused, or --timeout passed, 4 the"
		" items\ncould not be read or the results written, 130 interrupted (the job goes"
		" on).\n");
}

int cli_parse_duration(const char *s, int64_t bare_unit_ms, int64_t *out_ms)
{
	char *end;
	long long v;
	int64_t unit;

	errno = 0;
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	v = strtoll(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (!*end)
		unit = bare_unit_ms;
	else if (!strcmp(end, "ms"))
		unit = 1;
	else if (!strcmp(end, "s"))
		unit = 1000;
	else if (!strcmp(end, "m"))
		unit = 60 * 1000;
	else if (!strcmp(end, "h"))
		unit = 3600 * 1000;
	else
		return -EINVAL;
	if (v > INT64_MAX / unit)
		return -EINVAL;
	*out_ms = v * unit;
	return 0;
}

static int parse_count(const struct cli_command *cmd, const char *name, const char *s,
		       int64_t lo, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = (s && *s >= '0' && *s <= '9') ? strtoll(s, &end, 10) : -1;
	if (v < lo || errno || *end) {
		cli_usage_error(cmd, "--%s takes a whole number from %lld, not '%s'", name,
				(long long)lo, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* Store one option's value in a. */
static int set_opt(const struct cli_command *cmd, enum cli_opt id, const char *v,
		   struct cli_args *a)
{
	const char *name = opt_infos[id].name;

	switch (id) {
	case OPT_URL: a->url = v; break;
	case OPT_TOKEN_FILE: a->token_file = v; break;
	case OPT_IDEMPOTENCY_KEY:
		if (!*v || strpbrk(v, "\r\n") || strlen(v) > IDEMPOTENCY_KEY_MAX) {
			cli_usage_error(cmd, "--idempotency-key must be one non-empty line of at most"
					" %d bytes", IDEMPOTENCY_KEY_MAX);
			return -EINVAL;
		}
		a->idempotency_key = v;
		break;
	case OPT_QUIET: a->quiet = true; break;
	case OPT_DETACH: a->detach = true; break;
	case OPT_COMPLETION: a->completion = true; break;
	case OPT_VALUES: a->values = true; break;
	case OPT_JSON: a->json = true; break;
	case OPT_TIMEOUT:
	case OPT_TASK_TIMEOUT:
	case OPT_INTERVAL: {
		int64_t ms, *dst = id == OPT_TIMEOUT ? &a->timeout_ms :
			id == OPT_TASK_TIMEOUT ? &a->task_timeout_ms : &a->interval_ms;
		if (cli_parse_duration(v, id == OPT_TASK_TIMEOUT ? 1 : 1000, &ms) < 0 ||
		    (id == OPT_INTERVAL && ms < 50)) {
			cli_usage_error(cmd, "--%s takes a duration such as 500ms, 30s, 10m or 1h%s,"
					" not '%s'", name, id == OPT_INTERVAL ? " (50ms at least)" : "",
					v);
			return -EINVAL;
		}
		*dst = ms;
		break;
	}
	case OPT_RETRIES: return parse_count(cmd, name, v, 0, &a->retries);
	case OPT_CHUNKSIZE: return parse_count(cmd, name, v, 0, &a->chunksize);
	case OPT_CONCURRENCY: return parse_count(cmd, name, v, 1, &a->concurrency);
	case OPT_BATCH: return parse_count(cmd, name, v, 2, &a->batch);
	case OPT_LIMIT: return parse_count(cmd, name, v, 1, &a->limit);
	case OPT_REDUCE: a->reduce = v; break;
	case OPT_WORKERS: a->workers = v; break;
	case OPT_BUFFER: a->buffer = v; break;
	case OPT_STATE: a->state = v; break;
	default: break;
	}
	return 0;
}

/* The option `arg` names (without its dashes and any "=VALUE"), or OPT_END. */
static enum cli_opt find_long(const char *arg, size_t len)
{
	for (int i = 1; i < OPT_COUNT_; i++)
		if (strlen(opt_infos[i].name) == len && !strncmp(opt_infos[i].name, arg, len))
			return (enum cli_opt)i;
	return OPT_END;
}

static enum cli_opt find_short(char c)
{
	for (int i = 1; i < OPT_COUNT_; i++)
		if (opt_infos[i].short_name == c)
			return (enum cli_opt)i;
	return OPT_END;
}

int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a)
{
	const char *env_url = getenv("FORKPOOL_URL"), *env_token = getenv("FORKPOOL_TOKEN_FILE");
	bool opts_done = false;
	int i;

	memset(a, 0, sizeof(*a));
	a->url = env_url && *env_url ? env_url : DEFAULT_URL;
	a->token_file = env_token && *env_token ? env_token : NULL;
	a->timeout_ms = a->task_timeout_ms = -1;
	a->retries = a->chunksize = a->batch = a->limit = a->concurrency = -1;
	a->interval_ms = 1000;

	for (i = 0; i < argc; i++) {
		const char *arg = argv[i], *value = NULL, *eq = NULL;
		enum cli_opt id;

		if (opts_done || arg[0] != '-' || !strcmp(arg, "-")) {
			if (a->npos >= cmd->max_pos || a->npos >= CLI_POS_MAX) {
				cli_usage_error(cmd, "unexpected argument '%s'", arg);
				return CLI_EXIT_USAGE;
			}
			a->pos[a->npos++] = arg;
			continue;
		}
		if (!strcmp(arg, "--")) {
			opts_done = true;
			continue;
		}
		if (arg[1] == '-') {
			eq = strchr(arg + 2, '=');
			id = find_long(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
			value = eq ? eq + 1 : NULL;
		} else {
			id = arg[2] ? OPT_END : find_short(arg[1]);
		}
		if (id == OPT_END || !takes(cmd, id)) {
			cli_usage_error(cmd, "unknown option %.*s",
					eq ? (int)(eq - arg) : (int)strlen(arg), arg);
			return CLI_EXIT_USAGE;
		}
		if (id == OPT_HELP) {
			cli_args_help(cmd, stdout);
			return 1;
		}
		if (opt_infos[id].arg && !value) {
			if (i + 1 >= argc) {
				cli_usage_error(cmd, "--%s needs a value (%s)", opt_infos[id].name,
						opt_infos[id].arg);
				return CLI_EXIT_USAGE;
			}
			value = argv[++i];
		} else if (!opt_infos[id].arg && value) {
			cli_usage_error(cmd, "--%s takes no value", opt_infos[id].name);
			return CLI_EXIT_USAGE;
		}
		if (set_opt(cmd, id, value, a) < 0)
			return CLI_EXIT_USAGE;
	}
	if (a->npos < cmd->min_pos) {
		cli_usage_error(cmd, "missing %s", cmd->synopsis);
		return CLI_EXIT_USAGE;
	}
	return 0;
}
