#!/usr/bin/env python3
"""The Python reference for bench-pool: the same measurements, done with the
standard library's multiprocessing.Pool, printing the same result line.

  pool_bench.py map N [CHUNKSIZE]        Pool.map(square, range(N), chunksize)
                                         (CHUNKSIZE 0 or absent: Python's default)
  pool_bench.py apply-async N [WINDOW]   N Pool.apply_async calls; WINDOW
                                         outstanding at a time (0 or absent: all)
  pool_bench.py rtt N                    N sequential Pool.apply calls
  pool_bench.py mtpc M N map|async       N items with maxtasksperchild M
                                         (0: None); map uses chunksize 1
  pool_bench.py spin W N MS              Pool(W).map of N spin(MS) items, chunksize 1:
                                         each burns MS ms of CPU time, as forkpool's
                                         demo `spin` does
  pool_bench.py ppe-map N [CHUNKSIZE]    concurrent.futures.ProcessPoolExecutor.map
                                         of square over range(N)

Processes: one per online CPU (spin: W), start method fork, as bench-pool's one worker per
online CPU. The pool is created and warmed with one apply before the clock
starts. Times are reported, never asserted.
"""

import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time


def square(x):
    return x * x


def spin(ms):
    """Burns ms milliseconds of this thread's CPU time, as demo `spin` does."""
    until = time.thread_time() + ms / 1000.0
    work = 0
    while time.thread_time() < until:
        for i in range(100):
            work += i
    return ms


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def size_arg(text):
    try:
        value = int(text, 10)
    except ValueError:
        usage()
    if value < 0:
        usage()
    return value


def percentile(sorted_values, p):
    """Nearest rank, as bench-pool computes it."""
    n = len(sorted_values)
    rank = max(1, min(n, int(p * n + 0.999999)))
    return sorted_values[rank - 1]


class Bench:
    def __init__(self, mtpc=0, workers=0, executor=False):
        # Online CPUs, as forkpool counts them for workers = 0.
        self.workers = workers or os.sysconf("SC_NPROCESSORS_ONLN")
        ctx = multiprocessing.get_context("fork")
        if executor:
            self.pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx)
            # ProcessPoolExecutor starts its processes on demand: submit
            # enough to have every one up before the clock starts.
            warm = [self.pool.submit(square, 1) for _ in range(4 * self.workers)]
            ok = all(f.result() == 1 for f in warm)
        else:
            self.pool = ctx.Pool(self.workers, maxtasksperchild=mtpc or None)
            ok = self.pool.apply(square, (1,)) == 1
        self.executor = executor
        self.ok = 0
        self.failed = 0
        self.first_failure = None
        if not ok:
            raise RuntimeError("warm-up apply returned a wrong value")

    def close(self):
        # Not timed: let the workers leave on their own, then reap them.
        if self.executor:
            self.pool.shutdown(wait=True)
        else:
            self.pool.close()
            self.pool.join()

    def fail(self, what):
        self.failed += 1
        if self.first_failure is None:
            self.first_failure = what

    def map(self, n, chunksize):
        t0 = time.monotonic()
        results = self.pool.map(square, range(n), chunksize=chunksize or None)
        secs = time.monotonic() - t0
        for i, value in enumerate(results):
            if value == i * i:
                self.ok += 1
            else:
                self.fail("item %d: got %r, want %d" % (i, value, i * i))
        return secs

    def ppe_map(self, n, chunksize):
        t0 = time.monotonic()
        results = list(self.pool.map(square, range(n), chunksize=chunksize or 1))
        secs = time.monotonic() - t0
        self.check_squares(results, n)
        return secs

    def spin(self, n, ms):
        t0 = time.monotonic()
        results = self.pool.map(spin, [ms] * n, chunksize=1)
        secs = time.monotonic() - t0
        for i, value in enumerate(results):
            if value == ms:
                self.ok += 1
            else:
                self.fail("item %d: got %r, want %d" % (i, value, ms))
        return secs

    def check_squares(self, results, n):
        if len(results) != n:
            self.fail("%d results for %d items" % (len(results), n))
        for i, value in enumerate(results):
            if value == i * i:
                self.ok += 1
            else:
                self.fail("item %d: got %r, want %d" % (i, value, i * i))

    def apply_async(self, n, window):
        """n calls; with a window, a callback frees a slot as each finishes."""
        slots = threading.BoundedSemaphore(window) if window else None
        done = threading.Event()
        lock = threading.Lock()
        count = [0]

        def finished(_value=None):
            # Runs on the pool's result thread.
            if slots:
                slots.release()
            with lock:
                count[0] += 1
                if count[0] == n:
                    done.set()

        def failed(exc):
            with lock:
                self.fail(repr(exc))
            finished()

        t0 = time.monotonic()
        pending = []
        for i in range(n):
            if slots:
                slots.acquire()
            pending.append(self.pool.apply_async(square, (i,), callback=finished,
                                                 error_callback=failed))
        done.wait()
        secs = time.monotonic() - t0
        for i, result in enumerate(pending):
            if result.successful() and result.get() == i * i:
                self.ok += 1
            elif result.successful():
                self.fail("item %d: got %r" % (i, result.get()))
        return secs

    def rtt(self, n):
        latencies = []
        start = time.monotonic()
        for i in range(n):
            t0 = time.monotonic()
            value = self.pool.apply(square, (i,))
            latencies.append((time.monotonic() - t0) * 1e6)
            if value == i * i:
                self.ok += 1
            else:
                self.fail("item %d: got %r" % (i, value))
        secs = time.monotonic() - start
        latencies.sort()
        return secs, percentile(latencies, 0.50), percentile(latencies, 0.99)


