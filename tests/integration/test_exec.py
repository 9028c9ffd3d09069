#!/usr/bin/env python3
"""forkpoold with exec pools (issue 7): Python and shell workers over HTTP.

Run by meson once per backend:
    test_exec.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, error_of, process_gone, wait_until  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PYWORKER = os.path.join(ROOT, "tests", "exec", "pyworker.py")
SHWORKER = os.path.join(ROOT, "examples", "exec", "upper.sh")


class ExecApiTest(DaemonTestCase):
    daemon_args = ("--exec", "py=python3 %s" % PYWORKER,
                   "--exec-shell", "sh=exec '%s'" % SHWORKER,
                   "--exec-workers", "2", "--max-tasks-per-child", "5")
    daemon_kwargs = {"workers": 1}

    def test_apply_map_and_generator(self):
        self.assertEqual(self.apply("py.square", 12)["result"], 144)
        self.assertEqual(self.apply("py.count", 3)["result"], [0, 1, 2])
        self.assertEqual(self.apply("sh.upper", "curl me")["result"], "CURL ME")
        r = self.submit("/v1/map?wait=20", {"task": "py.square", "items": list(range(40))},
                        status=200)
        job = self.daemon.wait_job(r["id"], results=True)
        self.assertEqual(job["state"], "done", job)
        got = self.daemon.get("/v1/jobs/%s/results?order=input" % job["id"])
        values = [x["value"] for x in got.ndjson()]
        self.assertEqual(values, [i * i for i in range(40)])

    def test_task_errors_and_crashes_say_what_happened(self):
        job = self.apply("py.fail", "no good")
        self.assertEqual(job["state"], "failed", job)
        self.assertEqual(job["error"]["type"], "task_error")
        self.assertEqual(job["error"]["message"], "ValueError: no good")
        job = self.apply("py.crash", None)
        self.assertEqual(job["error"]["type"], "crash", job)
        self.assertIn("killed by SIGSEGV", job["error"]["message"])
        job = self.apply("py.garbage", None)
        self.assertEqual(job["error"]["type"], "bad_output", job)
        self.assertIn("not JSON: 'hello wor", job["error"]["message"])
        job = self.apply("py.hang", None, timeout_ms=300)
        self.assertEqual(job["error"]["type"], "timeout", job)
        self.assertEqual(self.apply("py.square", 3)["result"], 9)

    def test_tasks_and_workers_name_their_pool(self):
        self.apply("py.square", 1)
        self.apply("sh.upper", "x")
        tasks = {t["name"]: t["module"] for t in self.daemon.get("/v1/tasks").json()["tasks"]}
        self.assertEqual(tasks.get("py.square"), "py")
        self.assertEqual(tasks.get("sh.upper"), "sh")
        self.assertEqual(tasks.get("square"), "demo")
        # Slots, not processes: a recycling pool may hold a standby successor per slot.
        def pools():
            slots = {(str(w["pool"]), w["slot"]) for w in self.daemon.workers()}
            return slots == {("None", 0), ("py", 0), ("py", 1), ("sh", 0), ("sh", 1)}
        wait_until(pools, 15, what="1 C worker slot and 2 of each exec pool")
        r = self.daemon.post("/v1/apply", {"task": "py.nope", "args": 1})
        self.assertIn("py.square", error_of(self, r, 400, "unknown_task"))

    def test_exec_tasks_are_refused_as_pipeline_stages(self):
        self.apply("py.square", 1)
        for body in ({"stages": ["square", "py.square"], "items": [1, 2]},
                     {"stages": ["square"], "reduce": {"task": "py.square"}, "items": [1]}):
            r = self.daemon.post("/v1/pipelines", body)
            self.assertIn("cannot be pipeline stages", error_of(self, r, 400, "unsupported"))

    def test_recycles_and_reload_start_new_programs(self):
        pids = [self.apply("py.pid", None)["result"] for _ in range(12)]
        self.assertGreater(len(set(pids)), 2, pids)
        old = set(self.daemon.worker_pids(lambda w: w["pool"] == "py"))
        self.daemon.kill(signal.SIGHUP)
        def replaced():
            py = [w for w in self.daemon.workers() if w["pool"] == "py"]
            return not old & {w["pid"] for w in py} and {w["slot"] for w in py} == {0, 1}
        wait_until(replaced, 15, what="the py programs replaced")
        for pid in old:
            wait_until(lambda: process_gone(pid), 10, what="old program %d gone" % pid)
        self.assertEqual(self.apply("py.square", 4)["result"], 16)


if __name__ == "__main__":
    harness.main()
