#!/usr/bin/env python3
"""Idempotency-Key on submissions (issue 14): a retried POST is one job.

Run by meson once per backend:
    test_idempotency.py --forkpoold build/server/forkpoold --loop uring|epoll \
        --forkpool build/cli/forkpool [unittest args]

The same key with the same request gives the job it made (200,
Idempotent-Replayed: true, the document a GET gives); with another request,
409 idempotency_conflict; once the job is forgotten the key is free again.
Every request goes to 127.0.0.1; the storms are bounded (100 and 20 POSTs).
"""

import os
import re
import subprocess
import sys
import threading
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, error_of  # noqa: E402

FORKPOOL = os.environ.get("FORKPOOL_CLI", "")
RUN_TIMEOUT = 60


def new_key():
    return "test-" + uuid.uuid4().hex


def replayed(r):
    return r.header("Idempotent-Replayed")


class IdempotencyTest(DaemonTestCase):
    daemon_kwargs = {"workers": 2}

    def post(self, path, body, key, **kw):
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.daemon.post(path, body, headers=headers, **kw)

    def assert_replay(self, r, job_id):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(replayed(r), "true", r.headers)
        self.assertEqual(r.header("Location"), "/v1/jobs/" + job_id)
        self.assertEqual(r.json()["id"], job_id)

    def storm(self, n, send):
        """n threads each send() once, started together; their answers."""
        answers = [None] * n
        go = threading.Barrier(n)

        def one(i):
            go.wait(30)
            try:
                answers[i] = send()
            except Exception as e:      # noqa: BLE001 - reported below
                answers[i] = e
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse([t for t in threads if t.is_alive()], "a storm thread hung")
        errors = [a for a in answers if isinstance(a, Exception)]
        self.assertEqual(errors, [])
        return answers

    def jobs_listed(self):
        r = self.daemon.get("/v1/jobs?limit=1000")
        self.assertEqual(r.status, 200, r)
        return {j["id"] for j in r.json()["jobs"]}

    def check_one_job(self, answers, before):
        """Exactly one 202 and the rest 200 replays, all naming the one new job."""
        ids = {a.json().get("id") for a in answers}
        self.assertEqual(len(ids), 1, [a for a in answers if a.status not in (200, 202)][:3])
        job_id = ids.pop()
        made = [a for a in answers if a.status == 202]
        self.assertEqual(len(made), 1, sorted(a.status for a in answers))
        self.assertIsNone(replayed(made[0]), made[0].headers)
        for a in answers:
            if a is not made[0]:
                self.assert_replay(a, job_id)
        self.assertEqual(self.jobs_listed() - before, {job_id})
        return job_id

    # --- the cases ------------------------------------------------------

    def idem_metrics(self):
        text = self.daemon.get("/metrics").body.decode()
        return {o: int(re.search(r'^forkpool_idempotent_requests_total\{outcome="%s"\} (\d+)$'
                                 % o, text, re.M).group(1)) for o in ("replayed", "conflict")}

    def test_retry_storm_of_100_posts_makes_one_job(self):
        key = new_key()
        before = self.jobs_listed()
        counted = self.idem_metrics()
        answers = self.storm(100, lambda: self.post(
            "/v1/apply", {"task": "sleep", "args": 200}, key))
        job_id = self.check_one_job(answers, before)
        self.assertEqual(self.daemon.wait_job(job_id)["result"], 200)
        # Finished, the key still answers with its job.
        self.assert_replay(self.post("/v1/apply", {"task": "sleep", "args": 200}, key), job_id)
        error_of(self, self.post("/v1/apply", {"task": "sleep", "args": 201}, key), 409,
                 "idempotency_conflict")
        now = self.idem_metrics()
        self.assertEqual((now["replayed"] - counted["replayed"],
                          now["conflict"] - counted["conflict"]), (100, 1))

    def test_concurrent_ndjson_uploads_with_one_key_make_one_job(self):
        key = new_key()
        body = "".join("%d\n" % i for i in range(20000))
        before = self.jobs_listed()
        answers = self.storm(20, lambda: self.post(
            "/v1/map?task=square", body, key,
            headers={"Content-Type": "application/x-ndjson"}))
        job_id = self.check_one_job(answers, before)
        job = self.daemon.wait_job(job_id)
        self.assertEqual((job["state"], job["done"]), ("done", 20000), job)

    def test_a_replay_is_what_a_get_gives_and_honours_wait_and_results(self):
        key = new_key()
        body = {"task": "square", "args": 7}
        r = self.post("/v1/apply", body, key)
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        self.daemon.wait_job(job_id)
        again = self.post("/v1/apply", body, key)
        self.assert_replay(again, job_id)
        self.assertEqual(again.body, self.daemon.get("/v1/jobs/" + job_id).body)
        self.assertEqual(again.json()["result"], 49)

        # A map: ?results=1 as a GET's; ?wait and ?results do not make it another request.
        key = new_key()
        body = {"task": "square", "items": [1, 2, 3]}
        r = self.post("/v1/map?wait=20", body, key)
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(replayed(r))
        job_id = r.json()["id"]
        again = self.post("/v1/map?results=1", body, key)
        self.assert_replay(again, job_id)
        self.assertEqual(again.body, self.daemon.get("/v1/jobs/%s?results=1" % job_id).body)
        self.assertEqual([x["value"] for x in again.json()["results"]], [1, 4, 9])
        self.assert_replay(self.post("/v1/map", body, key), job_id)

    def test_a_replay_with_wait_waits_for_the_job(self):
        key = new_key()
        body = {"task": "sleep", "args": 300}
        r = self.post("/v1/apply", body, key)
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        again = self.post("/v1/apply?wait=20", body, key)
        self.assert_replay(again, job_id)
        self.assertEqual((again.json()["state"], again.json()["result"]), ("done", 300))

    def test_the_same_key_with_another_request_is_409(self):
        key = new_key()
        r = self.post("/v1/apply", {"task": "square", "args": 2}, key)
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        others = [
            ("/v1/apply", {"task": "square", "args": 3}, {}),          # another body
            ("/v1/map", {"task": "square", "args": 2}, {}),            # another route
            # The same JSON in other bytes: the body is compared as sent.
            ("/v1/apply", '{"task":"square","args":2}', {"Content-Type": "application/json"}),
        ]
        for path, body, headers in others:
            r = self.post(path, body, key, headers=headers)
            msg = error_of(self, r, 409, "idempotency_conflict")
            self.assertIn(key, msg)
            self.assertIn(job_id, msg)
            self.assertIsNone(replayed(r))
        # Nothing was made by them: the key still answers with its job.
        self.assert_replay(self.post("/v1/apply", {"task": "square", "args": 2}, key), job_id)

        # NDJSON: a query parameter that changes the job is part of the request,
        # the order of the parameters is not.
        key = new_key()
        nd = {"Content-Type": "application/x-ndjson"}
        r = self.post("/v1/map?task=square&retries=1", "1\n2\n", key, headers=nd)
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        self.assert_replay(self.post("/v1/map?retries=1&task=square&wait=5", "1\n2\n", key,
                                     headers=nd), job_id)
        error_of(self, self.post("/v1/map?task=square&retries=2", "1\n2\n", key, headers=nd),
                 409, "idempotency_conflict")
        error_of(self, self.post("/v1/map?task=square&retries=1", "1\n3\n", key, headers=nd),
                 409, "idempotency_conflict")

    def test_ndjson_map_with_a_key(self):
        key = new_key()
        nd = {"Content-Type": "application/x-ndjson"}
        r = self.post("/v1/map?task=square", "1\n2\n3\n", key, headers=nd)
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        self.assertEqual(self.daemon.wait_job(job_id)["done"], 3)
        again = self.post("/v1/map?task=square&results=1", "1\n2\n3\n", key, headers=nd)
        self.assert_replay(again, job_id)
        self.assertEqual([x["value"] for x in again.json()["results"]], [1, 4, 9])

    def test_pipelines_with_a_key(self):
        key = new_key()
        body = {"stages": [{"task": "range"}, {"task": "square"}], "items": [3], "ordered": True}
        r = self.post("/v1/pipelines", body, key)
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        self.daemon.wait_job(job_id)
        again = self.post("/v1/pipelines?results=1", body, key)
        self.assert_replay(again, job_id)
        self.assertEqual([x["value"] for x in again.json()["results"]], [0, 1, 4])
        error_of(self, self.post("/v1/pipelines", dict(body, items=[4]), key),
                 409, "idempotency_conflict")

        key = new_key()
        nd = {"Content-Type": "application/x-ndjson"}
        r = self.post("/v1/pipelines?stages=range,square&ordered=true", "2\n", key, headers=nd)
        self.assertEqual(r.status, 202, r)
        job_id = r.json()["id"]
        self.assert_replay(self.post("/v1/pipelines?ordered=true&stages=range,square",
                                     "2\n", key, headers=nd), job_id)
        error_of(self, self.post("/v1/pipelines?stages=range&ordered=true", "2\n", key,
                                 headers=nd), 409, "idempotency_conflict")

    def test_the_key_is_free_again_once_its_job_is_deleted(self):
        key = new_key()
        body = {"task": "hang", "args": None}
        r = self.post("/v1/apply", body, key)
        self.assertEqual(r.status, 202, r)
        first = r.json()["id"]
        # Cancelled is finished, still kept: the key still holds it.
        r = self.daemon.delete("/v1/jobs/" + first)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.daemon.wait_job(first)["state"], "cancelled")
        self.assert_replay(self.post("/v1/apply", body, key), first)
        # Deleted (forgotten): a new job, another body allowed.
        self.assertEqual(self.daemon.delete("/v1/jobs/" + first).status, 204)
        r = self.post("/v1/apply", {"task": "square", "args": 5}, key)
        self.assertEqual(r.status, 202, r)
        second = r.json()["id"]
        self.assertNotEqual(second, first)
        self.assert_replay(self.post("/v1/apply", {"task": "square", "args": 5}, key), second)

    def test_a_bad_key_is_400_naming_the_rule(self):
        for key in ("", "k" * 256, "caf\u00e9"):
            r = self.post("/v1/apply", {"task": "square", "args": 1}, key)
            msg = error_of(self, r, 400, "bad_request")
            self.assertIn("Idempotency-Key", msg)
            self.assertIn("1 to 255 bytes of printable ASCII", msg)
        # A control character is refused by the HTTP parser already.
        for key in ("a\x01b", "a\x7fb"):
            r = self.post("/v1/apply", {"task": "square", "args": 1}, key)
            self.assertEqual(r.status, 400, r)
        # The longest and a few odd but printable ones are keys.
        for key in ("k" * 255, "a b", "{\"x\":1}", "~!@#$%^&*()"):
            r = self.post("/v1/apply?wait=20", {"task": "square", "args": 1}, key)
            self.assertEqual(r.status, 200, r)
            self.assert_replay(self.post("/v1/apply", {"task": "square", "args": 1}, key),
                               r.json()["id"])

    def test_a_request_without_a_key_makes_a_job_each_time(self):
        a = self.post("/v1/apply", {"task": "square", "args": 1}, None)
        b = self.post("/v1/apply", {"task": "square", "args": 1}, None)
        self.assertEqual((a.status, b.status), (202, 202))
        self.assertNotEqual(a.json()["id"], b.json()["id"])
        self.assertIsNone(replayed(a))

    def test_the_cli_sends_its_key_and_a_repeat_is_the_same_job(self):
        if not FORKPOOL:
            self.skipTest("needs --forkpool (the CLI)")
        env = dict(os.environ, FORKPOOL_URL="http://127.0.0.1:%d" % self.daemon.port)
        env.pop("FORKPOOL_TOKEN_FILE", None)
        key = new_key()
        ids = []
        for _ in range(2):
            r = subprocess.run([FORKPOOL, "apply", "--detach", "--idempotency-key", key,
                                "square", "6"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, timeout=RUN_TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stderr)
            ids.append(r.stdout.decode().strip())
        self.assertEqual(ids[0], ids[1])
        self.assertEqual(self.daemon.wait_job(ids[0])["result"], 36)
        # Waiting for the value: the repeat prints it as the first did.
        r = subprocess.run([FORKPOOL, "apply", "--idempotency-key", key, "square", "6"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=RUN_TIMEOUT)
        self.assertEqual((r.returncode, r.stdout.decode().strip()), (0, "36"), r.stderr)
        # A map from stdin, twice: one job.
        key = new_key()
        ids = []
        for _ in range(2):
            r = subprocess.run([FORKPOOL, "map", "--detach", "--idempotency-key", key,
                                "square"], input=b"1\n2\n", stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, timeout=RUN_TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stderr)
            ids.append(r.stdout.decode().strip())
        self.assertEqual(ids[0], ids[1])


if __name__ == "__main__":
    # --forkpool PATH: the client (meson passes build/cli/forkpool).
    if "--forkpool" in sys.argv:
        i = sys.argv.index("--forkpool")
        FORKPOOL = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    harness.main()
