"""Integration harness for forkpoold: Python 3 standard library only.

A Daemon starts forkpoold on 127.0.0.1 port 0 and reads the port back from
its first log line (`listening on 127.0.0.1:PORT`), waiting a bounded time
while checking the process is alive. A thread keeps reading its stderr so the
pipe never fills; the lines are kept for tests to look at. The daemon gets
PDEATHSIG (it dies with this process) and its own session; it is always
stopped by pid: SIGTERM, a bounded wait, then SIGKILL, and its process group
is killed before it is reaped so that no worker can outlive a test.

Every request has a timeout. Nothing sleeps "long enough": wait_until()
polls a condition against a deadline.

The forkpoold binary and the backend come from the command line
(--forkpoold PATH --loop uring|epoll, as tests/meson.build passes them) or
from the environment (FORKPOOLD, FORKPOOL_TEST_LOOP).
"""

import argparse
import atexit
import ctypes
import http.client
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

# Set by main() from the command line.
FORKPOOLD = os.environ.get("FORKPOOLD", "")
LOOP = os.environ.get("FORKPOOL_TEST_LOOP", "auto")

BACKEND_NAMES = {"uring": "io_uring", "io_uring": "io_uring", "epoll": "epoll"}

START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 30.0

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

_live = set()          # Daemons not yet stopped, for atexit
_live_lock = threading.Lock()


