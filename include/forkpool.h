/*
 * forkpool: a pre-forked process pool with an event-loop master.
 *
 * Embedding API. Every fallible function returns 0 or a negative errno (or a
 * negative FP_E* code below); fp_strerror() names it. Handles are opaque.
 *
 * Threading: a pool and its loop belong to the thread that runs the loop.
 * Callbacks run on that thread, from inside fp_pool_run()/fp_loop_run() or the
 * blocking calls, never from inside the call that submitted the work.
 *
 * Ownership, in one place:
 *  - Strings and buffers passed in (task names, arguments, items, module
 *    paths) are copied before the call returns; the caller keeps them.
 *    The exceptions: fp_pool_map_borrow_async() and
 *    fp_pool_pipeline_borrow_async() borrow their items until the call is
 *    done (and fp_pool_apply() and fp_pool_map() borrow theirs while they
 *    block).
 *  - A struct fp_result passed to a callback, and every pointer in it, is
 *    owned by the pool and valid only until the callback returns.
 *  - fp_pool_apply() and fp_pool_map() hand their results to the caller, to
 *    be released with fp_result_clear() / fp_results_free().
 */
#ifndef FORKPOOL_H
#define FORKPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* FP_VERSION, FP_VERSION_MAJOR/MINOR/PATCH, FP_VERSION_NUMBER: these headers' release. */
#include <forkpool/version.h>

/*
 * The release of the library linked, "MAJOR.MINOR.PATCH": a static string.
 * Against FP_VERSION it tells a program built with one release's headers
 * that it runs with another's shared library.
 */
const char *fp_version(void);

/* --- errors -------------------------------------------------------------- */

/* forkpool's own codes, below every errno value. X(name, value, message) */
#define FP_ERRNO_MAP(X) \
	X(UNKNOWN_TASK, -10001, "unknown task") \
	X(NO_BACKEND,   -10002, "no event-loop backend could be started") \
	X(MODULE,       -10003, "module failed to load") \
	X(STOPPED,      -10004, "pool is stopping") \
	X(PROTOCOL,     -10005, "worker broke the frame protocol") \
	X(UNAVAILABLE,  -10006, "the pool's workers keep failing to start")

enum {
#define FP__ERR_ENUM(name, value, msg) FP_E##name = (value),
	FP_ERRNO_MAP(FP__ERR_ENUM)
#undef FP__ERR_ENUM
};

/* A static string naming err (a negative errno or FP_E* code). */
const char *fp_strerror(int err);

/*
 * The errbuf convention (fp_pool_new() and every call that takes
 * `char *errbuf, size_t errlen`): formats a message into errbuf, cut to
 * errlen, unless errbuf is NULL or errlen 0 (the caller did not ask), and
 * returns err, so that a failure is one line:
 * `return fp_errbuf_printf(errbuf, errlen, -EINVAL, "...", ...);`.
 * For programs that wrap the pool and keep its convention.
 */
