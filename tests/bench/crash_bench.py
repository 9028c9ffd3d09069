#!/usr/bin/env python3
"""A worker SIGKILLed in the middle of a task: what each system does.

  crash_bench.py pool N MS KILL_MS WAIT_S    multiprocessing.Pool(2): N apply_async
                                             sleep(MS) calls
  crash_bench.py ppe N MS KILL_MS WAIT_S     ProcessPoolExecutor(2): N submit() calls
  crash_bench.py http PORT N MS KILL_MS      forkpoold on 127.0.0.1:PORT: one map
                                             job of N `sleep` items, chunksize 1

KILL_MS after the work is submitted, one of the two workers gets SIGKILL (KILL_MS
0: none, the baseline). Both workers are busy from the start and KILL_MS lies
between two multiples of MS, so the kill lands in the middle of an item - the
same work as tests/bench/bench-crash.c gives the embedded pool. Waiting is
bounded by WAIT_S: what has not arrived by then never will ("hung").

Prints one line:
  result name=crash system=S items=N seconds=T ok=A failed=B lost=C hung=0|1 outcome=WORDS
where seconds is from submitting to the last answer (or to the end of the wait
when hung), ok the items answered right, failed those that failed, lost the
failed items that were not the killed one, and outcome what the system did.
Exits 1 when forkpool does not do what it promises (the job completes, exactly
one item fails naming SIGKILL, the rest answer right) or when a Python pool
does something other than what is measured here, so that a change is seen.
"""

import concurrent.futures
import json
import multiprocessing
import os
import signal
import sys
import time
import urllib.request

WORKERS = 2


def sleep_ms(ms):
    time.sleep(ms / 1000.0)
    return ms


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def uint(text):
    try:
        value = int(text, 10)
    except ValueError:
        usage()
    if value < 0:
        usage()
    return value


def kill_later(pids, kill_ms, t0):
    """Sleeps until KILL_MS after t0, then SIGKILLs the first worker."""
    if not kill_ms:
        return None
    if pids[0] <= 0:
        raise RuntimeError("no worker pid to kill")
    delay = t0 + kill_ms / 1000.0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    os.kill(pids[0], signal.SIGKILL)
    return pids[0]


def run_pool(n, ms, kill_ms, wait_s):
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(WORKERS)
    try:
        if pool.apply(sleep_ms, (0,)) != 0:
            raise RuntimeError("warm-up apply returned a wrong value")
        pids = sorted(p.pid for p in multiprocessing.active_children())
        t0 = time.monotonic()
        pending = [pool.apply_async(sleep_ms, (ms,)) for _ in range(n)]
        kill_later(pids, kill_ms, t0)
        ok = failed = 0
        deadline = t0 + wait_s
        last = t0
        for result in pending:
            result.wait(max(0.0, deadline - time.monotonic()))
            if not result.ready():
                continue
            last = max(last, time.monotonic())
            if result.successful() and result.get() == ms:
                ok += 1
            else:
                failed += 1
        missing = n - ok - failed
        hung = 1 if missing else 0
        secs = (time.monotonic() - t0) if hung else (last - t0)
        if hung:
            outcome = "%d_result(s)_never_arrived;_waited_%gs" % (missing, wait_s)
        else:
            outcome = "all_answered"
        return secs, ok, failed, 0, hung, outcome
    finally:
        # A hung Pool cannot be joined: terminate() kills its workers.
        pool.terminate()
        pool.join()


