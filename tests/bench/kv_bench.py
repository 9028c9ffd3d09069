#!/usr/bin/env python3
"""Shared-value increments from tasks: one measurement per run.

  kv_bench.py forkpool PORT N   N `incr` items on one key through forkpoold's map
                                (its 2 workers), then N `square` items the same way
  kv_bench.py manager N         2 processes doing N increments of one key in a
                                multiprocessing.Manager().dict(), each under a
                                Manager().Lock() (read, add, write), as Python would

forkpool's figure is end to end (POST /v1/map?wait, each item one fp_kv_incr
round trip from its worker to the master); the same map of `square` gives what
the items cost without the call, so

  added_us = (incr seconds - square seconds) / (N / 2 workers)

is what one call adds to a task in its worker. The counter must end at exactly
N (and every item answer a distinct value), or the run fails.

Prints one line:
  result name=kv-forkpool ops=N seconds=S rate=R base_seconds=B added_us=A
  result name=kv-manager ops=N seconds=S rate=R
"""

import http.client
import json
import multiprocessing
import sys
import time


def post(port, path, body, timeout=170):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise SystemExit("POST %s: %d %s" % (path, r.status, data[:200]))
    return json.loads(data)


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def timed_map(port, task, items):
    t0 = time.perf_counter()
    doc = post(port, "/v1/map?wait=160", {"task": task, "items": items})
    seconds = time.perf_counter() - t0
    if doc.get("state") != "done" or doc.get("failed"):
        raise SystemExit("map of %s: %s" % (task, json.dumps(doc)[:300]))
    return seconds, doc["id"]


def forkpool(port, n):
    key = "bench-%d" % int(time.time() * 1000)
    seconds, job = timed_map(port, "incr", [key] * n)
    status, value = get(port, "/v1/kv/" + key)
    if status != 200 or value != n:
        raise SystemExit("counter ended at %r, not %d" % (value, n))
    status, doc = get(port, "/v1/jobs/%s?results=1" % job)
    if sorted(r["value"] for r in doc["results"]) != list(range(1, n + 1)):
        raise SystemExit("the items did not each see a value of their own")
    base, _ = timed_map(port, "square", list(range(n)))
    added = max(seconds - base, 0.0) / (n / 2.0) * 1e6
    print("result name=kv-forkpool ops=%d seconds=%.4f rate=%.1f base_seconds=%.4f added_us=%.2f"
          % (n, seconds, n / seconds, base, added))


def bump(d, lock, key, n):
    for _ in range(n):
        with lock:
            d[key] = d.get(key, 0) + 1


def manager(n):
    with multiprocessing.Manager() as m:
        d, lock = m.dict(), m.Lock()
        procs = [multiprocessing.Process(target=bump, args=(d, lock, "k", n // 2 + (i < n % 2)))
                 for i in range(2)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        seconds = time.perf_counter() - t0
        if d.get("k") != n or any(p.exitcode for p in procs):
            raise SystemExit("manager counter ended at %r, not %d" % (d.get("k"), n))
    print("result name=kv-manager ops=%d seconds=%.4f rate=%.1f" % (n, seconds, n / seconds))


def main(argv):
    if len(argv) == 4 and argv[1] == "forkpool":
        forkpool(int(argv[2]), int(argv[3]))
    elif len(argv) == 3 and argv[1] == "manager":
        manager(int(argv[2]))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
