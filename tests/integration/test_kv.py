#!/usr/bin/env python3
"""Shared values over HTTP (issue 18): /v1/kv/KEY and /v1/kv.

Read, write, delete, increment, compare-and-set, expiry and listing by
prefix, with every refusal named; concurrent increments from many
connections lose none.

Run by meson once per backend:
    test_kv.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DaemonTestCase, error_of, wait_until  # noqa: E402

JSON = {"Content-Type": "application/json"}


class KvTest(DaemonTestCase):
    daemon_kwargs = {"workers": 1}

    def put(self, key, text, query="", status=204):
        r = self.daemon.request("PUT", "/v1/kv/%s%s" % (key, query), body=text, headers=JSON)
        self.assertEqual(r.status, status, r)
        return r

    def value(self, key):
        r = self.daemon.get("/v1/kv/" + key)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("application/json"), r.headers)
        return r.json()

    def test_put_get_delete_round_trip_in_compact_form(self):
        self.put("doc", '{"a": [1, 2],  "b": "x"}')
        r = self.daemon.get("/v1/kv/doc")
        self.assertEqual(r.body, b'{"a":[1,2],"b":"x"}\n')
        self.put("doc", "null")
        self.assertIsNone(self.value("doc"))
        r = self.daemon.delete("/v1/kv/doc")
        self.assertEqual(r.status, 204, r)
        msg = error_of(self, self.daemon.get("/v1/kv/doc"), 404, "no_such_key")
        self.assertIn("'doc'", msg)
        error_of(self, self.daemon.delete("/v1/kv/doc"), 404, "no_such_key")

    def test_incr_counts_and_refuses_what_is_not_an_integer(self):
        r = self.daemon.post("/v1/kv/hits/incr", None)
        self.assertEqual((r.status, r.json()), (200, 1), r)
        r = self.daemon.post("/v1/kv/hits/incr?by=41", None)
        self.assertEqual(r.json(), 42)
        r = self.daemon.post("/v1/kv/hits/incr?by=-50", None)
        self.assertEqual(r.json(), -8)
        self.assertEqual(self.value("hits"), -8)
        self.put("word", '"text"')
        msg = error_of(self, self.daemon.post("/v1/kv/word/incr", None), 409, "not_an_integer")
        self.assertIn("integer", msg)
        self.put("big", str(2**63 - 1))
        error_of(self, self.daemon.post("/v1/kv/big/incr", None), 409, "out_of_range")
        msg = error_of(self, self.daemon.post("/v1/kv/hits/incr?by=x", None), 400, "bad_request")
        self.assertIn("'x'", msg)

    def test_cas_sets_only_when_the_value_matches(self):
        cas = "/v1/kv/lease/cas"
        # No "expect": only when the key does not exist.
        r = self.daemon.post(cas, {"value": {"owner": "a"}})
        self.assertEqual(r.json(), {"swapped": True, "value": {"owner": "a"}})
        r = self.daemon.post(cas, {"value": {"owner": "b"}})
        self.assertEqual(r.json(), {"swapped": False, "value": {"owner": "a"}})
        r = self.daemon.post(cas, {"expect": {"owner": "b"}, "value": 1})
        self.assertEqual(r.json(), {"swapped": False, "value": {"owner": "a"}})
        # Values compare as values: the spelling of "expect" does not matter.
        r = self.daemon.request("POST", cas, headers=JSON,
                                body='{"expect": { "owner" : "a" }, "value": 2}')
        self.assertEqual(r.json(), {"swapped": True, "value": 2})
        msg = error_of(self, self.daemon.post(cas, {"expect": 2}), 400, "bad_request")
        self.assertIn('"value"', msg)

    def test_ttl_expires_the_key(self):
        self.put("short", "1", query="?ttl=0.2")
        self.put("long", "2", query="?ttl=600")
        listed = self.daemon.get("/v1/kv?prefix=long").json()
        ttl = listed["keys"][0]["ttl_ms"]
        self.assertTrue(0 < ttl <= 600000, listed)
        wait_until(lambda: self.daemon.get("/v1/kv/short").status == 404, timeout=10,
                   what="the key with a ttl of 0.2 s to go")
        self.assertEqual(self.value("long"), 2)
        error_of(self, self.put("x", "1", query="?ttl=0", status=400), 400, "bad_request")
        error_of(self, self.put("x", "1", query="?ttl=soon", status=400), 400, "bad_request")

    def test_list_by_prefix_in_key_order_with_a_limit(self):
        for k in ("ls:b", "ls:a", "ls:c", "other"):
            self.put(k, json.dumps(k))
        doc = self.daemon.get("/v1/kv?prefix=ls:").json()
        self.assertEqual([e["key"] for e in doc["keys"]], ["ls:a", "ls:b", "ls:c"])
        self.assertEqual([e["value"] for e in doc["keys"]], ["ls:a", "ls:b", "ls:c"])
        self.assertEqual((doc["count"], doc["more"]), (3, False))
        doc = self.daemon.get("/v1/kv?prefix=ls:&limit=2").json()
        self.assertEqual([e["key"] for e in doc["keys"]], ["ls:a", "ls:b"])
        self.assertTrue(doc["more"])
        error_of(self, self.daemon.get("/v1/kv?limit=0"), 400, "bad_request")
        msg = error_of(self, self.daemon.get("/v1/kv?prefx=a"), 400, "unknown_parameter")
        self.assertIn("prefx", msg)

    def test_refusals_name_what_was_wrong(self):
        msg = error_of(self, self.put("bad%20key", "1", status=400), 400, "bad_key")
        self.assertIn("A-Z a-z 0-9", msg)
        error_of(self, self.put("k" * 257, "1", status=400), 400, "bad_key")
        self.put("k" * 256, "1")
        msg = error_of(self, self.put("j", "{nope", status=400), 400, "bad_json")
        self.assertIn("not JSON", msg)
        big = json.dumps("x" * (64 * 1024))
        msg = error_of(self, self.put("big", big, status=413), 413, "value_too_large")
        self.assertIn("64 KiB", msg)
        r = self.daemon.request("PUT", "/v1/kv/t", body="1", headers={"Content-Type": "text/plain"})
        error_of(self, r, 415, "unsupported_media_type")
        r = self.daemon.request("PATCH", "/v1/kv/t", body="1", headers=JSON)
        self.assertEqual(r.status, 405, r)
        self.assertIn("PUT", r.header("Allow"))

    def test_concurrent_increments_lose_none(self):
        threads, per = 8, 125
        errors = []

        def run():
            conn = self.daemon.connection(20)
            try:
                for _ in range(per):
                    r = self.daemon.request("POST", "/v1/kv/race/incr", conn=conn)
                    if r.status != 200:
                        errors.append(r)
            finally:
                conn.close()

        ts = [threading.Thread(target=run) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(self.value("race"), threads * per)


if __name__ == "__main__":
    harness.main()
