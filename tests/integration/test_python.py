#!/usr/bin/env python3
"""The Python package (issue 17): forkpool.Client and forkpool.worker,
installed with pip from python/ into a venv, against a real forkpoold.

Run by meson once per backend:
    test_python.py --forkpoold build/server/forkpoold --loop uring|epoll \
                   --venv build/tests/python-venv-BACKEND [unittest args]

First it makes the venv (anew each run, so it holds the sources as they
are) and installs the package offline (pip --no-index --no-build-isolation:
setuptools and wheel from the system, Debian's python3-setuptools and
python3-wheel); then it runs itself again under the venv's python, where
`import forkpool` can only find the installed package, and the exec pool's
program imports forkpool.worker with no PYTHONPATH.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SOURCE = os.path.join(ROOT, "python")
IN_VENV = "FORKPOOL_TEST_IN_VENV"

# The exec pool's program: written into the venv, run by its python.
WORKER = '''\
import os
import time
from forkpool.worker import serve, task

@task
def square(x):
    return x * x

@task
def fail_on(args):
    """Square, except that the item equal to args["bad"] raises."""
    if args["x"] == args["bad"]:
        raise ValueError("bad item %d" % args["x"])
    return args["x"] * args["x"]

@task
def nap(ms):
    time.sleep(ms / 1000.0)
    return ms

@task
def overlap(args):
    """Count itself running in the file args["path"] (under flock) for
    args["ms"]; returns the most seen running at once."""
    import fcntl

    def count(f, delta):
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        running, most = (int(x) for x in (f.read().split() or ["0", "0"]))
        running += delta
        most = max(most, running)
        f.seek(0)
        f.truncate()
        f.write("%d %d\\n" % (running, most))
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
        return most

    with open(args["path"], "a+") as f:
        count(f, 1)
        time.sleep(args["ms"] / 1000.0)
        return count(f, -1)

@task
def where(args):
    import forkpool
    return {"file": forkpool.__file__, "pythonpath": os.environ.get("PYTHONPATH")}

@task
def split(line):
    """Split a line into its words."""
    yield from line.split()

def deep(n):
    if n == 0:
        raise KeyError("missing")
    return deep(n - 1)

@task
def boom(n):
    return deep(n)

serve()
'''


def python_with_build_tools():
    """An interpreter that has setuptools and wheel (pip builds the package
    with them, offline): this one, else Debian's."""
    for py in (sys.executable, "/usr/bin/python3"):
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import setuptools, wheel, pip, venv"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return py
    return None


