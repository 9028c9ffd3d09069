#!/usr/bin/env python3
"""Concurrency limits held across a cluster (issue 18 on --cluster).

Three nodes on a redis-server of the test's own, each with the same
`--limit api=2 --task-limit overlap.hold=api` and
`--task-concurrency overlap.free=1`, two workers each:

- maps of overlap.hold spread over the nodes never run more than 2 items
  at once in the whole cluster (the tasks record it themselves, in one file
  all nodes' workers share: tests/modules/overlap.c), and do run 2; the
  task's own limit of 1 holds the same way;
- items waiting for a place hold no worker: an unlimited task submitted
  behind them finishes first;
- a job's "concurrency" (JSON and NDJSON) holds over the nodes that run its
  chunks, and its places are given back once it is done;
- a node SIGKILLed while it holds both places gives them back (its
  heartbeat expires): a job submitted after still runs, 2 at a time, and
  Redis no longer lists the dead node's hold.

Needs redis-server (scripts/deps installs it); without it the suite exits 77.

Run by meson once per backend:
    test_cluster_limits.py --forkpoold build/server/forkpoold --loop uring|epoll \
        --module-dir build/tests/modules [unittest args]
"""

import os
import re
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402
from redis_harness import REDIS_SERVER, ClusterCase, RedisServer  # noqa: E402

MODULE_DIR = os.environ.get("FP_TEST_MODULE_DIR", "")


def metric(d, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), d.get("/metrics").body.decode(), re.M)
    return int(m.group(1)) if m else 0


class ClusterLimitsTest(ClusterCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fp-climits.")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.r = RedisServer().start()
        self.addCleanup(self.r.close)

    def node(self, name, clean=True):
        return self.cluster_node(self.r.url, name,
                                 "--module", os.path.join(MODULE_DIR, "libfp-overlap.so"),
                                 "--limit", "api=2", "--task-limit", "overlap.hold=api",
                                 "--task-concurrency", "overlap.free=1", workers=2, clean=clean)

    def items(self, name, n, ms):
        return ["%s %d" % (os.path.join(self.tmp, name), ms)] * n

    def submit(self, d, body):
        r = d.post("/v1/map", body)
        self.assertEqual(r.status, 202, r)
        return r.json()["id"]

    def most_at_once(self, d, jobs, timeout=60):
        most = 0
        for job in jobs:
            doc = d.wait_job(job, timeout=timeout, results=True)
            self.assertEqual(doc["state"], "done", doc)
            most = max([most] + [x["value"] for x in doc["results"]])
        return most

    def hkeys(self, key):
        return [k.decode() if isinstance(k, bytes) else k for k in self.r.command("HKEYS", key)]

    def limit_running(self, d, task):
        t = [t for t in d.get("/v1/tasks").json()["tasks"] if t["name"] == task][0]
        return t["limit"]["running"]

    def test_limits_hold_across_the_nodes(self):
        nodes = [self.node(n) for n in ("a", "b", "c")]
        # Nine maps of two 300 ms items, one chunk each, submitted round the
        # nodes: each node takes some (three at most while its two workers
        # are free), so without a cluster-wide count up to six run at once.
        held = [self.submit(nodes[i % 3], {"task": "overlap.hold",
                                           "items": self.items("api", 2, 300)})
                for i in range(9)]
        # Behind them, an unlimited task: the waiting items hold no worker.
        other = nodes[1].post("/v1/map?wait=20", {"task": "overlap.other",
                                                  "items": self.items("other", 2, 1)})
        self.assertEqual(other.status, 200, other)
        self.assertEqual(other.json()["state"], "done")
        self.assertNotEqual(nodes[0].job_state(held[-1]), "done",
                            "the limited job finished before the unlimited one")
        self.assertEqual(self.most_at_once(nodes[2], held), 2)
        free = [self.submit(nodes[i % 3], {"task": "overlap.free",
                                           "items": self.items("free", 2, 200)})
                for i in range(6)]
        self.assertEqual(self.most_at_once(nodes[0], free), 1)

    def test_a_jobs_concurrency_holds_across_the_nodes(self):
        nodes = [self.node(n) for n in ("a", "b", "c")]
        # 1024 items: four chunks of 256, more than one node takes (three at
        # most each), of a task under no limit but the job's own.
        r = nodes[0].post("/v1/map", {"task": "overlap.other", "concurrency": 2,
                                      "items": self.items("job", 1024, 5)})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        self.assertEqual(self.most_at_once(nodes[1], [job]), 2)
        ran = [metric(d, "forkpool_cluster_chunks_run_total") for d in nodes]
        self.assertEqual(sum(ran), 4, ran)
        self.assertGreaterEqual(len([x for x in ran if x]), 2, ran)
        # Its limit is given back and forgotten once its chunks are done.
        wait_until(lambda: not self.hkeys("forkpool:limit:job:" + job), 10,
                   what="the job's places given back")
        # NDJSON's ?concurrency= too.
        body = "".join('"%s"\n' % a for a in self.items("nd", 300, 5))
        r = nodes[2].post("/v1/map?task=overlap.other&concurrency=1", body,
                          headers={"Content-Type": "application/x-ndjson"})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(self.most_at_once(nodes[0], [r.json()["id"]]), 1)

    def test_a_killed_nodes_places_come_back(self):
        c = self.node("c", clean=False)
        long = self.submit(c, {"task": "overlap.hold", "items": self.items("long", 2, 60000)})
        wait_until(lambda: self.limit_running(c, "overlap.hold") == 2, 20,
                   what="node c holding both places")
        a = self.node("a")
        b = self.node("b")
        key = "forkpool:limit:api"
        self.assertIn("h:c", self.hkeys(key))
        c.kill(signal.SIGKILL)
        c.wait_exit()
        # Its items are not run again: the job is cancelled once c is dead.
        self.assertEqual(a.delete("/v1/jobs/" + long).status, 200)
        job = self.submit(a, {"task": "overlap.hold", "items": self.items("after", 6, 100)})
        self.assertEqual(self.most_at_once(b, [job], timeout=30), 2)
        wait_until(lambda: "h:c" not in self.hkeys(key), 10,
                   what="the dead node's hold gone from Redis")


if __name__ == "__main__":
    if not REDIS_SERVER:
        print("redis-server not found: skipped")
        sys.exit(77)
    # --module-dir DIR: where libfp-overlap.so is (meson passes it).
    if "--module-dir" in sys.argv:
        i = sys.argv.index("--module-dir")
        MODULE_DIR = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    harness.main()
