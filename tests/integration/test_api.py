#!/usr/bin/env python3
"""forkpoold over real sockets: the API of issue 4, limits, auth, signals.

Run by meson once per backend:
    test_api.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
By hand, e.g. one test with the daemon's log on stderr:
    FORKPOOL_TEST_VERBOSE=1 tests/integration/test_api.py --forkpoold build/server/forkpoold \\
        --loop epoll ApiTest.test_apply_wait
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Daemon, DaemonTestCase, children_named, error_of,  # noqa: E402
                     process_gone, wait_until)

DEMO_TASKS = {"echo", "square", "sleep", "spin", "pid", "crash", "exit", "hang", "fail"}


# --- raw HTTP, for what http.client hides ------------------------------------

class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def json(self):
        return json.loads(self.body)


def read_head(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before a status line")
    m = re.match(rb"HTTP/1\.1 (\d{3}) ?(.*)\r\n$", line)
    if not m:
        raise AssertionError("bad status line %r" % line)
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), m.group(2).decode("latin-1"), headers


def read_response(f, head_only=False):
    """One response from a socket file: Content-Length or chunked."""
    status, reason, headers = read_head(f)
    if head_only or status in (100, 204, 304):
        return RawResponse(status, reason, headers, b"")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read(int(headers.get("content-length", "0")))
    return RawResponse(status, reason, headers, body)


# --- the API on a shared daemon ----------------------------------------------

class ApiTest(DaemonTestCase):
    daemon_kwargs = {"workers": 2, "task_timeout": 20000}

    def test_apply_202_with_location_then_poll(self):
        r = self.daemon.post("/v1/apply", {"task": "square", "args": 7})
        self.assertEqual(r.status, 202, r)
        doc = r.json()
        self.assertRegex(doc["id"], r"^[0-9a-zA-Z_-]{16,}$")
        self.assertIn(doc["state"], ("queued", "running", "done"))
        self.assertEqual(r.header("Location"), "/v1/jobs/" + doc["id"])

        def finished():
            g = self.daemon.get(r.header("Location"))
            self.assertEqual(g.status, 200, g)
            return g.json() if g.json()["state"] == "done" else None
        job = wait_until(finished, 20, what="the apply job to finish")
        self.assertEqual(job["id"], doc["id"])
        self.assertEqual(job["kind"], "apply")
        self.assertEqual(job["task"], "square")
        self.assertEqual(job["result"], 49)
        self.assertEqual((job["total"], job["done"], job["failed"]), (1, 1, 0))
        self.assertIn("created_at", job)
        self.assertIn("finished_at", job)
        self.assertIsNotNone(job["finished_at"])

    def test_apply_ids_are_not_a_counter(self):
        a = self.submit("/v1/apply", {"task": "echo", "args": 1})["id"]
        b = self.submit("/v1/apply", {"task": "echo", "args": 2})["id"]
        self.assertNotEqual(a, b)
        self.assertGreaterEqual(len(a), 16)
        for i in (a, b):
            self.daemon.wait_job(i)

    def test_apply_wait(self):
        r = self.daemon.post("/v1/apply?wait=5", {"task": "square", "args": 7})
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["state"], "done")
        self.assertEqual(doc["result"], 49)
        self.assertEqual(doc["kind"], "apply")

    def test_apply_wait_returns_when_the_wait_passes(self):
        t0 = time.monotonic()
        r = self.daemon.post("/v1/apply?wait=0.3", {"task": "sleep", "args": 1500})
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.json()["state"], ("queued", "running"))
        self.assertLess(time.monotonic() - t0, 1.4)
        self.assertEqual(self.daemon.wait_job(r.json()["id"])["result"], 1500)

    def test_map_items_wait_and_results_in_item_order(self):
        items = list(range(-5, 20))
        r = self.daemon.post("/v1/map?wait=10", {"task": "square", "items": items,
                                                  "chunksize": 3})
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["kind"], "map")
        self.assertEqual(doc["state"], "done")
        self.assertEqual((doc["total"], doc["done"], doc["failed"]), (len(items), len(items), 0))
        g = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"])
        self.assertEqual(g.status, 200, g)
        self.assertEqual(g.json()["results"], [{"value": i * i, "attempts": 1} for i in items])

    def test_map_202_reports_total(self):
        r = self.daemon.post("/v1/map", {"task": "square", "items": [1, 2, 3]})
        self.assertEqual(r.status, 202, r)
        doc = r.json()
        self.assertEqual(doc["total"], 3)
        self.assertIn(doc["state"], ("queued", "running", "done"))
        self.assertEqual(r.header("Location"), "/v1/jobs/" + doc["id"])
        self.assertEqual(self.daemon.wait_job(doc["id"])["done"], 3)

    def test_map_ndjson_body(self):
        body = "".join("%d\n" % i for i in range(1, 11))
        r = self.daemon.post("/v1/map?task=square&wait=10", body,
                             headers={"Content-Type": "application/x-ndjson"})
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual((doc["task"], doc["total"], doc["state"]), ("square", 10, "done"))
        g = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"]).json()
        self.assertEqual([x["value"] for x in g["results"]], [i * i for i in range(1, 11)])

    def test_map_ndjson_million_items(self):
        n = 1000000
        body = b"3\n" * n
        t0 = time.monotonic()
        r = self.daemon.post("/v1/map?task=square&wait=200", body,
                             headers={"Content-Type": "application/x-ndjson"}, timeout=240)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual((doc["total"], doc["done"], doc["failed"], doc["state"]),
                         (n, n, 0, "done"))
        # The whole stream, in input order: every line, each 9.
        s = self.daemon.get("/v1/jobs/%s/results" % doc["id"], timeout=240)
        self.assertEqual(s.status, 200)
        lines = s.body.split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(len(lines) - 1, n)
        self.assertEqual(json.loads(lines[0]), {"index": 0, "value": 9})
        self.assertEqual(json.loads(lines[n - 1]), {"index": n - 1, "value": 9})
        sys.stderr.write("[1M-item NDJSON map and stream: %.1f s] " % (time.monotonic() - t0))
        self.daemon.delete("/v1/jobs/" + doc["id"])

    def test_long_poll_job(self):
        doc = self.submit("/v1/apply", {"task": "sleep", "args": 300})
        t0 = time.monotonic()
        g = self.daemon.get("/v1/jobs/%s?wait=10" % doc["id"])
        self.assertEqual(g.status, 200, g)
        self.assertEqual(g.json()["state"], "done")
        self.assertEqual(g.json()["result"], 300)
        self.assertLess(time.monotonic() - t0, 9)

    def test_results_stream_in_input_order(self):
        # Item 0 is the slowest: input order still puts it first.
        doc = self.submit("/v1/map", {"task": "sleep", "items": [400, 0, 0, 0, 0],
                                      "chunksize": 1})
        s = self.daemon.get("/v1/jobs/%s/results" % doc["id"])
        self.assertEqual(s.status, 200, s)
        self.assertTrue(s.header("Content-Type").startswith("application/x-ndjson"))
        self.assertEqual(s.header("Transfer-Encoding"), "chunked")
        lines = s.ndjson()
        self.assertEqual([x["index"] for x in lines], [0, 1, 2, 3, 4])
        self.assertEqual([x["value"] for x in lines], [400, 0, 0, 0, 0])
        # ?order=input is the default spelled out.
        s2 = self.daemon.get("/v1/jobs/%s/results?order=input" % doc["id"])
        self.assertEqual(s2.body, s.body)

    def test_results_stream_lines_are_exact_around_errors(self):
        # Values go out in runs read straight from the records, errors line by
        # line: every line is still exactly what one line alone would be.
        items = [i if i % 13 else "x" for i in range(600)] + [2.5, -7, 10 ** 15]
        doc = self.submit("/v1/map?wait=30", {"task": "square", "items": items,
                                               "chunksize": 7}, status=200)
        self.assertEqual(doc["state"], "failed")
        full = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"]).json()["results"]
        want = []
        for i, x in enumerate(items):
            if isinstance(x, str):
                err = json.dumps({"error": full[i]["error"]}, separators=(",", ":"))
                want.append(b'{"index":%d,%s' % (i, err[1:].encode()))
            else:
                want.append(b'{"index":%d,"value":%s}' % (i, json.dumps(full[i]["value"]).encode()))
        lines = self.daemon.get("/v1/jobs/%s/results" % doc["id"]).body.split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(lines[:-1], want)
        done = self.daemon.get("/v1/jobs/%s/results?order=completion" % doc["id"]).body
        self.assertEqual(sorted(done.split(b"\n")[:-1]), sorted(want))

    def test_results_stream_in_completion_order_as_items_finish(self):
        doc = self.submit("/v1/map", {"task": "sleep", "items": [1500, 0, 0, 0],
                                      "chunksize": 1})
        def while_running(first):
            # Streamed: the quick items arrive while the slow one still runs.
            self.assertNotEqual(first["index"], 0)
            self.assertIn(self.daemon.job_state(doc["id"]), ("queued", "running"))
        lines = self.daemon.stream_ndjson("/v1/jobs/%s/results?order=completion" % doc["id"],
                                          while_running)
        self.assertEqual(sorted(x["index"] for x in lines), [0, 1, 2, 3])
        self.assertEqual(lines[-1], {"index": 0, "value": 1500})

    def test_live_stream_writes_a_burst_of_items_as_one_chunk(self):
        # The slow item 0 keeps the job running while the rest stream past it
        # in completion order. Items reach the master in bursts (a worker's
        # answers to quick tasks come batched), and each burst is one chunk:
        # a chunk per line would be as many chunks as lines.
        n = 20000
        items = [800] + [0] * (n - 1)
        doc = self.submit("/v1/map", {"task": "spin", "items": items, "chunksize": 500})
        s = self.daemon.raw_socket()
        try:
            s.sendall(b"GET /v1/jobs/%s/results?order=completion HTTP/1.1\r\n"
                      b"Host: x\r\n\r\n" % doc["id"].encode())
            f = s.makefile("rb")
            status, _, headers = read_head(f)
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("transfer-encoding"), "chunked")
            chunks, body, running_at_first = 0, b"", None
            while True:
                size = int(f.readline(), 16)
                if size == 0:
                    f.readline()
                    break
                body += f.read(size)
                f.readline()
                chunks += 1
                if running_at_first is None:
                    running_at_first = self.daemon.get(
                        "/v1/jobs/" + doc["id"]).json()["state"] in ("queued", "running")
        finally:
            s.close()
        lines = [json.loads(x) for x in body.decode().splitlines()]
        self.assertEqual(sorted(x["index"] for x in lines), list(range(n)))
        self.assertIn({"index": 0, "value": 800}, lines)
        # It did stream while the job ran, and not a chunk a line.
        self.assertTrue(running_at_first)
        self.assertLess(chunks * 10, n, "%d chunks for %d lines" % (chunks, n))

    def test_results_stream_bad_order(self):
        doc = self.apply("echo", 1, wait=5)
        r = self.daemon.get("/v1/jobs/%s/results?order=random" % doc["id"])
        error_of(self, r, 400, "bad_request")

    def test_delete_cancels_a_running_job(self):
        doc = self.submit("/v1/map", {"task": "hang", "items": [None, None], "chunksize": 1})
        wait_until(lambda: sum(1 for w in self.daemon.workers() if w.get("task") == "hang") == 2,
                   10, what="both workers running hang")
        r = self.daemon.delete("/v1/jobs/" + doc["id"])
        self.assertEqual(r.status, 200, r)
        cancelled = self.daemon.wait_job(doc["id"], results=True)
        self.assertEqual(cancelled["state"], "cancelled")
        for item in cancelled["results"]:
            self.assertEqual(item["error"]["type"], "cancelled", cancelled)
        self.daemon.wait_able(2)

    def test_delete_forgets_a_finished_job(self):
        doc = self.apply("echo", "x", wait=5)
        self.assertEqual(doc["state"], "done")
        r = self.daemon.delete("/v1/jobs/" + doc["id"])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        # It existed: gone (410, naming why), not unknown (404).
        msg = error_of(self, self.daemon.get("/v1/jobs/" + doc["id"]), 410, "expired")
        self.assertIn("deleted", msg)

    def test_crash_fails_its_item_and_the_job_completes(self):
        doc = self.submit("/v1/map?wait=15", {"task": "crash", "items": [None, "SIGSEGV"],
                                               "chunksize": 1}, status=200)
        self.assertEqual(doc["state"], "failed")
        self.assertEqual((doc["done"], doc["failed"]), (0, 2))
        full = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"]).json()
        for item in full["results"]:
            self.assertEqual(item["error"]["type"], "crash")
            self.assertIn("SIGSEGV", item["error"]["message"])
        a = self.submit("/v1/apply?wait=15", {"task": "crash"}, status=200)
        self.assertEqual(a["state"], "failed")
        self.assertEqual(a["error"]["type"], "crash")
        self.assertIn("SIGSEGV", a["error"]["message"])
        self.daemon.wait_able(2)

    def test_timeout_ms_fails_a_hanging_item(self):
        doc = self.submit("/v1/apply?wait=15", {"task": "hang", "timeout_ms": 300}, status=200)
        self.assertEqual(doc["state"], "failed")
        self.assertEqual(doc["error"]["type"], "timeout")
        self.daemon.wait_able(2)

    def test_task_error(self):
        doc = self.apply("fail", "no luck", wait=5)
        self.assertEqual(doc["state"], "failed")
        self.assertEqual(doc["error"]["type"], "task_error")
        self.assertIn("no luck", doc["error"]["message"])

    def test_unknown_task(self):
        r = self.daemon.post("/v1/apply", {"task": "nope", "args": 1})
        self.assertIn(r.status, (400, 404), r)
        msg = error_of(self, r, r.status, "unknown_task")
        self.assertIn("nope", msg)
        self.assertIn("square", msg)
        r = self.daemon.post("/v1/map?task=nope", "1\n",
                             headers={"Content-Type": "application/x-ndjson"})
        self.assertIn("nope", error_of(self, r, r.status, "unknown_task"))

    def test_bad_json_names_the_byte_offset(self):
        body = '{"task": "square", "args": }'
        r = self.daemon.post("/v1/apply", body, headers={"Content-Type": "application/json"})
        msg = error_of(self, r, 400, "bad_json")
        m = re.search(r"byte (\d+)", msg)
        self.assertTrue(m, msg)
        self.assertTrue(20 <= int(m.group(1)) <= len(body), msg)

    def test_bad_requests(self):
        for body in ({"args": 1}, {"task": 5}, [1, 2]):
            error_of(self, self.daemon.post("/v1/apply", body), 400, "bad_request")
        error_of(self, self.daemon.post("/v1/map", {"task": "square", "items": 3}),
                 400, "bad_request")
        error_of(self, self.daemon.post("/v1/apply?wait=soon", {"task": "echo"}),
                 400, "bad_request")

    def test_wrong_content_type_is_415(self):
        r = self.daemon.post("/v1/apply", '{"task":"square","args":2}',
                             headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415, r)
        self.assertIn("application/json", r.json()["error"]["message"])

    def test_wrong_method_is_405_with_allow(self):
        r = self.daemon.get("/v1/apply")
        error_of(self, r, 405, "method_not_allowed")
        self.assertIn("POST", r.header("Allow"))
        r = self.daemon.delete("/v1/health")
        error_of(self, r, 405, "method_not_allowed")
        self.assertIn("GET", r.header("Allow"))

    def test_uri_and_header_limits(self):
        s = self.daemon.raw_socket()
        try:
            s.sendall(b"GET /v1/health?pad=" + b"a" * (9 * 1024) + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            r = read_response(s.makefile("rb"))
            self.assertEqual(r.status, 414)
            self.assertIn("error", r.json())
        finally:
            s.close()
        s = self.daemon.raw_socket()
        try:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"b" * (20 * 1024) +
                      b"\r\n\r\n")
            r = read_response(s.makefile("rb"))
            self.assertEqual(r.status, 431)
            self.assertIn("error", r.json())
        finally:
            s.close()

    def test_not_found_and_no_such_job(self):
        error_of(self, self.daemon.get("/nope"), 404, "not_found")
        error_of(self, self.daemon.get("/v1/jobs/0123456789abcdef0123456789abcdef"),
                 404, "no_such_job")

    def test_jobs_list(self):
        doc = self.apply("echo", [1], wait=5)
        jobs = self.daemon.get("/v1/jobs").json()["jobs"]
        self.assertIn(doc["id"], [j["id"] for j in jobs])
        done = self.daemon.get("/v1/jobs?state=done").json()["jobs"]
        self.assertTrue(all(j["state"] == "done" for j in done))
        self.assertEqual(len(self.daemon.get("/v1/jobs?limit=1").json()["jobs"]), 1)
        error_of(self, self.daemon.get("/v1/jobs?state=sleepy"), 400, "bad_request")

    def test_health(self):
        r = self.daemon.get("/v1/health")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["status"], "ok")
        self.assertEqual(doc["workers"], 2)
        want = harness.BACKEND_NAMES.get(harness.LOOP)
        if want:
            self.assertEqual(doc["backend"], want)
        else:
            self.assertIn(doc["backend"], ("io_uring", "epoll"))
        self.assertIn("event loop: " + doc["backend"], self.daemon.log_text())

    def test_head_health_has_no_body(self):
        s = self.daemon.raw_socket()
        try:
            s.sendall(b"HEAD /v1/health HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
            f = s.makefile("rb")
            head = read_response(f, head_only=True)
            self.assertEqual(head.status, 200)
            self.assertGreater(int(head.headers["content-length"]), 0)
            # The next response follows at once: HEAD sent no body.
            get = read_response(f)
            self.assertEqual(get.status, 200)
            self.assertEqual(len(get.body), int(head.headers["content-length"]))
        finally:
            s.close()

    def test_tasks(self):
        r = self.daemon.get("/v1/tasks")
        self.assertEqual(r.status, 200, r)
        tasks = {t["name"]: t for t in r.json()["tasks"]}
        self.assertTrue(DEMO_TASKS <= set(tasks), tasks)
        self.assertEqual(tasks["square"]["module"], "demo")
        self.assertTrue(tasks["square"]["doc"])

    def test_workers(self):
        # A worker replaced after an earlier test's crash has no pid until the
        # zygote has forked it: wait for both to be there.
        pids = self.daemon.worker_pids()
        self.assertEqual(len(set(pids)), 2, pids)
        for pid in pids:
            self.assertFalse(process_gone(pid), pid)
            self.assertNotEqual(pid, self.daemon.pid)

    def test_metrics(self):
        self.apply("square", 3, wait=5)
        r = self.daemon.get("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"), r.headers)
        text = r.body.decode()
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        for family, kind in (("forkpool_http_requests_total", "counter"),
                             ("forkpool_jobs", "gauge"),
                             ("forkpool_items_total", "counter"),
                             ("forkpool_queue_depth", "gauge"),
                             ("forkpool_worker_restarts_total", "counter"),
                             ("forkpool_task_duration_seconds", "histogram")):
            self.assertEqual(types.get(family), kind, family)
        self.assertRegex(text, r'forkpool_http_requests_total\{code="200"\} [1-9]')
        self.assertRegex(text, r'forkpool_task_duration_seconds_bucket\{le="\+Inf"\} [1-9]')
        self.assertRegex(text, r"forkpool_task_duration_seconds_count [1-9]")
        self.assertRegex(text, r'forkpool_jobs\{state="done"\} [1-9]')
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r"^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$")

    def test_keep_alive_reuses_the_connection(self):
        c = self.daemon.connection()
        try:
            r = self.daemon.request("GET", "/v1/health", conn=c)
            self.assertEqual(r.status, 200)
            sock = c.sock
            self.assertIsNotNone(sock)
            for path in ("/v1/tasks", "/nope", "/v1/workers"):
                r = self.daemon.request("GET", path, conn=c)
                self.assertIn(r.status, (200, 404))
                self.assertIs(c.sock, sock, "the server closed a keep-alive connection")
            r = self.daemon.request("POST", "/v1/apply?wait=5", {"task": "square", "args": 4},
                                    conn=c)
            self.assertEqual(r.json()["result"], 16)
            self.assertIs(c.sock, sock)
        finally:
            c.close()

    def test_pipelined_requests_are_answered_in_order(self):
        body = b'{"task":"square","args":5}'
        s = self.daemon.raw_socket()
        try:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"POST /v1/apply?wait=5 HTTP/1.1\r\nHost: t\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /v1/tasks HTTP/1.1\r\nHost: t\r\n\r\n" % (len(body), body))
            f = s.makefile("rb")
            statuses = []
            for _ in range(4):
                r = read_response(f)
                statuses.append(r.status)
                if r.status == 200 and b"result" in r.body:
                    self.assertEqual(r.json()["result"], 25)
            self.assertEqual(statuses, [200, 200, 404, 200])
        finally:
            s.close()

    def test_expect_100_continue_is_answered(self):
        body = json.dumps({"task": "echo", "args": "x" * 2000}).encode()
        s = self.daemon.raw_socket(timeout=5)
        try:
            s.sendall(b"POST /v1/apply?wait=5 HTTP/1.1\r\nHost: t\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                      b"Expect: 100-continue\r\n\r\n" % len(body))
            f = s.makefile("rb")
            # Within the socket timeout, well before curl's 1 s would pass.
            t0 = time.monotonic()
            status, _, _ = read_head(f)
            self.assertEqual(status, 100)
            self.assertLess(time.monotonic() - t0, 1.0)
            s.sendall(body)
            r = read_response(f)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["result"], "x" * 2000)
        finally:
            s.close()

    def test_chunked_upload(self):
        body = b'{"task":"square",' + b' ' * 100 + b'"args":12}'
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:10], body[10:50], body[50:]))
        s = self.daemon.raw_socket()
        try:
            s.sendall(b"POST /v1/apply?wait=5 HTTP/1.1\r\nHost: t\r\n"
                      b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                      chunks + b"0\r\n\r\n")
            r = read_response(s.makefile("rb"))
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["result"], 144)
        finally:
            s.close()

    def test_slow_client_does_not_stall_others(self):
        slow = self.daemon.raw_socket()
        try:
            slow.sendall(b"POST /v1/apply HTTP/1.1\r\nHost: t\r\nContent-Le")
            t0 = time.monotonic()
            r = self.daemon.get("/v1/health", timeout=5)
            self.assertEqual(r.status, 200)
            self.assertLess(time.monotonic() - t0, 3)
        finally:
            slow.close()

    @unittest.skipUnless(shutil.which("curl"), "curl is not installed")
    def test_curl_round_trip(self):
        base = "http://127.0.0.1:%d" % self.daemon.port
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "-X", "POST", base + "/v1/apply?wait=5",
             "-H", "Content-Type: application/json", "-d", '{"task":"square","args":7}'],
            capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["result"], 49)
        # Over 1 KiB curl sends Expect: 100-continue; it must get the 100.
        big = json.dumps({"task": "echo", "args": "y" * 3000})
        out = subprocess.run(
            ["curl", "-sS", "-v", "--max-time", "20", "-X", "POST", base + "/v1/apply?wait=5",
             "-H", "Content-Type: application/json", "--data-binary", big],
            capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["result"], "y" * 3000)
        if b"Expect: 100-continue" in out.stderr:
            self.assertIn(b"HTTP/1.1 100", out.stderr)

    def test_access_log_line_per_request(self):
        self.daemon.get("/v1/jobs?limit=777")
        line = self.daemon.wait_line(r"GET /v1/jobs\?limit=777 200", 5)
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info GET "
                               r"/v1/jobs\?limit=777 200 bytes=\d+ "
                               r"duration_ms=\d+\.\d+ peer=")

    def test_first_log_line_is_listening(self):
        self.assertRegex(self.daemon.lines[0], r" info listening on 127\.0\.0\.1:\d+$")


# --- limits --------------------------------------------------------------------

class LimitsTest(DaemonTestCase):
    daemon_args = ("--max-body", "1k", "--max-queue", "4")

    def test_body_too_large(self):
        big = {"task": "echo", "args": "z" * 2048}
        error_of(self, self.daemon.post("/v1/apply", big), 413, "body_too_large")
        # Under the limit it works.
        r = self.daemon.post("/v1/apply?wait=5", {"task": "echo", "args": "z" * 100})
        self.assertEqual(r.status, 200, r)

    def test_queue_full_is_429_with_retry_after(self):
        r = self.daemon.post("/v1/map", {"task": "hang", "items": [None] * 4, "chunksize": 1})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        try:
            r = self.daemon.post("/v1/apply", {"task": "square", "args": 1})
            error_of(self, r, 429, "queue_full")
            self.assertTrue(r.header("Retry-After"), r.headers)
            self.assertGreaterEqual(int(r.header("Retry-After")), 1)
        finally:
            d = self.daemon.delete("/v1/jobs/" + job)
            self.assertEqual(d.status, 200, d)
        self.assertEqual(self.daemon.wait_job(job)["state"], "cancelled")
        # The cancelled items left the queue: submissions work again.
        wait_until(lambda: self.daemon.post("/v1/apply?wait=5", {"task": "square", "args": 2})
                   .status == 200, 10, what="submissions after the cancel")


# --- authentication ------------------------------------------------------------

class WorkerPidTest(DaemonTestCase):
    daemon_kwargs = {"workers": 1}
    daemon_args = ("--max-tasks-per-child", "1")

    def test_worker_being_cloned_has_pid_null(self):
        """Until the zygote answers, a worker's pid is null, never 0 or a stale one."""
        self.apply("pid", wait=10)
        self.daemon.worker_pids()
        # A worker the zygote has just cloned (the master's child) bears the
        # zygote's name until it renames itself: wait for the one zygote.
        zygotes = wait_until(
            lambda: (lambda z: z if len(z) == 1 else None)(
                children_named(self.daemon.pid, "fp-zygote")),
            5, what="one fp-zygote child")
        # Stopped for less than its 5 s stall limit: asked for the successor
        # of the one-task worker, it cannot answer meanwhile.
        os.kill(zygotes[0], signal.SIGSTOP)
        try:
            self.apply("pid", wait=10)
            unknown = wait_until(lambda: [w for w in self.daemon.workers() if w["pid"] is None],
                                 3, what='a worker with "pid": null')
            self.assertEqual(unknown[0]["state"], "starting", unknown)
        finally:
            os.kill(zygotes[0], signal.SIGCONT)
        self.assertTrue(all(p > 0 for p in self.daemon.worker_pids()))
        self.assertNotIn("did not answer", self.daemon.log_text())

    def test_metrics_count_recycles_and_crashes(self):
        """/metrics reads the pool's own counters: each reason counts what happened."""
        def restarts():
            m = self.daemon.get("/metrics").body.decode()
            return {r: int(re.search(r'forkpool_worker_restarts_total\{reason="%s"\} (\d+)' % r,
                                     m).group(1))
                    for r in ("recycled", "crash", "timeout")}
        before = restarts()
        for _ in range(3):
            self.apply("square", [3], wait=10)
        self.assertEqual(self.apply("crash", wait=10)["error"]["type"], "crash")
        after = wait_until(lambda: (lambda a: a if a["recycled"] >= before["recycled"] + 3
                                    and a["crash"] == before["crash"] + 1 else None)(restarts()),
                           10, what="three recycles and one crash counted")
        self.assertEqual(after["timeout"], before["timeout"])


