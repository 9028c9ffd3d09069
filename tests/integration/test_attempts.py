#!/usr/bin/env python3
"""forkpoold's retries, attempts, job states and log lines (issue 13, part "attempts").

Run by meson once per backend:
    test_attempts.py --forkpoold build/server/forkpoold --loop uring|epoll \\
        --module-dir build/tests/modules [unittest args]

The module dir holds libfp-attempts.so: attempts.starts counts its own starts
in a file, so a test knows how often an item really ran.
"""

import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, error_of, wait_until  # noqa: E402

MODULE_DIR = os.environ.get("FP_TEST_MODULE_DIR", "")
NDJSON = {"Content-Type": "application/x-ndjson"}

# The kill storm: a SIGKILL to a random busy worker every 100 ms, during a map
# of STORM_ITEMS sleeps of STORM_MS each, with retries 3, in chunks long enough
# (2 s) that every worker is killed several times in each: the items behind
# the running one were once charged an attempt at each kill, and failed.
STORM_ITEMS = 4000
STORM_MS = 2
STORM_CHUNK = 1000
STORM_KILL_S = 0.1


class AttemptsTest(DaemonTestCase):
    daemon_kwargs = {"workers": 4, "task_timeout": 20000}

    @classmethod
    def setUpClass(cls):
        cls.daemon_args = ("--module", os.path.join(MODULE_DIR, "libfp-attempts.so"))
        cls.tmp = tempfile.mkdtemp(prefix="fp-attempts.")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def starts_args(self, name, how, n):
        """attempts.starts' args: fail by `how` for the first n starts."""
        return "%s %s %d" % (os.path.join(self.tmp, name), how, n)

    def starts_of(self, name):
        try:
            return os.path.getsize(os.path.join(self.tmp, name))
        except FileNotFoundError:
            return 0

    def doc(self, job_id):
        r = self.daemon.get("/v1/jobs/" + job_id)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def log_lines_with(self, text):
        with self.daemon._lines_cond:
            return [line for line in self.daemon.lines if text in line]

    # --- retries and attempts ------------------------------------------------

    def test_kill_storm_loses_and_fails_nothing(self):
        """SIGKILL a random busy worker every 100 ms during a map with retries 3:
        every item ends once and well, none started more than 4 times."""
        items = [STORM_MS] * STORM_ITEMS
        doc = self.submit("/v1/map", {"task": "sleep", "items": items, "retries": 3,
                                      "chunksize": STORM_CHUNK})
        stop = threading.Event()
        kills = []

        def storm():
            while not stop.wait(STORM_KILL_S):
                try:
                    busy = [w["pid"] for w in self.daemon.workers()
                            if w["state"] == "busy" and w["pid"]]
                except (OSError, AssertionError):
                    continue
                if busy:
                    pid = random.choice(busy)
                    try:
                        os.kill(pid, signal.SIGKILL)
                        kills.append(pid)
                    except ProcessLookupError:
                        pass

        t = threading.Thread(target=storm, daemon=True)
        t.start()
        try:
            done = self.daemon.wait_job(doc["id"], timeout=120)
        finally:
            stop.set()
            t.join(10)
        full = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"]).json()
        lost = STORM_ITEMS - len(full["results"])
        failed = [x for x in full["results"] if "error" in x]
        print("kill storm: %d items, %d kills, %d lost, %d failed, most attempts %d" % (
            STORM_ITEMS, len(kills), lost, len(failed),
            max(x.get("attempts", 0) for x in full["results"])), file=sys.stderr)
        self.assertGreaterEqual(len(kills), 10, "the storm must have hit the map")
        self.assertEqual(done["state"], "done", failed[:3])
        self.assertEqual((done["total"], done["done"], done["failed"]), (STORM_ITEMS,) * 2 + (0,))
        self.assertEqual(lost, 0)
        self.assertEqual(failed, [])
        for x in full["results"]:
            self.assertEqual(x["value"], STORM_MS, x)
            self.assertLessEqual(x["attempts"], 4, x)
            self.assertGreaterEqual(x["attempts"], 1, x)
        self.daemon.wait_able(4)

    def test_attempts_match_the_message_and_the_runs(self):
        name = "crash3"
        doc = self.apply("attempts.starts", self.starts_args(name, "crash", 9), retries=2)
        self.assertEqual(doc["state"], "failed", doc)
        self.assertEqual(doc["error"]["type"], "crash", doc)
        self.assertIn("attempt 3 of 3", doc["error"]["message"])
        self.assertEqual(doc["attempts"], 3, doc)
        self.assertEqual(self.starts_of(name), 3)
        full = self.daemon.get("/v1/jobs/%s?results=1" % doc["id"]).json()
        self.assertEqual(full["results"][0]["attempts"], 3, full)

    def test_retry_on_chooses_what_is_retried(self):
        # A task's own error: not retried by default, and the message says why.
        doc = self.apply("attempts.starts", self.starts_args("te0", "fail", 2), retries=3)
        self.assertEqual(doc["error"]["type"], "task_error", doc)
        self.assertIn("failed at start 1", doc["error"]["message"])
        self.assertIn("retry_on has no task_error", doc["error"]["message"])
        self.assertEqual((doc["attempts"], self.starts_of("te0")), (1, 1))
        # Retried when asked: the item runs again from its arguments.
        doc = self.apply("attempts.starts", self.starts_args("te1", "fail", 2), retries=3,
                         retry_on=["task_error"])
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual((doc["result"], doc["attempts"], self.starts_of("te1")), (3, 3, 3))
        # Timeouts are retried by default, and not when retry_on leaves them out.
        doc = self.apply("attempts.starts", self.starts_args("to0", "hang", 1), retries=1,
                         timeout_ms=300)
        self.assertEqual((doc["state"], doc["result"], doc["attempts"]), ("done", 2, 2), doc)
        doc = self.apply("attempts.starts", self.starts_args("to1", "hang", 1), retries=1,
                         timeout_ms=300, retry_on=["crash", "task_error"])
        self.assertEqual(doc["error"]["type"], "timeout", doc)
        self.assertEqual((doc["attempts"], self.starts_of("to1")), (1, 1))
        # An NDJSON map says it in the query.
        r = self.daemon.post("/v1/map?task=attempts.starts&retries=1&retry_on=task_error&wait=20",
                             '"%s"\n"%s"\n' % (self.starts_args("nd0", "fail", 1),
                                               self.starts_args("nd1", "fail", 0)),
                             headers=NDJSON)
        self.assertEqual(r.status, 200, r)
        full = self.daemon.wait_job(r.json()["id"], results=True)
        self.assertEqual(full["state"], "done", full)
        self.assertEqual(full["results"], [{"value": 2, "attempts": 2},
                                           {"value": 1, "attempts": 1}])
        # A pipeline: for every stage, or a stage of its own.
        for body in ({"stages": ["attempts.starts"], "retries": 1, "retry_on": ["task_error"]},
                     {"stages": [{"task": "attempts.starts", "retries": 1,
                                  "retry_on": ["task_error"]}]}):
            name = "pl%d" % len(body)
            body["items"] = [self.starts_args(name, "fail", 1)]
            doc = self.submit("/v1/pipelines?wait=20&results=1", body, status=200)
            self.assertEqual(doc["state"], "done", doc)
            self.assertEqual(doc["results"], [{"index": 0, "value": 2, "attempts": 2}])

    def test_bad_retry_on_is_refused_naming_the_known_ones(self):
        for bad in (["crash", "nope"], [], "crash", [1]):
            r = self.daemon.post("/v1/apply", {"task": "square", "args": 2, "retry_on": bad})
            msg = error_of(self, r, 400, "bad_request")
            self.assertIn("retry_on", msg)
            self.assertIn("crash, timeout, task_error", msg)
        r = self.daemon.post("/v1/map?task=square&retry_on=crash,oops", "1\n", headers=NDJSON)
        self.assertIn("oops", error_of(self, r, 400, "bad_request"))
        r = self.daemon.post("/v1/pipelines", {"stages": [{"task": "square", "retry_on": ["x"]}],
                                               "items": [1]})
        self.assertIn("stage 0", error_of(self, r, 400, "bad_request"))

    # --- states that tell the truth ------------------------------------------

    def assert_running_then_done(self, job_id, kind):
        running = wait_until(lambda: (lambda d: d["state"] == "running" and d)(self.doc(job_id)),
                             10, what="the %s to be running" % kind)
        self.assertEqual(running["done"] + running["failed"], 0, running)
        self.assertIsNotNone(running["started_at"], running)
        self.assertLessEqual(running["created_at"], running["started_at"])
        listed = self.daemon.get("/v1/jobs?state=running&limit=1000").json()["jobs"]
        self.assertIn(job_id, [j["id"] for j in listed])
        done = self.daemon.wait_job(job_id)
        self.assertEqual(done["state"], "done", done)
        self.assertEqual(done["started_at"], running["started_at"])
        self.assertLessEqual(done["started_at"], done["finished_at"])

    def test_a_job_is_running_from_its_first_hand_off(self):
        # Queued until a worker has it: started_at null.
        queued = self.submit("/v1/apply", {"task": "square", "args": 3})
        self.assertIsNone(queued["started_at"], queued)
        doc = self.submit("/v1/apply", {"task": "sleep", "args": 3000})
        self.assert_running_then_done(doc["id"], "apply")
        doc = self.submit("/v1/map", {"task": "sleep", "items": [2000, 2000], "chunksize": 1})
        self.assert_running_then_done(doc["id"], "map")
        doc = self.submit("/v1/pipelines", {"stages": ["sleep"], "items": [2000]})
        self.assert_running_then_done(doc["id"], "pipeline")

    # --- log lines ------------------------------------------------------------

    def test_grep_by_job_id_finds_its_whole_story(self):
        doc = self.apply("crash", None)
        job = doc["id"]
        self.daemon.get("/v1/jobs/" + job)
        self.daemon.wait_line(r"GET /v1/jobs/%s 200" % job, 5)
        story = self.log_lines_with(job)
        self.assertTrue(any("POST /v1/apply?wait=" in x and "job=" + job in x for x in story),
                        story)
        self.assertTrue(any("killed by SIGSEGV while running task crash (item 0 of job %s" % job
                            in x for x in story), story)
        # A timeout names the item that overran.
        doc = self.submit("/v1/map?wait=20", {"task": "sleep", "items": [0, 5000],
                                              "timeout_ms": 300, "chunksize": 2}, status=200)
        line = self.daemon.wait_line(r"ran past its 300 ms timeout; stopping it "
                                     r"\(item 1 of job %s\)" % doc["id"], 5)
        self.assertIn("task sleep", line)


if __name__ == "__main__":
    # --module-dir DIR: where libfp-attempts.so is (meson passes it).
    if "--module-dir" in sys.argv:
        i = sys.argv.index("--module-dir")
        MODULE_DIR = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    harness.main()
