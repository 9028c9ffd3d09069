/*
 * forkpoold's log: one line per event on a file descriptor (stderr), either
 * text
 *
 *   2026-11-23T09:00:00.123Z info listening on 127.0.0.1:41234
 *   2026-11-23T09:00:01.456Z info GET /v1/health 200 bytes=57 duration_ms=0.213
 *
 * or JSON, one object per line, with the same fields:
 *
 *   {"ts":"2026-11-23T09:00:01.456Z","level":"info","msg":"GET /v1/health 200",
 *    "bytes":57,"duration_ms":0.213}
 *
 * Each line is formatted whole and written with one write(2), so lines from
 * the daemon never interleave with each other. With fp_dlog_batch() info and
 * debug lines (one per HTTP request) are gathered and written whole, several
 * to a write(2), at most one loop round late. Text that comes from outside
 * (request targets, worker output) is escaped: it cannot start a new line
 * or forge a field.
 *
 * During start-up the log can hold its lines back (fp_dlog_hold) so that the
 * first lines printed are the `listening on ADDR` ones that scripts and
 * tests read the port from; fp_dlog_release() prints what was held.
 */
#ifndef FP_SERVER_DLOG_H
#define FP_SERVER_DLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool.h"

enum fp_dlog_format { FP_DLOG_TEXT, FP_DLOG_JSON };

/* "text", "json"; -EINVAL otherwise. */
int fp_dlog_format_parse(const char *name, enum fp_dlog_format *out);
/* "error", "warn" (or "warning"), "info", "debug"; -EINVAL otherwise. */
int fp_dlog_level_parse(const char *name, fp_log_level *out);
const char *fp_dlog_level_name(fp_log_level level);

struct fp_dlog {
	int fd;                     /* where lines go (2) */
	fp_log_level level;         /* lines above it are dropped */
	enum fp_dlog_format format;

	/* Private: lines held back during start-up. */
	bool holding;
	char *held;
	size_t held_len, held_cap;
	size_t held_dropped;
	/* Private: fp_dlog_batch()'s buffer, and the second its timestamps are of. */
	struct fp_dlog_batch *batch;
	void (*flush_soon)(void *data);
	void *flush_data;
	int64_t ts_sec;
	char ts_text[24];           /* "YYYY-MM-DDTHH:MM:SS" of ts_sec */
};

/* A log to fd at `level` in `format`. Holds nothing until told to. */
void fp_dlog_init(struct fp_dlog *l, int fd, fp_log_level level,
		  enum fp_dlog_format format);
/* Prints what is held, frees it. Accepts a zeroed log. */
void fp_dlog_deinit(struct fp_dlog *l);

/*
 * Gather info and debug lines instead of writing each at once: `flush_soon`
 * is called when the first line of a batch comes, and must see that
 * fp_dlog_flush() runs soon (the daemon: a 0 ms timer, the next loop round).
 * A full batch, a warning or an error is written at once, after the lines
 * before it. NULL stops batching (what is gathered is written). -errno, and
 * no batching, when the buffer cannot be had.
 */
int fp_dlog_batch(struct fp_dlog *l, void (*flush_soon)(void *data), void *data);
void fp_dlog_flush(struct fp_dlog *l);
/* Hold lines in memory (bounded) until fp_dlog_release(). */
void fp_dlog_hold(struct fp_dlog *l);
void fp_dlog_release(struct fp_dlog *l);

static inline bool fp_dlog_enabled(const struct fp_dlog *l, fp_log_level level)
{
	return level <= l->level;
}

/* A field after the message: a string, an integer or a number. */
/* FP_DLOG_MILLI: v.u thousandths, printed as %.3f of v.u / 1000.0 would be. */
enum fp_dlog_field_kind { FP_DLOG_STR, FP_DLOG_INT, FP_DLOG_UINT, FP_DLOG_DOUBLE, FP_DLOG_MILLI };

struct fp_dlog_field {
	const char *key;            /* plain ASCII, chosen by the daemon */
	enum fp_dlog_field_kind kind;
	union {
		const char *s;
		int64_t i;
		uint64_t u;
		double d;
	} v;
};

#define FP_DLOG_FSTR(k, val)  { .key = (k), .kind = FP_DLOG_STR, .v.s = (val) }
#define FP_DLOG_FINT(k, val)  { .key = (k), .kind = FP_DLOG_INT, .v.i = (val) }
#define FP_DLOG_FUINT(k, val) { .key = (k), .kind = FP_DLOG_UINT, .v.u = (val) }
#define FP_DLOG_FDBL(k, val)  { .key = (k), .kind = FP_DLOG_DOUBLE, .v.d = (val) }
#define FP_DLOG_FMILLI(k, val) { .key = (k), .kind = FP_DLOG_MILLI, .v.u = (val) }

/* fp_dlog_fields() flags. */
enum {
	/* Printed whatever the level: the listening lines scripts depend on. */
	FP_DLOG_FORCE = 1u << 0,
	/* Printed now, ahead of the lines being held. */
	FP_DLOG_NOW = 1u << 1,
};

/* One line: `msg` then the fields. */
void fp_dlog_fields(struct fp_dlog *l, fp_log_level level, unsigned flags,
		    const char *msg, const struct fp_dlog_field *fields, size_t n);

void fp_dlog(struct fp_dlog *l, fp_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same with fp_dlog_fields() flags. */
void fp_dlog_flags(struct fp_dlog *l, fp_log_level level, unsigned flags,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define fp_dlog_error(l, ...) fp_dlog((l), FP_LOG_ERROR, __VA_ARGS__)
#define fp_dlog_warn(l, ...)  fp_dlog((l), FP_LOG_WARN, __VA_ARGS__)
#define fp_dlog_info(l, ...)  fp_dlog((l), FP_LOG_INFO, __VA_ARGS__)
#define fp_dlog_debug(l, ...) fp_dlog((l), FP_LOG_DEBUG, __VA_ARGS__)

/* An fp_log_fn for fp_options.log, with the fp_dlog as data. */
void fp_dlog_pool_fn(void *data, fp_log_level level, const char *msg);

#endif