class AuthTest(unittest.TestCase):
    TOKEN = "s3cret-token-for-tests"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.token_file = os.path.join(cls.tmp.name, "token")
        with open(cls.token_file, "w") as f:
            f.write("\n  %s \n" % cls.TOKEN)
        cls.daemon = Daemon("--token-file", cls.token_file).start()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        cls.tmp.cleanup()
        if status != 0 or cls.daemon.sanitizer_reports():
            raise AssertionError("forkpoold exited with status %s; log tail:\n%s" % (
                status, cls.daemon.log_text()[-6000:]))

    def test_requests_need_the_token(self):
        d = self.daemon
        error_of(self, d.get("/v1/tasks"), 401, "unauthorized")
        error_of(self, d.get("/v1/tasks", token="wrong"), 401, "unauthorized")
        error_of(self, d.get("/v1/tasks", token=self.TOKEN + "x"), 401, "unauthorized")
        error_of(self, d.post("/v1/apply", {"task": "square", "args": 2}), 401, "unauthorized")
        self.assertEqual(d.get("/v1/tasks", token=self.TOKEN).status, 200)
        r = d.post("/v1/apply?wait=5", {"task": "square", "args": 3}, token=self.TOKEN)
        self.assertEqual(r.json()["result"], 9)

    def test_health_is_open(self):
        self.assertEqual(self.daemon.get("/v1/health").status, 200)


