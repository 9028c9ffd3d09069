#!/usr/bin/env python3
"""forkpool, the command-line client (issue 17), against a real forkpoold.

Run by meson once per backend:
    test_cli.py --forkpoold build/server/forkpoold --loop uring|epoll \
        --forkpool build/cli/forkpool [unittest args]

Every subcommand runs against a daemon on 127.0.0.1; exit statuses 0, 1, 2
and 3 each have a case; the progress bar and `top` run under a
pseudo-terminal. Every process started here is waited for with a timeout.
"""

import http.client
import http.server
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, DaemonTestCase, wait_until  # noqa: E402

FORKPOOL = os.environ.get("FORKPOOL_CLI", "")
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RUN_TIMEOUT = 60
HEX32 = re.compile(r"^[0-9a-f]{32}$")
COMMANDS = ["map", "apply", "pipeline", "jobs", "status", "wait", "results", "cancel",
            "workers", "tasks", "health", "top"]


def cli(*args, url=None, stdin=None, env=None, timeout=RUN_TIMEOUT):
    """Run forkpool with args; stdout and stderr captured (neither is a terminal)."""
    e = dict(os.environ)
    e.pop("FORKPOOL_TOKEN_FILE", None)
    if url is not None:
        e["FORKPOOL_URL"] = url
    if env:
        e.update(env)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return subprocess.run([FORKPOOL] + list(args), input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=e, timeout=timeout)


def closed_port():
    """A socket bound to a port on 127.0.0.1 and not listening: connecting is refused.
    The caller keeps it open so that nothing else takes the port meanwhile."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def read_pty(fd, until, timeout):
    """Read the pty's master side until until(bytes so far) or the deadline; the bytes."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not until(buf) and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                d = os.read(fd, 65536)
            except OSError:      # EIO: the slave side closed
                break
            if not d:
                break
            buf += d
    return buf


def run_on_pty(argv, env, stdin_data=None, timeout=RUN_TIMEOUT):
    """Run argv with stderr on a pseudo-terminal (stdout piped, stdin fed
    stdin_data); returns (status, stdout bytes, what the terminal got)."""
    master, slave = os.openpty()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave,
                             env=env)
        os.close(slave)
        slave = -1
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("out", p.communicate(stdin_data,
                                                                                 timeout)))
        t.start()
        term = read_pty(master, lambda b: p.poll() is not None, timeout)
        t.join(timeout)
        term += read_pty(master, lambda b: False, 0.3)
        return p.wait(timeout), got["out"][0], term
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


