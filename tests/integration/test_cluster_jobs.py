#!/usr/bin/env python3
"""Jobs shared by forkpoold nodes through Redis (issue 15, the job flow).

- Three nodes on one Redis: a map submitted on A is read on B (document,
  ?wait=, results in input and completion order, ?results=1) and C; an
  apply answered with ?wait= through the cluster; a job cancelled on C
  stops on the node running it, its items counted as cancelled; a
  finished job deleted on any node is gone from all.
- A 100k-item map (retries=1) with node C SIGKILLed mid-way completes,
  every item exactly once (the results stream has each index once, with
  its value), C's chunks taken over by the others.
- Redis stopped for longer than the visibility timeout and started again
  mid-map (appendonly yes, in the test's temp dir) under the nodes: the map
  completes, every item once and none failed (nothing taken from a live
  node, the outcomes kept meanwhile written).
- Outcomes past --cluster-buffer while Redis is away end their items with
  the error store_unavailable once it is back, each item run once.
- Two clusters with different prefixes on one Redis do not see each
  other's jobs; submissions while Redis is away get 503 store_unavailable.
- GET /v1/jobs on any node lists the cluster's jobs, newest first, paged
  by its cursor, filtered by state; a deleted job leaves it.
- Every JSON answer checked is what docs/openapi.json describes (its
  schema, by test_openapi.py's validator): documents, the list, 409, 503.
- An Idempotency-Key holds across nodes: the same request on another node
  is that job (200, Idempotent-Replayed), another request 409; a deleted
  job frees its key.

Needs redis-server (scripts/deps installs it); without it the suite exits 77.

Run by meson once per backend:
    test_cluster_jobs.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import error_of, wait_until  # noqa: E402
from redis_harness import REDIS_SERVER, ClusterCase, RedisServer  # noqa: E402
import test_openapi as openapi  # noqa: E402  (docs/openapi.json and its validator)

NDJSON = {"Content-Type": "application/x-ndjson"}


def metric(d, name):
    text = d.get("/metrics").body.decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class ClusterJobsTest(ClusterCase):

    def redis(self, **kw):
        r = RedisServer(**kw).start()
        self.addCleanup(r.close)
        return r

    def node(self, url, name, *args, workers=1, clean=True):
        return self.cluster_node(url, name, *args, workers=workers, clean=clean)

    def assert_described(self, method, path, r):
        """r (JSON) is what docs/openapi.json says `method path` answers with its status."""
        op = openapi.DOC["paths"][path][method.lower()]
        self.assertIn(str(r.status), op["responses"], "%s %s: %r" % (method, path, r))
        schema = openapi.response_of(op, r.status)["content"]["application/json"]["schema"]
        self.assertEqual(openapi.validate(r.json(), schema), [], "%s %s: %r" % (method, path, r))

    def map_ndjson(self, d, task, items, status=202, query=""):
        r = d.post("/v1/map?task=%s%s" % (task, query),
                   "".join("%s\n" % i for i in items), headers=NDJSON)
        self.assertEqual(r.status, status, r)
        return r.json()

    def results(self, d, job, order="input", timeout=60):
        r = d.get("/v1/jobs/%s/results?order=%s" % (job, order), timeout=timeout)
        self.assertEqual(r.status, 200, r)
        return r.ndjson()

    def assert_squares_once(self, lines, n):
        """Every index 0..n-1 exactly once, each with its square."""
        seen = {}
        for line in lines:
            self.assertNotIn(line["index"], seen, "index %d twice" % line["index"])
            seen[line["index"]] = line.get("value")
        self.assertEqual(len(seen), n)
        bad = [i for i in range(n) if seen.get(i) != i * i]
        self.assertEqual(bad[:5], [], "wrong or missing values")

    # --- one job, three nodes --------------------------------------------

    def test_submit_on_a_read_on_b_cancel_on_c(self):
        r = self.redis()
        a = self.node(r.url, "a")
        b = self.node(r.url, "b")
        c = self.node(r.url, "c")

        n = 3000
        job = self.map_ndjson(a, "square", range(n))
        self.assertEqual((job["kind"], job["task"], job["total"]), ("map", "square", n))
        self.assertEqual(a.get("/v1/jobs/" + job["id"]).status, 200)
        doc = b.wait_job(job["id"], timeout=60)
        self.assertEqual((doc["state"], doc["done"], doc["failed"]), ("done", n, 0))
        self.assertIsNotNone(doc["finished_at"])
        lines = self.results(b, job["id"])
        self.assertEqual([x["index"] for x in lines], list(range(n)), "input order")
        self.assert_squares_once(lines, n)
        self.assert_squares_once(self.results(c, job["id"], "completion"), n)
        whole = c.get("/v1/jobs/%s?results=1" % job["id"])
        self.assert_described("GET", "/v1/jobs/{id}", whole)
        whole = whole.json()
        self.assertEqual(len(whole["results"]), n)
        self.assertEqual(whole["results"][7], {"value": 49, "attempts": 1})

        # A JSON map and an apply, each answered by another node than ran it.
        r2 = b.post("/v1/map?wait=30", {"task": "square", "items": [1, 2, 3]})
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(r2.json()["state"], "done")
        self.assertEqual([x["value"] for x in self.results(a, r2.json()["id"])], [1, 4, 9])
        ap = c.post("/v1/apply?wait=30", {"task": "square", "args": 12})
        self.assertEqual(ap.status, 200, ap)
        self.assert_described("POST", "/v1/apply", ap)
        self.assertEqual((ap.json()["state"], ap.json()["result"], ap.json()["attempts"]),
                         ("done", 144, 1))
        fail = a.post("/v1/apply?wait=30", {"task": "fail", "args": "no"})
        self.assertEqual(fail.json()["state"], "failed", fail)
        self.assertEqual(fail.json()["error"]["type"], "task_error")
        # A ?wait= answer is made from the document the results stream's end
        # carries (no second read of the hash): it is the job's document.
        for x in (ap, fail, r2):
            ended = r.command("XREVRANGE", "forkpool:results:" + x.json()["id"], "+", "-",
                              "COUNT", "1")[0][1]
            self.assertEqual(ended[:2], ["end", x.json()["state"]])
            self.assertIn("d:finished_at", ended)
            self.assertEqual(x.json(), a.get("/v1/jobs/" + x.json()["id"]).json())
        # The job's options travel with it: a timeout set on A holds on the node that runs it.
        slow = b.post("/v1/map?wait=30", {"task": "sleep", "items": [5000, 5000],
                                          "timeout_ms": 200})
        self.assertEqual(slow.json()["state"], "failed", slow)
        self.assertEqual({x["error"]["type"] for x in self.results(c, slow.json()["id"])},
                         {"timeout"})
        # Documents say how many times each item was started, as one node's do.
        again = a.get("/v1/jobs/%s?results=1" % slow.json()["id"]).json()["results"]
        self.assertEqual([(x["error"]["type"], x["attempts"]) for x in again],
                         [("timeout", 1), ("timeout", 1)])

        # Cancel on C a job that runs on A and B: it ends cancelled everywhere.
        slow = self.map_ndjson(a, "sleep", [300] * 300)
        wait_until(lambda: b.job_state(slow["id"]) == "running", 20, what="the job running")
        wait_until(lambda: (metric(a, "forkpool_cluster_chunks_running") or 0) +
                   (metric(b, "forkpool_cluster_chunks_running") or 0) > 0, 20,
                   what="a chunk running on a or b")
        t0 = time.monotonic()
        d = c.delete("/v1/jobs/" + slow["id"])
        self.assertEqual(d.status, 200, d)
        self.assert_described("DELETE", "/v1/jobs/{id}", d)
        self.assertEqual(d.json()["state"], "cancelled")
        doc = a.wait_job(slow["id"], timeout=30)
        self.assertEqual(doc["state"], "cancelled")
        self.assertEqual(doc["done"] + doc["failed"], 300)
        self.assertGreater(doc["failed"], 250, "most items never ran")
        # The running sleeps were killed, not waited for: 300 x 0.3 s / 3 is 30 s.
        self.assertLess(time.monotonic() - t0, 10)
        lines = self.results(b, slow["id"])
        self.assertEqual(len(lines), 300)
        self.assertTrue(any(x.get("error", {}).get("type") == "cancelled" for x in lines))

        # A finished job deleted on one node is gone on every node.
        self.assertEqual(c.delete("/v1/jobs/" + job["id"]).status, 204)
        for node in (a, b, c):
            error_of(self, node.get("/v1/jobs/" + job["id"]), 404, "no_such_job")
        error_of(self, b.get("/v1/jobs/" + "0" * 32), 404, "no_such_job")
        error_of(self, b.post("/v1/map", {"task": "nope", "items": [1]}), 400, "unknown_task")

    # --- chunk sizes --------------------------------------------------------

    def test_chunks_follow_the_maps_size_and_chunksize(self):
        """A big map of small items takes fewer, bigger chunks (each chunk costs
        its round trips to Redis) but 64 at least; a small one keeps 256-item
        chunks; the map's own chunksize is taken as given, and kept in the job
        for the nodes' pools."""
        r = self.redis()
        a = self.node(r.url, "a", workers=2)
        b = self.node(r.url, "b")
        for n, query, chunks, chunksize in ((3000, "", 12, "0"),
                                            (40000, "", 64, "0"),
                                            (1000, "&chunksize=100", 10, "100")):
            job = self.map_ndjson(a, "square", range(n), query=query)
            key = "forkpool:job:" + job["id"]
            self.assertEqual(r.command("HGET", key, "chunks"), str(chunks), (n, query))
            self.assertEqual(r.command("HGET", key, "chunksize"), chunksize, (n, query))
            doc = b.wait_job(job["id"])
            self.assertEqual((doc["state"], doc["done"], doc["failed"]), ("done", n, 0), doc)
            self.assert_squares_once(self.results(b, job["id"], "completion"), n)

    def test_apply_runs_from_its_work_entry(self):
        """An apply's one item and options ride in its work entry: the node that
        reads it starts at once (no fetch of its chunk: a round trip less), while
        the job is still marked running and counted as any other."""
        r = self.redis()
        a = self.node(r.url, "a")

        def gets():
            m = re.search(r"cmdstat_get:calls=(\d+)", r.command("INFO", "commandstats"))
            return int(m.group(1)) if m else 0
        before = gets()
        for i in range(5):
            ap = a.post("/v1/apply?wait=30", {"task": "square", "args": i})
            self.assertEqual((ap.status, ap.json()["state"], ap.json()["result"]),
                             (200, "done", i * i), ap)
            self.assertIsNotNone(ap.json()["started_at"], ap)
        self.assertEqual(gets(), before)
        # A map of more than one item is fetched as before.
        self.assertEqual(a.post("/v1/map?wait=30", {"task": "square", "items": [1, 2]})
                         .json()["state"], "done")
        self.assertGreater(gets(), before)

    # --- a follower of a job whose keys expire ------------------------------

    def test_follower_of_an_expiring_job_gets_an_end(self):
        """A reader of /results whose job expires under it (its keys' TTL passed
        while it read slowly) is cut within a read's block time, the stream left
        without its last chunk, so that the client sees it incomplete; it is
        not kept waiting for outcomes that can never come."""
        r = self.redis()
        a = self.node(r.url, "a", "--job-ttl", "1s")
        # 71 chunks of 256 items, 18 MB of outcomes: a read of the stream gives
        # 64 entries at most, and they fill the sockets and the node's
        # high-water mark while the client does not read, so that the end is
        # read only after the job's keys expired.
        job = a.post("/v1/map?wait=60", {"task": "bytes", "items": [1000] * 18000,
                                          "chunksize": 256})
        self.assertEqual(job.status, 200, job)
        self.assertEqual(job.json()["state"], "done")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect(("127.0.0.1", a.port))
        self.addCleanup(s.close)
        s.sendall(b"GET /v1/jobs/%s/results HTTP/1.1\r\nHost: x\r\n\r\n"
                  % job.json()["id"].encode())
        head = s.recv(4096)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:200])
        wait_until(lambda: a.get("/v1/jobs/" + job.json()["id"]).status == 404, 20,
                   what="the job's keys expiring")
        body, t0 = bytearray(head), time.monotonic()
        try:
            # Until the connection closes, or the last chunk (it stays open after).
            while not body.endswith(b"\r\n0\r\n\r\n"):
                got = s.recv(1 << 20)
                if not got:
                    break
                body += got
        except socket.timeout:
            self.fail("the stream of an expired job never ended (%d bytes read)" % len(body))
        self.assertLess(time.monotonic() - t0, 20)
        self.assertFalse(body.endswith(b"\r\n0\r\n\r\n"),
                         "an expired job's stream must not end as a complete one")
        self.assertTrue(a.alive())

    # --- a node dies -------------------------------------------------------

    def freeze_holding(self, r, d, name):
        """Node d (named name) stopped (SIGSTOP) at a moment it holds chunks it
        has not acknowledged: once it ran one, it is stopped and looked at
        until Redis shows it holding some, and let go again while not."""
        wait_until(lambda: (metric(d, "forkpool_cluster_chunks_run_total") or 0) >= 1, 30,
                   interval=0.005, what="node %s running chunks" % name)

        def holding():
            os.kill(d.pid, signal.SIGSTOP)
            if r.command("XPENDING", "forkpool:work", "workers", "-", "+", "10", name):
                return True
            os.kill(d.pid, signal.SIGCONT)
            return False
        wait_until(holding, 30, interval=0.01, what="node %s holding chunks" % name)

    def test_node_killed_mid_map_loses_nothing(self):
        r = self.redis()
        a = self.node(r.url, "a")
        b = self.node(r.url, "b")
        c = self.node(r.url, "c", clean=False)

        n = 100000
        # A chunk taken over counts as an attempt (its node may have been running
        # it, as a dead worker's item): one retry lets it run again. Small chunks
        # (as in the frozen node's test below), so that the map is still running
        # when C is caught holding some: with the default of n/64 a loaded machine
        # could see the whole map land before C was ever stopped holding one.
        job = self.map_ndjson(a, "square", range(n), query="&retries=1&chunksize=256")
        # C has taken chunks (it pulls as the others do): kill it mid-way,
        # frozen first at a moment it holds chunks not yet acknowledged.
        self.freeze_holding(r, c, "c")
        c.kill(signal.SIGKILL)
        c.wait_exit()
        self.assertNotEqual(r.command("HGET", "forkpool:job:" + job["id"], "state"), "done")
        doc = b.wait_job(job["id"], timeout=90)
        self.assertEqual((doc["state"], doc["done"], doc["failed"]), ("done", n, 0), doc)
        self.assert_squares_once(self.results(a, job["id"], "completion"), n)
        # What C held unacknowledged was taken over once it stopped refreshing it.
        self.assertGreater(metric(a, "forkpool_cluster_chunks_claimed_total") +
                           metric(b, "forkpool_cluster_chunks_claimed_total"), 0)
        self.assertEqual(r.command("XPENDING", "forkpool:work", "workers")[0], 0)

    def test_node_frozen_then_resumed_lands_nothing_twice(self):
        """A node taken for dead too early (frozen past the visibility timeout
        while it holds chunks, then resumed) lands chunks another node ran
        already: its outcome entries are taken out again in the same step, so
        the results stream holds each chunk once, and no reader ever sees a
        second copy."""
        r = self.redis()
        a = self.node(r.url, "a")
        b = self.node(r.url, "b")
        c = self.node(r.url, "c")

        n = 100000
        job = self.map_ndjson(a, "square", range(n), query="&retries=1&chunksize=256")
        chunks = int(r.command("HGET", "forkpool:job:" + job["id"], "chunks"))
        self.freeze_holding(r, c, "c")
        try:
            doc = b.wait_job(job["id"], timeout=90)
        finally:
            os.kill(c.pid, signal.SIGCONT)
        self.assertEqual((doc["state"], doc["done"], doc["failed"]), ("done", n, 0), doc)
        self.assertGreater(metric(a, "forkpool_cluster_chunks_claimed_total") +
                           metric(b, "forkpool_cluster_chunks_claimed_total"), 0)
        # C goes on and lands what it held: each a second landing.
        wait_until(lambda: metric(c, "forkpool_cluster_chunks_running") == 0, 30,
                   interval=0.02, what="node c landing what it held")
        self.assertEqual(r.command("XLEN", "forkpool:results:" + job["id"]), chunks + 1)
        self.assert_squares_once(self.results(c, job["id"], "completion"), n)
        self.assertEqual(c.get("/v1/jobs/" + job["id"]).json()["done"], n)

    # --- Redis goes away ----------------------------------------------------

    def test_redis_restarted_mid_map_completes(self):
        r = self.redis(appendonly=True)
        a = self.node(r.url, "a")
        b = self.node(r.url, "b")

        n = 50000
        job = self.map_ndjson(a, "sleep", [0] * n)
        wait_until(lambda: (metric(a, "forkpool_cluster_chunks_run_total") or 0) +
                   (metric(b, "forkpool_cluster_chunks_run_total") or 0) >= 3, 30,
                   interval=0.005, what="chunks landing")
        self.assertEqual(r.command("HGET", "forkpool:job:" + job["id"], "state"), "running")
        r.stop()
        for d in (a, b):
            wait_until(lambda: d.get("/v1/health").json()["cluster"] == "disconnected", 10,
                       what="the nodes seeing Redis gone")
        # An outage longer than the visibility timeout (5 s): the chunks the
        # nodes held look idle once Redis is back, and must not be taken
        # from their live nodes (nor their outcomes, kept meanwhile, lost).
        time.sleep(6)
        r.start()
        # The nodes reconnect with their backoff; meanwhile reads are 503.
        wait_until(lambda: b.get("/v1/jobs/" + job["id"]).status == 200, 20,
                   interval=0.1, what="node b reading the job again")
        doc = b.wait_job(job["id"], timeout=90)
        errors = [x for x in self.results(a, job["id"], "completion") if "error" in x][:3]
        self.assertEqual((doc["state"], doc["done"], doc["failed"]), ("done", n, 0), errors)
        lines = self.results(a, job["id"])
        self.assertEqual([x["index"] for x in lines], list(range(n)))

    def test_outcomes_past_the_buffer_fail_named_and_run_once(self):
        """Outcomes of chunks that end while Redis is away wait in memory up to
        --cluster-buffer; past it a chunk's items end with the error
        store_unavailable (written when Redis is back), not silently dropped
        and not run again while their node lives."""
        r = self.redis(appendonly=True)
        a = self.node(r.url, "a", "--cluster-buffer", "1", workers=2)
        job = a.post("/v1/map", {"task": "sleep", "items": [1500, 1500]})
        self.assertEqual(job.status, 202, job)
        job = job.json()["id"]
        wait_until(lambda: (metric(a, "forkpool_cluster_chunks_running") or 0) > 0, 20,
                   interval=0.01, what="the chunk running")
        r.stop()
        # The chunk ends while Redis is away: its outcomes do not fit in 1 byte.
        a.wait_line(r"outcome buffer .* is full", 20, fail_on_exit=True)
        r.start()
        # The jobs' own connections come back after the registry's: until then, 503.
        wait_until(lambda: a.get("/v1/jobs/" + job).status == 200, 20,
                   what="the node's jobs back on Redis")
        doc = a.wait_job(job, timeout=30, results=True)
        self.assertEqual((doc["state"], doc["done"], doc["failed"]), ("failed", 0, 2), doc)
        for x in doc["results"]:
            self.assertEqual(x["error"]["type"], "store_unavailable", x)
            self.assertIn("--cluster-buffer", x["error"]["message"])
            self.assertEqual(x["attempts"], 1)
        self.assert_described("GET", "/v1/jobs/{id}", a.get("/v1/jobs/%s?results=1" % job))
        # Run once: the chunk was landed with its errors, not left to run again.
        self.assertEqual(metric(a, "forkpool_cluster_items_run_total"), 2)
        self.assertEqual(r.command("XPENDING", "forkpool:work", "workers")[0], 0)

    def test_store_unavailable(self):
        r = self.redis()
        a = self.node(r.url, "a")
        r.stop()
        wait_until(lambda: a.get("/v1/health").json()["cluster"] == "disconnected", 10,
                   what="the node seeing Redis gone")
        error_of(self, a.post("/v1/map", {"task": "square", "items": [1, 2]}), 503,
                 "store_unavailable")
        error_of(self, a.post("/v1/apply", {"task": "square", "args": 2}), 503,
                 "store_unavailable")
        error_of(self, a.get("/v1/jobs/" + "a" * 32), 503, "store_unavailable")
        for method, path, route, body in (
                ("POST", "/v1/map", "/v1/map", {"task": "square", "items": [1]}),
                ("GET", "/v1/jobs/" + "a" * 32, "/v1/jobs/{id}", None),
                ("GET", "/v1/jobs/%s/results" % ("a" * 32), "/v1/jobs/{id}/results", None),
                ("DELETE", "/v1/jobs/" + "a" * 32, "/v1/jobs/{id}", None),
                ("GET", "/v1/jobs", "/v1/jobs", None)):
            self.assert_described(method, route, a.request(method, path, body=body))
        r.start()

        def accepted():
            x = a.post("/v1/apply?wait=10", {"task": "square", "args": 3})
            return x.status == 200 and x.json()
        doc = wait_until(accepted, 20, interval=0.2, what="submissions taken again")
        self.assertEqual(doc["result"], 9)

    # --- admission: the rules a node applies alone ---------------------------

    def test_max_queue_counts_the_clusters_items_and_results_memory_a_jobs(self):
        """--max-queue counts the unfinished items of the whole cluster (its
        queue is the cluster's): past it a submission on any node is 429
        queue_full; the items' room comes back as they finish. A job whose
        results alone would need more than --max-results-memory is 507
        insufficient_storage, as on one node (the held-by-others part of
        that rule is about one node's memory; the cluster's results are in
        Redis, whose maxmemory is the bound)."""
        r = self.redis()
        a = self.node(r.url, "a", "--max-queue", "10", "--max-results-memory", "64k",
                      workers=2)
        b = self.node(r.url, "b", "--max-queue", "10", "--max-results-memory", "64k",
                      workers=2)
        slow = a.post("/v1/map", {"task": "sleep", "items": [1500] * 8})
        self.assertEqual(slow.status, 202, slow)
        full = b.post("/v1/map", {"task": "square", "items": [1, 2, 3]})
        error_of(self, full, 429, "queue_full")
        self.assertEqual(full.header("Retry-After"), "1")
        self.assert_described("POST", "/v1/map", full)
        ok = b.post("/v1/map?wait=30", {"task": "square", "items": [1, 2]})
        self.assertEqual(ok.status, 200, ok)
        a.wait_job(slow.json()["id"], timeout=30)
        # Finished, the eight give their room back.
        again = b.post("/v1/map?wait=30", {"task": "square", "items": list(range(10))})
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["state"], "done")
        big = a.post("/v1/map", {"task": "echo", "items": ["x" * 1000] * 80})
        error_of(self, big, 507, "insufficient_storage")
        self.assertIn("--max-results-memory", big.json()["error"]["message"])
        self.assert_described("POST", "/v1/map", big)

    # --- idempotency keys ---------------------------------------------------

    def test_idempotency_key_holds_cluster_wide(self):
        r = self.redis()
        a = self.node(r.url, "a")
        b = self.node(r.url, "b")
        key = {"Idempotency-Key": "order-1234"}
        body = {"task": "square", "items": [1, 2, 3]}
        first = a.post("/v1/map", body, headers=key)
        self.assertEqual(first.status, 202, first)
        again = b.post("/v1/map?wait=30", body, headers=key)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.json()["id"], first.json()["id"])
        self.assertEqual(again.header("Location"), "/v1/jobs/" + first.json()["id"])
        conflict = b.post("/v1/map", {"task": "square", "items": [4]}, headers=key)
        error_of(self, conflict, 409, "idempotency_conflict")
        self.assert_described("POST", "/v1/map", conflict)
        self.assert_described("POST", "/v1/map", again)
        error_of(self, a.post("/v1/apply", {"task": "square", "args": 1}, headers=key),
                 409, "idempotency_conflict")
        # Deleted, the job frees its key: the next request makes a new job.
        b.wait_job(first.json()["id"])
        self.assertEqual(a.delete("/v1/jobs/" + first.json()["id"]).status, 204)
        fresh = b.post("/v1/map", body, headers=key)
        self.assertEqual(fresh.status, 202, fresh)
        self.assertNotEqual(fresh.json()["id"], first.json()["id"])
        self.assertEqual(r.command("GET", "forkpool:idem:order-1234").split()[0],
                         fresh.json()["id"])

    # --- the list --------------------------------------------------------------

    def test_job_list_is_the_clusters_on_every_node(self):
        r = self.redis()
        a = self.node(r.url, "a")
        b = self.node(r.url, "b")
        ids = [self.map_ndjson(a if i % 2 else b, "square", [i], query="&wait=30",
                               status=200)["id"] for i in range(5)]
        failed = a.post("/v1/apply?wait=30", {"task": "fail", "args": "x"}).json()["id"]
        self.assert_described("GET", "/v1/jobs", a.get("/v1/jobs"))
        for node in (a, b):
            page = node.get("/v1/jobs").json()
            self.assertEqual([j["id"] for j in page["jobs"]], [failed] + ids[::-1])
            self.assertIsNone(page["next"])
        # Paged by the cursor, two at a time, newest first, the same on both nodes.
        seen, after = [], None
        while True:
            page = (a if len(seen) % 4 else b).get(
                "/v1/jobs?limit=2" + ("&after=" + after if after else "")).json()
            seen += [j["id"] for j in page["jobs"]]
            after = page["next"]
            if after is None:
                break
        self.assertEqual(seen, [failed] + ids[::-1])
        self.assertEqual([j["id"] for j in b.get("/v1/jobs?state=failed").json()["jobs"]],
                         [failed])
        self.assertEqual([j["id"] for j in a.get("/v1/jobs?after=" + ids[2]).json()["jobs"]],
                         [ids[1], ids[0]])
        # A job deleted leaves the list; a cursor naming no kept job is refused.
        self.assertEqual(a.delete("/v1/jobs/" + ids[4]).status, 204)
        self.assertNotIn(ids[4], [j["id"] for j in b.get("/v1/jobs").json()["jobs"]])
        error_of(self, b.get("/v1/jobs?after=" + ids[4]), 400, "bad_request")
        error_of(self, b.get("/v1/jobs?after=x1"), 400, "bad_request")

    # --- two clusters on one Redis -----------------------------------------

    def test_prefixes_are_separate_clusters(self):
        r = self.redis()
        a = self.node(r.url, "a", "--cluster-prefix", "one:")
        b = self.node(r.url, "b", "--cluster-prefix", "two:")
        ja = self.map_ndjson(a, "square", range(10), query="&wait=30", status=200)
        jb = self.map_ndjson(b, "square", range(20), query="&wait=30", status=200)
        self.assertEqual((ja["state"], jb["state"]), ("done", "done"))
        error_of(self, b.get("/v1/jobs/" + ja["id"]), 404, "no_such_job")
        error_of(self, a.get("/v1/jobs/" + jb["id"]), 404, "no_such_job")
        # Each cluster ran its own: nothing crossed over.
        self.assertEqual(metric(a, "forkpool_cluster_items_run_total"), 10)
        self.assertEqual(metric(b, "forkpool_cluster_items_run_total"), 20)
        self.assertTrue(all(k.startswith(("one:", "two:")) for k in r.command("KEYS", "*")))


if __name__ == "__main__":
    if not REDIS_SERVER:
        print("redis-server not found (scripts/deps installs it): skipping")
        sys.exit(77)
    harness.main()
