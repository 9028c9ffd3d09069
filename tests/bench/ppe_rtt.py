#!/usr/bin/env python3
"""Round trip of concurrent.futures.ProcessPoolExecutor for scripts/bench peers:
the reference next to pool_bench.py's Pool.apply.

  ppe_rtt.py N     N sequential executor.submit(square, i).result(), each timed

Processes: one per online CPU, start method fork, as pool_bench.py. The
executor is created and warmed (every process started) before the clock
starts. Prints one line, e.g.
  result name=ppe-rtt backend=python workers=2 items=N seconds=S rate=R p50_us=A p99_us=B ok=N failed=0
p50/p99 by nearest rank, as every round trip in scripts/bench. A wrong result
fails the run (exit 1, named on stderr). Times are reported, never asserted.
"""

import concurrent.futures
import multiprocessing
import os
import sys
import time


def square(x):
    return x * x


def percentile(sorted_values, p):
    """Nearest rank, as bench-pool computes it."""
    n = len(sorted_values)
    rank = max(1, min(n, int(p * n + 0.999999)))
    return sorted_values[rank - 1]


def main(argv):
    try:
        n = int(argv[1], 10) if len(argv) == 2 else 0
    except ValueError:
        n = 0
    if n <= 0:
        sys.stderr.write(__doc__)
        return 2
    workers = os.sysconf("SC_NPROCESSORS_ONLN")
    ctx = multiprocessing.get_context("fork")
    failure = None
    ok = 0
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        # The executor starts its processes on demand: as many calls as
        # processes, at once, so that all of them are up before timing.
        warm = [ex.submit(square, 3) for _ in range(workers)]
        if any(f.result() != 9 for f in warm):
            sys.stderr.write("ppe_rtt: warm-up returned a wrong value\n")
            return 1
        latencies = []
        start = time.monotonic()
        for i in range(n):
            t0 = time.monotonic()
            value = ex.submit(square, i).result()
            latencies.append((time.monotonic() - t0) * 1e6)
            if value == i * i:
                ok += 1
            elif failure is None:
                failure = "item %d: got %r, want %d" % (i, value, i * i)
        secs = time.monotonic() - start
    latencies.sort()
    print("result name=ppe-rtt backend=python workers=%d items=%d seconds=%.6f rate=%.1f "
          "p50_us=%.1f p99_us=%.1f ok=%d failed=%d" % (
              workers, n, secs, n / secs, percentile(latencies, 0.50),
              percentile(latencies, 0.99), ok, n - ok), flush=True)
    if failure:
        sys.stderr.write("ppe_rtt: first failure: %s\n" % failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
