#!/usr/bin/env python3
"""Concurrency limits (issue 18, the semaphore) through forkpoold.

--task-concurrency, --limit with --task-limit, a job's "concurrency" (JSON
apply and map, NDJSON ?concurrency=, pipelines), what /v1/tasks and
/metrics show of them, and the start-up errors that name a bad flag. How
many items ran at once is measured by the tasks themselves
(tests/modules/overlap.c: each result is the most seen running at once so
far), and a job's duration by its own started_at and finished_at.

Run by meson once per backend:
    test_limits.py --forkpoold build/server/forkpoold --loop uring|epoll \
        --module-dir build/tests/modules [unittest args]
"""

import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, error_of, wait_until  # noqa: E402

MODULE_DIR = os.environ.get("FP_TEST_MODULE_DIR", "")
NDJSON = {"Content-Type": "application/x-ndjson"}


def stamp(text):
    """A job's timestamp ("2026-12-07T21:20:32.123Z") in seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LimitsTest(DaemonTestCase):
    daemon_kwargs = {"workers": 4, "task_timeout": 20000}

    @classmethod
    def setUpClass(cls):
        cls.daemon_args = (
            "--module", os.path.join(MODULE_DIR, "libfp-overlap.so"),
            "--task-concurrency", "sleep=1",
            "--limit", "api=2",
            "--task-limit", "overlap.hold=api,overlap.free=api",
        )
        cls.tmp = tempfile.mkdtemp(prefix="fp-limits.")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def overlap_items(self, name, n, ms):
        return ["%s %d" % (os.path.join(self.tmp, name), ms)] * n

    def most_at_once(self, *job_ids):
        """The most items running at once, as the overlap tasks of these jobs saw it."""
        most = 0
        for job_id in job_ids:
            doc = self.daemon.wait_job(job_id, results=True)
            self.assertEqual(doc["state"], "done", doc)
            most = max([most] + [r["value"] for r in doc["results"]])
        return most

    def task_doc(self, name):
        tasks = self.daemon.get("/v1/tasks").json()["tasks"]
        return [t for t in tasks if t["name"] == name][0]

    def test_concurrency_one_runs_ten_sleeps_one_by_one_while_others_pass(self):
        slow = self.submit("/v1/map", {"task": "sleep", "items": [300] * 10, "chunksize": 10})
        # Seen while it runs: one at a time, the rest waiting in the queue.
        def one_running():
            t = self.task_doc("sleep")
            return t["limit"] is not None and t["limit"]["running"] == 1
        wait_until(one_running, 10, what="one sleep running")
        self.assertEqual(self.task_doc("sleep")["limit"], {"name": "sleep", "max": 1,
                                                           "running": 1})
        metrics = self.daemon.get("/metrics").body.decode()
        self.assertIn('forkpool_limit_max{limit="sleep"} 1\n', metrics)
        self.assertIn('forkpool_limit_running{limit="sleep"} 1\n', metrics)
        self.assertRegex(metrics, r'forkpool_limit_waiting\{limit="sleep"\} [1-9]')
        self.assertIsNone(self.task_doc("square")["limit"])
        # Another task's items pass the waiting ones and finish meanwhile.
        quick = self.submit("/v1/map?wait=20", {"task": "square", "items": list(range(20))},
                            status=200)
        self.assertEqual(quick["state"], "done", quick)
        self.assertEqual(self.daemon.job_state(slow["id"]), "running")
        doc = self.daemon.wait_job(slow["id"])
        self.assertEqual(doc["state"], "done", doc)
        # Ten items of 300 ms one at a time: 3 s from the first start to the
        # last end (timestamps are in whole ms, hence the 1 ms).
        took = stamp(doc["finished_at"]) - stamp(doc["started_at"])
        self.assertGreaterEqual(took, 3.0 - 0.001, doc)
        self.assertLess(stamp(quick["finished_at"]), stamp(doc["finished_at"]))

    def test_named_limit_holds_across_the_tasks_under_it(self):
        items = self.overlap_items("api", 6, 100)
        a = self.submit("/v1/map", {"task": "overlap.hold", "items": items})
        b = self.submit("/v1/map", {"task": "overlap.free", "items": items})
        self.assertEqual(self.most_at_once(a["id"], b["id"]), 2)
        self.assertEqual(self.task_doc("overlap.free")["limit"]["name"], "api")
        self.assertEqual(self.task_doc("overlap.hold")["limit"]["max"], 2)

    def test_job_concurrency_caps_that_job(self):
        job = self.submit("/v1/map", {"task": "overlap.other", "concurrency": 2,
                                      "items": self.overlap_items("job", 8, 60)})
        self.assertEqual(self.most_at_once(job["id"]), 2)
        # The task itself is not limited: without the cap its items spread.
        self.assertIsNone(self.task_doc("overlap.other")["limit"])
        job = self.submit("/v1/apply", {"task": "overlap.other", "concurrency": 1,
                                        "args": self.overlap_items("apply", 1, 1)[0]})
        self.assertEqual(self.most_at_once(job["id"]), 1)

    def test_ndjson_and_pipeline_concurrency(self):
        body = "".join('"%s"\n' % a for a in self.overlap_items("nd", 6, 60)).encode()
        r = self.daemon.post("/v1/map?task=overlap.other&concurrency=1", body, headers=NDJSON)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(self.most_at_once(r.json()["id"]), 1)
        job = self.submit("/v1/pipelines", {"stages": ["overlap.other"], "concurrency": 1,
                                            "items": self.overlap_items("pipe", 6, 60)})
        doc = self.daemon.wait_job(job["id"], results=True)
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(max(r["value"] for r in doc["results"]), 1)

    def test_bad_concurrency_is_refused_by_name(self):
        msg = error_of(self, self.daemon.post("/v1/map", {"task": "square", "items": [1],
                                                          "concurrency": -1}),
                       400, "bad_request")
        self.assertIn("concurrency", msg)
        msg = error_of(self, self.daemon.post("/v1/map?task=square&concurrency=x", b"1\n",
                                              headers=NDJSON), 400, "bad_request")
        self.assertIn("concurrency", msg)


def run_forkpoold(args, env=None, timeout=20):
    e = dict(os.environ)
    e.pop("FORKPOOL_LOOP", None)
    e.update(env or {})
    return subprocess.run([harness.FORKPOOLD, "--listen", "127.0.0.1:0", "--loop", harness.LOOP,
                           "--workers", "1"] + args, capture_output=True, env=e,
                          timeout=timeout, preexec_fn=harness._die_with_parent)


class FlagsTest(unittest.TestCase):
    def test_bad_limits_exit_2_naming_the_flag(self):
        cases = [
            (["--limit", "api=0"], "--limit"),
            (["--limit", "api=x"], "--limit"),
            (["--limit", "api"], "--limit"),
            (["--task-concurrency", "sleep=-1"], "--task-concurrency"),
            (["--task-limit", "fetch=nosuch"], "no --limit defines"),
            (["--limit", "api=3", "--task-limit", "fetch=api",
              "--task-concurrency", "fetch=2"], "limited twice"),
            (["--limit", "api=3,db=1", "--task-limit", "fetch=api,fetch=db"], "twice"),
            (["--limit", "sleep=3", "--task-concurrency", "sleep=1"], "--task-concurrency"),
            (["--task-concurrency", "t" * 65 + "=1"], "at most 64"),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                p = run_forkpoold(args)
                self.assertEqual(p.returncode, 2, p)
                err = p.stderr.decode()
                self.assertEqual(err.count("\n"), 1, err)
                self.assertIn(want, err)
                self.assertIn(args[-2], err)
        p = run_forkpoold([], env={"FORKPOOL_TASK_LIMIT": "fetch=nosuch"})
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("FORKPOOL_TASK_LIMIT", p.stderr.decode())

    def test_limits_from_the_environment_and_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, "forkpoold.conf")
            with open(conf, "w") as f:
                f.write("limit = api=2\ntask-limit = square=api\n")
            d = harness.Daemon("--config", conf, workers=1,
                               env={"FORKPOOL_TASK_CONCURRENCY": "sleep=3,echo=1"}).start()
            try:
                tasks = {t["name"]: t["limit"] for t in d.get("/v1/tasks").json()["tasks"]}
                self.assertEqual(tasks["square"], {"name": "api", "max": 2, "running": 0})
                self.assertEqual(tasks["sleep"], {"name": "sleep", "max": 3, "running": 0})
                self.assertEqual(tasks["echo"]["max"], 1)
                self.assertIsNone(tasks["pid"])
            finally:
                self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    # --module-dir DIR: where libfp-overlap.so is (meson passes it).
    if "--module-dir" in sys.argv:
        i = sys.argv.index("--module-dir")
        MODULE_DIR = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    harness.main()
