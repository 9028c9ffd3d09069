#!/usr/bin/env python3
"""Shared values from tasks (issue 18): fp_kv_* from C tasks in the workers.

The demo tasks `incr` and `get` reach the master's store in one round trip
each; the answer is picked out of a socket that may already carry the
worker's next chunk, so none of the items it holds is lost or reordered.

Run by meson once per backend:
    test_task_kv.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, wait_until  # noqa: E402


class TaskKvTest(DaemonTestCase):
    daemon_kwargs = {"workers": 2}

    def map_done(self, task, items, wait=120):
        r = self.daemon.post("/v1/map?wait=%d" % wait, {"task": task, "items": items},
                             timeout=wait + 30)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["state"], "done", doc)
        return self.results(doc["id"])

    def results(self, job_id):
        g = self.daemon.get("/v1/jobs/%s?results=1" % job_id)
        self.assertEqual(g.status, 200, g)
        return [r["value"] for r in g.json()["results"]]

    def test_incr_and_get_are_listed(self):
        names = {t["name"] for t in self.daemon.get("/v1/tasks").json()["tasks"]}
        self.assertLessEqual({"incr", "get"}, names)

    def test_incr_returns_the_new_value_and_http_sees_it(self):
        doc = self.apply("incr", "t1")
        self.assertEqual(doc["result"], 1, doc)
        doc = self.apply("incr", {"key": "t1", "by": 41})
        self.assertEqual(doc["result"], 42, doc)
        self.assertEqual(self.daemon.get("/v1/kv/t1").json(), 42)
        r = self.daemon.request("PUT", "/v1/kv/doc", body='{"a": [1, 2]}',
                                headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.apply("get", "doc")["result"], {"a": [1, 2]})
        self.assertIsNone(self.apply("get", "nothing-here")["result"])

    def test_errors_are_named_and_the_worker_goes_on(self):
        self.daemon.request("PUT", "/v1/kv/word", body='"text"',
                            headers={"Content-Type": "application/json"})
        doc = self.submit("/v1/apply?wait=20", {"task": "incr", "args": "word"}, status=200)
        self.assertEqual(doc["state"], "failed", doc)
        self.assertIn("integer", doc["error"]["message"], doc)
        doc = self.submit("/v1/apply?wait=20", {"task": "incr", "args": "bad key!"}, status=200)
        self.assertEqual(doc["state"], "failed", doc)
        self.assertIn("A-Z a-z 0-9", doc["error"]["message"], doc)
        self.assertEqual(self.apply("incr", "after-errors")["result"], 1)

    def test_10000_increments_over_2_workers_lose_none(self):
        values = self.map_done("incr", ["c2"] * 10000)
        self.assertEqual(self.daemon.get("/v1/kv/c2").json(), 10000)
        # Each item saw a value of its own: 1..10000 once each.
        self.assertEqual(sorted(values), list(range(1, 10001)))

    def test_calls_between_prefetched_chunks_keep_every_item(self):
        # Two jobs at once: a worker's socket holds square chunks sent
        # ahead while an incr waits for its answer, and the reverse. Every
        # item of both answers, with its own value.
        squares = self.submit("/v1/map", {"task": "square", "items": list(range(6000)),
                                          "chunksize": 7})
        incrs = self.submit("/v1/map", {"task": "incr", "items": [{"key": "mix", "by": 2}] * 3000,
                                        "chunksize": 5})
        for job in (squares, incrs):
            self.assertEqual(self.daemon.wait_job(job["id"], timeout=120)["state"], "done")
        self.assertEqual(self.results(squares["id"]), [i * i for i in range(6000)])
        self.assertEqual(sorted(self.results(incrs["id"])), list(range(2, 6001, 2)))
        self.assertEqual(self.daemon.get("/v1/kv/mix").json(), 6000)


class TaskKvFourWorkersTest(DaemonTestCase):
    daemon_kwargs = {"workers": 4}

    def test_10000_increments_over_4_workers_lose_none(self):
        r = self.daemon.post("/v1/map?wait=120", {"task": "incr", "items": ["c4"] * 10000},
                             timeout=150)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "done", r.json())
        self.assertEqual(self.daemon.get("/v1/kv/c4").json(), 10000)
        g = self.daemon.get("/v1/jobs/%s?results=1" % r.json()["id"])
        self.assertEqual(sorted(x["value"] for x in g.json()["results"]), list(range(1, 10001)))


class CancelTest(DaemonTestCase):
    """fp_cancelled(): the demo's watch task polls it and records what it saw."""

    daemon_kwargs = {"workers": 1, "task_timeout": 60000}

    def kv(self, key):
        r = self.daemon.get("/v1/kv/" + key)
        return r.json() if r.status == 200 else None

    def test_a_cancelled_jobs_task_sees_fp_cancelled_before_its_kill(self):
        pid = self.daemon.worker_pids()[0]
        doc = self.submit("/v1/map", {"task": "watch", "items": [{"ms": 60000, "key": "w1"}]})
        wait_until(lambda: self.kv("w1") == "running", 20, what="watch running")
        r = self.daemon.delete("/v1/jobs/%s" % doc["id"])
        self.assertIn(r.status, (200, 202, 204), r)
        # The task saw it and wrote so through the store: only a task alive
        # after the cancel can, so it saw it before any kill.
        wait_until(lambda: self.kv("w1") == "cancelled", 15, what="watch saw fp_cancelled")
        self.assertEqual(self.daemon.wait_job(doc["id"])["state"], "cancelled")
        # Its worker left (by itself, with status 0) and was replaced.
        wait_until(lambda: pid not in self.daemon.worker_pids(), 10, what="worker replaced")
        self.assertEqual(self.apply("square", 7)["result"], 49)

    def test_a_cancelled_pipelines_stage_task_sees_fp_cancelled_before_its_kill(self):
        # A pipeline's cancel gives its running tasks the same warning and
        # grace as a job's (it used to SIGKILL them at once).
        pid = self.daemon.worker_pids()[0]
        doc = self.submit("/v1/pipelines", {"stages": ["watch"],
                                            "items": [{"ms": 60000, "key": "wp"}]})
        wait_until(lambda: self.kv("wp") == "running", 20, what="watch running")
        r = self.daemon.delete("/v1/jobs/%s" % doc["id"])
        self.assertIn(r.status, (200, 202, 204), r)
        wait_until(lambda: self.kv("wp") == "cancelled", 15, what="watch saw fp_cancelled")
        self.assertEqual(self.daemon.wait_job(doc["id"])["state"], "cancelled")
        wait_until(lambda: pid not in self.daemon.worker_pids(), 10, what="worker replaced")
        self.assertEqual(self.apply("square", 7)["result"], 49)

    def test_a_timed_out_task_sees_fp_cancelled_and_its_item_is_a_timeout(self):
        doc = self.submit("/v1/apply?wait=30", {"task": "watch", "args": {"ms": 60000, "key": "w2"},
                                                "timeout_ms": 300}, status=200)
        self.assertEqual(doc["state"], "failed", doc)
        self.assertEqual(doc["error"]["type"], "timeout", doc)
        self.assertIn("300 ms timeout", doc["error"]["message"], doc)
        self.assertEqual(self.kv("w2"), "cancelled")

    def test_a_task_that_finishes_is_not_cancelled(self):
        self.assertEqual(self.apply("watch", {"ms": 50, "key": "w3"})["result"], 50)
        self.assertEqual(self.kv("w3"), "running")


