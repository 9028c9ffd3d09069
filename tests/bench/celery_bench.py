#!/usr/bin/env python3
"""Celery with redis for scripts/bench: the app the worker runs, and the client
that measures it. Reusable for any plain Python function of one argument.

The app (the worker runs it as `celery -A celery_bench worker`; put this
directory on PYTHONPATH):
  broker and result backend: FP_BENCH_REDIS_URL (redis://127.0.0.1:PORT/0)
  tasks: FP_BENCH_CELERY_TASKS, comma-separated MODULE:FUNCTION names (default
    celery_bench:square); each function becomes a task of that name, exactly
    as `@app.task` would make it, so nothing stands between Celery and it.
    The client must see the same two variables as the worker.
  JSON serialisation (Celery's default); everything else is Celery's default.

The client (one result line on stdout, as every scripts/bench program):
  celery_bench.py ready SECONDS
      one task run and checked within SECONDS: the worker is consuming
  celery_bench.py throughput TASK PROCS WINDOW SECONDS
      PROCS submitter processes, each keeping WINDOW tasks in flight
      (apply_async, then get() of the oldest, then another apply_async) for
      SECONDS; the tasks still in flight then are waited for and counted.
      Each process runs one task before the clock starts (connecting to redis)
      result name=celery-throughput procs=P window=W seconds=S rate=R ok=N failed=0
  celery_bench.py rtt TASK N
      N sequential TASK.delay(i).get(), each timed, after one untimed;
      p50/p99 by nearest rank, the method of every round trip in scripts/bench
      result name=celery-rtt items=N seconds=S rate=R p50_us=A p99_us=B ok=N failed=0
  celery_bench.py version

Task i is called with the argument i and its result must equal the function
called here on i (the reference is the function itself, so any deterministic
function can be measured). A wrong result, an error or a task that takes more
than 10 s fails the run: exit 1, the first failure named on stderr.
"""

import collections
import importlib
import multiprocessing
import os
import sys
import time

import celery

if __name__ == "__main__":
    if sys.argv[1:] == ["version"]:
        print(celery.__version__)
        sys.exit(0)
    # Run through the module of the same name, so that the app and the task
    # names are the ones the worker imports (celery_bench:square, not __main__).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import celery_bench
    sys.exit(celery_bench.main(sys.argv))

# A task slower than this is a failure, not a slow figure.
GET_TIMEOUT = 10.0

DEFAULT_TASKS = "celery_bench:square"


def square(x):
    return x * x


def _resolve(spec):
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError("task %r is not MODULE:FUNCTION" % spec)
    func = getattr(importlib.import_module(module), name, None)
    if not callable(func):
        raise ValueError("task %r: %s has no function %s" % (spec, module, name))
    return func


def make_app():
    url = os.environ.get("FP_BENCH_REDIS_URL")
    if not url:
        raise RuntimeError("FP_BENCH_REDIS_URL is not set (redis://127.0.0.1:PORT/0)")
    a = celery.Celery("celery_bench", broker=url, backend=url)
    a.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # The broker is on this machine and started just before: a failed
        # connection is a failed run, not something to retry for minutes.
        broker_connection_max_retries=3,
    )
    return a


app = make_app()
functions = {}
for _spec in os.environ.get("FP_BENCH_CELERY_TASKS", DEFAULT_TASKS).split(","):
    _spec = _spec.strip()
    if _spec:
        functions[_spec] = _resolve(_spec)
        app.task(name=_spec)(functions[_spec])


def _task(name):
    if name not in functions:
        raise SystemExit("celery_bench: task %r is not in FP_BENCH_CELERY_TASKS (%s)"
                         % (name, ", ".join(functions)))
    return app.tasks[name], functions[name]


def _percentile(sorted_values, p):
    """Nearest rank, as bench-pool and pool_bench.py compute it."""
    n = len(sorted_values)
    rank = max(1, min(n, int(p * n + 0.999999)))
    return sorted_values[rank - 1]


class Failure(Exception):
    pass


def _check(name, func, i, value):
    want = func(i)
    if value != want:
        raise Failure("%s(%d): got %r, want %r" % (name, i, value, want))


def ready(seconds, name=None):
    """One task, run and checked, within seconds; raises on failure."""
    name = name or next(iter(functions))
    task, func = _task(name)
    value = task.delay(7).get(timeout=seconds)
    _check(name, func, 7, value)