int fp_errbuf_printf(char *errbuf, size_t errlen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* --- the event loop ------------------------------------------------------ */

typedef struct fp_loop fp_loop;

typedef enum fp_loop_backend {
	FP_LOOP_AUTO = 0,   /* FORKPOOL_LOOP from the environment, else io_uring, else epoll */
	FP_LOOP_URING,
	FP_LOOP_EPOLL,
} fp_loop_backend;

/*
 * Create a loop. With FP_LOOP_AUTO the environment variable FORKPOOL_LOOP
 * (uring, epoll or auto) decides; auto tries io_uring and falls back to epoll
 * when the ring cannot be set up (no kernel support, forbidden by sysctl or
 * seccomp). Forcing a backend that cannot start fails with its errno.
 */
int fp_loop_new(fp_loop **out, fp_loop_backend backend);
void fp_loop_free(fp_loop *loop);
/* Runs callbacks until fp_loop_stop() or until nothing is pending. */
int fp_loop_run(fp_loop *loop);
void fp_loop_stop(fp_loop *loop);
/* "io_uring" or "epoll". */
const char *fp_loop_backend_name(const fp_loop *loop);
/* Parse "auto", "uring"/"io_uring", "epoll"/"uv"; -EINVAL otherwise. */
int fp_loop_backend_parse(const char *name, fp_loop_backend *out);

/* --- options ------------------------------------------------------------- */

typedef enum fp_log_level {
	FP_LOG_ERROR, FP_LOG_WARN, FP_LOG_INFO, FP_LOG_DEBUG,
} fp_log_level;

typedef void (*fp_log_fn)(void *data, fp_log_level level, const char *msg);

#define FP_MODULES_MAX 32
#define FP_EXEC_MAX 16

/*
 * An exec pool: workers that are an external program, in any language,
 * talking NDJSON over its stdin/stdout (see README, "Workers in any
 * language"). Its tasks are addressed as `NAME.task` in every call. Each
 * worker slot runs one persistent instance of `command`; every pool
 * guarantee (prefork, recycling, timeouts, retries, crash isolation, cancel,
 * back-off on start failures) holds for it as for C workers, with the
 * program's pid, RSS and fate standing for the worker's.
 */
/* An fp_exec_options limit that is off for that exec pool, whatever the pool's is. */
#define FP_EXEC_NO_LIMIT UINT64_MAX

typedef struct fp_exec_options {
	const char *name;            /* [A-Za-z0-9_-]+: the task prefix; NULL ends the list */
	const char *command;         /* argv split on blanks ('…' and "…" quote), run by execvp */
	int shell;                   /* run `command` with /bin/sh -c instead */
	unsigned workers;            /* 0: as many as the pool */
	uint64_t startup_timeout_ms; /* to say ready; 0: 10 s */
	/*
	 * This exec pool's own limits, where its programs differ from the C
	 * tasks (a leaking Python program recycled every 100 tasks, an OCR
	 * program given 60 s). Each is the pool's fp_options value when 0, and
	 * off (never recycle, no RSS limit, no timeout) when FP_EXEC_NO_LIMIT.
	 */
	uint64_t max_tasks_per_child; /* at most UINT_MAX */
	/*
	 * The pool's max_tasks_jitter only while max_tasks_per_child is the
	 * pool's too: a jitter spreads one limit, not another. Otherwise 0
	 * means none. At most UINT_MAX.
	 */
	uint64_t max_tasks_jitter;
	uint64_t max_rss_bytes;      /* the program's RSS, checked after each task */
	uint64_t timeout_ms;         /* default per task, as fp_options.timeout_ms */
} fp_exec_options;

typedef struct fp_options {
	unsigned workers;            /* 0: online CPUs */
	unsigned max_tasks_per_child;/* 0: never recycle by count */
	unsigned max_tasks_jitter;   /* each worker's limit is max + rand[0, jitter] */
	size_t max_rss_bytes;        /* 0: no limit; checked by the worker after each task */
	uint64_t timeout_ms;         /* default per task; 0 means none */
	uint64_t kill_grace_ms;      /* SIGTERM -> SIGKILL delay on timeout/shutdown */
	size_t max_payload;          /* largest argument or result, bytes (default 64 MiB) */
	fp_loop_backend backend;     /* used when the pool creates its own loop */
	const char *modules[FP_MODULES_MAX]; /* paths of shared objects to load (with a
					       '/': "./librev.so"); NULL-terminated */
	/*
	 * Exec pools, ended by an entry whose name is NULL. Each takes the
	 * pool's kill grace and max_payload, and its max tasks per child, RSS
	 * limit and timeout unless its own fp_exec_options say otherwise.
	 */
	fp_exec_options exec[FP_EXEC_MAX];
	fp_log_fn log;               /* NULL: log to stderr at >= log_level */
	void *log_data;
	fp_log_level log_level;
} fp_options;

/* Fill with the defaults: workers 0 (CPUs), timeout 60 s, grace 2 s, 64 MiB. */
void fp_options_init(fp_options *opts);

/* --- the pool ------------------------------------------------------------ */

typedef struct fp_pool fp_pool;

/*
 * Load the modules (the built-in `demo` is always there), run their load
 * hooks, and fork the workers. `loop` may be NULL: the pool then makes and
 * owns one of opts->backend. A module error fails with FP_EMODULE; its
 * message (naming the module and what is wrong) is logged and, when `errbuf`
 * is not NULL, copied there.
 */
int fp_pool_new(fp_pool **out, fp_loop *loop, const fp_options *opts,
		char *errbuf, size_t errlen);
/* Stops (as fp_pool_shutdown with no grace) if needed, reaps, frees. */
void fp_pool_free(fp_pool *pool);
fp_loop *fp_pool_loop(fp_pool *pool);

/* Run the pool's loop until fp_pool_stop(). */
int fp_pool_run(fp_pool *pool);
void fp_pool_stop(fp_pool *pool);

/*
 * Graceful shutdown: stop dispatching, let running tasks finish until
 * `deadline_ms` passes, then kill them (their items fail with "cancelled"),
 * fail what is still queued as "cancelled", and reap every worker. Runs the
 * loop until done.
 */
int fp_pool_shutdown(fp_pool *pool, uint64_t deadline_ms);

/*
 * Load every module again from its file (run its unload and load hooks),
 * then replace every worker without dropping below N able workers: the
 * successors are forked first, the old workers leave after their current
 * item. A module that fails to load refuses the reload with FP_EMODULE (the
 * message is logged) and changes nothing. fp_pool_tasks() pointers from
 * before are invalid after a successful reload.
 */
int fp_pool_reload(fp_pool *pool);

/* --- results ------------------------------------------------------------- */

typedef enum fp_item_status {
	FP_ITEM_OK = 0,
	FP_ITEM_TASK_ERROR,   /* the task answered with an error */
	FP_ITEM_CRASH,        /* the worker died running it: message names signal/status */
	FP_ITEM_TIMEOUT,
	FP_ITEM_CANCELLED,
	FP_ITEM_TOO_LARGE,    /* argument or result over max_payload */
	FP_ITEM_BAD_OUTPUT,   /* the task returned text that is not JSON */
	FP_ITEM_UNKNOWN_TASK,
	/*
	 * Its pool's workers keep failing to start (FP_EUNAVAILABLE below): the
	 * message has the last failure (an exec program's exit status, a
	 * worker_init's error) and the last lines the worker wrote.
	 */
	FP_ITEM_START_FAILURE,
} fp_item_status;

/* "ok", "task_error", "crash", "timeout", "cancelled", "too_large", ..., "start_failure" */
const char *fp_item_status_name(fp_item_status status);

struct fp_result {
	size_t index;           /* the item's position in its call */
	fp_item_status status;
	const char *value;      /* JSON text when status is OK, else NULL */
	size_t value_len;
	const char *message;    /* why, when status is not OK; else NULL */
	/*
	 * How many times the item was started: each run that answered, and
	 * each run its worker was in (the shared page says which item) when
	 * the worker died or was killed. Items of a dead worker's chunk that
	 * had not started run again without using one. An answer the worker
	 * had made but not yet sent when it died is lost with it: that item
	 * runs again (execution is at least once, recording exactly once),
	 * and the lost run is not counted.
	 */
	unsigned attempts;
	pid_t pid;              /* the worker that answered, or 0 */
	/*
	 * Master's view of how long it ran: from the worker being handed it
	 * (or answering the item before it in its chunk) to its answer. 0 for
	 * items that never ran.
	 */
	uint64_t duration_us;
	/*
	 * Pipelines only (0 elsewhere): the stage that produced this output or
	 * failed this item, counted from 0; `index` is then the position of the
	 * pipeline input that the output came from.
	 */
	unsigned stage;
	/*
	 * A task error's traceback, when the task gave one (an exec program's
	 * error line with "traceback", as forkpool.worker writes for a Python
	 * exception), else NULL. Not kept for pipeline items yet.
	 */
	const char *traceback;
};

/* Release what fp_pool_apply() put in `r`. */
void fp_result_clear(struct fp_result *r);
/* Release the array fp_pool_map() returned (n items) and all it points to. */
void fp_results_free(struct fp_result *r, size_t n);

/* --- calls --------------------------------------------------------------- */

/*
 * Which failures of an item are retried, while it has retries left
 * (fp_call_options.retry_on, fp_stage.retry_on; 0 means FP_RETRY_DEFAULT).
 * A retried item is run again from its arguments, which the pool keeps
 * until the item ends. Never retried: an item that failed inside a stage
 * fusion chain past its first task (its arguments there were a value only
 * the worker had) or that had already passed outputs on to the next stage
 * (they would be given twice).
 */
enum fp_retry_on {
	FP_RETRY_CRASH = 1u << 0,      /* its worker (or exec program) died running it */
	FP_RETRY_TIMEOUT = 1u << 1,    /* it ran past its timeout */
	FP_RETRY_TASK_ERROR = 1u << 2, /* the task answered with an error */
};
#define FP_RETRY_DEFAULT (FP_RETRY_CRASH | FP_RETRY_TIMEOUT)

/*
 * A call's start: called once, from the loop, when the first of its items
 * is handed to a worker, before any of its item callbacks (a call whose
 * items all end without running, cancelled while queued say, never starts).
 * `data` is the call's.
 */
typedef void (*fp_start_cb)(fp_pool *pool, uint64_t call_id, void *data);

typedef struct fp_call_options {
	int64_t timeout_ms;     /* < 0: the pool's default; 0: none */
	/*
	 * How many times an item may be started again after a failure that
	 * retry_on names: at most retries + 1 starts. 0: none.
	 */
	unsigned retries;
	unsigned retry_on;      /* enum fp_retry_on bits; 0: FP_RETRY_DEFAULT */
	size_t chunksize;       /* map only; 0: like Python's Pool.map */
	fp_start_cb on_start;   /* may be NULL */
	/*
	 * Names the call in the pool's log lines instead of its number
	 * ("item 3 of LABEL": forkpoold gives "job ID"), so that one search
	 * finds them all. Copied; NULL: "call N".
	 */
	const char *label;
	/*
	 * At most this many of the call's items run at once (a semaphore of
	 * its own, on top of its task's limit, fp_pool_limit_set()); the rest
	 * wait in the queue without holding a worker. 0: no cap.
	 */
	unsigned concurrency;
	/*
	 * A limit (fp_pool_limit_set()'s name) the call's items count under
	 * too, besides their task's: several calls share one cap (forkpoold
	 * gives the chunks of a cluster job with a "concurrency" their job's
	 * own limit). The limit must exist: -ENOENT. NULL: none.
	 */
	const char *limit;
} fp_call_options;

#define FP_CALL_OPTIONS_DEFAULT { .timeout_ms = -1, .retries = 0, .retry_on = 0, \
				  .chunksize = 0, .on_start = NULL, .label = NULL, \
				  .concurrency = 0, .limit = NULL }

