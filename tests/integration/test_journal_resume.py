"""forkpoold's journal (issue 14): a pipeline resumes from its inputs not done.

A pipeline of attempts.note (which appends its input's number to a file,
so every run of an input is counted whatever the server says), range and
sleep is killed (SIGKILL of the master) at several points and restarted on
the same --data-dir. At each restart the log says how many inputs kept
their outputs and how many run again; in the end every input's outputs are
there exactly once, and no input ran more often than the restarts that
named it as run again allow: an input kept at a restart never runs again.
An ordered pipeline resumed keeps its results in input order.

    test_journal_resume.py --forkpoold build/server/forkpoold --loop uring|epoll \\
        --module-dir build/tests/modules [unittest args]

Every daemon is started and stopped by pid through the harness (SIGKILL of
the master kills its process group too, so no worker outlives it).
"""

import collections
import os
import re
import signal
import sys

import harness
from harness import Daemon, wait_until

MODULE_DIR = os.environ.get("FP_TEST_MODULE_DIR", "")

RESUMED = re.compile(r"(\d+) resumed: (\d+) items kept their outcome, (\d+) run again")


class JournalResumeTest(harness.DataDirTestCase):

    tmp_prefix = "fp-test-resume-"

    def setUp(self):
        super().setUp()
        self.notes = os.path.join(self.dir, "notes")

    def start(self):
        d = Daemon("--data-dir", self.data, "--module",
                   os.path.join(MODULE_DIR, "libfp-attempts.so")).start()
        self.daemons.append(d)
        d.wait_line(r"forkpoold .* ready", 20, fail_on_exit=True)
        return d

    def restart(self, d):
        """SIGKILL the master, start again: (daemon, inputs kept, inputs rerun)."""
        d.stop(signal.SIGKILL)
        d = self.start()
        m = RESUMED.search(d.wait_line(RESUMED.pattern, 5))
        resumed, kept, rerun = (int(x) for x in m.groups())
        return d, resumed, kept, rerun

    def runs(self):
        """How many times each input's first stage ran, from the notes file."""
        with open(self.notes) as f:
            return collections.Counter(int(line) for line in f)

    def inputs(self, n):
        # Input i makes i % 4 outputs (range), each sleeping that many ms.
        return ["%s %d %d" % (self.notes, i, i % 4) for i in range(n)]

    def check_outputs(self, d, job, n, ordered=False):
        """Every input's outputs once each: 0..v-1 for v = i % 4."""
        r = d.get("/v1/jobs/%s/results" % job, timeout=60)
        self.assertEqual(r.status, 200, r)
        got = {}
        last = -1
        for line in r.ndjson():
            self.assertIn("value", line, line)
            if ordered:
                self.assertGreaterEqual(line["index"], last, "out of input order")
                last = line["index"]
            got.setdefault(line["index"], []).append(line["value"])
        self.assertEqual(sorted(got), [i for i in range(n) if i % 4])
        for i, values in got.items():
            self.assertEqual(sorted(values), list(range(i % 4)), "input %d" % i)

    def test_killed_pipeline_resumes_from_its_inputs_not_done(self):
        n = 2000
        total = sum(i % 4 for i in range(n))
        d = self.start()
        r = d.post("/v1/pipelines", {"stages": ["attempts.note", "range", "sleep"],
                                     "items": self.inputs(n)})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        rerun_sum = kept_max = mid_run = 0
        for k in range(1, 5):
            target = k * total // 6
            wait_until(lambda: d.get("/v1/jobs/" + job).json()["done"] >= target or
                       d.job_state(job) == "done", 60, interval=0.005,
                       what="%d outputs" % target)
            running = d.job_state(job) != "done"
            d, resumed, kept, rerun = self.restart(d)
            self.assertEqual(resumed, int(running))
            if running:
                mid_run += 1
                self.assertEqual(kept + rerun, n)
                kept_max = max(kept_max, kept)
                rerun_sum += rerun
                # The kept inputs' outputs are there at once, none twice.
                doc = d.get("/v1/jobs/" + job).json()
                self.assertLessEqual(doc["total"], total)
        self.assertGreaterEqual(mid_run, 2, "kills should land while it runs")
        # Later kills land further in: many inputs were kept by then (a
        # whole rerun, as before, keeps none).
        self.assertGreater(kept_max, n // 10)
        doc = d.wait_job(job, timeout=120)
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(doc["total"], total)
        self.check_outputs(d, job, n)
        runs = self.runs()
        self.assertEqual(sorted(runs), list(range(n)))
        # An input kept at a restart never ran again; only those rerun did.
        self.assertLessEqual(sum(runs.values()), n + rerun_sum)
        self.assertLess(rerun_sum, mid_run * n)
        print("resume: %d kills mid-run, %d inputs rerun in all, %d runs for %d inputs"
              % (mid_run, rerun_sum, sum(runs.values()), n), file=sys.stderr)
        # Finished: a restart finds it so, with the same outputs.
        d, resumed, kept, rerun = self.restart(d)
        self.assertEqual((resumed, rerun), (0, 0))
        self.check_outputs(d, job, n)
        status = d.stop()
        self.assertEqual(status, 0, d.log_text()[-3000:])
        self.assertEqual(d.sanitizer_reports(), [])

    def test_ordered_pipeline_resumes_in_input_order(self):
        n = 1000
        total = sum(i % 4 for i in range(n))
        d = self.start()
        r = d.post("/v1/pipelines", {"stages": ["attempts.note", "range", "sleep"],
                                     "items": self.inputs(n), "ordered": True})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        wait_until(lambda: d.get("/v1/jobs/" + job).json()["done"] >= total // 3 or
                   d.job_state(job) == "done", 60, interval=0.005,
                   what="%d outputs" % (total // 3))
        running = d.job_state(job) != "done"
        d, resumed, kept, rerun = self.restart(d)
        self.assertEqual(resumed, int(running))
        if running:
            self.assertEqual(kept + rerun, n)
            self.assertGreater(kept, 0)
        doc = d.wait_job(job, timeout=120)
        self.assertEqual(doc["state"], "done", doc)
        self.check_outputs(d, job, n, ordered=True)
        self.assertLessEqual(sum(self.runs().values()), n + rerun)
        status = d.stop()
        self.assertEqual(status, 0, d.log_text()[-3000:])


class JournalConcurrencyTest(harness.DataDirTestCase):
    """A job's own "concurrency" holds after its master is SIGKILLed and
    restarted: the overlap task records the most items running at once."""

    tmp_prefix = "fp-test-resume-conc-"

    def start(self):
        d = Daemon("--data-dir", self.data, "--module",
                   os.path.join(MODULE_DIR, "libfp-overlap.so"), workers=4).start()
        self.daemons.append(d)
        d.wait_line(r"forkpoold .* ready", 20, fail_on_exit=True)
        return d

    def most_running(self, path):
        with open(path) as f:
            return int(f.read().split()[1])

    def test_a_resumed_jobs_concurrency_still_holds(self):
        path = os.path.join(self.dir, "overlap")
        d = self.start()
        r = d.post("/v1/map", {"task": "overlap.other", "concurrency": 1,
                               "items": ["%s 50" % path] * 12})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        wait_until(lambda: d.get("/v1/jobs/" + job).json()["done"] >= 2, 20,
                   interval=0.005, what="two items done")
        d.stop(signal.SIGKILL)
        # The killed workers' counts went with them: count afresh.
        with open(path, "w") as f:
            f.write("0 0\n")
        d = self.start()
        doc = d.wait_job(job, timeout=60)
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(self.most_running(path), 1,
                         "a limit of 1 ran more items at once after the restart")
        status = d.stop()
        self.assertEqual(status, 0, d.log_text()[-3000:])

if __name__ == "__main__":
    # --module-dir DIR: where libfp-attempts.so and libfp-overlap.so are (meson passes it).
    if "--module-dir" in sys.argv:
        i = sys.argv.index("--module-dir")
        MODULE_DIR = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    harness.main()