def _submitter(name, first, window, seconds, barrier, conn):
    """One submitter process: window tasks in flight until seconds pass."""
    task, func = _task(name)
    ok = 0
    failure = None
    pending = collections.deque()
    i = first
    # Not timed: the first call of a process connects to redis and imports
    # the transport, which takes a second or more on a loaded machine.
    try:
        _check(name, func, i, task.apply_async((i,)).get(timeout=GET_TIMEOUT))
        i += 1
    except Exception as e:
        failure = "warm-up: %s: %s" % (type(e).__name__, e)
    barrier.wait()
    if failure:
        conn.send((0, failure, time.monotonic()))
        conn.close()
        return
    start = time.monotonic()
    end = start + seconds
    try:
        while True:
            now = time.monotonic()
            while now < end and len(pending) < window:
                pending.append((i, task.apply_async((i,))))
                i += 1
            if not pending:
                break
            j, result = pending.popleft()
            _check(name, func, j, result.get(timeout=GET_TIMEOUT))
            ok += 1
    except Exception as e:  # reported, and it fails the run
        failure = "%s: %s" % (type(e).__name__, e)
    conn.send((ok, failure, time.monotonic()))
    conn.close()


def throughput(name, procs, window, seconds):
    """Returns (ok, seconds, first failure or None) over procs submitters."""
    _task(name)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(procs + 1)
    children = []
    for p in range(procs):
        parent_end, child_end = ctx.Pipe(duplex=False)
        # Distinct arguments in every process: 10**7 apart.
        proc = ctx.Process(target=_submitter,
                           args=(name, (p + 1) * 10**7, window, seconds, barrier, child_end))
        proc.start()
        child_end.close()
        children.append((proc, parent_end))
    barrier.wait(timeout=60)
    t0 = time.monotonic()
    ok = 0
    last = t0
    failure = None
    for proc, conn in children:
        try:
            n, err, t_end = conn.recv()
        except EOFError:
            n, err, t_end = 0, "submitter pid %d died" % proc.pid, time.monotonic()
        proc.join(GET_TIMEOUT)
        ok += n
        last = max(last, t_end)
        failure = failure or err
    return ok, last - t0, failure


def rtt(name, n):
    """n sequential delay().get(); returns (seconds, p50_us, p99_us)."""
    task, func = _task(name)
    # Not timed: the first call connects (see _submitter).
    _check(name, func, n, task.delay(n).get(timeout=GET_TIMEOUT))
    latencies = []
    start = time.monotonic()
    for i in range(n):
        t0 = time.monotonic()
        value = task.delay(i).get(timeout=GET_TIMEOUT)
        latencies.append((time.monotonic() - t0) * 1e6)
        _check(name, func, i, value)
    secs = time.monotonic() - start
    latencies.sort()
    return secs, _percentile(latencies, 0.50), _percentile(latencies, 0.99)


def _usage():
    sys.stderr.write(__doc__)
    return 2


def _count(text, least=1):
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return value if value >= least else None


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "ready" and len(argv) == 3 and _count(argv[2]):
        try:
            ready(_count(argv[2]))
        except Exception as e:
            sys.stderr.write("celery_bench: no worker answered within %s s: %s: %s\n"
                             % (argv[2], type(e).__name__, e))
            return 1
        print("result name=celery-ready ok=1 failed=0")
        return 0
    if cmd == "throughput" and len(argv) == 6:
        procs, window, seconds = _count(argv[3]), _count(argv[4]), _count(argv[5])
        if not (procs and window and seconds):
            return _usage()
        ok, secs, failure = throughput(argv[2], procs, window, seconds)
        print("result name=celery-throughput task=%s procs=%d window=%d seconds=%.6f rate=%.1f "
              "ok=%d failed=%d" % (argv[2], procs, window, secs, ok / secs if secs else 0.0,
                                   ok, 1 if failure else 0), flush=True)
        if failure or ok == 0:
            sys.stderr.write("celery_bench: first failure: %s\n" % (failure or "no task completed"))
            return 1
        return 0
    if cmd == "rtt" and len(argv) == 4 and _count(argv[3]):
        n = _count(argv[3])
        try:
            secs, p50, p99 = rtt(argv[2], n)
        except Exception as e:
            sys.stderr.write("celery_bench: first failure: %s: %s\n" % (type(e).__name__, e))
            return 1
        print("result name=celery-rtt task=%s items=%d seconds=%.6f rate=%.1f p50_us=%.1f "
              "p99_us=%.1f ok=%d failed=0" % (argv[2], n, secs, n / secs, p50, p99, n))
        return 0
    return _usage()