struct fp_call_summary {
	uint64_t id;
	size_t total, ok, failed;
	int cancelled;          /* fp_pool_cancel() was called */
};

/* Per item, in completion order. `r` is valid during the call only. */
typedef void (*fp_item_cb)(fp_pool *pool, uint64_t call_id,
			   const struct fp_result *r, void *data);
/*
 * Per run of items: n >= 1 results at once, each as fp_item_cb's `r` would
 * be, in completion order; valid during the call only. A run is what one
 * worker answered together (up to a chunk of 1024), so the caller pays one
 * call per run instead of one per item.
 */
typedef void (*fp_items_cb)(fp_pool *pool, uint64_t call_id,
			    const struct fp_result *r, size_t n, void *data);
/* Once, after the last item's callback. */
typedef void (*fp_done_cb)(fp_pool *pool, const struct fp_call_summary *s,
			   void *data);

/* One item to map: JSON text. */
struct fp_buf {
	const char *base;
	size_t len;
};

/*
 * Submit. `opts` may be NULL for the defaults. On success *call_id (may be
 * NULL) names the call for fp_pool_cancel(). An unknown task fails the call
 * up front with FP_EUNKNOWN_TASK; an argument over max_payload with -E2BIG.
 * Either callback may be NULL.
 *
 * A pool (the C workers, or an exec pool) whose workers failed to start 3
 * times in a row while none of them is ready is unavailable: its calls fail
 * up front with FP_EUNAVAILABLE (fp_pool_unavailable() says why), and items
 * it had queued end with FP_ITEM_START_FAILURE, until one of its workers
 * starts (the pool keeps retrying with its backoff, up to 30 s apart).
 */
