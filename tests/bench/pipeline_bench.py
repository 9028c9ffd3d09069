#!/usr/bin/env python3
"""The Python reference for bench-pipeline: the same three-stage pipeline
(square, echo, square) over N items, written with the standard library's
multiprocessing as a competent user would write it, printing the same result
line:

  pipeline_bench.py N [BATCH]

One group of processes per stage (one per online CPU each, start method
fork), joined by bounded multiprocessing Queues that carry batches of BATCH
items (default 1000) as (input index, value) pairs, so a fast stage cannot
flood a slow one and pickling is paid per batch, not per item. End of stream
is by sentinels: once every process of a stage has exited, the driver puts
one sentinel per process of the next stage. A collector thread drains the
last queue meanwhile (a process does not exit while its queue's buffered
data is unsent). Item i is i % 1000; the outputs' sum and input indices are
checked. The processes are started before the clock starts; times are
reported, never asserted.
"""

import multiprocessing
import os
import sys
import threading
import time

STOP = None


def square(x):
    return x * x


def echo(x):
    return x


STAGES = (square, echo, square)


def stage_main(fn, inq, outq):
    while True:
        batch = inq.get()
        if batch is STOP:
            return
        outq.put([(i, fn(v)) for i, v in batch])


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        sys.exit(2)
    n = int(sys.argv[1])
    batch = int(sys.argv[2]) if len(sys.argv) == 3 else 1000
    workers = os.sysconf("SC_NPROCESSORS_ONLN")
    ctx = multiprocessing.get_context("fork")
    # Bounded: a few batches per process waiting between two stages.
    queues = [ctx.Queue(maxsize=4 * workers) for _ in range(len(STAGES) + 1)]
    groups = []
    for k, fn in enumerate(STAGES):
        procs = [ctx.Process(target=stage_main, args=(fn, queues[k], queues[k + 1]))
                 for _ in range(workers)]
        for p in procs:
            p.start()
        groups.append(procs)

    got = {"outputs": 0, "sum": 0, "bad_index": 0}

    def collect():
        q = queues[-1]
        while True:
            b = q.get()
            if b is STOP:
                return
            got["outputs"] += len(b)
            for i, v in b:
                if not 0 <= i < n:
                    got["bad_index"] += 1
                got["sum"] += v

    t0 = time.monotonic()
    collector = threading.Thread(target=collect)
    collector.start()
    for lo in range(0, n, batch):
        queues[0].put([(i, i % 1000) for i in range(lo, min(n, lo + batch))])
    for k, procs in enumerate(groups):
        for _ in procs:
            queues[k].put(STOP)
        for p in procs:
            p.join()
    queues[-1].put(STOP)
    collector.join()
    secs = time.monotonic() - t0

    want = sum((i % 1000) ** 4 for i in range(n))
    print("result name=pipeline backend=python workers=%d items=%d outputs=%d seconds=%.3f "
          "rate=%.1f" % (workers, n, got["outputs"], secs, n / secs))
    bad = [p.exitcode for g in groups for p in g if p.exitcode != 0]
    if got["outputs"] != n or got["sum"] != want or got["bad_index"] or bad:
        sys.stderr.write("pipeline_bench: wrong: outputs=%d sum=%d want=%d bad_index=%d "
                         "exit codes %r\n" % (got["outputs"], got["sum"], want,
                                              got["bad_index"], bad))
        sys.exit(1)


if __name__ == "__main__":
    main()
