#!/usr/bin/env python3
"""Shared values of a cluster, kept in Redis (issue 18, --cluster).

- Three nodes on one Redis: 10,000 increments sent to A, B and C at once
  end at exactly 10,000, read back on every node; a value set on one node
  is read, compared-and-set, listed and deleted on the others, with its TTL
  as Redis's PEXPIRE; INCR refuses what is not an integer and an overflow
  as the local store does.
- 10,000 items of the demo incr task, in maps submitted to the three
  nodes, end at exactly 10,000, each item with a value of its own, and the
  items ran on more than one node.
- Two clusters with different prefixes on one Redis do not see each
  other's values (keys P kv:KEY).
- Redis away: every /v1/kv route answers 503 store_unavailable; back, they
  work again.

Needs redis-server (scripts/deps installs it); without it the suite exits 77.

Run by meson once per backend:
    test_kv_cluster.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import error_of, wait_until  # noqa: E402
from redis_harness import REDIS_SERVER, ClusterCase, RedisServer  # noqa: E402

JSON = {"Content-Type": "application/json"}
INCREMENTS = 10000
THREADS_PER_NODE = 2


class KvClusterTest(ClusterCase):

    def redis(self, **kw):
        r = RedisServer(**kw).start()
        self.addCleanup(r.close)
        return r

    def node(self, url, name, *args):
        d = self.cluster_node(url, name, *args)
        wait_until(lambda: d.get("/v1/health").json().get("cluster") == "connected", 10,
                   what="node %s connected to Redis" % name)
        return d

    def put(self, d, key, text, query=""):
        r = d.request("PUT", "/v1/kv/%s%s" % (key, query), body=text, headers=JSON)
        self.assertEqual(r.status, 204, r)

    def test_incr_on_three_nodes_at_once_is_exact(self):
        r = self.redis()
        nodes = [self.node(r.url, n) for n in ("a", "b", "c")]
        threads, errors = [], []
        n_threads = len(nodes) * THREADS_PER_NODE

        def incr(d, count):
            conn = d.connection(10)
            try:
                for _ in range(count):
                    x = d.request("POST", "/v1/kv/hits/incr", conn=conn)
                    if x.status != 200:
                        errors.append(x)
                        return
            finally:
                conn.close()

        for i in range(n_threads):
            count = INCREMENTS // n_threads + (i < INCREMENTS % n_threads)
            threads.append(threading.Thread(target=incr, args=(nodes[i % len(nodes)], count)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        for d in nodes:
            x = d.get("/v1/kv/hits")
            self.assertEqual((x.status, x.json()), (200, INCREMENTS), x)
        self.assertEqual(r.command("GET", "forkpool:kv:hits"), str(INCREMENTS))

    def test_incr_task_items_on_three_nodes_are_exact(self):
        """The demo incr task, as items of maps spread over three nodes: its
        calls reach Redis from every node's workers, and 10,000 of them end
        at exactly 10,000, each item seeing a value of its own."""
        r = self.redis()
        nodes = [self.node(r.url, n) for n in ("a", "b", "c")]
        jobs = []
        for i in range(10):
            x = nodes[i % 3].post("/v1/map", {"task": "incr",
                                              "items": ["tasks"] * (INCREMENTS // 10)})
            self.assertEqual(x.status, 202, x)
            jobs.append(x.json()["id"])
        values = []
        for job in jobs:
            doc = nodes[0].wait_job(job, timeout=120, results=True)
            self.assertEqual(doc["state"], "done", doc)
            values += [x["value"] for x in doc["results"]]
        self.assertEqual(sorted(values), list(range(1, INCREMENTS + 1)))
        for d in nodes:
            self.assertEqual(d.get("/v1/kv/tasks").json(), INCREMENTS)
        ran = [int(re.search(r"^forkpool_cluster_items_run_total (\d+)$",
                             d.get("/metrics").body.decode(), re.M).group(1)) for d in nodes]
        self.assertEqual(sum(ran), INCREMENTS, ran)
        self.assertGreaterEqual(len([n for n in ran if n]), 2, "items ran on one node only")

    def test_one_store_seen_from_every_node(self):
        r = self.redis()
        a, b, c = (self.node(r.url, n) for n in ("a", "b", "c"))
        self.put(a, "doc", '{"b": 1,  "a": [1, 2]}')
        x = b.get("/v1/kv/doc")
        self.assertEqual((x.status, x.json()), (200, {"b": 1, "a": [1, 2]}), x)
        # CAS compares values: another spelling of the same value matches.
        x = c.request("POST", "/v1/kv/doc/cas", headers=JSON,
                      body='{"expect": {"a": [1,2], "b": 1}, "value": "next"}')
        self.assertEqual(x.json(), {"swapped": True, "value": "next"}, x)
        x = a.post("/v1/kv/doc/cas", {"expect": "other", "value": 1})
        self.assertEqual(x.json(), {"swapped": False, "value": "next"}, x)
        x = b.post("/v1/kv/lock/cas", {"value": "b"})
        self.assertEqual(x.json(), {"swapped": True, "value": "b"}, x)
        x = c.post("/v1/kv/lock/cas", {"value": "c"})
        self.assertEqual(x.json(), {"swapped": False, "value": "b"}, x)
        x = c.post("/v1/kv/gone/cas", {"expect": 1, "value": 2})
        self.assertEqual(x.json(), {"swapped": False, "value": None}, x)
        # TTL is Redis's own expiry.
        self.put(a, "lease", '"a"', "?ttl=60")
        pttl = r.command("PTTL", "forkpool:kv:lease")
        self.assertTrue(0 < pttl <= 60000, pttl)
        for i in range(5):
            self.put(b, "h%d" % i, str(i))
        x = c.get("/v1/kv?prefix=h&limit=3").json()
        self.assertEqual([e["key"] for e in x["keys"]], ["h0", "h1", "h2"])
        self.assertEqual([e["value"] for e in x["keys"]], [0, 1, 2])
        self.assertEqual((x["count"], x["more"]), (3, True))
        x = a.get("/v1/kv?prefix=lea").json()
        self.assertEqual(len(x["keys"]), 1)
        self.assertTrue(0 < x["keys"][0]["ttl_ms"] <= 60000, x)
        self.assertIsNone(b.get("/v1/kv?prefix=h0").json()["keys"][0]["ttl_ms"])
        self.assertEqual(a.delete("/v1/kv/doc").status, 204)
        error_of(self, c.get("/v1/kv/doc"), 404, "no_such_key")
        error_of(self, b.delete("/v1/kv/doc"), 404, "no_such_key")
        # INCR: the refusals the local store gives.
        error_of(self, a.post("/v1/kv/lease/incr", None), 409, "not_an_integer")
        self.put(b, "big", str(2**63 - 1))
        error_of(self, c.post("/v1/kv/big/incr", None), 409, "out_of_range")
        self.put(b, "f", "1.5")
        error_of(self, c.post("/v1/kv/f/incr", None), 409, "not_an_integer")
        x = a.post("/v1/kv/h3/incr?by=-10", None)
        self.assertEqual((x.status, x.json()), (200, -7), x)
        # The rules are checked before Redis: a bad key, a bad value.
        error_of(self, a.get("/v1/kv/bad%20key"), 400, "bad_key")
        x = a.request("PUT", "/v1/kv/j", body="{nope", headers=JSON)
        error_of(self, x, 400, "bad_json")
        x = a.request("PUT", "/v1/kv/j", body='"%s"' % ("x" * 70000), headers=JSON)
        error_of(self, x, 413, "value_too_large")

    def test_prefixes_are_separate_clusters(self):
        r = self.redis()
        a = self.node(r.url, "a", "--cluster-prefix", "one:")
        b = self.node(r.url, "b", "--cluster-prefix", "two:")
        self.put(a, "x", "1")
        error_of(self, b.get("/v1/kv/x"), 404, "no_such_key")
        self.assertEqual(b.get("/v1/kv").json()["keys"], [])
        self.put(b, "x", "2")
        self.assertEqual(a.get("/v1/kv/x").json(), 1)
        self.assertEqual(r.command("GET", "one:kv:x"), "1")
        self.assertEqual(r.command("GET", "two:kv:x"), "2")

    def test_store_unavailable(self):
        r = self.redis()
        a = self.node(r.url, "a")
        self.put(a, "k", "1")
        r.stop()
        wait_until(lambda: a.get("/v1/health").json()["cluster"] == "disconnected", 10,
                   what="the node seeing Redis gone")
        error_of(self, a.get("/v1/kv/k"), 503, "store_unavailable")
        x = a.request("PUT", "/v1/kv/k", body="2", headers=JSON)
        error_of(self, x, 503, "store_unavailable")
        error_of(self, a.post("/v1/kv/k/incr", None), 503, "store_unavailable")
        error_of(self, a.post("/v1/kv/k/cas", {"value": 3}), 503, "store_unavailable")
        error_of(self, a.delete("/v1/kv/k"), 503, "store_unavailable")
        error_of(self, a.get("/v1/kv"), 503, "store_unavailable")
        r.start()
        wait_until(lambda: a.get("/v1/kv/k").status in (200, 404), 20, interval=0.1,
                   what="the store reachable again")
        x = a.post("/v1/kv/n/incr", None)
        self.assertEqual((x.status, x.json()), (200, 1), x)


if __name__ == "__main__":
    if not REDIS_SERVER:
        print("redis-server not found (scripts/deps installs it): skipping")
        sys.exit(77)
    harness.main()
