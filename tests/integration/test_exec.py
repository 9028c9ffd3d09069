#!/usr/bin/env python3
"""forkpoold with exec pools (issue 7): Python and shell workers over HTTP.

Run by meson once per backend:
    test_exec.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import itertools
import os
import signal
import subprocess
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

    def test_tasks_say_generator_and_doc_for_exec_tasks(self):
        self.apply("py.square", 1)
        self.apply("sh.upper", "x")
        tasks = {t["name"]: t for t in self.daemon.get("/v1/tasks").json()["tasks"]}
        self.assertIs(tasks["py.split"]["generator"], True, tasks["py.split"])
        self.assertEqual(tasks["py.split"]["doc"], "Split a string into its words.")
        self.assertIs(tasks["py.count"]["generator"], True, tasks["py.count"])
        self.assertIs(tasks["py.square"]["generator"], False, tasks["py.square"])
        self.assertIsNone(tasks["py.square"]["doc"])
        # The shell worker announces plain names: no generator, no doc.
        self.assertEqual((tasks["sh.upper"]["generator"], tasks["sh.upper"]["doc"]),
                         (False, None))

    def test_mixed_pipeline_python_generator_c_stage_python_reduce(self):
        self.apply("py.square", 1)
        sentences = ["The cat sat", "the DOG", "", "a Cat and a dog"]
        body = {"stages": [{"task": "py.split"}, {"task": "lower", "buffer": 4}],
                "items": sentences, "reduce": {"task": "py.tally", "batch": 3}}
        job = self.submit("/v1/pipelines?wait=30", body, status=200)
        self.assertEqual(job["state"], "done", job)
        want = {}
        for word in " ".join(sentences).lower().split():
            want[word] = want.get(word, 0) + 1
        self.assertEqual(job["result"], want)
        st = job["stages"]
        self.assertEqual([s["task"] for s in st], ["py.split", "lower", "py.tally"])
        self.assertEqual((st[0]["in"], st[0]["out"]), (4, 10), st)
        self.assertEqual((st[1]["in"], st[1]["out"]), (10, 10), st)
        self.assertGreater(st[2]["in"], 1, st)    # folded in several rounds

    def test_crash_in_exec_stage_fails_only_that_input(self):
        self.apply("py.square", 1)
        body = {"stages": ["echo", "py.crash13", "square"], "items": list(range(30))}
        job = self.submit("/v1/pipelines?wait=30", body, status=200)
        self.assertEqual(job["state"], "failed", job)
        lines = self.daemon.get("/v1/jobs/%s/results" % job["id"]).ndjson()
        errors = [x for x in lines if "error" in x]
        self.assertEqual(len(errors), 1, errors)
        self.assertEqual((errors[0]["index"], errors[0]["stage"]), (13, 1), errors)
        self.assertEqual(errors[0]["error"]["type"], "crash", errors)
        self.assertIn("py.crash13", errors[0]["error"]["message"])
        values = {x["index"]: x["value"] for x in lines if "value" in x}
        self.assertEqual(values, {i: i * i for i in range(30) if i != 13})

    def test_unknown_exec_stage_is_refused_naming_it(self):
        self.apply("py.square", 1)
        r = self.daemon.post("/v1/pipelines", {"stages": ["square", "py.nosuch"], "items": [1]})
        self.assertIn("'py.nosuch' in stage 1", error_of(self, r, 400, "unknown_task"))

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


class ExecNotReadyYetTest(DaemonTestCase):
    # Its program takes a second to start: the request comes before it said
    # which tasks it has.
    daemon_args = ("--exec-shell", "slow=sleep 1; exec python3 '%s'" % PYWORKER,
                   "--exec-workers", "1")
    daemon_kwargs = {"workers": 1}

    def test_pipeline_naming_an_exec_task_before_ready_is_taken(self):
        tasks = [t["name"] for t in self.daemon.get("/v1/tasks").json()["tasks"]]
        self.assertNotIn("slow.square", tasks)      # not said yet
        job = self.submit("/v1/pipelines?wait=30",
                          {"stages": ["square", "slow.square"], "items": [1, 2, 3]},
                          status=200)
        self.assertEqual(job["state"], "done", job)
        lines = self.daemon.get("/v1/jobs/%s/results" % job["id"]).ndjson()
        self.assertEqual(sorted((x["index"], x.get("value", x)) for x in lines),
                         [(0, 1), (1, 16), (2, 81)])
        # Once it said, a task it does not have is refused up front.
        r = self.daemon.post("/v1/pipelines", {"stages": ["slow.nosuch"], "items": [1]})
        self.assertIn("'slow.nosuch' in stage 0", error_of(self, r, 400, "unknown_task"))


class ExecLimitsApiTest(DaemonTestCase):
    """An exec pool with limits of its own, beside C workers with others."""
    daemon_args = ("--exec", "py=python3 %s" % PYWORKER, "--exec-workers", "1",
                   "--max-tasks-per-child", "1000",
                   "--exec-max-tasks-per-child", "py=3", "--exec-task-timeout", "py=400")
    daemon_kwargs = {"workers": 1}
    grandchild = None

    def tearDown(self):
        if self.grandchild:
            try:
                os.kill(self.grandchild, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def test_workers_show_each_pools_limit(self):
        self.apply("py.square", 1)
        limits = {str(w["pool"]): w["tasks_limit"] for w in self.daemon.workers()}
        self.assertEqual(limits, {"None": 1000, "py": 3})

    def test_own_max_tasks_and_timeout(self):
        # Each program answers exactly 3 (the first and last runs may be cut).
        pids = [self.apply("py.pid", None)["result"] for _ in range(7)]
        runs = [len(list(g)) for _, g in itertools.groupby(pids)]
        self.assertGreaterEqual(len(runs), 3, pids)
        self.assertEqual(runs[1:-1], [3] * (len(runs) - 2), pids)
        self.assertLessEqual(max(runs), 3, pids)
        c_pids = {self.apply("pid", None)["result"] for _ in range(5)}
        self.assertEqual(len(c_pids), 1, c_pids)
        job = self.apply("py.hang", None)
        self.assertEqual(job["error"]["type"], "timeout", job)
        self.assertIn("400 ms", job["error"]["message"])
        self.assertEqual(self.apply("sleep", 600)["result"], 600)

    def test_the_programs_children_end_with_it(self):
        self.grandchild = self.apply("py.spawn", None)["result"]
        shim = self.apply("py.ppid", None)["result"]
        self.assertFalse(process_gone(self.grandchild))
        os.kill(shim, signal.SIGKILL)
        wait_until(lambda: process_gone(self.grandchild), 10, what="the program's child gone")
        self.assertEqual(self.apply("py.square", 6)["result"], 36)


class ExecLimitsConfigTest(unittest.TestCase):
    def test_an_unknown_pool_is_refused_by_name(self):
        out = subprocess.run(
            [harness.FORKPOOLD, "--listen", "127.0.0.1:0", "--exec", "py=python3 w.py",
             "--exec-task-timeout", "ocr=60000"],
            capture_output=True, timeout=30, text=True)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn('--exec-task-timeout: no exec pool is named "ocr"', out.stderr)


if __name__ == "__main__":
    harness.main()
