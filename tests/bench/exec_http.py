#!/usr/bin/env python3
"""Round trips of one client through forkpoold's exec pool, for scripts/bench exec.

  exec_http.py PORT N [TASK]   N sequential POST /v1/apply?wait=5 {"task":TASK,"args":i}
                               (TASK: py.square by default) on one keep-alive
                               connection; each answer is checked

Prints "result seconds=S rate=R p50_us=P p99_us=Q ok=N failed=F", the fields
pool_bench.py's rtt prints, after one warm-up request.
"""
import http.client
import json
import sys
import time


def percentile(sorted_values, p):
    n = len(sorted_values)
    rank = max(1, min(n, int(p * n + 0.999999)))
    return sorted_values[rank - 1]


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    port, n = int(argv[1]), int(argv[2])
    task = argv[3] if len(argv) > 3 else "py.square"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    ok = failed = 0
    times = []

    def one(i):
        conn.request("POST", "/v1/apply?wait=5",
                     body=json.dumps({"task": task, "args": i}), headers=headers)
        r = conn.getresponse()
        body = r.read()
        return r.status == 200 and json.loads(body).get("result") == i * i

    one(3)
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        if one(i):
            ok += 1
        else:
            failed += 1
        times.append(time.perf_counter() - t0)
    secs = time.perf_counter() - start
    times.sort()
    print("result seconds=%.6f rate=%.1f p50_us=%.1f p99_us=%.1f ok=%d failed=%d" % (
        secs, n / secs, percentile(times, 0.5) * 1e6, percentile(times, 0.99) * 1e6, ok, failed),
        flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