int fp_pool_apply_async(fp_pool *pool, const char *task,
			const char *args, size_t args_len,
			const fp_call_options *opts,
			fp_item_cb on_item, fp_done_cb on_done, void *data,
			uint64_t *call_id);
int fp_pool_map_async(fp_pool *pool, const char *task,
		      const struct fp_buf *items, size_t n,
		      const fp_call_options *opts,
		      fp_item_cb on_item, fp_done_cb on_done, void *data,
		      uint64_t *call_id);

/*
 * fp_pool_map_async() at less cost per item, for big maps: the items are
 * borrowed, not copied (the array and the text it points to must stay as
 * they are until on_done has been called, or until the call fails up
 * front), and results come in runs (fp_items_cb), not one call each.
 * Everything else is fp_pool_map_async()'s.
 */
int fp_pool_map_borrow_async(fp_pool *pool, const char *task,
			     const struct fp_buf *items, size_t n,
			     const fp_call_options *opts,
			     fp_items_cb on_items, fp_done_cb on_done, void *data,
			     uint64_t *call_id);

/*
 * Cancel: queued items fail with "cancelled" at once, workers running the
 * call's items are SIGKILLed and those items fail with "cancelled". The item
 * and done callbacks run from the loop as usual. -ENOENT if the call is over.
 */
int fp_pool_cancel(fp_pool *pool, uint64_t call_id);

/*
 * Blocking forms for simple programs: they run the pool's loop until the call
 * is done. Not to be called from a callback. Results belong to the caller.
 */
int fp_pool_apply(fp_pool *pool, const char *task, const char *args,
		  size_t args_len, const fp_call_options *opts,
		  struct fp_result *out);
int fp_pool_map(fp_pool *pool, const char *task, const struct fp_buf *items,
		size_t n, const fp_call_options *opts,
		struct fp_result **out);

/* --- pipelines ----------------------------------------------------------- */

