#!/usr/bin/env python3
"""Shared values over HTTP (issue 18): POST /v1/kv/hits/incr from 4 client
threads (keep-alive), 8,000 a run, against forkpoold in memory, with
--data-dir (--fsync interval, then always) and with --cluster (a
redis-server of the test harness), 3 rounds interleaved; the median
increments per second of each. Python's http.client is most of the cost
per request, so read the figures as ratios within one run.

    tests/bench/kv_http.py build/server/forkpoold [uring|epoll]
"""
import sys, os, signal, threading, time, tempfile, shutil, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness
harness.FORKPOOLD = os.path.abspath(sys.argv[1]); harness.LOOP = sys.argv[2] if len(sys.argv) > 2 else "epoll"
from redis_harness import RedisServer
N, T = 8000, 4
def run(d):
    def w(n):
        c = d.connection(10)
        for _ in range(n):
            assert d.request("POST", "/v1/kv/hits/incr", conn=c).status == 200
        c.close()
    th = [threading.Thread(target=w, args=(N // T,)) for _ in range(T)]
    t0 = time.time()
    [t.start() for t in th]; [t.join() for t in th]
    return N / (time.time() - t0)
res = {}
r = RedisServer().start()
for rnd in range(3):
    for name in ("memory", "data-dir interval", "data-dir always", "cluster"):
        tmp = tempfile.mkdtemp()
        args = {"memory": [], "data-dir interval": ["--data-dir", tmp + "/d"],
                "data-dir always": ["--data-dir", tmp + "/d", "--fsync", "always"],
                "cluster": ["--cluster", r.url, "--node-name", "n%d" % rnd]}[name]
        d = harness.Daemon(*args, workers=1).start()
        d.wait_line(r"forkpoold .* ready", 20)
        res.setdefault(name, []).append(run(d))
        d.stop(signal.SIGKILL); shutil.rmtree(tmp)
r.close()
for k, v in res.items():
    print("%-18s median %6.0f incr/s  runs %s" % (k, statistics.median(v), [round(x) for x in v]))
