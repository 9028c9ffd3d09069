#!/usr/bin/env python3
"""forkpoold nodes through Redis (issue 15): one configuration, one measurement.

  cluster_bench.py FORKPOOLD BACKEND NODES WORKERS TASK ARG N [--no-redis]

Starts a redis-server of its own (127.0.0.1, a free port, no persistence, in
a temporary directory; tests/integration/redis_harness.py) unless
--no-redis, and NODES forkpoold nodes of WORKERS workers each (--cluster
with it), each stopped by pid at the end. Then, on the first node:
  - POST /v1/map?task=TASK (NDJSON, N items: the numbers 0..N-1 for square,
    ARG for every item otherwise) and GET its results (input order), timed
    from the first byte sent to the last read; every result checked;
  - each node's forkpool_cluster_items_run_total before and after: the
    share of items each ran;
  - Redis's INFO commandstats calls before and after: commands per item
    (the nodes' heartbeats in that time included);
  - 200 POST /v1/apply?wait=5 square 7, one at a time, on one connection:
    the p50 and p90 round trip.
Prints one line:
  result name=cluster nodes=K workers=W task=T items=N seconds=S rate=R
         share=a:b share1_pct=A cmds_per_1k=C apply_p50_ms=P apply_p90_ms=Q
(share: each node's fraction of the items; share1_pct: the first node's, in
percent; cmds_per_1k: Redis commands per 1,000 items)
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from redis_harness import RedisServer  # noqa: E402

APPLIES = 200


def start_node(forkpoold, backend, workers, url, name, log):
    argv = [forkpoold, "--listen", "127.0.0.1:0", "--loop", backend, "--workers", str(workers),
            "--log-level", "info"]
    if url:
        argv += ["--cluster", url, "--node-name", name]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(log, "w"), start_new_session=True)
    deadline = time.monotonic() + 15
    port = None
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError("forkpoold exited: " + open(log).read()[-500:])
        text = open(log).read()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        if m:
            port = int(m.group(1))
        if port and (not url or re.search(r"forkpoold \S+ ready", text)):
            return p, port
        time.sleep(0.02)
    p.kill()
    raise RuntimeError("forkpoold did not start: " + open(log).read()[-500:])


def request(port, method, path, body=None, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def metric(port, name):
    status, body = request(port, "GET", "/metrics")
    m = re.search(r"^%s (\d+)$" % re.escape(name), body.decode(), re.M)
    return int(m.group(1)) if m else 0


def commands(redis):
    """Every command's calls so far, from INFO commandstats."""
    text = redis.command("INFO", "commandstats")
    return sum(int(m) for m in re.findall(r"calls=(\d+)", text))


def main(argv):
    if len(argv) < 8:
        sys.stderr.write(__doc__)
        return 2
    forkpoold, backend = argv[1], argv[2]
    nodes, workers, task, arg, n = int(argv[3]), int(argv[4]), argv[5], argv[6], int(argv[7])
    use_redis = "--no-redis" not in argv[8:]
    tmp = tempfile.mkdtemp(prefix="fp-cluster-bench.")
    redis = RedisServer().start() if use_redis else None
    procs = []
    try:
        for i in range(nodes):
            procs.append(start_node(forkpoold, backend, workers, redis.url if redis else None,
                                    "n%d" % i, os.path.join(tmp, "n%d.log" % i)))
        port = procs[0][1]
        if task == "square":
            body = "".join("%d\n" % i for i in range(n))
        else:
            body = ("%s\n" % arg) * n
        before = [metric(p, "forkpool_cluster_items_run_total") for _, p in procs]
        c0 = commands(redis) if redis else 0
        t0 = time.monotonic()
        status, answer = request(port, "POST", "/v1/map?task=%s" % task, body.encode(),
                                 {"Content-Type": "application/x-ndjson"})
        if status != 202:
            raise RuntimeError("POST /v1/map: %d %r" % (status, answer[:300]))
        job = json.loads(answer)["id"]
        status, results = request(port, "GET", "/v1/jobs/%s/results?order=input" % job)
        secs = time.monotonic() - t0
        c1 = commands(redis) if redis else 0
        if status != 200:
            raise RuntimeError("GET results: %d" % status)
        lines = results.splitlines()
        if len(lines) != n:
            raise RuntimeError("%d results for %d items" % (len(lines), n))
        for i, line in enumerate(lines):
            item = json.loads(line)
            if item.get("index") != i or "value" not in item or (
                    task == "square" and item["value"] != i * i):
                raise RuntimeError("line %d: %r" % (i, item))
        after = [metric(p, "forkpool_cluster_items_run_total") for _, p in procs]
        ran = [a - b for a, b in zip(after, before)]
        share = ":".join("%.3f" % (r / n) for r in ran) if redis else "1.000"
        share1 = 100.0 * ran[0] / n if redis else 100.0

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rtts = []
        for _ in range(APPLIES):
            t = time.monotonic()
            status, answer = request(port, "POST", "/v1/apply?wait=5",
                                     b'{"task":"square","args":7}',
                                     {"Content-Type": "application/json"}, conn=conn)
            rtts.append((time.monotonic() - t) * 1000)
            if status != 200 or json.loads(answer).get("result") != 49:
                raise RuntimeError("apply: %d %r" % (status, answer[:200]))
        conn.close()
        rtts.sort()
        print("result name=cluster nodes=%d workers=%d task=%s items=%d seconds=%.3f rate=%.1f"
              " share=%s share1_pct=%.1f cmds_per_1k=%.1f apply_p50_ms=%.3f apply_p90_ms=%.3f"
              % (nodes, workers, task, n, secs, n / secs, share, share1,
                 1000.0 * (c1 - c0) / n if redis else 0, rtts[len(rtts) // 2],
                 rtts[len(rtts) * 9 // 10]), flush=True)
        return 0
    finally:
        for p, _ in procs:
            p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if redis:
            redis.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