/*
 * A pipeline is one call of several stages: every output of stage k becomes
 * an item of stage k + 1 as soon as it exists (a plain task has one output
 * per item, a generator task zero or more). What leaves the last stage is
 * delivered through on_item, with `index` the pipeline input it came from;
 * a failure in any stage (task error, crash, timeout, ...) is delivered as
 * that item's error with `stage` set, and the rest carries on. The call ends
 * when every stage has answered everything it owes: counted, never by a
 * sentinel. fp_pool_cancel() stops it like any call.
 */

/* Items waiting before a stage when fp_stage.buffer is 0. */
#define FP_PIPELINE_BUFFER_DEFAULT 1024

typedef struct fp_stage {
	const char *task;
	unsigned workers;       /* at most this many of them at once; 0: no cap */
	/*
	 * Most items allowed to wait between the stage before and this one;
	 * while full, the stage before is not fed, and a worker of the stage
	 * before whose task emits a lot is not read (it blocks in fp_emit())
	 * until there is room: back-pressure. The bound holds while some other
	 * worker is free to drain the buffer; when every other worker is
	 * paused, the last one is not (that could deadlock), and the buffer
	 * may go over by the outputs of one item of a declared generator (of
	 * one chunk for other tasks); waiting_max shows it. 0: the default.
	 * For the reduce stage, counted in batches of reduce_batch values.
	 * Ignored for stage 0, whose items are the call's input.
	 */
	size_t buffer;
	int64_t timeout_ms;     /* < 0: the pool's default; 0: none */
	unsigned retries;       /* as fp_call_options.retries */
	unsigned retry_on;      /* as fp_call_options.retry_on */
} fp_stage;

#define FP_STAGE_DEFAULT { .task = NULL, .workers = 0, .buffer = 0, .timeout_ms = -1, \
			   .retries = 0, .retry_on = 0 }

/* A pipeline's input is done (fp_pipeline_options.on_input_done). */
typedef void (*fp_input_done_cb)(fp_pool *pool, uint64_t call_id, size_t input, void *data);

typedef struct fp_pipeline_options {
	/*
	 * Optional fan-in: a task that folds the last stage's outputs. It is
	 * called with a JSON array of up to reduce_batch values (outputs, or
	 * its own earlier results) and returns one value of the same kind, so
	 * it must be associative (like `sum`). Its final result is the call's
	 * only delivered output (index 0, stage = the number of stages); items
	 * that failed earlier are still delivered as errors. With no outputs
	 * at all it is called once with []. If a reduce item fails, that error
	 * is delivered (index 0, stage = the number of stages) and there is no
	 * final value.
	 */
	const char *reduce;
	size_t reduce_batch;    /* 0: 256; at least 2 */
	/*
	 * Deliver results in input order, not completion order: an input's
	 * results wait until every input before it is finished. Bounded: no
	 * input is started more than stage 1's buffer (or the default) places
	 * past the oldest unfinished one. Ignored with a reduce.
	 */
	int ordered;
	/* As fp_call_options': once the first item of any stage is handed to a worker. */
	fp_start_cb on_start;
	const char *label;      /* as fp_call_options.label */
	/*
	 * Optional: input `input` owes nothing more. Every item it made, in
	 * every stage, has ended, and its outputs and errors have been given
	 * to on_item (with `ordered`, after those of every input before it),
	 * so a caller that keeps outputs may start again from the inputs not
	 * told (a journal does). Called once per input at most, from the
	 * loop, before the done callback. Not called with a reduce (its values
	 * are folded together and belong to no input), nor once the call is
	 * cancelled or the pool is stopping (its inputs then end unfinished).
	 * It must not cancel the call or free the pool.
	 */
	fp_input_done_cb on_input_done;
} fp_pipeline_options;

#define FP_PIPELINE_OPTIONS_DEFAULT { .reduce = NULL, .reduce_batch = 0, .ordered = 0, \
				      .on_start = NULL, .label = NULL, .on_input_done = NULL }

/*
 * Submit a pipeline of `nstages` stages over `n` input items (JSON texts).
 * `opts` may be NULL. A stage (or the reduce) may be an exec pool's task,
 * `NAME.task`: its items run on that exec pool's workers. Fails up front
 * with FP_EUNKNOWN_TASK when a stage's task or the reduce task does not
 * exist (for an exec task: once one of its pool's workers said ready, which
 * tells its tasks; before that, an unknown one fails its items in the
 * worker), FP_EUNAVAILABLE when the pool that runs one is unavailable (see
 * fp_pool_apply_async), -EINVAL for no stages or a bad option. The summary's
 * counts are of delivered outputs and errors.
 */
int fp_pool_pipeline_async(fp_pool *pool, const fp_stage *stages, size_t nstages,
			   const struct fp_buf *items, size_t n,
			   const fp_pipeline_options *opts,
			   fp_item_cb on_item, fp_done_cb on_done, void *data,
			   uint64_t *call_id);