def main(argv):
    if len(argv) < 3:
        usage()
    cmd = argv[1]
    if cmd == "mtpc":
        if len(argv) != 5 or argv[4] not in ("map", "async"):
            usage()
        mtpc, n, mode = size_arg(argv[2]), size_arg(argv[3]), argv[4]
    elif cmd == "spin":
        if len(argv) != 5:
            usage()
        workers, n, ms, mtpc = size_arg(argv[2]), size_arg(argv[3]), size_arg(argv[4]), 0
        if workers == 0 or ms == 0:
            usage()
    elif cmd in ("map", "apply-async", "ppe-map"):
        if len(argv) > 4:
            usage()
        n = size_arg(argv[2])
        arg2 = size_arg(argv[3]) if len(argv) == 4 else 0
        mtpc = 0
    elif cmd == "rtt":
        if len(argv) != 3:
            usage()
        n, mtpc = size_arg(argv[2]), 0
    else:
        usage()
    if n == 0:
        usage()

    bench = Bench(mtpc, workers=workers if cmd == "spin" else 0,
                  executor=cmd == "ppe-map")
    try:
        head = "result name=%s backend=python workers=%d" % (cmd, bench.workers)
        if cmd == "map":
            secs = bench.map(n, arg2)
            line = "%s items=%d chunksize=%d seconds=%.6f rate=%.1f" % (
                head, n, arg2, secs, n / secs)
        elif cmd == "ppe-map":
            secs = bench.ppe_map(n, arg2)
            line = "%s items=%d chunksize=%d seconds=%.6f rate=%.1f" % (
                head, n, arg2, secs, n / secs)
        elif cmd == "spin":
            secs = bench.spin(n, ms)
            line = "%s items=%d ms=%d seconds=%.6f rate=%.1f" % (head, n, ms, secs, n / secs)
        elif cmd == "apply-async":
            secs = bench.apply_async(n, arg2)
            line = "%s items=%d window=%d seconds=%.6f rate=%.1f" % (
                head, n, arg2, secs, n / secs)
        elif cmd == "rtt":
            secs, p50, p99 = bench.rtt(n)
            line = "%s items=%d seconds=%.6f rate=%.1f p50_us=%.1f p99_us=%.1f" % (
                head, n, secs, n / secs, p50, p99)
        else:
            if mode == "map":
                secs = bench.map(n, 1)
            else:
                secs = bench.apply_async(n, 0)
            line = "%s mtpc=%d mode=%s items=%d seconds=%.6f rate=%.1f" % (
                head, mtpc, mode, n, secs, n / secs)
    finally:
        bench.close()
    print("%s ok=%d failed=%d" % (line, bench.ok, bench.failed), flush=True)
    if bench.first_failure:
        sys.stderr.write("pool_bench: first failure: %s\n" % bench.first_failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
