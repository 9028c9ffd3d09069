#!/usr/bin/env python3
"""forkpoold's memory bounds (issue 13, "Memory"): result streams written from
the job's records through a bounded window, --max-results-memory (eviction of
the oldest finished jobs, 507, results not kept past the limit), --max-jobs,
and 410 Gone for jobs that were forgotten, 404 for ids that never existed.

Run by meson once per backend:
    test_memory.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import fcntl
import json
import os
import re
import socket
import struct
import sys
import termios
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, error_of, wait_until  # noqa: E402

MB = 1000 * 1000
MiB = 1 << 20


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def pending(sock):
    """Bytes received and not read yet on a socket."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def metric(daemon, name, labels=""):
    """One value of /metrics, by name and exact label set ('' for none)."""
    r = daemon.get("/metrics")
    assert r.status == 200, r
    want = name + labels
    for line in r.body.decode().splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == want:
            return float(value)
    raise AssertionError("no metric %s in:\n%s" % (want, r.body.decode()))


class StalledReaders:
    """n clients that ask for a job's results (or `path`) and never read past the head."""

    def __init__(self, daemon, job_id, n, path="/v1/jobs/%s/results"):
        self.socks = []
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
                self.socks.append(s)
                s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
                          % (path % job_id).encode())
        except Exception:
            self.close()
            raise

    def read_heads(self):
        """The status line and headers of each: the server has taken every request."""
        for s in self.socks:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                c = s.recv(1)
                if not c:
                    raise AssertionError("closed before the head: %r" % head)
                head += c
            assert head.startswith(b"HTTP/1.1 200"), head

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []


class StreamTest(DaemonTestCase):
    """Results streams hold a bounded window per connection, not the job."""

    daemon_kwargs = {"workers": 2}
    items, readers = 64, 8
    # What 8 windows and their buffers may cost, with room for the allocator's
    # noise; main held about 2 x 64 MB per reader (the stream, then its copy).
    bound_kb = 24 * 1024

    def big_map(self, n=None):
        doc = self.submit("/v1/map", {"task": "bytes", "items": [MB] * (n or self.items)})
        return doc["id"]

    def check_stalled(self, job_id, base_kb, attach_while_running=False,
                      path="/v1/jobs/%s/results"):
        """base_kb: the master's RSS before the readers; and before the job
        when it runs after they come, whose own results (the items' values,
        quoted, each with its NUL) are then not counted as the readers'."""
        readers = StalledReaders(self.daemon, job_id, self.readers, path)
        try:
            readers.read_heads()
            if attach_while_running:
                self.assertEqual(self.daemon.wait_job(job_id, 60)["state"], "done")
            # Every stream went past its head: the server writes as they allow.
            wait_until(lambda: all(pending(s) >= 64 * 1024 for s in readers.socks), 30,
                       what="every stalled reader to have 64 KiB waiting")
            grew = rss_kb(self.daemon.pid) - base_kb
            if attach_while_running:
                grew -= self.items * (MB + 3) // 1024
            what = "document" if "?" in path else "results"
            print("\n  [%s] %d stalled readers of a %d x 1 MB job's %s: master RSS +%d KiB"
                  " (bound %d KiB)" % (self.daemon.loop, self.readers, self.items, what, grew,
                                       self.bound_kb), file=sys.stderr)
            self.assertLess(grew, self.bound_kb)
        finally:
            readers.close()

    def test_stalled_readers_of_a_finished_job_keep_the_master_small(self):
        job_id = self.big_map()
        self.assertEqual(self.daemon.wait_job(job_id, 60)["state"], "done")
        self.check_stalled(job_id, rss_kb(self.daemon.pid))
        self.daemon.delete("/v1/jobs/" + job_id)

    def test_stalled_readers_of_a_running_job_keep_the_master_small(self):
        # Both workers sleep first, so the map is still to run when its readers come.
        sleepers = [self.submit("/v1/apply", {"task": "sleep", "args": 1500})["id"]
                    for _ in range(2)]
        base = rss_kb(self.daemon.pid)
        job_id = self.big_map()
        self.check_stalled(job_id, base, attach_while_running=True)
        for j in sleepers + [job_id]:
            self.daemon.delete("/v1/jobs/" + j)

    def test_stalled_readers_of_a_big_document_keep_the_master_small(self):
        job_id = self.big_map()
        self.assertEqual(self.daemon.wait_job(job_id, 60)["state"], "done")
        self.check_stalled(job_id, rss_kb(self.daemon.pid), path="/v1/jobs/%s?results=1")
        self.daemon.delete("/v1/jobs/" + job_id)

    def test_big_documents_are_streamed_whole(self):
        sizes = [700000, "nope", 2 * MiB]
        job_id = self.submit("/v1/map", {"task": "bytes", "items": sizes})["id"]
        self.daemon.wait_job(job_id, 60)
        r = self.daemon.get("/v1/jobs/%s?results=1" % job_id)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        doc = r.json()
        self.assertEqual((doc["id"], doc["state"], doc["total"]), (job_id, "failed", 3))
        self.assertEqual([len(x.get("value", "")) for x in doc["results"]], [700000, 0, 2 * MiB])
        self.assertEqual(doc["results"][1]["error"]["type"], "task_error")
        # The same members as a document made whole has.
        small = self.submit("/v1/map?wait=20&results=1", {"task": "bytes", "items": [1, "x"]},
                            status=200)
        self.assertEqual(set(doc), set(small))
        self.assertEqual([set(x) for x in doc["results"]], [set(small["results"][0]),
                                                             set(small["results"][1]),
                                                             set(small["results"][0])])
        self.assertEqual([x["attempts"] for x in doc["results"]], [1, 1, 1])
        # Without ?results=1 a map's document has no values: whole, as always.
        r = self.daemon.get("/v1/jobs/" + job_id)
        self.assertIsNotNone(r.header("Content-Length"))
        self.assertNotIn("results", r.json())
        # An apply's big result, in its document and with ?results=1, and as ?wait's answer.
        doc = self.apply("bytes", MiB)
        self.assertEqual(len(doc["result"]), MiB)
        r = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"])
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        full = r.json()
        self.assertEqual(len(full["result"]), MiB)
        self.assertEqual(len(full["results"][0]["value"]), MiB)
        self.assertEqual(set(full) - {"results"}, set(self.apply("square", 2)))
        self.assertEqual(full["attempts"], 1)
        # A pipeline's outputs carry their input's index.
        doc = self.submit("/v1/pipelines?wait=20", {"stages": ["bytes"], "items": [400000, 1]},
                          status=200)
        r = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"])
        self.assertEqual(sorted((x["index"], len(x["value"])) for x in r.json()["results"]),
                         [(0, 400000), (1, 1)])
        # A small document goes whole.
        r = self.daemon.get("/v1/jobs/%s?results=1" % self.apply("square", 3)["id"])
        self.assertEqual(r.header("Content-Length"), str(len(r.body)))
        self.daemon.delete("/v1/jobs/" + job_id)

    def test_big_values_stream_whole_in_both_orders(self):
        sizes = [700000, 3, 300000, 1, 2 * MiB, 5]
        job_id = self.submit("/v1/map", {"task": "bytes", "items": sizes})["id"]
        self.daemon.wait_job(job_id, 60)
        for order in ("input", "completion"):
            r = self.daemon.get("/v1/jobs/%s/results?order=%s" % (job_id, order))
            self.assertEqual(r.status, 200, r)
            lines = r.ndjson()
            self.assertEqual(sorted(x["index"] for x in lines), list(range(len(sizes))))
            for x in lines:
                self.assertEqual(len(x["value"]), sizes[x["index"]], x["index"])
                self.assertEqual(set(x["value"]), {"x"} if sizes[x["index"]] else set())
        self.daemon.delete("/v1/jobs/" + job_id)

    def test_a_stream_outlives_its_job_being_deleted(self):
        job_id = self.big_map(16)
        self.daemon.wait_job(job_id, 60)
        held = metric(self.daemon, "forkpool_results_bytes")
        self.assertGreater(held, 16 * MB)
        c = self.daemon.connection()
        try:
            c.request("GET", "/v1/jobs/%s/results" % job_id)
            r = c.getresponse()
            first = json.loads(r.readline())
            self.assertEqual(first["index"], 0)
            # Forgotten for everyone else; this reader still gets every line.
            self.assertEqual(self.daemon.delete("/v1/jobs/" + job_id).status, 204)
            msg = error_of(self, self.daemon.get("/v1/jobs/" + job_id), 410, "expired")
            self.assertIn("deleted", msg)
            rest = [json.loads(x) for x in r.read().decode().splitlines()]
        finally:
            c.close()
        self.assertEqual([x["index"] for x in [first] + rest], list(range(16)))
        self.assertTrue(all(len(x["value"]) == MB for x in rest))
        # Its memory goes with its last reader.
        wait_until(lambda: metric(self.daemon, "forkpool_results_bytes") < held - 16 * MB, 10,
                   what="the deleted job's memory to be freed")