/*
 * The same, but the inputs are borrowed, not copied: the array and the
 * text it points to must stay as they are until on_done has been called
 * (or the call failed up front). For big inputs: a million of them are
 * then neither copied nor given a second array.
 */
int fp_pool_pipeline_borrow_async(fp_pool *pool, const fp_stage *stages, size_t nstages,
				  const struct fp_buf *items, size_t n,
				  const fp_pipeline_options *opts,
				  fp_item_cb on_item, fp_done_cb on_done, void *data,
				  uint64_t *call_id);

/* A stage's counters, for watching a pipeline's progress and back-pressure. */
struct fp_stage_stats {
	uint64_t in;            /* items this stage has been given */
	uint64_t done;          /* items it finished (ok or failed) */
	uint64_t failed;
	uint64_t out;           /* outputs it produced */
	uint64_t waiting;       /* items waiting before it now */
	uint64_t waiting_max;   /* the most that ever waited before it */
	uint64_t running;       /* its items on workers now */
	/*
	 * Of `in`, the items it ran in the same worker, right after the stage
	 * before, with no round trip through the master (stage fusion: a plain
	 * stage with no worker cap and no retries, whose timeout is the stage
	 * before's, in the same pool; the buffer before it then stays empty).
	 */
	uint64_t fused;
};

/*
 * Fill up to `max` stage counters of a pipeline (the reduce stage, if any,
 * last) and return how many stages it has, or -ENOENT when the call is over
 * or is not a pipeline. Its done callback can still read them: the final
 * counters.
 */
int fp_pipeline_stats(fp_pool *pool, uint64_t call_id,
		      struct fp_stage_stats *out, size_t max);

/* --- introspection ------------------------------------------------------- */

typedef enum fp_worker_state {
	FP_WORKER_STARTING,   /* forked, running worker_init */
	FP_WORKER_IDLE,
	FP_WORKER_BUSY,
	FP_WORKER_RETIRING,   /* announced its last task; takes no more */
	FP_WORKER_STOPPING,   /* being killed: timeout, cancel, shutdown */
} fp_worker_state;

const char *fp_worker_state_name(fp_worker_state state);

struct fp_worker_stats {
	pid_t pid;               /* 0: not known yet, for a moment after the start
				    while the zygote has not answered (forkpoold's
				    /v1/workers says "pid": null then); an exec
				    pool's worker: its program's pid */
	const char *pool;        /* the exec pool's name, or NULL for C workers */
	unsigned slot;
	uint64_t generation;     /* counts forks of this slot */
	fp_worker_state state;
	uint64_t tasks_done;
	uint64_t tasks_limit;    /* this worker's max-tasks-per-child, 0: none */
	size_t rss_bytes;        /* last reported by the worker */
	const char *task;        /* task of the item it is running now, or NULL;
				    valid until the loop runs again */
	uint64_t task_started_ms;/* monotonic ms when that item started */
	uint64_t started_ms;
};

/* Task-duration histogram: upper bounds in seconds; the last is +Inf. */
#define FP_DURATION_BUCKETS 12
extern const double fp_duration_bounds[FP_DURATION_BUCKETS];

struct fp_pool_stats {
	unsigned workers;        /* configured N */
	unsigned alive;          /* processes not yet reaped */
	unsigned able;           /* processes that exist and take work: starting,
				    idle or busy, not leaving; not one asked of
				    the zygote that has not been made yet */
	uint64_t queued, running, done, failed;
	uint64_t crashes, timeouts, recycles, cancelled;
	uint64_t init_failures;
	int healthy;             /* 0 while worker start-up keeps failing */
	/* Items answered by a worker, by duration (not cumulative), and the sum. */
	uint64_t duration_counts[FP_DURATION_BUCKETS];
	double duration_sum_s;
};

void fp_pool_stats(fp_pool *pool, struct fp_pool_stats *out);
/* Fills up to `max` entries, returns how many workers there are (exec pools' too). */
/*
 * Figures of the pool and its exec pools together: `workers` is the sum of
 * their sizes, `healthy` is 0 when any of them keeps failing to start.
 */
size_t fp_pool_workers(fp_pool *pool, struct fp_worker_stats *out, size_t max);

/*
 * Task names, in load order. *n receives the count. Valid for the pool's
 * life, or with exec pools until the next call (their tasks, `NAME.task`
 * with module NAME, are those their programs announced, with the doc and
 * generator flag they declared; none before the first of its workers is
 * ready).
 */
struct fp_task_info {
	const char *name;
	const char *module;
	const char *doc;
	int generator;          /* declared a generator: answers zero or more outputs */
};
const struct fp_task_info *fp_pool_tasks(fp_pool *pool, size_t *n);

