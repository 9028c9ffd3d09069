/*
 * What the configuration's files share: the table of settings, the loading
 * context, and the value checks. config.c reads the sources, config_value.c
 * checks single values, config_exec.c the exec pools' settings.
 */
#ifndef FP_SERVER_CONFIG_IMPL_H
#define FP_SERVER_CONFIG_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum fp__config_kind {
	K_UINT,      /* a whole number in [min, max]; with unit_ms, a duration */
	K_SIZE,      /* bytes, with an optional k/m/g suffix (binary) */
	K_LIST,      /* repeatable string: listen, module, exec, exec-shell */
	K_EXEC_UINT, /* repeatable N or NAME=N, N as K_UINT's: an exec pool's own */
	K_LIMIT,     /* repeatable NAME=N or TASK=LIMIT, comma lists too (config_limit.c) */
	K_PATH,      /* one string */
	K_MODE,      /* file permission bits in octal, 0 to 0777 */
	K_BOOL,      /* true or false; a flag alone means true */
	K_LOOP,
	K_LEVEL,
	K_FSYNC,
	K_FORMAT,
	K_CONFIG,    /* --config: flags and environment only */
	K_HELP,      /* flags only, take no value */
	K_VERSION,
};

/* Where a value came from, weakest first. */
enum fp__config_source { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

struct fp__config_setting {
	const char *name;       /* flag without "--"; file key; env after FORKPOOL_ */
	enum fp__config_kind kind;
	size_t off;             /* into struct fp_config */
	uint64_t min, max;      /* K_UINT, K_SIZE, K_EXEC_UINT: in the setting's unit */
	const char *metavar;
	const char *help;
	/*
	 * A duration (K_UINT, K_EXEC_UINT): ms in the setting's unit, which a
	 * bare number is in (1: ms, 1000: s); 0 for a plain number.
	 */
	uint64_t unit_ms;
};

#define FP__CONFIG_OFF(field) offsetof(struct fp_config, field)

struct fp__config_ctx {
	struct fp_config *c;
	enum fp__config_source *list_src;   /* per setting, K_LIST: who filled it */
	char *errbuf;
	size_t errlen;
};

/* `where` names the flag, variable or file line; the rest says what. -EINVAL. */
int fp__config_fail(struct fp__config_ctx *x, const char *where, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * A value quoted back in a message: cut when long, control bytes shown as
 * '?', so the message stays one line.
 */
const char *fp__config_quote(const char *v, char *buf, size_t len);

/* Decimal digits only: no sign, no blanks, no hex, no overflow. */
int fp__config_parse_u64(const char *s, uint64_t *out, const char **end);

/*
 * config_value.c: one value of a kind, checked and stored.
 *
 * fp__config_number(): `v` as setting `s`'s number, in its unit and range:
 * a whole number, or for a duration also a number with a unit (500ms, 30s,
 * 10m, 1h). On failure the message names `where` and quotes `shown` (the
 * whole NAME=N when `v` is its N).
 */
int fp__config_number(struct fp__config_ctx *x, const struct fp__config_setting *s,
		      const char *where, const char *v, const char *shown, uint64_t *out);
int fp__config_set_uint(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v);
int fp__config_set_size(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v);
int fp__config_set_string(struct fp__config_ctx *x, const struct fp__config_setting *s,
			  const char *where, const char *v);
int fp__config_set_mode(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v);
int fp__config_set_bool(struct fp__config_ctx *x, const struct fp__config_setting *s,
			const char *where, const char *v);
/* A module is a path: a bare name would go to dlopen()'s library search. */
int fp__config_check_module(struct fp__config_ctx *x, const char *where, const char *v);
/* The shapes fp_http_listen() takes; the socket layer has the last word. */
int fp__config_check_listen(struct fp__config_ctx *x, const char *where, const char *v);

/* config_exec.c */
/* NAME=COMMAND: a name fit for a task prefix, and a command. */
int fp__config_check_exec(struct fp__config_ctx *x, const char *where, const char *v);
/* N or NAME=N for a K_EXEC_UINT setting: the later value for the same key wins. */
int fp__config_set_exec_uint(struct fp__config_ctx *x, const struct fp__config_setting *s,
			     const char *where, const char *v);
/* After every source: each NAME names an exec pool, and what goes together. */
int fp__config_check_exec_pools(struct fp__config_ctx *x);

/* config_limit.c: one value (or comma list) of --limit, --task-concurrency, --task-limit. */
int fp__config_set_limit(struct fp__config_ctx *x, const struct fp__config_setting *s,
			 enum fp__config_source src, enum fp__config_source *filled,
			 const char *where, const char *v);
/* Once every source is read: limits named by tasks exist, no task is limited twice. */
int fp__config_check_limits(struct fp__config_ctx *x);

#endif