def run_ppe(n, ms, kill_ms, wait_s):
    ctx = multiprocessing.get_context("fork")
    ex = concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx)
    try:
        # Processes start on demand: have both up before the clock starts.
        if [f.result() for f in [ex.submit(sleep_ms, 0) for _ in range(4 * WORKERS)]] != [0] * 4 * WORKERS:
            raise RuntimeError("warm-up returned a wrong value")
        pids = sorted(p.pid for p in multiprocessing.active_children())
        t0 = time.monotonic()
        futures = [ex.submit(sleep_ms, ms) for _ in range(n)]
        kill_later(pids, kill_ms, t0)
        done, not_done = concurrent.futures.wait(futures, timeout=wait_s)
        secs = time.monotonic() - t0
        ok = broken = other = 0
        for f in done:
            exc = f.exception()
            if exc is None and f.result() == ms:
                ok += 1
            elif isinstance(exc, concurrent.futures.process.BrokenProcessPool):
                broken += 1
            else:
                other += 1
        hung = 1 if not_done else 0
        failed = broken + other
        # One of the broken futures was the killed task; the rest were lost with it.
        lost = max(0, failed - 1) if kill_ms else failed
        if broken:
            outcome = "BrokenProcessPool:_%d_of_%d_futures_failed,_executor_unusable" % (broken, n)
        elif hung:
            outcome = "%d_future(s)_never_finished" % len(not_done)
        else:
            outcome = "all_answered"
        return secs, ok, failed, lost, hung, outcome
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def http(port, method, path, body=None, timeout=30):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                 method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def run_http(port, n, ms, kill_ms, wait_s):
    _, body = http(port, "GET", "/v1/workers")
    # A worker's pid is 0 until the zygote has answered for it; kill(0) would hit this
    # whole process group.
    pids = sorted(w["pid"] for w in json.loads(body)["workers"]
                  if w["state"] == "idle" and w["pid"] > 0)
    if len(pids) < WORKERS:
        raise RuntimeError("forkpoold has %d idle workers, want %d" % (len(pids), WORKERS))
    job = json.dumps({"task": "sleep", "items": [ms] * n, "chunksize": 1}).encode()
    t0 = time.monotonic()
    status, body = http(port, "POST", "/v1/map", job)
    if status != 202:
        raise RuntimeError("POST /v1/map answered %d: %r" % (status, body[:200]))
    job_id = json.loads(body)["id"]
    kill_later(pids, kill_ms, t0)
    _, body = http(port, "GET", "/v1/jobs/%s?wait=%d" % (job_id, wait_s),
                   timeout=wait_s + 10)
    secs = time.monotonic() - t0
    job = json.loads(body)
    if job["state"] not in ("done", "failed"):
        return secs, 0, 0, 0, 1, "job_still_%s_after_%gs" % (job["state"], wait_s)
    # The time the job says it finished, not when this client heard of it.
    _, results = http(port, "GET", "/v1/jobs/%s/results" % job_id)
    ok = failed = 0
    why = None
    for line in results.decode().splitlines():
        item = json.loads(line)
        if "value" in item and item["value"] == ms:
            ok += 1
            continue
        failed += 1
        err = item.get("error", {})
        if not kill_ms or err.get("type") != "crash" or "SIGKILL" not in err.get("message", ""):
            why = why or "item %s: %r" % (item.get("index"), item)
    if ok + failed != n:
        why = why or "%d results for %d items" % (ok + failed, n)
    if kill_ms and failed != 1:
        why = why or "%d item(s) failed, want exactly the one killed" % failed
    if why:
        sys.stderr.write("crash_bench: forkpoold: %s\n" % why)
        return secs, ok, failed, max(0, failed - 1), 0, "not_what_forkpool_promises"
    outcome = "item_failed_naming_SIGKILL,_job_completed" if kill_ms else "all_done"
    return secs, ok, failed, 0, 0, outcome


def main(argv):
    if len(argv) < 2:
        usage()
    system = argv[1]
    if system in ("pool", "ppe") and len(argv) == 6:
        n, ms, kill_ms, wait_s = (uint(a) for a in argv[2:6])
        run = run_pool if system == "pool" else run_ppe
        secs, ok, failed, lost, hung, outcome = run(n, ms, kill_ms, wait_s)
    elif system == "http" and len(argv) == 6:
        port, n, ms, kill_ms = (uint(a) for a in argv[2:6])
        secs, ok, failed, lost, hung, outcome = run_http(port, n, ms, kill_ms, 10)
    else:
        usage()
    if n < WORKERS or ms == 0:
        usage()
    print("result name=crash system=%s items=%d ms=%d kill_ms=%d seconds=%.6f ok=%d "
          "failed=%d lost=%d hung=%d outcome=%s" % (system, n, ms, kill_ms, secs, ok,
                                                   failed, lost, hung, outcome), flush=True)
    if outcome == "not_what_forkpool_promises":
        return 1
    # What is measured of the Python pools; anything else is worth a look.
    if system == "pool" and kill_ms and not hung:
        sys.stderr.write("crash_bench: Pool answered every call after a SIGKILL\n")
        return 1
    if system == "ppe" and kill_ms and "BrokenProcessPool" not in outcome:
        sys.stderr.write("crash_bench: ProcessPoolExecutor did not break after a SIGKILL\n")
        return 1
    if not kill_ms and (hung or failed):
        sys.stderr.write("crash_bench: the baseline did not finish cleanly\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
