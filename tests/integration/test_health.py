#!/usr/bin/env python3
"""forkpoold tells the truth about its workers, and Ctrl-C drains (issue 13).

- /v1/health counts only workers that exist: with the zygote stopped, the
  workers asked of it are not able, and health says 503 until they are made.
- An exec pool whose program never starts fails its queued items with
  start_failure (exit status and the program's last stderr lines, a Python
  traceback), refuses new jobs with 503 pool_unavailable, and takes them
  again once its program starts.
- SIGINT to forkpoold's whole process group (a terminal's Ctrl-C) drains:
  the job in flight finishes, forkpoold exits 0.
- A clean run and shutdown logs no warning and names the event loop once.

Run by meson once per backend:
    test_health.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import os
import signal
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, children_named, error_of, wait_until  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
STARTFAIL = os.path.join(ROOT, "tests", "exec", "startfail.py")


class HealthTest(unittest.TestCase):
    """Each test has a daemon of its own: they stop, fail and signal it."""

    def start(self, *args, **kw):
        d = Daemon(*args, **kw).start()
        self.addCleanup(d.stop, signal.SIGKILL)
        return d

    def health(self, d):
        r = d.get("/v1/health", timeout=5)
        return r.status, r.json()

    def test_workers_a_stopped_zygote_has_not_made_are_not_able(self):
        d = self.start(workers=2)
        d.wait_able(2)
        # A worker the zygote has just cloned (CLONE_PARENT: the master's child)
        # bears the zygote's name until it renames itself, a window that a slow
        # (sanitized) build widens: wait for the one zygote.
        zygotes = wait_until(
            lambda: (lambda z: z if len(z) == 1 else None)(children_named(d.pid, "fp-zygote")),
            5, what="one fp-zygote child")
        pids = d.worker_pids()
        os.kill(zygotes[0], signal.SIGSTOP)
        try:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            # Their replacements are asked of the stopped zygote: no process yet.
            wait_until(lambda: [w["pid"] for w in d.workers()] == [None, None], 4,
                       what="two workers the zygote has not made")
            status, doc = self.health(d)
        finally:
            os.kill(zygotes[0], signal.SIGCONT)
        self.assertEqual((status, doc["status"], doc["able"]), (503, "unhealthy", 0), doc)
        d.wait_able(2)
        self.assertEqual(self.health(d)[0], 200)
        self.assertEqual(d.post("/v1/apply?wait=10", {"task": "square", "args": 4}).json()["result"],
                         16)

    def test_exec_program_that_cannot_start_fails_its_jobs_until_it_can(self):
        marker = tempfile.NamedTemporaryFile(prefix="fp-startfail-", delete=False)
        marker.close()
        self.addCleanup(lambda: os.path.exists(marker.name) and os.unlink(marker.name))
        # Each failed start takes 0.3 s: the job below is queued before the third.
        d = self.start("--exec", "py=python3 %s %s 0.3" % (STARTFAIL, marker.name),
                       "--exec-workers", "1", workers=1)
        job = d.post("/v1/apply?wait=20", {"task": "py.echo", "args": 1}, timeout=30).json()
        self.assertEqual(job["state"], "failed", job)
        err = job["error"]
        self.assertEqual(err["type"], "start_failure", job)
        self.assertIn("exec pool py: 3 starts in a row failed, the last: worker program (pid ",
                      err["message"])
        self.assertIn(") exited with status 1 before saying ready; its last output:\n"
                      "Traceback (most recent call last):\n", err["message"])
        self.assertTrue(err["message"].endswith(
            "\nModuleNotFoundError: No module named 'forkpool_no_such_module'"), err)

        r = d.post("/v1/apply", {"task": "py.echo", "args": 2})
        msg = error_of(self, r, 503, "pool_unavailable")
        self.assertIn("'py.echo'", msg)
        self.assertIn("ModuleNotFoundError", msg)
        r = d.post("/v1/map", {"task": "py.echo", "items": [1, 2]})
        error_of(self, r, 503, "pool_unavailable")
        r = d.post("/v1/pipelines", {"stages": ["square", "py.echo"], "items": [1]})
        self.assertIn("'py.echo'", error_of(self, r, 503, "pool_unavailable"))
        self.assertEqual(self.health(d)[0], 503)
        # The C workers are not its: they go on.
        self.assertEqual(d.post("/v1/apply?wait=10", {"task": "square", "args": 5}).json()["result"],
                         25)
        # The traceback is in the log at warn, not only each line at info.
        warn = d.wait_line(r" warn .*failed to start: worker program .*ModuleNotFoundError", 5)
        self.assertIn("its last output:\\nTraceback (most recent call last):", warn)

        os.unlink(marker.name)

        def taken():
            r = d.post("/v1/apply?wait=10", {"task": "py.echo", "args": 3}, timeout=20)
            return r.status == 200 and r.json().get("result") == 3
        wait_until(taken, 30, interval=0.1, what="py.echo taken again once its program starts")
        wait_until(lambda: self.health(d)[0] == 200, 10, what="health 200 again")
        d.wait_line(r"info .*started after \d+ failed starts: calls are taken again", 5)

    def test_sigint_to_the_process_group_drains(self):
        d = self.start(workers=2)
        d.wait_able(2)
        job = d.post("/v1/apply", {"task": "sleep", "args": 1500}).json()
        answer = {}

        def wait_job():
            answer["r"] = d.get("/v1/jobs/%s?wait=30" % job["id"], timeout=40)
        waiter = threading.Thread(target=wait_job)
        waiter.start()
        wait_until(lambda: any(w["task"] == "sleep" for w in d.workers()), 10,
                   what="the sleep task running")
        # What a terminal's Ctrl-C does: SIGINT to the whole foreground group.
        os.killpg(d.pid, signal.SIGINT)
        waiter.join(40)
        r = answer.get("r")
        self.assertIsNotNone(r, "the long-poll did not come back")
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json()["state"], r.json().get("result")), ("done", 1500), r.json())
        self.assertEqual(d.wait_exit(20), 0, d.log_text())
        self.assertIn("SIGINT: draining", d.log_text())
        self.assertNotIn("killed by SIGINT", d.log_text())

    def test_clean_run_warns_of_nothing_and_names_the_loop_once(self):
        # A connection cap any open-file limit holds: raising the limit for
        # 16,384 may be beyond a test machine's hard limit, a warning of its own.
        d = self.start("--log-level", "debug", "--max-connections", "256", workers=2)
        self.assertEqual(d.post("/v1/apply?wait=10", {"task": "square", "args": 3}).json()["result"],
                         9)
        self.assertEqual(d.stop(), 0)
        lines = d.log_text().splitlines()
        # Without --data-dir the one warning is that jobs live in memory only (issue 14).
        memory_only = ("warn jobs and shared values are kept in memory only: --data-dir DIR keeps"
                       " them across restarts")
        self.assertEqual(len([l for l in lines if l.endswith(memory_only)]), 1, "\n".join(lines))
        bad = [l for l in lines if (" warn " in l or " error " in l) and
               not l.endswith(memory_only)]
        self.assertEqual(bad, [], "\n".join(lines))
        loop = [l for l in lines if "event loop" in l]
        want = harness.BACKEND_NAMES.get(harness.LOOP)
        self.assertEqual(len(loop), 1, "\n".join(lines))
        if want:
            self.assertTrue(loop[0].endswith("event loop: " + want), loop)


if __name__ == "__main__":
    harness.main()