class LockTest(DaemonTestCase):
    """fp_lock()/fp_unlock() through the demo's lock task."""

    daemon_kwargs = {"workers": 2, "task_timeout": 120000}

    def holder(self, key):
        r = self.daemon.get("/v1/kv/" + key)
        return r.json() if r.status == 200 else None

    def hold(self, name, key):
        """A job whose task takes `name` and holds it; returns (job, holder pid)."""
        doc = self.submit("/v1/map", {"task": "lock", "items": [
            {"name": name, "hold_ms": 100000, "key": key}]})
        pid = wait_until(lambda: self.holder(key), 20, what="lock %s taken" % name)
        return doc, pid

    def test_a_lock_held_by_a_killed_worker_is_free_at_once(self):
        doc, pid = self.hold("L", "holder-L")
        os.kill(pid, signal.SIGKILL)
        # Its timeout is a minute; the apply waits 20 s at most: only a lock
        # freed when its holder died lets it finish.
        r = self.daemon.post("/v1/apply?wait=20", {"task": "lock",
                                                   "args": {"name": "L", "timeout_ms": 60000}},
                             timeout=40)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "done", r.json())
        self.assertNotEqual(r.json()["result"], pid)
        self.assertEqual(self.daemon.wait_job(doc["id"])["state"], "failed")

    def test_a_locks_timeout_is_named_in_the_error(self):
        doc, pid = self.hold("T", "holder-T")
        r = self.submit("/v1/apply?wait=20", {"task": "lock",
                                              "args": {"name": "T", "timeout_ms": 300}}, status=200)
        self.assertEqual(r["state"], "failed", r)
        self.assertIn("300 ms", r["error"]["message"], r)
        self.assertIn("lock T", r["error"]["message"], r)
        # The holder sees the cancel, gives the lock back and goes.
        self.assertIn(self.daemon.delete("/v1/jobs/%s" % doc["id"]).status, (200, 202, 204))
        self.assertEqual(self.daemon.wait_job(doc["id"])["state"], "cancelled")
        r = self.submit("/v1/apply?wait=20", {"task": "lock",
                                              "args": {"name": "T", "timeout_ms": 20000}}, status=200)
        self.assertEqual(r["state"], "done", r)

    def test_a_lock_left_held_is_given_back_when_its_task_ends(self):
        self.assertEqual(self.apply("lock", {"name": "K", "keep": True})["state"], "done")
        # Not waiting at all: it must be free now, whichever worker asks.
        for _ in range(4):
            doc = self.apply("lock", {"name": "K", "timeout_ms": 0, "keep": True})
            self.assertEqual(doc["state"], "done", doc)


COORDWORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "exec",
                           "coordworker.py")


class ExecCallsTest(DaemonTestCase):
    """The same round trips from an exec program through forkpool.worker."""

    daemon_args = ("--exec", "py=python3 %s" % COORDWORKER, "--exec-workers", "2")
    daemon_kwargs = {"workers": 1, "task_timeout": 120000}

    def kv(self, key):
        r = self.daemon.get("/v1/kv/" + key)
        return r.json() if r.status == 200 else None

    def test_increments_from_python_workers_lose_none(self):
        r = self.daemon.post("/v1/map?wait=120", {"task": "py.incr", "items": ["pc"] * 2000},
                             timeout=150)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "done", r.json())
        self.assertEqual(self.kv("pc"), 2000)
        # C tasks and Python tasks share the one store.
        self.assertEqual(self.apply("incr", "pc")["result"], 2001)
        self.assertEqual(self.apply("py.get", "pc")["result"], 2001)
        self.assertEqual(self.apply("py.get", "no-such")["result"], "absent")

    def test_set_get_cas_del_round_trip(self):
        got = self.apply("py.roundtrip", "rt")["result"]
        self.assertEqual(got["got"], {"n": 1})
        self.assertEqual(got["lost"], [False, {"n": 1}])
        self.assertEqual(got["won"], [True, {"n": 2}])
        self.assertEqual(got["fresh"], [True, 5])
        self.assertEqual(got["bad"][0], "EDOM")
        self.assertIn("integer", got["bad"][1])
        self.assertEqual((got["deleted"], got["again"]), (True, False))

    def test_a_bad_call_line_is_answered_and_the_program_goes_on(self):
        bad, good = self.apply("py.raw", "raw")["result"]
        self.assertFalse(bad["ok"])
        self.assertIn("unknown call 'frobnicate'", bad["error"])
        self.assertEqual(good, {"id": good["id"], "ok": True, "value": 5})

    def test_locks_from_python_are_freed_with_their_killed_holder_and_time_out_named(self):
        doc = self.submit("/v1/map", {"task": "py.locker", "items": [
            {"name": "PL", "hold_ms": 100000, "key": "py-holder"}]})
        pid = wait_until(lambda: self.kv("py-holder"), 20, what="lock taken")
        r = self.submit("/v1/apply?wait=20", {"task": "py.locker",
                                              "args": {"name": "PL", "timeout_ms": 200}}, status=200)
        self.assertEqual(r["state"], "failed", r)
        self.assertIn("200 ms", r["error"]["message"], r)
        self.assertIn("ETIMEDOUT", r["error"]["message"], r)
        # The C demo task waits for the same lock, pool-wide.
        os.kill(pid, signal.SIGKILL)
        r = self.daemon.post("/v1/apply?wait=20", {"task": "lock",
                                                   "args": {"name": "PL", "timeout_ms": 60000}},
                             timeout=40)
        self.assertEqual(r.json()["state"], "done", r.json())
        self.daemon.wait_job(doc["id"])

    def test_a_cancelled_python_task_sees_cancelled_before_its_kill(self):
        doc = self.submit("/v1/map", {"task": "py.watch", "items": [{"ms": 60000, "key": "pw"}]})
        wait_until(lambda: self.kv("pw") == "running", 20, what="watch running")
        self.assertIn(self.daemon.delete("/v1/jobs/%s" % doc["id"]).status, (200, 202, 204))
        wait_until(lambda: self.kv("pw") == "cancelled", 15, what="watch saw cancelled()")
        self.assertEqual(self.daemon.wait_job(doc["id"])["state"], "cancelled")

    def test_a_timed_out_python_task_sees_cancelled_and_its_item_is_a_timeout(self):
        doc = self.submit("/v1/apply?wait=30", {"task": "py.watch", "args": {"ms": 60000, "key": "pt"},
                                                "timeout_ms": 500}, status=200)
        self.assertEqual(doc["state"], "failed", doc)
        self.assertEqual(doc["error"]["type"], "timeout", doc)
        self.assertEqual(self.kv("pt"), "cancelled")


if __name__ == "__main__":
    harness.main()
