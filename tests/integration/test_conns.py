#!/usr/bin/env python3
"""forkpoold with slow, idle and half-closed clients (issue 13, "Connections").

A normal client keeps being answered while 1,024 connections drip a request
body a byte a second and 1,024 more sit idle between requests; the drip-fed
ones get their 408 at the body deadline however often a byte comes. At
--max-connections the longest-idle connection makes room; past
--max-connections-per-ip a new connection is answered 429. A client that
half-closes after its request gets its answer. The soft RLIMIT_NOFILE is
raised at start and the log says so.

Run by meson once per backend:
    test_conns.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import json
import os
import resource
import selectors
import shutil
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, wait_until  # noqa: E402

SLOW = 1024
IDLE = 1024
# Short deadlines, so the test does not wait for the defaults (10 s, 20 s).
BODY_TIMEOUT_MS = 3000
HEADER_TIMEOUT_MS = 3000
NORMAL_SECONDS = 4.0


def raise_nofile():
    """This process holds every client socket: its soft limit goes to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def read_response(s, timeout=10.0):
    """Read one whole response (Content-Length framed) from a blocking socket.

    Returns (status, headers dict lower-cased, body bytes), or None on EOF
    before anything came."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            if not buf:
                return None
            raise AssertionError("connection closed mid-response: %r" % buf[:200])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed mid-body")
        rest += chunk
    return status, headers, rest[:n]


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100.0))]


class ConnsTest(unittest.TestCase):
    """One daemon per test: each wants its own flags."""

    def start(self, *args, **kw):
        d = Daemon(*args, **kw)
        self.daemons.append(d)
        return d.start()

    def setUp(self):
        self.daemons = []
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        for d in self.daemons:
            status = d.stop()
            if status != 0 or d.sanitizer_reports():
                raise AssertionError("forkpoold exited with status %s; log tail:\n%s" % (
                    status, d.log_text()[-6000:]))

    def connect(self, d):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        self.socks.append(s)
        return s

    def metric(self, d, name):
        r = d.get("/metrics")
        self.assertEqual(r.status, 200, r)
        for line in r.body.decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
        raise AssertionError("no metric %s" % name)

    # --- the normal client among slow and idle ones --------------------------

    def test_normal_client_answered_among_slow_and_idle_connections(self):
        d = self.start("--body-timeout", str(BODY_TIMEOUT_MS), "--body-min-rate", "500",
                       "--header-timeout", str(HEADER_TIMEOUT_MS))
        # Idle keep-alive connections, each after one answered request.
        idle = [self.connect(d) for _ in range(IDLE)]
        for s in idle:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        idle_refused = sum(1 for s in idle if read_response(s) is None)
        # Slow bodies: the head at once, then a byte a second.
        body = b'{"task":"square","args":7}'.ljust(1000)
        head = (b"POST /v1/apply HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        slow = [self.connect(d) for _ in range(SLOW)]
        slow_start = time.monotonic()
        for s in slow:
            s.sendall(head)
            s.setblocking(False)
        sent = 0
        next_drip = time.monotonic()
        health_ms, apply_ms, failures = [], [], []
        conn = d.connection(timeout=10)
        end = time.monotonic() + NORMAL_SECONDS
        while time.monotonic() < end:
            if time.monotonic() >= next_drip:
                for s in slow:
                    try:
                        s.send(body[sent:sent + 1])
                    except OSError:
                        pass
                sent += 1
                next_drip += 1.0
            for path, payload, out in (("/v1/health", None, health_ms),
                                       ("/v1/apply?wait=5", {"task": "square", "args": 7},
                                        apply_ms)):
                t0 = time.monotonic()
                try:
                    r = d.request("POST" if payload else "GET", path, body=payload, conn=conn)
                except OSError as e:
                    failures.append("%s: %r" % (path, e))
                    conn.close()
                    conn = d.connection(timeout=10)
                    continue
                out.append((time.monotonic() - t0) * 1000.0)
                if r.status != 200:
                    failures.append("%s: %r" % (path, r))
        conn.close()
        # Every drip-fed body got its 408 at the deadline, however often a byte came.
        got_408, other = 0, []
        sel = selectors.DefaultSelector()
        for s in slow:
            sel.register(s, selectors.EVENT_READ)
        bufs = {}
        deadline = slow_start + BODY_TIMEOUT_MS / 1000.0 + 15
        while len(bufs) < len(slow) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError as e:
                    data = b""
                    other.append(repr(e))
                bufs[s] = bufs.get(s, b"") + data
                if not data or b"}}" in bufs[s]:
                    sel.unregister(s)
                    bufs.setdefault(s, b"")
                    if bufs[s].startswith(b"HTTP/1.1 408 ") and b"body deadline" in bufs[s]:
                        got_408 += 1
                    elif data:
                        other.append(bufs[s][:120])
        sel.close()
        refused = self.metric(d, "forkpool_http_connections_refused_total")
        open_now = self.metric(d, "forkpool_http_connections")
        sys.stderr.write(
            "\n  normal client among %d slow-body and %d idle connections (%s):"
            " /v1/health p50 %.1f ms p99 %.1f ms (%d), apply p50 %.1f ms p99 %.1f ms (%d);"
            " %d slow bodies answered 408 within %.1f s\n" % (
                SLOW, IDLE, d.loop,
                percentile(health_ms, 50) if health_ms else -1,
                percentile(health_ms, 99) if health_ms else -1, len(health_ms),
                percentile(apply_ms, 50) if apply_ms else -1,
                percentile(apply_ms, 99) if apply_ms else -1, len(apply_ms),
                got_408, time.monotonic() - slow_start))
        self.assertEqual(idle_refused, 0, "idle connections refused at the start")
        self.assertEqual(failures, [], "the normal client was not answered")
        self.assertGreater(len(health_ms), 10)
        self.assertGreater(len(apply_ms), 10)
        self.assertEqual(refused, 0, "connections refused")
        self.assertEqual(got_408, SLOW, "slow bodies without their 408: %r" % other[:5])
        # The idle ones are still open (their keep-alive timeout is 60 s).
        self.assertGreaterEqual(open_now, IDLE)

    # --- caps -----------------------------------------------------------------

    def test_idle_connections_make_room_at_the_cap(self):
        d = self.start("--max-connections", "40")
        idle = [self.connect(d) for _ in range(40)]
        for s in idle:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(read_response(s)[0], 200)
        # Each newcomer is answered: the longest idle makes room, in order.
        new = [self.connect(d) for _ in range(5)]
        for s in new:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(read_response(s)[0], 200)
        for s in idle[:5]:
            self.assertIsNone(read_response(s, timeout=5), "an old idle one was not closed")
        self.assertEqual(self.metric(d, "forkpool_http_connections_evicted_total"), 6)
        self.assertEqual(self.metric(d, "forkpool_http_connections_refused_total"), 0)

    def test_per_address_cap_answers_429(self):
        d = self.start("--max-connections-per-ip", "3")

        def get_from_elsewhere(path):
            # 127.0.0.2 is another address with room of its own.
            s = socket.socket()
            try:
                s.bind(("127.0.0.2", 0))
            except OSError:
                s.close()
                self.skipTest("cannot bind 127.0.0.2")
            self.socks.append(s)
            s.connect(("127.0.0.1", d.port))
            s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
            return read_response(s)

        # Three requests under way (their jobs take a second): none is idle.
        body = json.dumps({"task": "sleep", "args": 1000}).encode()
        busy = [self.connect(d) for _ in range(3)]
        for s in busy:
            s.sendall(b"POST /v1/apply?wait=20 HTTP/1.1\r\nHost: t\r\nContent-Type:"
                      b" application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

        def submitted():
            status, _, text = get_from_elsewhere(b"/metrics")
            return status == 200 and b"forkpool_jobs_submitted_total 3\n" in text
        wait_until(submitted, 10, what="3 jobs submitted")
        s = self.connect(d)
        status, headers, rbody = read_response(s)
        self.assertEqual(status, 429)
        self.assertEqual(headers.get("connection"), "close")
        err = json.loads(rbody)["error"]
        self.assertEqual(err["code"], "too_many_connections")
        self.assertIn("127.0.0.1", err["message"])
        self.assertIn("at most 3 per address", err["message"])
        # The three under way are not disturbed.
        for b in busy:
            status, _, rbody = read_response(b, timeout=20)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(rbody)["state"], "done")
        # Once they are idle, a newcomer from the address takes the longest idle's place.
        self.assertEqual(d.get("/v1/health").status, 200)

        def closed(s):
            s.setblocking(False)
            try:
                return s.recv(1) == b""
            except BlockingIOError:
                return False
        wait_until(lambda: sum(closed(b) for b in busy) == 1, 10,
                   what="one of the three closed for the newcomer")

    # --- half-close ----------------------------------------------------------

    def test_half_closed_client_gets_its_answer(self):
        d = self.start()
        body = json.dumps({"task": "sleep", "args": 300}).encode()
        for close in (b"Connection: close\r\n", b""):
            s = self.connect(d)
            s.sendall(b"POST /v1/apply?wait=5 HTTP/1.1\r\nHost: t\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
                          len(body), close, body))
            s.shutdown(socket.SHUT_WR)
            got = read_response(s)
            self.assertIsNotNone(got, "no answer after a half-close")
            status, headers, rbody = got
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("connection"), "close")
            self.assertEqual(json.loads(rbody)["state"], "done")
            self.assertEqual(s.recv(1), b"", "not closed after the answer")

    # --- the open-file limit -------------------------------------------------

    def test_open_file_limit_raised_and_logged(self):
        prlimit = shutil.which("prlimit")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if not prlimit or (hard != resource.RLIM_INFINITY and hard < 1300):
            self.skipTest("needs prlimit and a hard RLIMIT_NOFILE of 1300 or more")
        hard_s = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        d = Daemon()
        d.argv = [prlimit, "--nofile=1024:%s" % hard_s, "--"] + d.argv
        self.daemons.append(d)
        d.start()
        line = d.wait_line(r"open files:", 10)
        if hard == resource.RLIM_INFINITY or hard >= 16384 + 300:
            self.assertRegex(line, r"info open files: raised the soft RLIMIT_NOFILE from 1024"
                                   r" to \d+ for --max-connections 16384")
        else:
            self.assertRegex(line, r"warn open files: the hard RLIMIT_NOFILE")
        # Too low a hard limit: a warning naming both numbers, and a cap that fits.
        d = Daemon()
        d.argv = [prlimit, "--nofile=1200:1200", "--"] + d.argv
        self.daemons.append(d)
        d.start()
        line = d.wait_line(r"open files:", 10)
        self.assertRegex(line, r"warn open files: the hard RLIMIT_NOFILE \(1200\) is below the"
                               r" \d+ descriptors --max-connections 16384 needs: taking at"
                               r" most \d+ connections")
        self.assertEqual(d.get("/v1/health").status, 200)


if __name__ == "__main__":
    raise_nofile()
    harness.main()