# --- start-up and configuration --------------------------------------------------

def run_forkpoold(args, env=None, timeout=20):
    e = dict(os.environ)
    e.pop("FORKPOOL_LOOP", None)
    e.update(env or {})
    return subprocess.run([harness.FORKPOOLD] + args, capture_output=True, env=e,
                          timeout=timeout, preexec_fn=harness._die_with_parent)


class StartupTest(unittest.TestCase):
    def test_bad_flags_exit_2_naming_the_flag(self):
        cases = [
            (["--workers", "x"], '--workers: expected a positive integer, got "x"'),
            (["--workers", "0"], "--workers"),
            (["--frobnicate"], "--frobnicate"),
            (["--loop", "kqueue"], "--loop"),
            (["--max-body", "12q"], "--max-body"),
            (["--listen", "nowhere"], "--listen"),
            (["--log-level", "loud"], "--log-level"),
            (["--task-timeout"], "--task-timeout"),
            (["stray"], "stray"),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                p = run_forkpoold(args)
                self.assertEqual(p.returncode, 2, p)
                err = p.stderr.decode()
                self.assertEqual(err.count("\n"), 1, err)
                self.assertTrue(err.startswith("forkpoold: "), err)
                self.assertIn(want, err)
        p = run_forkpoold([], env={"FORKPOOL_WORKERS": "many"})
        self.assertEqual(p.returncode, 2)
        self.assertIn("FORKPOOL_WORKERS", p.stderr.decode())

    def test_help_and_version(self):
        p = run_forkpoold(["--help"])
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--listen", p.stdout)
        self.assertIn(b"--drain-timeout", p.stdout)
        p = run_forkpoold(["--version"])
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"^forkpoold \d+\.\d+\.\d+\n$")

    def test_non_loopback_needs_a_token(self):
        p = run_forkpoold(["--listen", "0.0.0.0:0", "--loop", harness.LOOP])
        self.assertEqual(p.returncode, 2, p)
        err = p.stderr.decode()
        self.assertIn("0.0.0.0:0", err)
        self.assertIn("--token-file", err)

    def test_empty_or_missing_token_file_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            empty = os.path.join(tmp, "empty")
            with open(empty, "w") as f:
                f.write(" \n\t\n")
            p = run_forkpoold(["--token-file", empty])
            self.assertEqual(p.returncode, 2, p)
            self.assertIn("empty", p.stderr.decode())
            p = run_forkpoold(["--token-file", os.path.join(tmp, "absent")])
            self.assertEqual(p.returncode, 2, p)
            self.assertIn("absent", p.stderr.decode())

    def test_bad_module_exits_1_naming_it(self):
        p = run_forkpoold(["--listen", "127.0.0.1:0", "--loop", harness.LOOP,
                           "--workers", "1", "--module", "/nonexistent/libmissing.so"])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("/nonexistent/libmissing.so", p.stderr.decode())

    def test_port_in_use_exits_1(self):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            addr = "127.0.0.1:%d" % s.getsockname()[1]
            p = run_forkpoold(["--listen", addr, "--loop", harness.LOOP, "--workers", "1"])
            self.assertEqual(p.returncode, 1, p)
            self.assertIn(addr, p.stderr.decode())
        finally:
            s.close()

    def test_sanitizer_output_is_seen(self):
        # The harness's sanitizer check must match what the runtimes print.
        d = Daemon(workers=1)
        d.lines = ["==1==ERROR: LeakSanitizer: detected memory leaks"]
        self.assertEqual(len(d.sanitizer_reports()), 1)

    def test_environment_and_config_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, "forkpoold.conf")
            with open(conf, "w") as f:
                f.write("# test\nworkers = 1\nmax-queue = 5\n")
            d = Daemon("--config", conf, workers=None).start()
            try:
                self.assertEqual(len(d.workers()), 1)
            finally:
                self.assertEqual(d.stop(), 0)
            d = Daemon("--config", conf, workers=None, env={"FORKPOOL_WORKERS": "3"}).start()
            try:
                self.assertEqual(len(d.workers()), 3)
            finally:
                self.assertEqual(d.stop(), 0)

    def test_json_log_format(self):
        d = Daemon("--log-format", "json").start()
        try:
            d.get("/v1/health")
            d.wait_line(r'"target":"/v1/health"', 5)
        finally:
            self.assertEqual(d.stop(), 0)
        objs = [json.loads(line) for line in d.lines]
        self.assertTrue(objs[0]["msg"].startswith("listening on 127.0.0.1:"), objs[0])
        for o in objs:
            self.assertTrue({"ts", "level", "msg"} <= set(o), o)
        access = [o for o in objs if o.get("target") == "/v1/health"][0]
        self.assertEqual((access["method"], access["status"]), ("GET", 200))
        self.assertIsInstance(access["bytes"], int)
        self.assertIsInstance(access["duration_ms"], float)