/*
 * Concurrency limits (the semaphore): at most `max` items of the tasks a
 * limit covers run at once, across the pool and its exec pools. Their
 * other items wait in the queue without holding a worker, other tasks'
 * items pass them, and one starts as soon as a running one ends. A chunk
 * never carries more items of a limited task than may run at once.
 *
 * fp_pool_limit_set() makes limit `name` ([A-Za-z0-9_.:-], 1 to 64 bytes)
 * or changes its max; -EINVAL for a bad name or max 0, -EEXIST for the name
 * of a task's own limit. fp_pool_task_limit() puts `task` under limit
 * `limit` (NULL: under none): -ENOENT for a limit never set, -EEXIST when
 * the task has a limit already. fp_pool_task_concurrency() gives `task` a
 * limit of its own, named after it (max 0: none). Tasks are named as in
 * calls (`NAME.task` for an exec pool's) and need not exist yet. Items
 * already running are never stopped by a lower max.
 */
int fp_pool_limit_set(fp_pool *pool, const char *name, unsigned max);
int fp_pool_task_limit(fp_pool *pool, const char *task, const char *limit);
int fp_pool_task_concurrency(fp_pool *pool, const char *task, unsigned max);
/*
 * For a limit shared with something outside this pool (forkpoold's
 * cluster holds a limit's places in Redis for every node): of the limit's
 * max, at most `places` of its items start here until it says otherwise
 * (UINT_MAX, the default: all of max; 0: none). Like a lower max, fewer
 * places stop nothing running. -ENOENT for a limit never set (a task's own
 * limit is named after its task).
 */
int fp_pool_limit_lend(fp_pool *pool, const char *name, unsigned places);
/*
 * Forget limit `name` (a shared one, made by fp_pool_limit_set()), for
 * limits made for a while, as forkpoold makes one per cluster job: -ENOENT
 * for no such limit, -EBUSY while a task is under it or a call counts
 * under it (fp_call_options.limit) and is not done.
 */
int fp_pool_limit_drop(fp_pool *pool, const char *name);

struct fp_limit_stats {
	const char *name;       /* valid until the limits change */
	unsigned max;
	unsigned running;       /* items of its tasks held by workers now */
	uint64_t waiting;       /* items of its tasks queued */
};
/* The limits in the order they were made, up to `max`; returns how many there are. */
size_t fp_pool_limits(fp_pool *pool, struct fp_limit_stats *out, size_t max);
/* The name of the limit `task` is under, or NULL. */
const char *fp_pool_task_limit_name(fp_pool *pool, const char *task);

/*
 * Whether calls to `task` are taken: 1 it exists, 0 it does not, -1 not
 * known yet (an exec pool's NAME.task before any of that pool's workers
 * said which tasks its program has; calls are taken, and their items fail
 * in the worker if it turns out not to exist). What apply, map and
 * pipelines accept is exactly what this does not call 0.
 */
int fp_pool_has_task(fp_pool *pool, const char *task);

/*
 * NULL while the pool that runs `task` takes calls; while it is unavailable
 * (see fp_pool_apply_async), why: how many starts failed, the last failure
 * and the last lines its worker wrote. Valid until the loop runs again.
 */
const char *fp_pool_unavailable(fp_pool *pool, const char *task);

/*
 * Shared values (the pool's manager dict): small JSON values by key that the
 * embedding program and, through <forkpool/task.h>, every task of the pool
 * read and change; the store lives in the master, so an operation is atomic
 * with respect to every other. A key is 1 to FP_KV_KEY_MAX bytes of
 * [A-Za-z0-9_.:@-]; a value is JSON text, kept in jansson's compact form with
 * object members sorted (so CAS compares values, not spellings) of at most 64 KiB, and the store holds
 * at most 64 MiB (keys, values and 64 bytes an entry).
 */
#define FP_KV_KEY_MAX 256

typedef enum {
	FP_KV_GET,      /* the value */
	FP_KV_SET,      /* value, ttl_ms */
	FP_KV_DEL,
	FP_KV_INCR,     /* adds `by` to an integer (a missing key counts as 0) */
	FP_KV_CAS,      /* sets value only if the value now is `expect` (NULL: absent) */
} fp_kv_op;

struct fp_kv_request {
	fp_kv_op op;
	const char *key;
	size_t key_len;
	const char *value;      /* SET, CAS: JSON text */
	size_t value_len;
	const char *expect;     /* CAS: the JSON value it must hold now; NULL: no key */
	size_t expect_len;
	int64_t by;             /* INCR */
	uint64_t ttl_ms;        /* SET, CAS: the key goes after this long; 0: never */
};

