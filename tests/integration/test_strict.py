#!/usr/bin/env python3
"""forkpoold refuses what it would otherwise misread (issue 13, "Strict input").

Unknown body members and query parameters are 400s naming them and the known
ones; GET /v1/jobs pages with a cursor; durations take units; a module needs
a path; the token file's permissions are checked; a unix socket is 0660.

Run by meson once per backend:
    test_strict.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, DaemonTestCase, error_of, wait_until  # noqa: E402

EXIT_USAGE = 2


def known_list(message):
    """The names after "known: " in an error message."""
    m = re.search(r"known: (.*)$", message)
    if not m:
        raise AssertionError("no list of known names in %r" % message)
    return [x.strip() for x in m.group(1).split(",") if x.strip()]


def run_to_exit(argv, timeout=20):
    """Run forkpoold expected to refuse its settings: (status, stderr)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=harness._die_with_parent)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError("forkpoold %r did not exit within %d s" % (argv[1:], timeout))
    return p.returncode, err.decode("utf-8", "replace")


# --- unknown members and parameters ------------------------------------------

class UnknownNamesTest(DaemonTestCase):
    daemon_kwargs = {"workers": 1}

    def refused(self, r, code, name):
        """A 400 `code` whose message names `name`; returns the known list."""
        msg = error_of(self, r, 400, code)
        self.assertIn('"%s"' % name, msg)
        return known_list(msg)

    def test_unknown_body_members_are_refused_with_the_known_ones(self):
        d = self.daemon
        known = self.refused(d.post("/v1/apply", {"task": "square", "args": 3, "timeout": 100}),
                             "unknown_member", "timeout")
        self.assertTrue({"task", "args", "timeout_ms", "retries"} <= set(known), known)
        self.assertNotIn("timeout", known)
        known = self.refused(d.post("/v1/map", {"task": "square", "items": [1], "priority": 9}),
                             "unknown_member", "priority")
        self.assertTrue({"task", "items", "timeout_ms", "retries", "chunksize"} <= set(known),
                        known)
        known = self.refused(d.post("/v1/pipelines", {"stages": ["echo"], "items": [1],
                                                      "timeout": 5}),
                             "unknown_member", "timeout")
        self.assertTrue({"stages", "items", "reduce", "ordered", "timeout_ms"} <= set(known),
                        known)
        msg = error_of(self, d.post("/v1/pipelines", {"stages": ["echo", {"task": "echo",
                                                                          "bufer": 4}],
                                                      "items": [1]}),
                       400, "unknown_member")
        self.assertIn("stage 1 (echo)", msg)
        self.assertIn("buffer", known_list(msg))
        # Nothing was submitted for any of them; a correct body still runs.
        self.assertEqual(self.apply("square", 3, timeout_ms=100)["result"], 9)

    def test_unknown_query_parameters_are_refused_on_every_endpoint(self):
        d = self.daemon
        job = self.apply("square", 4)["id"]
        # A misspelled timeout must not become the default 60 s.
        nd = {"Content-Type": "application/x-ndjson"}
        known = self.refused(d.post("/v1/map?task=square&timeot_ms=5", "1\n2\n", headers=nd),
                             "unknown_parameter", "timeot_ms")
        self.assertTrue({"task", "timeout_ms", "retries", "chunksize", "wait"} <= set(known),
                        known)
        cases = [
            ("POST", "/v1/apply?wiat=5", {"task": "square", "args": 1}, ["wait"]),
            ("POST", "/v1/map?wiat=5", {"task": "square", "items": [1]}, ["wait"]),
            ("POST", "/v1/pipelines?wiat=5", {"stages": ["echo"], "items": [1]}, ["wait"]),
            ("GET", "/v1/jobs/%s?reslts=1" % job, None, ["wait", "results"]),
            ("GET", "/v1/jobs/%s/results?ordr=input" % job, None, ["order"]),
            ("GET", "/v1/jobs?stat=done", None, ["state", "limit", "after"]),
            ("GET", "/v1/tasks?verbose=1", None, []),
            ("GET", "/v1/workers?verbose=1", None, []),
            ("GET", "/v1/health?verbose=1", None, []),
            ("GET", "/metrics?verbose=1", None, []),
            ("DELETE", "/v1/jobs/%s?force=1" % job, None, []),
        ]
        for method, path, body, want in cases:
            with self.subTest(path=path):
                r = d.request(method, path, body=body)
                name = re.search(r"[?&]([^=&]+)", path).group(1)
                msg = error_of(self, r, 400, "unknown_parameter")
                self.assertIn('"%s"' % name, msg)
                if want:
                    self.assertTrue(set(want) <= set(known_list(msg)), msg)
                else:
                    self.assertIn("takes no query parameters", msg)
        nd_pipe = self.refused(d.post("/v1/pipelines?stages=echo&bufer=4", "1\n", headers=nd),
                               "unknown_parameter", "bufer")
        self.assertIn("buffer", nd_pipe)
        # The DELETE above was refused: the job is still there.
        self.assertEqual(d.get("/v1/jobs/" + job).status, 200)
        # Known ones still work.
        self.assertEqual(d.get("/v1/jobs/%s?results=1&wait=1" % job).status, 200)
        self.assertEqual(d.get("/v1/jobs/%s/results?order=input" % job).status, 200)