class CliTest(DaemonTestCase):
    daemon_kwargs = {"workers": 2}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.url = "127.0.0.1:%d" % cls.daemon.port

    def run_cli(self, *args, **kw):
        kw.setdefault("url", self.url)
        return cli(*args, **kw)

    def ok(self, *args, status=0, **kw):
        r = self.run_cli(*args, **kw)
        self.assertEqual(r.returncode, status, (args, r.stdout[-2000:], r.stderr[-2000:]))
        return r

    # --- map, apply, pipeline -------------------------------------------

    def test_map_in_input_order_with_values_and_completion(self):
        items = "".join("%d\n" % i for i in range(50))
        r = self.ok("map", "square", stdin=items)
        lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual(lines, [{"index": i, "value": i * i} for i in range(50)])
        self.assertEqual(r.stderr, b"")
        r = self.ok("map", "square", "-", "--values", stdin=items)
        self.assertEqual(r.stdout.decode().split(), [str(i * i) for i in range(50)])
        r = self.ok("map", "--completion", "square", stdin=items)
        lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual(sorted(x["index"] for x in lines), list(range(50)))
        self.assertTrue(all(x["value"] == x["index"] ** 2 for x in lines))

    def test_map_reads_a_file_and_keeps_values_as_the_task_made_them(self):
        path = os.path.join(self.tmpdir(), "items.ndjson")
        with open(path, "w") as f:
            f.write('0.1\n{"a":[1,2.50]}\n"x"\n')
        r = self.ok("map", "echo", path, "--values")
        self.assertEqual(r.stdout, b'0.1\n{"a":[1,2.50]}\n"x"\n')

    def test_map_with_failures_exits_1_naming_each_failed_item(self):
        items = '1\n"not a number"\n3\n"nor this"\n'
        r = self.ok("map", "square", status=1, stdin=items)
        lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual([x["index"] for x in lines], [0, 1, 2, 3])
        self.assertEqual(lines[2], {"index": 2, "value": 9})
        err = r.stderr.decode().splitlines()
        self.assertEqual(len(err), 2, err)
        self.assertRegex(err[0], r"^forkpool map: item 1: task_error: .*not a number")
        self.assertRegex(err[1], r"^forkpool map: item 3: task_error: ")
        # --values leaves the failed items out of stdout; stderr still names them.
        r = self.ok("map", "square", "--values", status=1, stdin=items)
        self.assertEqual(r.stdout, b"1\n9\n")
        self.assertIn("item 3: task_error", r.stderr.decode())

    def test_map_of_100k_items_equals_the_same_map_over_plain_http(self):
        items = "".join("%d\n" % i for i in range(100000)).encode()
        r = self.ok("map", "square", stdin=items)
        # As `curl --data-binary @items -H 'Content-Type: application/x-ndjson'`, then
        # `curl .../results?order=input`.
        c = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=60)
        try:
            c.request("POST", "/v1/map?task=square", body=items,
                      headers={"Content-Type": "application/x-ndjson"})
            a = c.getresponse()
            self.assertEqual(a.status, 202)
            job = json.loads(a.read())["id"]
            c.request("GET", "/v1/jobs/%s/results?order=input" % job)
            a = c.getresponse()
            self.assertEqual(a.status, 200)
            expected = a.read()
        finally:
            c.close()
        self.assertEqual(len(expected.splitlines()), 100000)
        self.assertEqual(r.stdout, expected)

    def test_apply_prints_the_value_or_names_the_error(self):
        self.assertEqual(self.ok("apply", "square", "7").stdout, b"49\n")
        self.assertEqual(self.ok("apply", "echo", '{"k": [1, 0.5]}').stdout, b'{"k":[1,0.5]}\n')
        self.assertEqual(self.ok("apply", "echo").stdout, b"null\n")
        r = self.ok("apply", "fail", '"no good"', status=1)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(r.stderr.decode(), "forkpool apply: item 0: task_error: no good\n")
        r = self.ok("apply", "sleep", "2000", "--task-timeout", "200ms", status=1)
        self.assertIn("item 0: timeout:", r.stderr.decode())

    def test_pipeline_with_reduce_and_in_order(self):
        r = self.ok("pipeline", "words,lower", "--reduce", "count", stdin='"The cat"\n"the Dog"\n')
        self.assertEqual(json.loads(r.stdout), {"index": 0, "value": {"the": 2, "cat": 1, "dog": 1}})
        r = self.ok("pipeline", "range,square", "--values", "--workers", ",1", stdin="3\n2\n")
        self.assertEqual(r.stdout.decode().split(), ["0", "1", "4", "0", "1"])
        r = self.ok("pipeline", "range,square", "--completion", stdin="3\n")
        self.assertEqual(sorted(json.loads(x)["value"] for x in r.stdout.decode().splitlines()),
                         [0, 1, 4])

    def test_detach_then_status_wait_results_and_jobs(self):
        r = self.ok("map", "sleep", "--detach", stdin="100\n200\n")
        job = r.stdout.decode().strip()
        self.assertRegex(job, HEX32)
        doc = json.loads(self.ok("status", job).stdout)
        self.assertEqual((doc["id"], doc["kind"], doc["total"]), (job, "map", 2))
        doc = json.loads(self.ok("wait", job).stdout)
        self.assertEqual((doc["state"], doc["done"]), ("done", 2))
        self.assertEqual(self.ok("results", job, "--values").stdout, b"100\n200\n")
        listed = self.ok("jobs", "--state", "done").stdout.decode()
        self.assertRegex(listed.splitlines()[0], r"^ID\s+KIND\s+STATE")
        self.assertIn(job, listed)
        page = json.loads(self.ok("jobs", "--json", "--limit", "1000").stdout)
        self.assertIn(job, [j["id"] for j in page["jobs"]])
        self.assertNotIn(job, self.ok("jobs", "--state", "running").stdout.decode())

    def test_cancel_a_running_job_then_wait_and_results_say_it_failed(self):
        job = self.ok("map", "sleep", "--detach", stdin="5000\n5000\n5000\n").stdout.decode().strip()
        doc = json.loads(self.ok("cancel", job).stdout)
        self.assertEqual(doc["state"], "cancelled")
        r = self.ok("wait", job, status=1)
        self.assertEqual(json.loads(r.stdout)["state"], "cancelled")
        r = self.ok("results", job, status=1)
        self.assertEqual(len(r.stdout.splitlines()), 3)
        self.assertRegex(r.stderr.decode(), r"forkpool results: item 0: cancelled: ")
        # A finished job is forgotten: then the server says it is gone (410), and why.
        r = self.ok("cancel", job)
        self.assertIn("forgotten", r.stderr.decode())
        r = self.ok("status", job, status=3)
        self.assertIn("the server refused (410 expired): ", r.stderr.decode())

    # --- what the server tells --------------------------------------------

    def test_workers_tasks_and_health(self):
        pids = self.daemon.worker_pids()
        out = self.ok("workers").stdout.decode()
        for pid in pids:
            self.assertRegex(out, r"\b%d\b" % pid)
        self.assertEqual(len(json.loads(self.ok("workers", "--json").stdout)["workers"]), 2)
        out = self.ok("tasks").stdout.decode()
        self.assertRegex(out, r"(?m)^square\s+demo\s+no\s")
        self.assertRegex(out, r"(?m)^range\s+demo\s+yes\s")
        doc = json.loads(self.ok("health").stdout)
        self.assertEqual(doc["status"], "ok")
        self.assertEqual(doc["backend"], harness.BACKEND_NAMES.get(harness.LOOP, doc["backend"]))

    def test_top_without_a_terminal_prints_one_view(self):
        pids = self.daemon.worker_pids()
        out = self.ok("top").stdout.decode()
        self.assertNotIn("\x1b", out)
        for pid in pids:
            self.assertRegex(out, r"\b%d\b" % pid)

    def test_top_quits_on_q_when_a_refresh_takes_longer_than_the_interval(self):
        # A server that takes 100 ms an answer: each refresh (three requests)
        # outlasts --interval 50ms, and the keyboard must still be read.
        class Slow(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(0.1)
                path = self.path.split("?")[0]
                doc = {"/v1/health": {"status": "ok"},
                       "/v1/workers": {"pool": {}, "workers": []},
                       "/v1/jobs": {"jobs": [], "next": None}}.get(path, {})
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        master, slave = os.openpty()
        try:
            env = dict(os.environ, FORKPOOL_URL="http://127.0.0.1:%d" % server.server_port)
            p = subprocess.Popen([FORKPOOL, "top", "--interval", "50ms"], stdin=slave,
                                 stdout=slave, stderr=slave, env=env)
            try:
                screen = read_pty(master, lambda b: b.count(b"forkpool top") >= 2, 20)
                self.assertGreaterEqual(screen.count(b"forkpool top"), 2)
                os.write(master, b"q")
                self.assertEqual(p.wait(10), 0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
        finally:
            os.close(slave)
            os.close(master)
            server.shutdown()
            server.server_close()

    def test_top_on_a_terminal_shows_the_workers_quits_on_q_and_restores_it(self):
        pids = self.daemon.worker_pids()
        master, slave = os.openpty()
        try:
            before = termios.tcgetattr(slave)
            env = dict(os.environ, FORKPOOL_URL=self.url)
            p = subprocess.Popen([FORKPOOL, "top", "--interval", "200ms"], stdin=slave,
                                 stdout=slave, stderr=slave, env=env)
            try:
                screen = read_pty(master, lambda b: all(str(x).encode() in b for x in pids)
                                  and b"(q quits)" in b, 20)
                for pid in pids:
                    self.assertIn(str(pid).encode(), screen)
                self.assertIn(b"\x1b[?1049h", screen)    # its own screen
                # Two refreshes at least: it is live.
                more = read_pty(master, lambda b: b.count(b"forkpool top") >= 2, 10)
                self.assertGreaterEqual((screen + more).count(b"forkpool top"), 2)
                os.write(master, b"q")
                self.assertEqual(p.wait(10), 0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
            rest = read_pty(master, lambda b: b"\x1b[?1049l" in b, 5)
            self.assertIn(b"\x1b[?1049l", rest)       # the screen given back
            after = termios.tcgetattr(slave)
            self.assertEqual(after[3] & (termios.ICANON | termios.ECHO),
                             before[3] & (termios.ICANON | termios.ECHO))
        finally:
            os.close(slave)
            os.close(master)

    # --- the progress bar ------------------------------------------------

    def test_progress_bar_on_a_terminal_reaches_100_percent(self):
        items = "".join("30\n" for _ in range(40)).encode()
        env = dict(os.environ, FORKPOOL_URL=self.url)
        t0 = time.monotonic()
        status, out, term = run_on_pty([FORKPOOL, "map", "sleep", "--chunksize", "1"], env,
                                       items)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 0, term[-500:])
        self.assertEqual(len(out.splitlines()), 40)
        text = term.decode("utf-8", "replace")
        self.assertRegex(text, r"\[#+\] 100%\s+40/40\s+failed 0\s+\d+ items/s")
        self.assertRegex(text, r"\[#*\.+\]\s+\d+%\s+\d+/40")   # on its way there
        # At most ten draws a second (plus the last one).
        self.assertLessEqual(text.count("\r["), elapsed * 10 + 2, text)
        # --quiet: none of it.
        status, out, term = run_on_pty([FORKPOOL, "map", "sleep", "-q"], env, b"1\n2\n")
        self.assertEqual((status, term), (0, b""))

    def test_no_progress_bar_when_stderr_is_not_a_terminal(self):
        r = self.ok("map", "sleep", "--chunksize", "1", stdin="".join("20\n" for _ in range(20)))
        self.assertEqual(r.stderr, b"")
        self.assertEqual(len(r.stdout.splitlines()), 20)
        self.assertNotIn(b"\r", r.stdout)

    def test_wait_shows_a_bar_on_a_terminal(self):
        job = self.ok("map", "sleep", "--detach", "--chunksize", "1",
                      stdin="".join("30\n" for _ in range(20))).stdout.decode().strip()
        env = dict(os.environ, FORKPOOL_URL=self.url)
        status, out, term = run_on_pty([FORKPOOL, "wait", job], env)
        self.assertEqual(status, 0, term[-500:])
        self.assertEqual(json.loads(out)["state"], "done")
        self.assertIn(b"100%", term)

    # --- exit statuses 2 and 3 --------------------------------------------

    def test_usage_errors_exit_2_naming_the_mistake(self):
        cases = [
            ((), "Usage: forkpool COMMAND"),
            (("frobnicate",), "unknown command 'frobnicate'"),
            (("map",), "missing TASK [FILE]"),
            (("map", "square", "--bogus"), "unknown option --bogus"),
            (("map", "square", "--chunksize", "many"), "--chunksize takes a whole number"),
            (("map", "square", "--timeout", "soon"), "--timeout takes a duration"),
            (("map", "square", "/nonexistent/items.ndjson"), "cannot open /nonexistent/items"),
            (("apply", "square", "{not json"), "ARGS-JSON is not JSON"),
            (("apply", "square", "1", "2"), "unexpected argument '2'"),
            (("jobs", "--state", "sleeping"), "--state is queued, running"),
            (("status", "../health"), "is not a job id"),
            (("pipeline", "words,,lower"), "no empty stage"),
            (("health", "--completion"), "unknown option --completion"),
            (("health", "--url", "ftp://x"), "the scheme must be http"),
            (("map", "square", "--idempotency-key", "k" * 300), "--idempotency-key must be"),
            (("map", "square", "--concurrency", "0"), "--concurrency takes a whole number from 1"),
        ]
        for args, message in cases:
            r = self.run_cli(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr.decode(), args)
            self.assertEqual(r.stdout, b"", args)

    def test_unreachable_or_refusing_server_exits_3(self):
        s = closed_port()
        try:
            url = "127.0.0.1:%d" % s.getsockname()[1]
            for args in (("health",), ("map", "square"), ("top",), ("jobs",)):
                r = cli(*args, url=url, stdin="1\n")
                self.assertEqual(r.returncode, 3, (args, r.stderr))
                self.assertIn("cannot reach the server at http://%s" % url, r.stderr.decode())
        finally:
            s.close()
        r = self.ok("map", "nosuchtask", status=3, stdin="1\n")
        self.assertIn("the server refused (400 unknown_task): unknown task 'nosuchtask'",
                      r.stderr.decode())
        r = self.ok("map", "square", status=3, stdin="1\n{oops\n")
        self.assertIn("400 bad_json", r.stderr.decode())
        r = self.ok("status", "0" * 32, status=3)
        self.assertIn("404 no_such_job", r.stderr.decode())
        # --timeout gives up, naming the job that goes on.
        r = self.ok("map", "sleep", "--timeout", "300ms", status=3, stdin="3000\n")
        m = re.search(r"gave up: --timeout passed; job ([0-9a-f]{32}) goes on", r.stderr.decode())
        self.assertTrue(m, r.stderr)
        self.ok("cancel", m.group(1))

    def test_interrupt_says_the_job_goes_on(self):
        e = dict(os.environ, FORKPOOL_URL=self.url)
        rfd, wfd = os.pipe()
        os.write(wfd, b"5000\n")
        os.close(wfd)
        p = subprocess.Popen([FORKPOOL, "map", "sleep"], stdin=rfd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=e)
        os.close(rfd)
        wait_until(lambda: any(w["task"] == "sleep" for w in self.daemon.workers()),
                   what="a worker running the job's item")
        p.send_signal(2)
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 130, err)
        m = re.search(rb"interrupted; job ([0-9a-f]{32}) goes on", err)
        self.assertTrue(m, err)
        self.ok("cancel", m.group(1).decode())

    # --- help and version --------------------------------------------------

    def test_help_for_every_command_and_version(self):
        r = self.ok("--help")
        top = r.stdout.decode()
        for name in COMMANDS:
            self.assertRegex(top, r"(?m)^  %s\b" % name)
            for form in ((name, "--help"), ("help", name)):
                h = self.ok(*form).stdout.decode()
                self.assertTrue(h.startswith("Usage: forkpool %s" % name), h)
                self.assertIn("--url URL", h)
                self.assertIn("Exit status:", h)
        self.assertIn("--idempotency-key KEY", self.ok("map", "--help").stdout.decode())
        r = self.ok("--version")
        self.assertRegex(r.stdout.decode(), r"^forkpool \d+\.\d+\.\d+\n$")
        # The README's client section shows every command.
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("## The command-line client"):]
        section = section[:section.index("\n## ", 3)]
        for name in COMMANDS:
            self.assertIn("forkpool %s" % name, section)

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="fp-cli-")
        self.addCleanup(lambda: shutil.rmtree(d, ignore_errors=True))
        return d


