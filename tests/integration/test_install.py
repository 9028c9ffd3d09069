#!/usr/bin/env python3
"""The README's examples, run as a new user would run them (issue 17), so that
they cannot rot: the listings in the README are the files in examples/; the
task module builds with the README's own cc line and loads; the module, the
Python worker and the shell worker answer what the README says they answer,
through forkpoold; a streamed map's lines come while the job runs, and a
submission's ?wait=S&results=1 carries every item's outcome.

Run by meson once per backend:
    test_install.py --forkpoold build/server/forkpoold --loop uring|epoll \\
        --example-dir build/examples [unittest args]
"""

import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, DaemonTestCase  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
README = os.path.join(ROOT, "README.md")
PYWORKER = os.path.join(ROOT, "examples", "python", "worker.py")
SHWORKER = os.path.join(ROOT, "examples", "exec", "upper.sh")

# --example-dir DIR: where meson built libmymath.so (the -Werror build).
EXAMPLE_DIR = os.path.join(ROOT, "build", "examples")
if "--example-dir" in sys.argv:
    i = sys.argv.index("--example-dir")
    EXAMPLE_DIR = os.path.abspath(sys.argv[i + 1])
    del sys.argv[i:i + 2]
MODULE = os.path.join(EXAMPLE_DIR, "libmymath.so")


def readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def fenced_blocks(text):
    """The README's ``` blocks, as their lines."""
    return [m.group(1).split("\n") for m in re.finditer(r"^```[a-z]*\n(.*?)\n```$", text, re.M | re.S)]


def post_json(daemon, path, body):
    r = daemon.post(path, body)
    if r.status != 200:
        raise AssertionError("POST %s: %r" % (path, r))
    return r.json()


class ReadmeTest(unittest.TestCase):
    """What the README shows is what examples/ holds and builds."""

    def test_listings_are_the_example_files(self):
        # A listing names its file on its first line (`// examples/...` or
        # `# examples/...`); a `// ...` or `# ...` line elides part of it.
        # Every piece between elisions is in the file as it is shown.
        seen = set()
        for lines in fenced_blocks(readme()):
            m = re.match(r"(?://|#) (examples/\S+)$", lines[0])
            if not m:
                continue
            path = m.group(1)
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                source = f.read()
            piece = []
            for line in lines[1:] + ["// ..."]:
                if re.match(r"\s*(?://|#) \.\.\.", line):
                    text = "\n".join(piece).strip("\n")
                    self.assertIn(text, source, "README's listing of %s is not the file" % path)
                    piece = []
                else:
                    piece.append(line)
            seen.add(path)
        self.assertEqual(seen, {"examples/modules/mymath.c", "examples/python/worker.py"})

    def test_module_builds_with_the_readmes_line_and_runs(self):
        lines = [l for b in fenced_blocks(readme()) for l in b
                 if l.startswith("cc -shared") and "mymath" in l]
        self.assertEqual(len(lines), 1, "the README has one build line for mymath.c")
        with tempfile.TemporaryDirectory() as tmp:
            # As written, from the source tree; only the output goes elsewhere.
            cmd = lines[0].replace("-o libmymath.so", "-o " + os.path.join(tmp, "libmymath.so"))
            r = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, "%s\n%s" % (cmd, r.stderr))
            self.assertEqual(r.stderr, "", "the README's build line warns")
            d = Daemon("--module", os.path.join(tmp, "libmymath.so"), workers=1).start()
            try:
                doc = post_json(d, "/v1/apply?wait=20", {"task": "add", "args": [2, 3]})
                self.assertEqual(doc["result"], 5, doc)
            finally:
                self.assertEqual(d.stop(), 0, d.log_text()[-3000:])


class ExamplesTest(DaemonTestCase):
    """The module, the Python worker and the shell worker behind one daemon,
    answering as the README shows."""

    daemon_args = ("--module", MODULE,
                   "--exec", "py=python3 %s" % PYWORKER,
                   "--exec", "sh=%s" % SHWORKER,
                   "--exec-workers", "1")
    daemon_kwargs = {"workers": 2, "env": {"PYTHONPATH": os.path.join(ROOT, "python")}}

    def test_module_reads_its_json_arguments(self):
        self.assertEqual(self.apply("add", [2, 3])["result"], 5)
        self.assertEqual(self.apply("greet", {"name": "Ada", "excited": True})["result"], "Hello, Ada!")
        self.assertEqual(self.apply("greet", {"name": "Bo \"the\" cat"})["result"], 'Hello, Bo "the" cat.')
        job = self.apply("add", "two")
        self.assertEqual(job["state"], "failed", job)
        self.assertEqual(job["error"], {"type": "task_error",
                                        "message": "add: expected [a, b], two integers"})
        job = self.apply("greet", {"nom": "Ada"})
        self.assertEqual(job["error"]["type"], "task_error", job)
        self.assertIn("greet: expected {\"name\": string", job["error"]["message"])
        self.assertIn("name", job["error"]["message"][len("greet: expected"):])
        self.assertEqual(self.apply("digits", 2026)["result"], [2, 0, 2, 6])
        tasks = {t["name"]: t for t in self.daemon.get("/v1/tasks").json()["tasks"]}
        self.assertEqual(tasks["digits"]["module"], "mymath")
        self.assertTrue(tasks["digits"]["generator"])
        self.assertFalse(tasks["add"]["generator"])

    def test_python_worker(self):
        self.assertEqual(self.apply("py.resize", {"w": 640, "h": 480})["result"], {"w": 320, "h": 240})
        doc = post_json(self.daemon, "/v1/pipelines?wait=20",
                        {"stages": ["py.split", "lower"], "items": ["The cat", "the Dog"],
                         "reduce": "py.tally"})
        self.assertEqual(doc["result"], {"the": 2, "cat": 1, "dog": 1}, doc)

    def test_shell_worker(self):
        self.assertEqual(self.apply("sh.upper", "hello")["result"], "HELLO")

    def test_results_stream_while_the_job_runs(self):
        job = self.submit("/v1/map", {"task": "sleep", "items": [1500, 100, 200]})

        def first_line(obj):
            # One item takes 1.5 s: a line before then proves the stream
            # gives each result as it comes, not the whole job at its end.
            self.assertEqual(self.daemon.job_state(job["id"]), "running")
            self.assertIn(obj["index"], (1, 2), obj)

        lines = self.daemon.stream_ndjson("/v1/jobs/%s/results?order=completion" % job["id"], first_line)
        self.assertEqual(sorted((x["index"], x["value"]) for x in lines),
                         [(0, 1500), (1, 100), (2, 200)])

    def test_post_wait_results_carries_the_outcomes(self):
        doc = post_json(self.daemon, "/v1/map?wait=20&results=1", {"task": "square", "items": [1, 2, 3]})
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual([r["value"] for r in doc["results"]], [1, 4, 9])
        doc = post_json(self.daemon, "/v1/map?wait=20", {"task": "square", "items": [1, 2, 3]})
        self.assertNotIn("results", doc)


if __name__ == "__main__":
    harness.main()