def make_venv(venv):
    """The venv with the package installed from the source tree; its python."""
    py = python_with_build_tools()
    if py is None:
        sys.stderr.write("SKIP: no python3 with setuptools, wheel, pip and venv "
                         "(Debian: python3-setuptools python3-wheel python3-pip python3-venv)\n")
        sys.exit(77)
    shutil.rmtree(venv, ignore_errors=True)
    # Without pip (ensurepip takes half a minute on a loaded machine): the
    # system's pip installs into it (--python). System site-packages give
    # the build its setuptools and wheel.
    subprocess.run([py, "-m", "venv", "--without-pip", "--system-site-packages", venv],
                   check=True)
    vpy = os.path.join(venv, "bin", "python")
    # The build writes build/ and *.egg-info beside the sources: build a copy.
    with tempfile.TemporaryDirectory(dir=venv) as tmp:
        src = os.path.join(tmp, "python")
        shutil.copytree(SOURCE, src, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__"))
        subprocess.run([py, "-m", "pip", "--python", vpy, "install", "--quiet",
                        "--no-index", "--no-build-isolation", "--no-deps",
                        "--disable-pip-version-check", src],
                       check=True, env=dict(os.environ, PIP_NO_INPUT="1"))
    with open(os.path.join(venv, "worker.py"), "w") as f:
        f.write(WORKER)
    return vpy


def stage_one():
    """Make the venv, then run this file again under its python."""
    args = sys.argv[1:]
    if "--venv" not in args:
        sys.exit("test_python.py: --venv DIR is required")
    i = args.index("--venv")
    venv = os.path.abspath(args[i + 1])
    vpy = make_venv(venv)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env[IN_VENV] = venv
    os.execve(vpy, [vpy, os.path.abspath(__file__)] + args[:i] + args[i + 2:], env)


if __name__ == "__main__" and not os.environ.get(IN_VENV):
    stage_one()

# --- under the venv's python ---------------------------------------------

sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import DaemonTestCase, wait_until  # noqa: E402

import forkpool  # noqa: E402
from forkpool import Client, TaskError  # noqa: E402

VENV = os.environ.get(IN_VENV, "")
VPY = os.path.join(VENV, "bin", "python")


def client_of(daemon, **kw):
    return Client("http://127.0.0.1:%d" % daemon.port, **kw)


class PackageTest(unittest.TestCase):
    def test_installed_package_is_the_one_imported(self):
        self.assertTrue(forkpool.__file__.startswith(VENV + os.sep), forkpool.__file__)
        self.assertNotIn(SOURCE, sys.path)

    def test_old_module_name_is_the_same_module(self):
        # python/forkpool_worker.py, as a program run with PYTHONPATH=python has it.
        out = subprocess.run(
            [VPY, "-c", "import forkpool_worker, forkpool.worker; "
                        "print(forkpool_worker is forkpool.worker)"],
            env=dict(os.environ, PYTHONPATH=SOURCE), capture_output=True, text=True,
            timeout=30)
        self.assertEqual(out.stdout.strip(), "True", out.stderr)


class ClientTest(DaemonTestCase):
    daemon_args = ("--exec", "py=%s %s" % (VPY, os.path.join(VENV, "worker.py")),
                   "--exec-workers", "2")
    daemon_kwargs = {"workers": 2}

    @classmethod
    def setUpClass(cls):
        os.environ.pop("PYTHONPATH", None)
        super().setUpClass()
        cls.fp = client_of(cls.daemon, timeout=30)
        # The programs said ready: their tasks are listed.
        wait_until(lambda: "py.square" in {t["name"] for t in cls.fp.tasks()}, 20,
                   what="the exec pool's tasks")

    def test_apply_returns_the_value(self):
        self.assertEqual(self.fp.apply("square", 7), 49)
        self.assertEqual(self.fp.apply("py.square", 12), 144)

    def test_exec_pool_runs_the_installed_worker_without_pythonpath(self):
        got = self.fp.apply("py.where")
        self.assertTrue(got["file"].startswith(VENV + os.sep), got)
        self.assertIsNone(got["pythonpath"], got)

    def test_apply_failure_raises_task_error_with_traceback(self):
        with self.assertRaises(TaskError) as cm:
            self.fp.apply("py.boom", 3)
        e = cm.exception
        self.assertEqual((e.type, e.index), ("task_error", 0))
        self.assertEqual(e.message, "KeyError: 'missing'")
        self.assertIsNotNone(e.traceback, "no traceback in the error")
        self.assertIn("Traceback (most recent call last):", e.traceback)
        self.assertEqual(e.traceback.count("in deep"), 4, e.traceback)
        self.assertIn("KeyError: 'missing'", e.traceback.splitlines()[-1])
        # And forkpoold's log has it, from the program's stderr.
        self.daemon.wait_line(r"program pid \d+\): .*raise KeyError\(\"missing\"\)", 10)
        # A C task's error has no traceback.
        with self.assertRaises(TaskError) as cm:
            self.fp.apply("fail", "no good")
        self.assertEqual((cm.exception.message, cm.exception.traceback), ("no good", None))

    def test_map_ordered_streams_values_in_input_order(self):
        n = 3000
        got = list(self.fp.map("square", range(n), chunksize=50))
        self.assertEqual(got, [i * i for i in range(n)])

    def test_map_submits_at_once_and_yields_before_the_job_ends(self):
        fed = []

        def items():
            for i in range(6):
                fed.append(i)
                yield 3000 if i == 5 else 1
        it = self.fp.map("sleep", items(), chunksize=1)
        self.assertEqual(fed, list(range(6)))      # all sent before map returns
        self.assertEqual(next(it), 1)
        # The first value came while the last item still sleeps.
        self.assertIn(it.job.status, ("queued", "running"))
        self.assertEqual(list(it), [1, 1, 1, 1, 3000])

    def test_map_unordered_gives_completion_order(self):
        got = list(self.fp.imap_unordered("sleep", [800, 10, 10], chunksize=1))
        self.assertEqual(sorted(got), [10, 10, 800])
        self.assertEqual(got[-1], 800)

    def test_map_failed_item_raises_or_is_returned(self):
        items = [{"x": i, "bad": 3} for i in range(6)]
        it = self.fp.map("py.fail_on", items)
        self.assertEqual([next(it) for _ in range(3)], [0, 1, 4])
        with self.assertRaises(TaskError) as cm:
            next(it)
        e = cm.exception
        self.assertEqual((e.type, e.index, e.message), ("task_error", 3, "ValueError: bad item 3"))
        self.assertIn("in fail_on", e.traceback or "")
        # return_exceptions: the error takes the item's place, both orders.
        for ordered in (True, False):
            got = list(self.fp.map("py.fail_on", items, ordered=ordered,
                                   return_exceptions=True))
            errors = [x for x in got if isinstance(x, TaskError)]
            self.assertEqual([(x.index, x.type) for x in errors], [(3, "task_error")])
            values = [x for x in got if not isinstance(x, TaskError)]
            self.assertEqual(sorted(values), [0, 1, 4, 16, 25])
            if ordered:
                self.assertIs(got[3], errors[0])

    def test_submit_wait_results_progress(self):
        job = self.fp.submit("py.square", 9)
        self.assertEqual(job.kind, "apply")
        doc = job.wait(timeout=20)
        self.assertEqual(doc["state"], "done")
        self.assertEqual(job.get(), 81)
        self.assertEqual(job.status, "done")
        job = self.fp.map_async("square", range(100), chunksize=10)
        job.wait(20)
        self.assertEqual(job.progress, forkpool.Progress(100, 100, 0))
        self.assertEqual(list(job.results()), [i * i for i in range(100)])
        self.assertEqual(job.get(), [i * i for i in range(100)])

    def test_cancel_stops_a_running_job(self):
        job = self.fp.map_async("sleep", [5000] * 6)
        wait_until(lambda: job.status == "running", 10, what="the job running")
        job.cancel()
        doc = job.wait(10)
        self.assertEqual(doc["state"], "cancelled")
        p = job.progress
        self.assertEqual((p.total, p.done + p.failed), (6, 6), p)
        got = list(job.results(return_exceptions=True))
        self.assertTrue(got and all(isinstance(x, TaskError) and x.type == "cancelled"
                                    for x in got), got)

    def test_wait_with_timeout_raises_timeout_error(self):
        job = self.fp.submit("sleep", 3000)
        with self.assertRaises(TimeoutError):
            job.wait(timeout=0.3)
        job.cancel()

    def test_pipeline_streams_outputs_and_reduces(self):
        # In input order: an input's outputs before the next input's (among
        # themselves, as their lower tasks finish).
        got = list(self.fp.pipeline(["py.split", "lower"], ["A b C", "d E", "F"],
                                    ordered=True))
        self.assertEqual([set(got[:3]), set(got[3:5]), got[5:]],
                         [{"a", "b", "c"}, {"d", "e"}, ["f"]], got)
        lines = ["The cat sat", "the DOG", "a Cat"]
        counts = self.fp.pipeline(["py.split", "lower"], lines, reduce="count")
        self.assertEqual(counts, {"the": 2, "cat": 2, "sat": 1, "dog": 1, "a": 1})
        # Stages as dicts go in a JSON body.
        got = self.fp.pipeline(["range", {"task": "square", "workers": 1}], [3, 5],
                               reduce="sum")
        self.assertEqual(got, 35)
        # A failed input raises with its stage.
        with self.assertRaises(TaskError) as cm:
            list(self.fp.pipeline(["echo", "py.square"], [1, "x", 3], ordered=True))
        self.assertEqual((cm.exception.index, cm.exception.stage), (1, 1))

    def test_concurrency_caps_a_map_an_apply_and_a_pipeline(self):
        # Two programs serve py.*: without the cap, six items of 80 ms would
        # run two at a time; each call's tasks record what they saw.
        with tempfile.TemporaryDirectory() as tmp:
            def items(name):
                return [{"path": os.path.join(tmp, name), "ms": 80}] * 6

            self.assertEqual(max(self.fp.map("py.overlap", items("map"), concurrency=1)), 1)
            self.assertEqual(max(self.fp.map("py.overlap", items("ctl"))), 2,
                             "the programs did not overlap without a cap")
            self.assertEqual(self.fp.apply("py.overlap", items("apply")[0], concurrency=1), 1)
            got = list(self.fp.pipeline(["py.overlap"], items("pipe"), concurrency=1))
            self.assertEqual(max(got), 1)
            got = list(self.fp.pipeline([{"task": "py.overlap"}], items("pipe2"),
                                        concurrency=1))
            self.assertEqual(max(got), 1)

    def test_server_errors_are_exceptions_named_for_their_codes(self):
        with self.assertRaises(forkpool.UnknownTask) as cm:
            self.fp.apply("nosuch", 1)
        e = cm.exception
        self.assertIsInstance(e, forkpool.BadRequest)
        self.assertEqual((e.status, e.code), (400, "unknown_task"))
        self.assertIn("nosuch", e.message)
        with self.assertRaises(forkpool.NotFound) as cm:
            self.fp.job("0123456789abcdef0123456789abcdef")
        self.assertEqual(cm.exception.code, "no_such_job")
        job = self.fp.submit("square", 2)
        job.wait(10)
        job.cancel()                                  # a finished job: forgotten
        with self.assertRaises(forkpool.Expired) as cm:
            job.refresh()
        self.assertEqual(cm.exception.status, 410)
        with self.assertRaises(forkpool.BadRequest) as cm:
            self.fp.map("square", [1, 2], chunksize=-1)
        self.assertEqual(cm.exception.status, 400)

    def test_jobs_workers_health_tasks(self):
        job = self.fp.submit("square", 3)
        job.wait(10)
        self.assertIn(job.id, [j["id"] for j in self.fp.jobs()])
        self.assertIn(job.id, [j["id"] for j in self.fp.jobs(state="done")])
        self.assertEqual(len(self.fp.jobs(limit=1)), 1)
        pools = {w["pool"] for w in self.fp.workers()}
        self.assertEqual(pools, {None, "py"})
        h = self.fp.health()
        self.assertIn(h["backend"], ("io_uring", "epoll"))
        split = {t["name"]: t for t in self.fp.tasks()}["py.split"]
        self.assertEqual((split["generator"], split["doc"]), (True, "Split a line into its words."))

    def test_idempotency_key_is_sent(self):
        seen = []
        orig = self.fp._connection

        def spy(timeout):
            c = orig(timeout)
            real = c.putheader

            def putheader(name, *values):
                seen.append((name, values))
                return real(name, *values)
            c.putheader = putheader
            return c
        self.fp._connection = spy
        try:
            self.assertEqual(self.fp.apply("square", 5, idempotency_key="k-1"), 25)
        finally:
            del self.fp._connection
        self.assertIn(("Idempotency-Key", ("k-1",)), seen)


class LimitsTokenUnixTest(DaemonTestCase):
    """A daemon with a token, a unix socket, a small queue and results memory."""

    daemon_kwargs = {"workers": 1}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fp-python-")
        cls.sock = os.path.join(cls.tmp, "fp.sock")
        cls.token_file = os.path.join(cls.tmp, "token")
        with open(cls.token_file, "w") as f:
            f.write("s3cret\n")
        os.chmod(cls.token_file, 0o600)
        cls.daemon_args = ("--listen", "unix:" + cls.sock, "--token-file", cls.token_file,
                           "--max-queue", "20", "--max-results-memory", "64k")
        try:
            super().setUpClass()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_token_and_unix_socket(self):
        with self.assertRaises(forkpool.Unauthorized) as cm:
            client_of(self.daemon).apply("square", 2)
        self.assertEqual((cm.exception.status, cm.exception.code), (401, "unauthorized"))
        fp = Client("unix:" + self.sock, token_file=self.token_file, timeout=30)
        self.assertEqual(fp.apply("square", 6), 36)
        self.assertEqual(list(fp.map("square", [1, 2, 3])), [1, 4, 9])
        os.environ["FORKPOOL_URL"] = "unix:" + self.sock
        try:
            self.assertEqual(Client(token="s3cret").apply("square", 4), 16)
        finally:
            del os.environ["FORKPOOL_URL"]

    def test_queue_full_and_insufficient_storage(self):
        fp = client_of(self.daemon, token="s3cret", timeout=30)
        with self.assertRaises(forkpool.Busy) as cm:
            fp.map_async("square", range(50))
        self.assertEqual((cm.exception.status, cm.exception.code), (429, "queue_full"))
        with self.assertRaises(forkpool.InsufficientStorage) as cm:
            fp.map_async("echo", ["x" * 8000] * 15)
        self.assertEqual(cm.exception.status, 507)


if __name__ == "__main__":
    harness.main()