class ResultsMemoryTest(DaemonTestCase):
    """--max-results-memory: evict the oldest finished, refuse what cannot fit."""

    daemon_args = ("--max-results-memory", "3500k")
    daemon_kwargs = {"workers": 2}

    def test_oldest_finished_jobs_are_evicted_first(self):
        ids = [self.apply("bytes", MB)["id"] for _ in range(5)]
        for old in ids[:2]:
            msg = error_of(self, self.daemon.get("/v1/jobs/" + old), 410, "expired")
            self.assertIn("--max-results-memory", msg)
            self.assertIn("3500 KiB", msg)
        for new in ids[2:]:
            r = self.daemon.get("/v1/jobs/" + new)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(len(r.json()["result"]), MB)
        self.assertLessEqual(metric(self.daemon, "forkpool_results_bytes"), 3500 * 1024)
        self.assertEqual(metric(self.daemon, "forkpool_results_bytes_limit"), 3500 * 1024)
        self.assertGreaterEqual(
            metric(self.daemon, "forkpool_jobs_evicted_total", '{reason="memory"}'), 2)
        for j in ids[2:]:
            self.daemon.delete("/v1/jobs/" + j)

    def test_a_submission_that_cannot_fit_is_refused_with_507(self):
        before = metric(self.daemon, "forkpool_jobs_rejected_total", '{reason="memory"}')
        items = ["y" * 100000] * 40
        r = self.daemon.post("/v1/map", {"task": "echo", "items": items})
        msg = error_of(self, r, 507, "insufficient_storage")
        self.assertIn("--max-results-memory", msg)
        self.assertIn("3500 KiB", msg)
        ndjson = "".join(json.dumps(x) + "\n" for x in items)
        r = self.daemon.post("/v1/map?task=echo", ndjson,
                             headers={"Content-Type": "application/x-ndjson"})
        error_of(self, r, 507, "insufficient_storage")
        self.assertEqual(
            metric(self.daemon, "forkpool_jobs_rejected_total", '{reason="memory"}'), before + 2)
        # What fits is still taken.
        self.assertEqual(self.apply("echo", "small")["result"], "small")

    def test_a_result_past_the_limit_fails_its_item(self):
        job = self.apply("bytes", 4 * MB)
        self.assertEqual(job["state"], "failed", job)
        self.assertEqual(job["error"]["type"], "too_large", job)
        self.assertIn("--max-results-memory", job["error"]["message"])
        self.assertGreaterEqual(metric(self.daemon, "forkpool_results_dropped_total"), 1)
        self.assertEqual(self.apply("square", 9)["result"], 81)


class MaxJobsTest(DaemonTestCase):
    """--max-jobs, 410 with the reason, 404 for ids that never existed."""

    daemon_args = ("--max-jobs", "3")
    daemon_kwargs = {"workers": 2}

    def test_max_jobs_keeps_the_newest_and_answers_410_for_the_rest(self):
        ids = [self.apply("square", i)["id"] for i in range(5)]
        for old in ids[:2]:
            msg = error_of(self, self.daemon.get("/v1/jobs/" + old), 410, "expired")
            self.assertIn("--max-jobs", msg)
            self.assertIn(old, msg)
            error_of(self, self.daemon.get("/v1/jobs/%s/results" % old), 410, "expired")
        for i, new in enumerate(ids[2:], 2):
            self.assertEqual(self.daemon.get("/v1/jobs/" + new).json()["result"], i * i)
        self.assertGreaterEqual(
            metric(self.daemon, "forkpool_jobs_evicted_total", '{reason="max_jobs"}'), 2)

    def test_a_deleted_job_is_gone_not_unknown(self):
        job_id = self.apply("square", 3)["id"]
        self.assertEqual(self.daemon.delete("/v1/jobs/" + job_id).status, 204)
        self.assertIn("deleted", error_of(self, self.daemon.get("/v1/jobs/" + job_id),
                                          410, "expired"))
        error_of(self, self.daemon.delete("/v1/jobs/" + job_id), 410, "expired")

    def test_an_id_that_never_existed_is_404(self):
        for bad in ("0" * 32, "f" * 32, "nope"):
            error_of(self, self.daemon.get("/v1/jobs/" + bad), 404, "no_such_job")


class TtlTest(DaemonTestCase):
    daemon_args = ("--job-ttl", "1")
    daemon_kwargs = {"workers": 1}

    def test_an_expired_job_is_410_naming_the_ttl(self):
        job_id = self.apply("square", 4)["id"]
        wait_until(lambda: self.daemon.get("/v1/jobs/" + job_id).status == 410, 15,
                   what="the job to expire")
        msg = error_of(self, self.daemon.get("/v1/jobs/" + job_id), 410, "expired")
        self.assertIn("--job-ttl", msg)
        self.assertGreaterEqual(
            metric(self.daemon, "forkpool_jobs_evicted_total", '{reason="ttl"}'), 1)


class ConfigTest(unittest.TestCase):
    def test_bad_limits_are_refused_naming_the_flag(self):
        import subprocess
        for args, want in ((["--max-jobs", "0"], "--max-jobs"),
                           (["--max-results-memory", "lots"], "--max-results-memory")):
            p = subprocess.run([harness.FORKPOOLD] + args, capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 2, p)
            self.assertIn(want, p.stderr.decode())
        p = subprocess.run([harness.FORKPOOLD, "--help"], capture_output=True, timeout=30)
        self.assertTrue(re.search(r"--max-results-memory BYTES.*507", p.stdout.decode()), p.stdout)
        self.assertIn("--max-jobs N", p.stdout.decode())


if __name__ == "__main__":
    harness.main()
