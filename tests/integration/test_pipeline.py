#!/usr/bin/env python3
"""forkpoold's pipelines over real sockets (issue 6): POST /v1/pipelines as a job.

Run by meson once per backend:
    test_pipeline.py --forkpoold build/server/forkpoold --loop uring|epoll \\
        --module-dir build/tests/modules [unittest args]
"""

import collections
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, DaemonTestCase, error_of, wait_until  # noqa: E402

MODULE_DIR = os.environ.get("FP_TEST_MODULE_DIR", "")
NDJSON = {"Content-Type": "application/x-ndjson"}


class PipelineTest(DaemonTestCase):
    daemon_kwargs = {"workers": 2, "task_timeout": 20000}

    @classmethod
    def setUpClass(cls):
        module = os.path.join(MODULE_DIR, "libfp-pipe.so")
        cls.daemon_args = ("--module", module)
        super().setUpClass()

    def submit_pipeline(self, body, status=202, query=""):
        return self.submit("/v1/pipelines" + query, body, status)

    def run_pipeline(self, body, timeout=120):
        """Submit, wait until finished, return (document, result lines)."""
        doc = self.submit_pipeline(body)
        self.assertEqual(doc["kind"], "pipeline")
        done = self.daemon.wait_job(doc["id"], timeout=timeout)
        s = self.daemon.get("/v1/jobs/%s/results" % doc["id"], timeout=timeout)
        self.assertEqual(s.status, 200, s)
        return done, s.ndjson()

    def check_counters(self, doc):
        """Every stage's counters add up at the end, and feed the next stage."""
        st = doc["stages"]
        self.assertEqual(st[0]["in"], doc["inputs"], doc)
        for k, s in enumerate(st):
            self.assertEqual((s["waiting"], s["running"]), (0, 0), doc)
            self.assertEqual(s["done"], s["in"], doc)
            self.assertLessEqual(s["fused"], s["in"], doc)
            if k + 1 < len(st) and not st[k + 1].get("reduce"):
                self.assertEqual(st[k + 1]["in"], s["out"], doc)

    # --- the answers ---------------------------------------------------------

    def test_three_stages_over_100000_items_match_python(self):
        n = 100000
        items = [i % 1000 - 500 for i in range(n)]
        doc, lines = self.run_pipeline({"stages": [{"task": "square"}, {"task": "echo"},
                                                   {"task": "square"}],
                                        "items": items}, timeout=240)
        self.assertEqual(doc["state"], "done", doc)
        want = [(i, (x * x) ** 2) for i, x in enumerate(items)]
        got = sorted((x["index"], x["value"]) for x in lines)
        self.assertEqual(got, want)
        self.assertEqual((doc["inputs"], doc["total"], doc["done"], doc["failed"]),
                         (n, n, n, 0))
        self.assertEqual(doc["task"], "square|echo|square")
        self.assertEqual([s["task"] for s in doc["stages"]], ["square", "echo", "square"])
        self.assertEqual([s["out"] for s in doc["stages"]], [n, n, n])
        # Plain quick stages: stages 1 and 2 ran chained to stage 0 (stage fusion).
        self.assertEqual(doc["stages"][0]["fused"], 0, doc)
        self.assertGreater(doc["stages"][1]["fused"], 0, doc)
        self.assertGreater(doc["stages"][2]["fused"], 0, doc)
        self.check_counters(doc)
        self.daemon.delete("/v1/jobs/" + doc["id"])

    def test_words_lower_echo_match_python(self):
        # Generator stages run an item per chunk: fewer items keep it quick.
        n = 3000
        items = ["Alpha%d BETA%d" % (i, i % 7) for i in range(n)]
        doc, lines = self.run_pipeline({"stages": ["words", "lower", "echo"], "items": items})
        self.assertEqual(doc["state"], "done", doc)
        want = sorted((i, w.lower()) for i, s in enumerate(items) for w in s.split())
        self.assertEqual(sorted((x["index"], x["value"]) for x in lines), want)
        self.assertEqual(doc["task"], "words|lower|echo")
        self.assertEqual([s["out"] for s in doc["stages"]], [2 * n, 2 * n, 2 * n])
        self.check_counters(doc)

    def test_fan_out_by_range(self):
        items = [0, 1, 3, 5, 10]
        doc, lines = self.run_pipeline({"stages": ["range", {"task": "square"}],
                                        "items": items})
        self.assertEqual(doc["state"], "done", doc)
        want = sorted((i, k * k) for i, n in enumerate(items) for k in range(n))
        self.assertEqual(sorted((x["index"], x["value"]) for x in lines), want)
        self.assertEqual(doc["stages"][0]["out"], sum(items))
        self.check_counters(doc)

    def test_sum_reduce_is_the_job_result(self):
        doc, lines = self.run_pipeline({"stages": ["range"], "items": [10, 100, 1000],
                                        "reduce": {"task": "sum", "batch": 16}})
        want = sum(range(10)) + sum(range(100)) + sum(range(1000))
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(doc["result"], want)
        self.assertEqual(lines, [{"index": 0, "value": want}])
        self.assertTrue(doc["stages"][-1]["reduce"], doc)
        self.assertEqual(doc["stages"][-1]["task"], "sum")
        self.assertEqual(doc["task"], "range|sum")

    def test_word_count_with_reduce(self):
        text = ["the quick brown Fox", "jumps over THE lazy dog", "", "the end"]
        items = text * 50
        doc, lines = self.run_pipeline({"stages": ["words", "lower"], "items": items,
                                        "reduce": "count"})
        self.assertEqual(doc["state"], "done", doc)
        want = collections.Counter(w.lower() for s in items for w in s.split())
        self.assertEqual(doc["result"], dict(want))
        self.assertEqual(len(lines), 1)

    def test_crash_in_stage_2_fails_only_that_items_outputs(self):
        # range(14) makes a 13, on which pipe.crash13 kills its worker.
        items = [3, 14, 2]
        doc, lines = self.run_pipeline({"stages": ["range", "pipe.crash13", "square"],
                                        "items": items})
        self.assertEqual(doc["state"], "failed", doc)
        errors = [x for x in lines if "error" in x]
        self.assertEqual(len(errors), 1, lines)
        self.assertEqual(errors[0]["index"], 1)
        self.assertEqual(errors[0]["stage"], 1)
        self.assertEqual(errors[0]["error"]["type"], "crash")
        ok = sorted((x["index"], x["value"]) for x in lines if "value" in x)
        want = sorted((i, k * k) for i, n in enumerate(items) for k in range(n) if k != 13)
        self.assertEqual(ok, want)
        self.assertEqual((doc["done"], doc["failed"]), (len(want), 1))
        self.assertEqual(doc["stages"][1]["failed"], 1)
        # The pool replaced the worker and carries on.
        self.daemon.wait_able(2)

    def test_task_error_names_its_stage(self):
        doc, lines = self.run_pipeline({"stages": ["echo", "square"],
                                        "items": [2, "x", 3]})
        self.assertEqual(doc["state"], "failed", doc)
        err = [x for x in lines if "error" in x]
        self.assertEqual([(x["index"], x["stage"], x["error"]["type"]) for x in err],
                         [(1, 1, "task_error")])
        self.assertEqual(sorted(x["value"] for x in lines if "value" in x), [4, 9])

    def test_ordered_results_come_in_input_order(self):
        items = [300, 0, 150, 0, 0, 60]
        doc, lines = self.run_pipeline({"stages": ["sleep", "echo"], "items": items,
                                        "ordered": True})
        self.assertTrue(doc["ordered"])
        self.assertEqual([x["index"] for x in lines], list(range(len(items))))
        self.assertEqual([x["value"] for x in lines], items)
        # The order is the submission's: asking for the other one is refused.
        r = self.daemon.get("/v1/jobs/%s/results?order=completion" % doc["id"])
        error_of(self, r, 400, "bad_request")
        r = self.daemon.get("/v1/jobs/%s/results?order=input" % doc["id"])
        self.assertEqual(r.status, 200, r)

    def test_unordered_results_come_as_they_complete(self):
        doc, lines = self.run_pipeline({"stages": ["sleep"], "items": [800, 0, 0, 0]})
        self.assertFalse(doc["ordered"])
        self.assertEqual(sorted(x["index"] for x in lines), [0, 1, 2, 3])
        self.assertEqual(lines[-1]["index"], 0)

    def test_backpressure_keeps_waiting_within_the_buffer(self):
        buffer = 8
        n = 120
        doc = self.submit_pipeline({"stages": [{"task": "echo"},
                                               {"task": "sleep", "workers": 1, "buffer": buffer}],
                                    "items": [5] * n})
        seen = []

        def watch():
            g = self.daemon.get("/v1/jobs/" + doc["id"]).json()
            seen.append(g["stages"][1]["waiting"])
            self.assertLessEqual(g["stages"][1]["waiting"], buffer, g)
            # The cap is on workers: one worker may hold a chunk of several
            # of the stage's items, which `running` counts.
            ws = self.daemon.workers()
            self.assertLessEqual(sum(1 for w in ws if w.get("task") == "sleep"), 1, ws)
            return g["state"] in ("done", "failed", "cancelled") and g
        g = wait_until(watch, 60, interval=0.05, what="the pipeline to finish")
        self.assertEqual(g["state"], "done", g)
        self.assertEqual(g["total"], n)
        st = g["stages"][1]
        self.assertLessEqual(st["waiting_max"], buffer, g)
        # The fast stage did run ahead until the buffer was full.
        self.assertGreaterEqual(st["waiting_max"], buffer // 2, g)
        self.assertLessEqual(max(seen), buffer)
        self.check_counters(g)

    def test_cancel_mid_pipeline(self):
        doc = self.submit_pipeline({"stages": ["echo", {"task": "sleep", "workers": 1}],
                                    "items": [100] * 100})
        wait_until(lambda: self.daemon.get("/v1/jobs/" + doc["id"]).json()["done"] >= 2,
                   20, what="some outputs")
        r = self.daemon.delete("/v1/jobs/" + doc["id"])
        self.assertEqual(r.status, 200, r)
        g = self.daemon.wait_job(doc["id"], results=True)
        self.assertEqual(g["state"], "cancelled", g)
        self.assertGreaterEqual(g["done"], 2)
        self.assertLess(g["done"], 100)
        for x in g["results"]:
            self.assertIn("index", x)
            if "error" in x:
                self.assertEqual(x["error"]["type"], "cancelled", x)
        for s in g["stages"]:
            self.assertEqual((s["waiting"], s["running"]), (0, 0), g)
        self.daemon.wait_able(2)
        # The pool is whole: the next pipeline runs.
        d2, lines = self.run_pipeline({"stages": ["square"], "items": [1, 2]})
        self.assertEqual(sorted(x["value"] for x in lines), [1, 4])

    def test_wait_and_long_poll_and_list(self):
        doc = self.submit_pipeline({"stages": ["sleep"], "items": [200]}, status=200,
                                   query="?wait=20&results=1")
        self.assertEqual(doc["state"], "done")
        self.assertEqual(doc["results"], [{"index": 0, "value": 200, "attempts": 1}])
        listed = self.daemon.get("/v1/jobs?limit=1000").json()["jobs"]
        self.assertIn(doc["id"], [j["id"] for j in listed])
        r = self.daemon.delete("/v1/jobs/" + doc["id"])
        self.assertEqual(r.status, 204)

    def test_streamed_while_running(self):
        doc = self.submit_pipeline({"stages": ["echo", {"task": "sleep", "workers": 1}],
                                    "items": [0, 0, 1500]})
        def while_running(first):
            self.assertIn(first["index"], (0, 1))
            self.assertIn(self.daemon.job_state(doc["id"]), ("queued", "running"))
        lines = self.daemon.stream_ndjson("/v1/jobs/%s/results" % doc["id"], while_running)
        self.assertEqual(sorted(x["index"] for x in lines), [0, 1, 2])

    # --- NDJSON ---------------------------------------------------------------

    def test_ndjson_items_with_the_pipeline_in_the_query(self):
        n = 2000
        body = "".join("%d\n" % (i % 5) for i in range(n))
        r = self.daemon.post("/v1/pipelines?stages=range,square&workers=0,1&buffer=,64"
                             "&reduce=sum&batch=32&wait=60", body, headers=NDJSON)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(doc["inputs"], n)
        self.assertEqual(doc["result"], sum(k * k for i in range(n) for k in range(i % 5)))
        # A generator's outputs may pass the buffer (the engine lets the last
        # unpaused worker go on, pool/pipeline.h): waiting_max says by how much.
        self.assertGreater(doc["stages"][1]["waiting_max"], 0)
        self.assertEqual(doc["stages"][1]["task"], "square")

    def test_ndjson_ordered(self):
        r = self.daemon.post("/v1/pipelines?stages=sleep&ordered=true&wait=30&results=1",
                             "200\n0\n0\n", headers=NDJSON)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([x["index"] for x in r.json()["results"]], [0, 1, 2])

    # --- bad requests ---------------------------------------------------------

    def test_bad_requests_are_400_naming_what_is_wrong(self):
        cases = [
            ({"items": [1]}, "bad_request", "stages"),
            ({"stages": [], "items": [1]}, "bad_request", "stages"),
            ({"stages": "words", "items": [1]}, "bad_request", "stages"),
            ({"stages": ["words"]}, "bad_request", "items"),
            ({"stages": ["words"], "items": {"a": 1}}, "bad_request", "items"),
            ({"stages": ["echo", "nosuch"], "items": [1]}, "unknown_task", "stage 1"),
            ({"stages": ["echo", {"task": "nosuch"}], "items": [1]}, "unknown_task",
             "'nosuch'"),
            ({"stages": [{"workers": 1}], "items": [1]}, "bad_request", "stage 0"),
            ({"stages": [7], "items": [1]}, "bad_request", "stage 0"),
            ({"stages": ["echo", {"task": "echo", "workers": -1}], "items": [1]},
             "bad_request", "workers"),
            ({"stages": ["echo", {"task": "echo", "workers": "2"}], "items": [1]},
             "bad_request", "stage 1 (echo)"),
            ({"stages": ["echo", {"task": "echo", "buffer": 0}], "items": [1]},
             "bad_request", "buffer"),
            ({"stages": ["echo", {"task": "echo", "bufer": 5}], "items": [1]},
             "unknown_member", "bufer"),
            ({"stages": ["echo"], "items": [1], "reduce": "nosuch"}, "unknown_task",
             "reduce"),
            ({"stages": ["echo"], "items": [1], "reduce": 5}, "bad_request", "reduce"),
            ({"stages": ["echo"], "items": [1], "reduce": {"task": "sum", "batch": 1}},
             "bad_request", "batch"),
            ({"stages": ["echo"], "items": [1], "ordered": "yes"}, "bad_request", "ordered"),
            ({"stages": ["echo"], "items": [1], "timeout": 5}, "unknown_member", "timeout"),
            ({"stages": ["echo"] * 65, "items": [1]}, "bad_request", "stages"),
        ]
        for body, code, needle in cases:
            with self.subTest(body=body):
                msg = error_of(self, self.daemon.post("/v1/pipelines", body), 400, code)
                self.assertIn(needle, msg)
        msg = error_of(self, self.daemon.post("/v1/pipelines", "[1]",
                                              headers={"Content-Type": "application/json"}),
                       400, "bad_request")
        msg = error_of(self, self.daemon.post("/v1/pipelines", "{",
                                              headers={"Content-Type": "application/json"}),
                       400, "bad_json")
        for query, needle in [("", "stages"), ("?stages=echo,,echo", "stage 1"),
                              ("?stages=echo,nosuch", "stage 1"),
                              ("?stages=echo,echo&workers=0,x", "workers"),
                              ("?stages=echo&ordered=maybe", "ordered"),
                              ("?stages=echo&reduce=sum&batch=0", "batch")]:
            with self.subTest(query=query):
                r = self.daemon.post("/v1/pipelines" + query, "1\n", headers=NDJSON)
                self.assertEqual(r.status, 400, r)
                self.assertIn(needle, r.json()["error"]["message"])
        r = self.daemon.post("/v1/pipelines?stages=echo", "1\n{\n", headers=NDJSON)
        self.assertIn("line 2", error_of(self, r, 400, "bad_json"))
        r = self.daemon.post("/v1/pipelines", "x", headers={"Content-Type": "text/plain"})
        error_of(self, r, 415, "unsupported_media_type")
        r = self.daemon.get("/v1/pipelines")
        error_of(self, r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "POST")
        # Nothing of the refused requests is left behind.
        self.assertTrue(self.daemon.get("/v1/health").json())

    # --- generators through plain map ----------------------------------------

    def test_tasks_say_which_are_generators(self):
        tasks = {t["name"]: t for t in self.daemon.get("/v1/tasks").json()["tasks"]}
        self.assertTrue(tasks["range"]["generator"])
        self.assertTrue(tasks["words"]["generator"])
        self.assertFalse(tasks["lower"]["generator"])
        self.assertFalse(tasks["square"]["generator"])

    def test_generator_outputs_through_map_are_one_list_per_item(self):
        r = self.daemon.post("/v1/map?wait=20&results=1", {"task": "range",
                                                             "items": [3, 0, 2]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["results"], [{"value": [0, 1, 2], "attempts": 1},
                                               {"value": [], "attempts": 1},
                                               {"value": [0, 1], "attempts": 1}])
        r = self.daemon.post("/v1/map?task=words&wait=20", "\"a b\"\n\"\"\n\"c\"\n",
                             headers=NDJSON)
        self.assertEqual(r.status, 200, r)
        s = self.daemon.get("/v1/jobs/%s/results" % r.json()["id"])
        self.assertEqual(s.ndjson(), [{"index": 0, "value": ["a", "b"]},
                                      {"index": 1, "value": []},
                                      {"index": 2, "value": ["c"]}])
        r = self.daemon.post("/v1/apply?wait=20", {"task": "range", "args": 4})
        self.assertEqual(r.json()["result"], [0, 1, 2, 3])


if __name__ == "__main__":
    # --module-dir DIR: where libfp-pipe.so is (meson passes it).
    if "--module-dir" in sys.argv:
        i = sys.argv.index("--module-dir")
        MODULE_DIR = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    harness.main()