class CliTokenAndUnixSocketTest(unittest.TestCase):
    """A daemon on a unix socket that needs a token."""

    def test_token_file_and_unix_url(self):
        d = tempfile.mkdtemp(prefix="fp-cli-")
        sock = os.path.join(d, "fp.sock")
        tok = os.path.join(d, "token")
        fd = os.open(tok, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"s3cret\n")
        os.close(fd)
        # Its TCP listener too, on 127.0.0.1:0, is how the harness knows it is up.
        daemon = Daemon("--listen", "unix:" + sock, "--token-file", tok, workers=1)
        try:
            daemon.start()
            daemon.wait_line(r"listening on unix:" + re.escape(sock), 5)
            url = "unix:" + sock
            self.assertEqual(cli("health", url=url).returncode, 0)
            r = cli("apply", "square", "6", url=url)
            self.assertEqual(r.returncode, 3)
            self.assertIn("401 unauthorized", r.stderr.decode())
            r = cli("apply", "square", "6", "--token-file", tok, url=url)
            self.assertEqual((r.returncode, r.stdout), (0, b"36\n"), r.stderr)
            r = cli("map", "square", url=url, stdin="2\n", env={"FORKPOOL_TOKEN_FILE": tok})
            self.assertEqual((r.returncode, r.stdout), (0, b'{"index":0,"value":4}\n'), r.stderr)
            r = cli("jobs", "--token-file", os.path.join(d, "missing"), url=url)
            self.assertEqual(r.returncode, 2)
            self.assertIn("--token-file", r.stderr.decode())
        finally:
            status = daemon.stop()
            shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(status, 0, daemon.log_text()[-3000:])


class Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in server that keeps what each request carried: its headers, how its
    body was framed, and how many bytes it had (read and dropped as it comes)."""

    protocol_version = "HTTP/1.1"
    JOB = "ab" * 16

    def log_message(self, *a):
        pass

    def body_size(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            n = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                left = size
                while left:
                    left -= len(self.rfile.read(min(left, 1 << 20)))
                self.rfile.readline()
                if size == 0:
                    return n
                n += size
        left = n = int(self.headers.get("Content-Length", "0"))
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        return n

    def answer(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if self.path.startswith("/v1/apply"):
            # An apply's body is one small JSON document: kept whole.
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.server.bodies.append(json.loads(body))
            size = len(body)
        else:
            size = self.body_size()
        self.server.seen.append((self.path, dict(self.headers), size))
        self.answer(202, json.dumps({"id": self.JOB, "state": "queued"}).encode())

    def do_GET(self):
        self.server.seen.append((self.path, dict(self.headers), 0))
        self.answer(200, b'{"index":0,"value":1}\n', "application/x-ndjson")


class CliUploadTest(unittest.TestCase):
    """How the items go out: streamed, never held whole; the headers sent."""

    def setUp(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        self.server.seen = []
        self.server.bodies = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def test_idempotency_key_is_sent_with_each_submission(self):
        for args in (("apply", "square", "1"), ("map", "square"), ("pipeline", "range,square")):
            r = cli(*args, "--idempotency-key", "order-42", url=self.url, stdin="1\n")
            self.assertEqual(r.returncode, 0, r.stderr)
        posts = [s for s in self.server.seen if s[2] or s[0].startswith("/v1/apply")]
        self.assertEqual([p[0].split("?")[0] for p in posts],
                         ["/v1/apply", "/v1/map", "/v1/pipelines"])
        for path, headers, _ in posts:
            self.assertEqual(headers.get("Idempotency-Key"), "order-42", path)
        self.assertEqual(posts[1][0], "/v1/map?task=square")
        self.assertEqual(posts[2][0], "/v1/pipelines?stages=range%2Csquare&ordered=true")
        self.assertEqual(posts[1][1]["Content-Type"], "application/x-ndjson")

    def test_concurrency_is_sent_with_each_submission(self):
        for args in (("apply", "square", "1"), ("map", "square"), ("pipeline", "range,square")):
            r = cli(*args, "--concurrency", "3", url=self.url, stdin="1\n")
            self.assertEqual(r.returncode, 0, r.stderr)
        posts = [s for s in self.server.seen if s[2] or s[0].startswith("/v1/apply")]
        self.assertEqual([p[0] for p in posts],
                         ["/v1/apply", "/v1/map?task=square&concurrency=3",
                          "/v1/pipelines?stages=range%2Csquare&ordered=true&concurrency=3"])
        self.assertEqual(self.server.bodies[0].get("concurrency"), 3, self.server.bodies[0])

    def test_a_file_goes_with_its_length_a_pipe_chunked_and_neither_is_held(self):
        with tempfile.NamedTemporaryFile(suffix=".ndjson") as f:
            f.write(b"1\n" * 1000)
            f.flush()
            r = cli("map", "square", f.name, url=self.url)
            self.assertEqual(r.returncode, 0, r.stderr)
        path, headers, size = self.server.seen[0]
        self.assertEqual((headers.get("Content-Length"), size), ("2000", 2000))
        # 256 MiB through a pipe: chunked, and the client's peak RSS stays far below it.
        line = b"0" * 1023 + b"\n"
        total = 256 * 1024 * 1024
        p = subprocess.Popen([FORKPOOL, "map", "echo", "-q"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, FORKPOOL_URL=self.url))

        def feed():
            block = line * 1024
            for _ in range(total // len(block)):
                p.stdin.write(block)
            p.stdin.close()
        t = threading.Thread(target=feed)
        t.start()
        err = p.stderr.read()
        p.stdout.read()
        p.stdout.close()
        p.stderr.close()
        t.join(RUN_TIMEOUT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        self.assertEqual(p.returncode, 0, err)
        path, headers, size = self.server.seen[-2]
        self.assertEqual(headers.get("Transfer-Encoding"), "chunked")
        self.assertNotIn("Content-Length", headers)
        self.assertEqual(size, total)
        self.assertLess(usage.ru_maxrss * 1024, 128 * 1024 * 1024, "peak RSS %d KiB" %
                        usage.ru_maxrss)


if __name__ == "__main__":
    # --forkpool PATH: the client (meson passes build/cli/forkpool).
    if "--forkpool" in sys.argv:
        i = sys.argv.index("--forkpool")
        FORKPOOL = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    harness.main()