# --- signals ---------------------------------------------------------------------

class Background(threading.Thread):
    """A request run in a thread: .result is the Response or the exception."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.result = None

    def run(self):
        try:
            self.result = self.fn()
        except Exception as e:   # reported by the test
            self.result = e

    def get(self, timeout):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("the request did not finish in %.0f s" % timeout)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class SignalTest(unittest.TestCase):
    def setUp(self):
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop(signal.SIGKILL)
            self.assertEqual(d.sanitizer_reports(), [], d.log_text()[-6000:])

    def start(self, *args, **kw):
        d = Daemon(*args, **kw).start()
        self.daemons.append(d)
        return d

    def running(self, d, task, n=1):
        wait_until(lambda: sum(1 for w in d.workers() if w.get("task") == task) >= n,
                   10, what="%d worker(s) running %s" % (n, task))

    def test_sigterm_drains_running_jobs_and_exits_0(self):
        d = self.start("--drain-timeout", "30")
        waiter = Background(lambda: d.post("/v1/apply?wait=60", {"task": "sleep", "args": 1500},
                                           timeout=90))
        waiter.start()
        self.running(d, "sleep")
        d.kill(signal.SIGTERM)

        def refused():
            r = d.post("/v1/apply", {"task": "square", "args": 1}, timeout=5)
            return r if r.status == 503 else None
        r = wait_until(refused, 10, what="503 for new submissions")
        error_of(self, r, 503, "shutting_down")
        h = d.get("/v1/health", timeout=5)
        self.assertEqual(h.status, 503)
        done = waiter.get(30)
        self.assertEqual(done.status, 200, done)
        self.assertEqual(done.json()["state"], "done")
        self.assertEqual(done.json()["result"], 1500)
        self.assertEqual(d.wait_exit(20), 0, d.log_text())
        self.assertIn("drained", d.log_text())

    def test_drain_timeout_cancels_the_rest(self):
        d = self.start("--drain-timeout", "1")
        doc = d.post("/v1/apply", {"task": "hang"}).json()
        waiter = Background(lambda: d.get("/v1/jobs/%s?wait=60" % doc["id"], timeout=90))
        waiter.start()
        self.running(d, "hang")
        t0 = time.monotonic()
        d.kill(signal.SIGTERM)
        r = waiter.get(30)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "cancelled")
        self.assertEqual(r.json()["error"]["type"], "cancelled")
        self.assertEqual(d.wait_exit(20), 0, d.log_text())
        self.assertLess(time.monotonic() - t0, 15)

    def test_second_signal_exits_at_once(self):
        d = self.start("--drain-timeout", "120")
        d.post("/v1/map", {"task": "hang", "items": [None, None], "chunksize": 1})
        self.running(d, "hang", 2)
        pids = d.worker_pids()
        d.kill(signal.SIGTERM)
        d.wait_line("draining", 5)
        t0 = time.monotonic()
        d.kill(signal.SIGINT)
        status = d.wait_exit(10)
        self.assertIsNotNone(status, "forkpoold did not exit on the second signal")
        self.assertNotEqual(status, 0)
        self.assertLess(time.monotonic() - t0, 10)
        for pid in pids:
            self.assertTrue(process_gone(pid), pid)

    def test_sighup_replaces_every_worker_without_failing_items(self):
        d = self.start()
        old = set(d.worker_pids())
        self.assertEqual(len(old), 2)
        doc = d.post("/v1/map", {"task": "sleep", "items": [20] * 60, "chunksize": 1}).json()
        d.kill(signal.SIGHUP)

        def replaced():
            ws = d.workers()
            pids = {w["pid"] for w in ws}
            return len(ws) == 2 and not (pids & old) and \
                all(w["state"] in ("idle", "busy") for w in ws)
        wait_until(replaced, 20, what="both workers replaced")
        job = d.wait_job(doc["id"])
        self.assertEqual((job["state"], job["failed"], job["done"]), ("done", 0, 60), job)
        self.assertIn("SIGHUP", d.log_text())
        for pid in old:
            wait_until(lambda: process_gone(pid), 10, what="old worker %d gone" % pid)
        m = d.get("/metrics").body.decode()
        self.assertRegex(m, r'forkpool_worker_restarts_total\{reason="reload"\} [1-9]')
        self.assertEqual(d.stop(), 0)

    def test_master_sigkilled_leaves_no_worker(self):
        d = self.start()
        d.post("/v1/apply", {"task": "hang"})
        self.running(d, "hang")
        pids = d.worker_pids()
        d.kill(signal.SIGKILL)
        d.wait_exit(10)
        for pid in pids:
            wait_until(lambda: process_gone(pid), 10, what="worker %d to die with the master"
                       % pid)


if __name__ == "__main__":
    harness.main()