# --- paging through the job list ---------------------------------------------

class JobPagingTest(DaemonTestCase):
    daemon_kwargs = {"workers": 2}

    def page(self, query):
        r = self.daemon.get("/v1/jobs" + query)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertIn("next", doc, sorted(doc))
        return [j["id"] for j in doc["jobs"]], doc["next"]

    def submit_many(self, n):
        ids = []
        conn = self.daemon.connection()
        try:
            for i in range(n):
                r = self.daemon.post("/v1/apply", {"task": "echo", "args": i}, conn=conn)
                self.assertEqual(r.status, 202, r)
                ids.append(r.json()["id"])
        finally:
            conn.close()
        return ids

    def test_paging_250_jobs_by_100_gets_each_once_newest_first(self):
        ids = self.submit_many(250)
        seen, cursor, pages = [], None, 0
        while True:
            got, cursor = self.page("?limit=100" + ("&after=" + cursor if cursor else ""))
            pages += 1
            seen += got
            if pages == 1:
                # Submissions and evictions between pages move nothing: the
                # job the cursor stands after goes, and one of a later page.
                late = self.submit_many(5)
                gone = {got[-1], ids[20]}
                for g in gone:
                    self.daemon.wait_job(g)
                    self.assertEqual(self.daemon.delete("/v1/jobs/" + g).status, 204)
            if cursor is None:
                break
            self.assertIsInstance(cursor, str)
            self.assertLess(pages, 10, "paging does not end")
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), len(set(seen)), "a job was listed twice")
        want = [i for i in reversed(ids) if i != ids[20]]
        self.assertEqual(seen, want, "not every job, or not newest first")
        self.assertFalse(set(late) & set(seen))
        # After a job id as well, while the job is kept.
        got, _ = self.page("?limit=3&after=" + ids[10])
        self.assertEqual(got, [ids[9], ids[8], ids[7]])
        msg = error_of(self, self.daemon.get("/v1/jobs?after=" + ids[20]), 400, "bad_request")
        self.assertIn("next", msg)
        # A state filter pages the same way.
        for i in ids:
            if i not in gone:
                self.daemon.wait_job(i)
        done, cursor = self.page("?state=done&limit=2")
        more, _ = self.page("?state=done&limit=2&after=" + cursor)
        self.assertFalse(set(done) & set(more))

    def test_offset_and_bad_cursors_are_refused(self):
        msg = error_of(self, self.daemon.get("/v1/jobs?offset=100"), 400, "unknown_parameter")
        self.assertIn('"offset"', msg)
        self.assertEqual(set(known_list(msg)), {"state", "limit", "after"})
        msg = error_of(self, self.daemon.get("/v1/jobs?after=nonsense"), 400, "bad_request")
        self.assertIn("after", msg)
        msg = error_of(self, self.daemon.get("/v1/jobs?after=" + "0" * 32), 400, "bad_request")
        self.assertIn("0" * 32, msg)


# --- settings: durations, modules, the token file, the unix socket ------------

class SettingsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="fp-strict-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.daemons = []
        # Socket files take their mode from the umask unless told otherwise.
        self.addCleanup(os.umask, os.umask(0o022))

    def tearDown(self):
        # Every daemon is stopped before any of them is judged.
        results = [(d, d.stop()) for d in self.daemons if d.port is not None]
        for d, status in results:
            self.assertEqual(status, 0, d.log_text()[-3000:])
            self.assertEqual(d.sanitizer_reports(), [])

    def start(self, *args, **kw):
        d = Daemon(*args, **kw)
        self.daemons.append(d)
        return d.start()

    def base_argv(self, *args):
        return [harness.FORKPOOLD, "--listen", "127.0.0.1:0", "--loop", harness.LOOP,
                "--workers", "1"] + list(args)

    def test_durations_take_units(self):
        d = self.start("--job-ttl", "10m", "--drain-timeout", "2s", task_timeout=None,
                       env={"FORKPOOL_TASK_TIMEOUT": "300ms"})
        job = self.start_hang(d)
        self.assertEqual(job["error"]["type"], "timeout", job)
        self.assertIn("300 ms", job["error"]["message"])
        status, err = run_to_exit(self.base_argv("--task-timeout", "5x"))
        self.assertEqual(status, EXIT_USAGE, err)
        self.assertIn("--task-timeout", err)
        self.assertIn('"5x"', err)
        self.assertRegex(err, r"ms, s, m or h")
        status, err = run_to_exit(self.base_argv("--job-ttl", "1500ms"))
        self.assertEqual(status, EXIT_USAGE, err)
        self.assertIn("--job-ttl", err)
        self.assertIn("whole number of seconds", err)

    def start_hang(self, d):
        r = d.post("/v1/apply?wait=20", {"task": "hang"})
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_module_name_without_a_slash_says_to_write_a_path(self):
        status, err = run_to_exit(self.base_argv("--module", "librev.so"))
        self.assertEqual(status, EXIT_USAGE, err)
        self.assertIn("librev.so", err)
        self.assertIn("./librev.so", err)
        self.assertNotIn("cannot open shared object file", err)

    def token_file(self, mode):
        path = os.path.join(self.dir, "token-%o" % mode)
        with open(path, "w") as f:
            f.write("s3cret\n")
        os.chmod(path, mode)
        return path

    def test_token_file_readable_by_others_warns_or_is_refused(self):
        loose = self.token_file(0o644)
        d = self.start("--token-file", loose)
        line = d.wait_line(r" warn .*token", 5)
        self.assertIn(loose, line)
        self.assertIn("0644", line)
        self.assertIn("chmod 600", line)
        d.token = "s3cret"
        self.assertEqual(d.get("/v1/tasks").status, 200)
        status, err = run_to_exit(self.base_argv("--token-file", loose, "--strict-perms"))
        self.assertEqual(status, EXIT_USAGE, err)
        self.assertIn(loose, err)
        self.assertIn("0644", err)
        self.assertIn("--strict-perms", err)
        # A private file: no warning, and --strict-perms starts.
        tight = self.token_file(0o600)
        d = self.start("--token-file", tight, "--strict-perms")
        d.token = "s3cret"
        self.assertEqual(d.get("/v1/tasks").status, 200)
        self.assertNotRegex(d.log_text(), r" warn .*token")

    def unix_daemon(self, name, *args):
        path = os.path.join(self.dir, name)
        d = self.start("--listen", "unix:" + path, *args)
        d.wait_line(r"listening on unix:" + re.escape(path), 5)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(path)
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(s.recv(64).startswith(b"HTTP/1.1 200"))
        finally:
            s.close()
        return stat.S_IMODE(os.stat(path).st_mode)

    def test_unix_socket_is_0660_or_unix_mode(self):
        self.assertEqual(oct(self.unix_daemon("a.sock")), oct(0o660))
        self.assertEqual(oct(self.unix_daemon("b.sock", "--unix-mode", "0600")), oct(0o600))
        status, err = run_to_exit(self.base_argv("--unix-mode", "0999"))
        self.assertEqual(status, EXIT_USAGE, err)
        self.assertIn("--unix-mode", err)


if __name__ == "__main__":
    harness.main()
