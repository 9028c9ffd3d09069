#!/usr/bin/env python3
"""Shared values kept across restarts with --data-dir (issue 18).

Every write the daemon answered is there after a SIGKILL of the master,
under each --fsync policy (a key may instead hold the one write that was
on the wire at the kill: it may have reached the journal unanswered); an
INCR's, a CAS's and a DELETE's results are replayed, not re-run; a TTL is
absolute wall-clock time, so time spent down counts; compaction keeps the
journal near the size of the live keys however often they are rewritten.
The demo incr task's increments, answered, are there after a SIGKILL too.

Run by meson once per backend:
    test_kv_durable.py --forkpoold build/server/forkpoold --loop uring|epoll
"""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, error_of, wait_until  # noqa: E402

JSON = {"Content-Type": "application/json"}
THREADS = 4
KEYS_PER_THREAD = 8
WRITES_PER_KILL = 300


class KvDurableTest(harness.DataDirTestCase):

    tmp_prefix = "fp-test-kv-durable-"

    def start(self, *args):
        d = Daemon("--data-dir", self.data, *args, workers=1).start()
        self.daemons.append(d)
        d.wait_line(r"forkpoold .* ready", 20, fail_on_exit=True)
        return d

    def stop_clean(self, d):
        self.assertEqual(d.stop(), 0, d.log_text()[-3000:])
        self.assertEqual(d.sanitizer_reports(), [])

    def put(self, d, key, text, query="", conn=None):
        r = d.request("PUT", "/v1/kv/%s%s" % (key, query), body=text, headers=JSON, conn=conn)
        self.assertEqual(r.status, 204, r)

    def value(self, d, key):
        r = d.get("/v1/kv/" + key)
        if r.status == 404:
            return None
        self.assertEqual(r.status, 200, r)
        return r.json()

    # --- crash injection -------------------------------------------------

    def writer(self, d, t, stop, answered, inflight, lock):
        """
        Thread t's own keys: PUTs, DELETEs and INCRs in turn. answered[key]
        is the state its last answered write left (None: deleted);
        inflight[key] the write on the wire when the master died.
        """
        i = 0
        conn = d.connection(10)
        try:
            while not stop.is_set():
                key = "t%d.k%d" % (t, i % KEYS_PER_THREAD)
                ctr = "t%d.count" % t
                if i % 5 == 4:
                    want, path, method, body = None, "/v1/kv/" + key, "DELETE", None
                    ok = (204, 404)
                else:
                    want = {"n": i, "t": t}
                    path, method, ok = "/v1/kv/" + key, "PUT", (204,)
                    body = '{"n":%d,"t":%d}' % (i, t)
                with lock:
                    inflight[key] = want
                try:
                    r = d.request(method, path, body=body, headers=JSON, conn=conn)
                except OSError:
                    return
                if r.status not in ok:
                    raise AssertionError("%s %s: %r" % (method, path, r))
                with lock:
                    answered[key] = want
                    del inflight[key]
                    answered["#writes"] = answered.get("#writes", 0) + 1
                with lock:
                    inflight[ctr] = answered.get(ctr, 0) + 1
                try:
                    r = d.request("POST", "/v1/kv/%s/incr" % ctr, conn=conn)
                except OSError:
                    return
                if r.status != 200:
                    raise AssertionError("incr: %r" % r)
                with lock:
                    answered[ctr] = r.json()
                    del inflight[ctr]
                i += 1
        finally:
            conn.close()

    def check_state(self, d, answered, inflight):
        r = d.get("/v1/kv?limit=100000")
        self.assertEqual(r.status, 200, r)
        have = {e["key"]: e["value"] for e in r.json()["keys"]}
        for key, want in answered.items():
            if key.startswith("#"):
                continue
            got = have.get(key)
            allowed = [want] + ([inflight[key]] if key in inflight else [])
            self.assertIn(got, allowed, "%s: after the kill %r, answered %r" % (key, got, want))
        return have

    def crash_rounds(self, policy, kills):
        d = self.start("--fsync", policy)
        answered, lock = {}, threading.Lock()
        for k in range(kills):
            inflight = {}
            stop = threading.Event()
            threads = [threading.Thread(target=self.writer,
                                        args=(d, t, stop, answered, inflight, lock))
                       for t in range(THREADS)]
            for t in threads:
                t.start()
            goal = (k + 1) * WRITES_PER_KILL
            wait_until(lambda: answered.get("#writes", 0) >= goal, 60, interval=0.002,
                       what="%d writes answered" % goal)
            d.stop(signal.SIGKILL)
            stop.set()
            for t in threads:
                t.join(30)
            d = self.start("--fsync", policy)
            have = self.check_state(d, answered, inflight)
            # What the next round starts from is what the daemon has now.
            for key in list(answered):
                if not key.startswith("#"):
                    answered[key] = have.get(key)
        self.stop_clean(d)

    def test_answered_writes_survive_sigkill_fsync_always(self):
        self.crash_rounds("always", 2)

    def test_answered_writes_survive_sigkill_fsync_interval(self):
        self.crash_rounds("interval", 2)

    def test_answered_writes_survive_sigkill_fsync_never(self):
        self.crash_rounds("never", 2)

    # --- tasks' calls --------------------------------------------------------

    def test_incr_tasks_answered_before_a_sigkill_are_kept(self):
        """The demo incr task's calls go through the same journal as HTTP's:
        every increment whose item was answered is there after a SIGKILL of
        the master (fsync always: answered once safe), and none twice."""
        d = self.start("--fsync", "always")
        r = d.post("/v1/map?wait=60", {"task": "incr", "items": ["tk"] * 300})
        self.assertEqual(r.status, 200, r)
        doc = d.wait_job(r.json()["id"], results=True)
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(sorted(x["value"] for x in doc["results"]), list(range(1, 301)))
        d.stop(signal.SIGKILL)
        d = self.start("--fsync", "always")
        self.assertEqual(self.value(d, "tk"), 300)
        # And the store goes on from there, for tasks as for HTTP.
        r = d.post("/v1/apply?wait=20", {"task": "incr", "args": "tk"})
        self.assertEqual((r.status, r.json()["result"]), (200, 301), r)
        self.stop_clean(d)

    # --- what a record holds -----------------------------------------------

    def test_results_replayed_not_operations(self):
        d = self.start()
        for _ in range(5):
            d.post("/v1/kv/hits/incr", None)
        r = d.post("/v1/kv/lease/cas", {"value": {"owner": "a"}})
        self.assertEqual(r.json(), {"swapped": True, "value": {"owner": "a"}})
        r = d.post("/v1/kv/lease/cas", {"expect": {"owner": "b"}, "value": 1})
        self.assertEqual(r.json()["swapped"], False)
        self.put(d, "gone", "1")
        self.assertEqual(d.delete("/v1/kv/gone").status, 204)
        d.stop(signal.SIGKILL)
        # Twice: a replay that re-ran the increments would double them.
        for _ in range(2):
            d = self.start()
            self.assertEqual(self.value(d, "hits"), 5)
            self.assertEqual(self.value(d, "lease"), {"owner": "a"})
            error_of(self, d.get("/v1/kv/gone"), 404, "no_such_key")
            self.assertTrue(d.wait_line(r"journal: 2 shared values recovered", 5))
            self.stop_clean(d)

    def test_ttl_is_wall_clock_and_counts_time_down(self):
        d = self.start()
        self.put(d, "long", '"stays"', "?ttl=600")
        put_at = time.time()
        self.put(d, "short", '"goes"', "?ttl=1.5")
        # An INCR keeps the key's expiry; the record says it again.
        self.put(d, "ctr", "1", "?ttl=1.5")
        self.assertEqual(d.post("/v1/kv/ctr/incr", None).json(), 2)
        self.stop_clean(d)
        # Down past the short TTLs: they must not come back.
        wait_until(lambda: time.time() > put_at + 1.6, 5, what="the short ttl to pass")
        d = self.start()
        error_of(self, d.get("/v1/kv/short"), 404, "no_such_key")
        error_of(self, d.get("/v1/kv/ctr"), 404, "no_such_key")
        keys = d.get("/v1/kv").json()["keys"]
        self.assertEqual([e["key"] for e in keys], ["long"])
        ttl = keys[0]["ttl_ms"]
        self.assertLessEqual(ttl, 600000 - 1500, "the time down counts against the ttl")
        self.assertGreater(ttl, 500000)
        self.stop_clean(d)

    def test_write_the_journal_cannot_take_is_507(self):
        """Without root: RLIMIT_FSIZE makes the journal's writes fail (EFBIG)."""
        import resource
        d = self.start()
        self.stop_clean(d)
        size = os.path.getsize(os.path.join(self.data, "journal"))
        # forkpoold inherits the limit and the ignored SIGXFSZ, for its start only.
        old = signal.getsignal(signal.SIGXFSZ)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, hard))
        try:
            d = self.start()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old)
        for method, path, body in (("PUT", "/v1/kv/big", '"%s"' % ("x" * 8000)),
                                   ("POST", "/v1/kv/big2/cas", '{"value":"%s"}' % ("y" * 8000))):
            r = d.request(method, path, body=body, headers=JSON)
            msg = error_of(self, r, 507, "insufficient_storage")
            self.assertIn("journal cannot be written", msg)
        # The file was cut back: a write that fits is kept, and answered.
        self.put(d, "small", "1")
        self.assertEqual(d.post("/v1/kv/small/incr", None).json(), 2)
        d.stop(signal.SIGKILL)
        d = self.start()
        self.assertEqual(self.value(d, "small"), 2)
        # Refused writes were not kept (in memory they stood until the restart).
        self.assertIsNone(self.value(d, "big"))
        self.assertIsNone(self.value(d, "big2"))
        self.stop_clean(d)

    # --- compaction ----------------------------------------------------------

    def journal_size(self):
        return os.path.getsize(os.path.join(self.data, "journal"))

    def test_compaction_keeps_the_journal_near_the_live_keys(self):
        d = self.start("--journal-compact-size", "64k")
        value = '"%s"' % ("x" * 1000)
        conn = d.connection(10)
        # 20 keys of 1 KB, each written 150 times: 3 MB of history, 20 KB live.
        for i in range(3000):
            self.put(d, "k%d" % (i % 20), value[:-1] + '%d"' % i, conn=conn)
        conn.close()
        for i in range(10):
            self.assertEqual(d.delete("/v1/kv/k%d" % i).status, 204)
        m = d.get("/metrics").body.decode()
        compactions = [ln for ln in m.splitlines()
                       if ln.startswith("forkpool_journal_compactions_total ")]
        self.assertTrue(compactions and int(compactions[0].split()[1]) > 0, compactions)
        self.assertLess(self.journal_size(), 256 * 1024)
        d.stop(signal.SIGKILL)
        d = self.start("--journal-compact-size", "64k")
        keys = d.get("/v1/kv").json()["keys"]
        self.assertEqual(sorted(e["key"] for e in keys), sorted("k%d" % i for i in range(10, 20)))
        for e in keys:
            i = int(e["key"][1:])
            self.assertEqual(e["value"], "x" * 1000 + str(2980 + i))
        self.stop_clean(d)


if __name__ == "__main__":
    harness.main()