/*
 * What an operation gave. `err` is 0 or a negative errno, which
 * fp_kv_strerror() names: -ENOENT no such key (GET, DEL), -EINVAL a bad key,
 * -EBADMSG a value that is not JSON, -EDOM INCR of a value that is not an
 * integer, -E2BIG a value over the cap, -ENOSPC the store is full, -ERANGE
 * INCR past int64, -EIO the change could not be made durable (fp_pool_kv_persist),
 * -ENOTCONN the store is elsewhere and cannot be reached (fp_pool_kv_backend).
 * `value` (GET; INCR: the new value as text; CAS: the value after it,
 * NULL when there is none) is valid during the callback only.
 */
struct fp_kv_reply {
	int err;
	const char *value;
	size_t value_len;
	int64_t number;         /* INCR: the new value */
	int swapped;            /* CAS: 1 set, 0 the value differed */
};
typedef void (*fp_kv_cb)(fp_pool *pool, const struct fp_kv_reply *reply, void *data);

/*
 * Runs one operation and calls `cb` with its outcome, once: before this
 * returns when nothing is persisted, or, for a write with a persister
 * (fp_pool_kv_persist), later from the loop once its change is kept; the
 * request's strings are not needed after this returns. Returns 0, or
 * -ENOMEM without calling `cb`.
 */
int fp_pool_kv(fp_pool *pool, const struct fp_kv_request *req, fp_kv_cb cb, void *data);

struct fp_kv_entry {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
	uint64_t ttl_ms;        /* left to live; 0: no expiry */
};
/*
 * Every key starting with `prefix` (prefix_len 0: all), in byte order, at
 * most `max` of them; `more` says whether there were more. The entries are
 * valid during the callback only. Returns 0 or -ENOMEM (cb not called).
 */
typedef void (*fp_kv_list_cb)(fp_pool *pool, int err, const struct fp_kv_entry *entries,
			      size_t n, int more, void *data);
int fp_pool_kv_list(fp_pool *pool, const char *prefix, size_t prefix_len, size_t max,
		    fp_kv_list_cb cb, void *data);

/*
 * Keeping the shared values beyond the process (forkpoold's --data-dir):
 * after every write that changed the store, `fn` gets the change as its
 * result (the value the key now holds, or its deletion), never the
 * operation, so that applying it twice is the same as once. The write's
 * caller gets its reply only when `fn`'s `done(token, status)` is called:
 * status 0, or a negative errno that becomes the reply's err as -EIO (the
 * store keeps the change in memory; it may not survive a restart). `fn`
 * returning a negative errno is the same as done() with it at once.
 * `expires_ms` is wall-clock time (ms since the Unix epoch), so that a TTL
 * counts the time the process was down. fn NULL: memory only.
 */
struct fp_kv_change {
	const char *key;
	size_t key_len;
	const char *value;      /* NULL: the key was deleted */
	size_t value_len;
	uint64_t expires_ms;    /* wall clock; 0: never */
};
typedef void (*fp_kv_done_fn)(void *token, int status);
typedef int (*fp_kv_persist_fn)(void *data, const struct fp_kv_change *change,
				fp_kv_done_fn done, void *token);
void fp_pool_kv_persist(fp_pool *pool, fp_kv_persist_fn fn, void *data);

/*
 * Puts back a change persisted earlier (a journal's replay): the value, or
 * a deletion (value NULL); one whose expiry has passed deletes the key.
 * Not persisted again. 0, or -EINVAL, -E2BIG, -ENOSPC, -ENOMEM.
 */
int fp_pool_kv_restore(fp_pool *pool, const struct fp_kv_change *change);

/*
 * Another store for the shared values (forkpoold's --cluster: Redis): once
 * installed, fp_pool_kv() and fp_pool_kv_list() (and so HTTP clients and
 * tasks alike) go to it after the key and the values were checked and made
 * canonical here. run() and list() answer through their callback once,
 * usually later from the loop; they copy what they keep of the request
 * before returning, and return 0 or -ENOMEM (callback not called). A store
 * that cannot be reached answers -ENOTCONN. b NULL: the pool's own store.
 */
struct fp_kv_backend {
	int (*run)(void *data, fp_pool *pool, const struct fp_kv_request *req, fp_kv_cb cb,
		   void *cb_data);
	int (*list)(void *data, fp_pool *pool, const char *prefix, size_t prefix_len, size_t max,
		    fp_kv_list_cb cb, void *cb_data);
};
void fp_pool_kv_backend(fp_pool *pool, const struct fp_kv_backend *b, void *data);

/* How many live keys there are and the bytes they hold (keys, values, 64 bytes each). */
void fp_pool_kv_usage(fp_pool *pool, size_t *keys, size_t *bytes);

/* What a shared-value error means, in words that name the limit it broke. */
const char *fp_kv_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