def _die_with_parent():
    """preexec_fn: SIGKILL when the test process dies, however it dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def wait_until(cond, timeout=10.0, interval=0.02, what="condition"):
    """Poll cond() until it returns a true value, which is returned.

    Raises AssertionError naming `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, http.client.HTTPException) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s%s" % (
                timeout, what, " (last error: %r)" % (last_exc,) if last_exc else ""))
        time.sleep(interval)


def children_named(parent, name):
    """Live children of pid `parent` whose command name is `name`."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        if comm == name and fields[0] not in ("Z", "X") and int(fields[1]) == parent:
            found.append(int(d))
    return found


def process_gone(pid):
    """True when pid is no process, or only a zombie nobody reaped yet."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    except ProcessLookupError:
        return True
    # The state follows the command name in parentheses.
    state = stat[stat.rfind(")") + 2:][:1]
    return state in ("Z", "X")


def error_of(test, r, status, code):
    """Assert r is an HTTP error with the API's body shape; return the message."""
    test.assertEqual(r.status, status, r)
    test.assertTrue(r.header("Content-Type").startswith("application/json"), r.headers)
    doc = r.json()
    test.assertEqual(set(doc), {"error"}, doc)
    test.assertEqual(doc["error"]["code"], code, doc)
    test.assertIsInstance(doc["error"]["message"], str)
    test.assertTrue(doc["error"]["message"], doc)
    return doc["error"]["message"]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers       # http.client.HTTPMessage
        self.body = body             # bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def ndjson(self):
        """The body as NDJSON: one object a line."""
        return [json.loads(x) for x in self.body.decode("utf-8").splitlines()]

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class Daemon:
    """One forkpoold process on 127.0.0.1:0."""

    def __init__(self, *args, workers=2, task_timeout=20000, env=None, listen=True,
                 loop=None):
        self.loop = loop or LOOP
        argv = [FORKPOOLD]
        if listen:
            argv += ["--listen", "127.0.0.1:0"]
        argv += ["--loop", self.loop]
        if workers is not None:
            argv += ["--workers", str(workers)]
        if task_timeout is not None:
            argv += ["--task-timeout", str(task_timeout)]
        argv += list(args)
        self.argv = argv
        self.env = dict(os.environ)
        # The harness chooses the backend; a stray variable must not.
        self.env.pop("FORKPOOL_LOOP", None)
        if env:
            self.env.update(env)
        self.proc = None
        self.port = None
        self.lines = []
        self._lines_cond = threading.Condition()
        self._reader = None
        self.returncode = None
        self.token = None

    # --- process ---------------------------------------------------------

    def start(self):
        if not FORKPOOLD:
            raise RuntimeError("no forkpoold: pass --forkpoold PATH or set FORKPOOLD")
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=self.env, start_new_session=True,
            preexec_fn=_die_with_parent)
        with _live_lock:
            _live.add(self)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        try:
            line = self.wait_line(r"listening on 127\.0\.0\.1:(\d+)", START_TIMEOUT,
                                  fail_on_exit=True)
        except Exception:
            self.stop(signal.SIGKILL)
            raise
        self.port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))
        return self

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lines_cond:
                self.lines.append(line)
                self._lines_cond.notify_all()
            if os.environ.get("FORKPOOL_TEST_VERBOSE"):
                sys.stderr.write("[forkpoold %d] %s\n" % (self.proc.pid, line))
        with self._lines_cond:
            self._lines_cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def sanitizer_reports(self):
        """Lines where ASan, LSan or UBSan said something (sanitizer builds)."""
        rx = re.compile(r"(AddressSanitizer|LeakSanitizer|runtime error:)")
        with self._lines_cond:
            return [l for l in self.lines if rx.search(l)]

    def log_text(self):
        with self._lines_cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern, timeout=10.0, fail_on_exit=False, start=0):
        """The first log line (from index `start`) matching pattern."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._lines_cond:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return self.lines[i]
                    i += 1
                if fail_on_exit and self.proc.poll() is not None and \
                        not self._reader.is_alive():
                    raise AssertionError(
                        "forkpoold exited (status %s) before logging /%s/:\n%s" % (
                            self.proc.returncode, pattern, "\n".join(self.lines)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no log line /%s/ within %.1f s; log:\n%s" % (
                        pattern, timeout, "\n".join(self.lines[-50:])))
                self._lines_cond.wait(min(left, 0.1))

    def kill(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the process to exit; returns its status (None on timeout)."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._finish()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stop by pid: sig, a bounded wait, then SIGKILL. Returns the status."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            pid = self.proc.pid
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            if not self._wait_exited(timeout):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._wait_exited(timeout)
            # The leader is a zombie until reaped, so its group id cannot be
            # reused yet: kill whatever is left in the group, then reap.
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.returncode = self.proc.wait(timeout=timeout)
        self._finish()
        return self.returncode

    def _wait_exited(self, timeout):
        """Wait for exit without reaping (WNOWAIT)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = os.waitid(os.P_PID, self.proc.pid,
                              os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                return True
            if r is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _finish(self):
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()
        with _live_lock:
            _live.discard(self)

    # --- HTTP ------------------------------------------------------------

    def connection(self, timeout=REQUEST_TIMEOUT):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT,
                conn=None, token=None):
        """One request; a new connection unless `conn` is given."""
        hdrs = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            hdrs.setdefault("Authorization", "Bearer " + tok)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, r.headers, data)
        finally:
            if own:
                c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def raw_socket(self, timeout=REQUEST_TIMEOUT):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    # --- helpers over the API -------------------------------------------

    def workers(self):
        r = self.get("/v1/workers")
        if r.status != 200:
            raise AssertionError("/v1/workers: %r" % (r,))
        return r.json()["workers"]

    def worker_pids(self, where=lambda w: True, timeout=10.0):
        """The pids of the workers `where` picks, once each has one: a worker
        the zygote is still cloning says "pid": null for a moment."""
        def known():
            ws = [w for w in self.workers() if where(w)]
            return ws and all(w["pid"] is not None for w in ws) and [w["pid"] for w in ws]
        return wait_until(known, timeout, what="every worker's pid")

    def job_state(self, job_id):
        r = self.get("/v1/jobs/" + job_id)
        if r.status != 200:
            raise AssertionError("GET job %s: %r" % (job_id, r))
        return r.json()["state"]

    def stream_ndjson(self, path, check_first):
        """GET an NDJSON stream and return its objects.

        check_first(first object) runs as soon as the first line came, before
        the rest is read: for checks on what the job does while it streams."""
        c = self.connection()
        try:
            c.request("GET", path)
            r = c.getresponse()
            if r.status != 200:
                raise AssertionError("GET %s: %d %r" % (path, r.status, r.read()[:300]))
            first = json.loads(r.readline())
            check_first(first)
            rest = [json.loads(x) for x in r.read().decode("utf-8").splitlines()]
        finally:
            c.close()
        return [first] + rest

    def wait_job(self, job_id, timeout=30.0, results=False):
        """Long-poll a job until it finishes; returns its document."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("job %s did not finish in %.0f s" % (job_id, timeout))
            r = self.get("/v1/jobs/%s?wait=%.1f%s" % (job_id, min(left, 10.0),
                                                     "&results=1" if results else ""),
                         timeout=min(left, 10.0) + 10)
            if r.status != 200:
                raise AssertionError("GET job %s: %r" % (job_id, r))
            doc = r.json()
            if doc["state"] in ("done", "failed", "cancelled"):
                return doc

    def wait_able(self, n, timeout=15.0):
        """Until /v1/health says n workers are able (after kills, reloads)."""
        def able():
            r = self.get("/v1/health")
            return r.status == 200 and r.json().get("able", n) >= n
        wait_until(able, timeout, what="%d able workers" % n)


class DataDirTestCase(unittest.TestCase):
    """A test case whose daemons keep a --data-dir: self.dir (a temporary
    directory, removed after each test), self.data inside it, and
    self.daemons, each SIGKILLed after the test if still alive."""

    tmp_prefix = "fp-test-"

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix=self.tmp_prefix)
        self.data = os.path.join(self.dir, "data")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            if d.alive():
                d.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


class DaemonTestCase(unittest.TestCase):
    """A test case with one daemon for the whole class (daemon_args)."""

    daemon_args = ()
    daemon_kwargs = {}
    daemon = None

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(*cls.daemon_args, **cls.daemon_kwargs).start()

    @classmethod
    def tearDownClass(cls):
        d, cls.daemon = cls.daemon, None
        if d is None:
            return
        status = d.stop()
        # A clean SIGTERM exit is part of every test: under the sanitizers
        # LeakSanitizer runs at exit and fails the status.
        if status != 0 or d.sanitizer_reports():
            raise AssertionError("forkpoold exited with status %s; log tail:\n%s" % (
                status, d.log_text()[-6000:]))

    def submit(self, path, body, status=202, **kw):
        """POST body to path; assert the status and return the JSON answer."""
        r = self.daemon.post(path, body, **kw)
        self.assertEqual(r.status, status, r)
        return r.json()

    def apply(self, task, args=None, wait=20, **extra):
        """POST /v1/apply?wait=...: the finished job's document (200)."""
        return self.submit("/v1/apply?wait=%g" % wait, dict(task=task, args=args, **extra),
                           status=200)

    def setUp(self):
        if self.daemon is not None and not self.daemon.alive():
            self.fail("forkpoold died; log:\n" + self.daemon.log_text()[-4000:])


def _stop_all():
    with _live_lock:
        live = list(_live)
    for d in live:
        try:
            d.stop(signal.SIGKILL, timeout=5)
        except Exception:
            pass


atexit.register(_stop_all)


def _on_term(signum, frame):
    # meson's timeout sends SIGTERM: stop the daemons, then die of it.
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main(module="__main__"):
    """Parse --forkpoold/--loop, then run unittest with what is left."""
    global FORKPOOLD, LOOP
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--forkpoold", default=FORKPOOLD)
    p.add_argument("--loop", default=LOOP)
    opts, rest = p.parse_known_args()
    FORKPOOLD = os.path.abspath(opts.forkpoold) if opts.forkpoold else ""
    LOOP = opts.loop
    signal.signal(signal.SIGTERM, _on_term)
    # Watchdog: a hung test must not outlive meson's own timeout.
    limit = float(os.environ.get("FORKPOOL_TEST_WATCHDOG", "290"))
    t = threading.Timer(limit, lambda: (sys.stderr.write(
        "watchdog: the suite ran past %.0f s\n" % limit), _stop_all(), os._exit(3)))
    t.daemon = True
    t.start()
    unittest.main(module=module, argv=[sys.argv[0]] + rest, verbosity=2)
