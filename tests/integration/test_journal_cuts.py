"""forkpoold's journal (issue 14): crashes mid-write, recovery past damage, a
retry storm over the journal.

- Mid-write: copies of the journal taken while a 100,000-item map runs, each
  cut in the middle of one of its records (in its payload, or in its
  header), as a crash during that write leaves it. forkpoold started on each
  copy cuts the torn record naming its offset, and the map ends with every
  item once, with its right value. The same during 1,000 applies: every job
  whose JOB record is whole in a copy ends once, with its value, and no
  other job appears.
- --journal-recover keeps what follows the damage: of two finished jobs, the
  first's JOB record damaged, the second comes back whole.
- 100 concurrent POSTs with one Idempotency-Key under --fsync always (each
  answer waits for an fsync, so the retries meet the first request's record
  on its way) make one job; after a SIGKILL and a restart the key still
  names it, and another body is 409.

Every daemon is started and stopped by pid through the harness.
"""

import os
import signal
import struct
import threading

import harness
from harness import Daemon, wait_until
from test_journal import map_item  # one item in 500 sleeps 10 ms, so the map lasts

N_MAP = 100000
CUTS = 6

HDR_LEN = 24
REC_HDR_LEN = 16


def records(data):
    """(offset, size) of each whole record in a journal's bytes."""
    out, off = [], HDR_LEN
    while off + REC_HDR_LEN <= len(data):
        (length,) = struct.unpack_from("<I", data, off)
        if off + REC_HDR_LEN + length > len(data):
            break
        out.append((off, REC_HDR_LEN + length))
        off += REC_HDR_LEN + length
    return out


class JournalCutsTest(harness.DataDirTestCase):

    tmp_prefix = "fp-test-cuts-"

    def start(self, *args, data=None):
        d = Daemon("--data-dir", data or self.data, *args).start()
        self.daemons.append(d)
        d.wait_line(r"forkpoold .* ready", 30, fail_on_exit=True)
        return d

    def stop_clean(self, d):
        self.assertEqual(d.stop(), 0, d.log_text()[-3000:])
        self.assertEqual(d.sanitizer_reports(), [])

    def test_map_resumes_from_copies_cut_mid_write(self):
        d = self.start()
        body = "\n".join(map_item(i) for i in range(N_MAP)) + "\n"
        r = d.post("/v1/map?task=sleep&chunksize=250", body,
                   headers={"Content-Type": "application/x-ndjson"})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        copies = []
        for k in range(CUTS):
            target = (k + 1) * N_MAP // (CUTS + 2)
            wait_until(lambda: d.get("/v1/jobs/" + job).json()["done"] >= target or
                       d.job_state(job) == "done", 60, interval=0.005,
                       what="%d items done" % target)
            with open(os.path.join(self.data, "journal"), "rb") as f:
                data = f.read()
            recs = records(data)
            # The last records are the map's outcomes: cut one of the last
            # three in its payload, or (every other copy) in its header.
            off, size = recs[-1 - k % 3]
            cut = off + (size // 2 if k % 2 == 0 else REC_HDR_LEN // 2)
            path = os.path.join(self.dir, "cut%d" % k)
            os.makedirs(path)
            with open(os.path.join(path, "journal"), "wb") as f:
                f.write(data[:cut])
            copies.append((path, off, cut - off))
        self.assertEqual(d.wait_job(job, timeout=120)["state"], "done")
        self.stop_clean(d)
        for path, off, torn in copies:
            d = self.start(data=path)
            d.wait_line(r"cut a torn last record at byte offset %d\b" % off, 5)
            self.assertIn("forkpool_journal_torn_bytes %d\n" % torn,
                          d.get("/metrics").body.decode())
            doc = d.wait_job(job, timeout=120)
            self.assertEqual(doc["state"], "done", doc)
            r = d.get("/v1/jobs/%s/results" % job, timeout=120)
            self.assertEqual(r.status, 200, r)
            lines = r.ndjson()
            self.assertEqual(len(lines), N_MAP)
            for i, line in enumerate(lines):
                self.assertEqual(line.get("index"), i, line)
                self.assertEqual(line.get("value"), float(map_item(i)), line)
            self.stop_clean(d)

    def test_applies_resume_from_copies_cut_mid_write(self):
        d = self.start()
        sent = {}               # job id -> the sleep text it was given
        lock = threading.Lock()
        counter = [0]
        stop = threading.Event()

        def submit_loop():
            while not stop.is_set():
                with lock:
                    i = counter[0]
                    counter[0] += 1
                    if i >= 1000:
                        return
                text = "1.%09d" % i
                r = d.post("/v1/apply", '{"task":"sleep","args":%s}' % text,
                           headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, 202, r)
                with lock:
                    sent[r.json()["id"]] = text
        threads = [threading.Thread(target=submit_loop) for _ in range(4)]
        for t in threads:
            t.start()
        copies = []
        try:
            for k in range(4):
                wait_until(lambda: len(sent) >= (k + 1) * 200, 60, interval=0.002,
                           what="%d applies" % ((k + 1) * 200))
                with open(os.path.join(self.data, "journal"), "rb") as f:
                    data = f.read()
                off, size = records(data)[-1 - k]
                cut = off + (size // 2 if k % 2 == 0 else REC_HDR_LEN // 2)
                path = os.path.join(self.dir, "cut%d" % k)
                os.makedirs(path)
                with open(os.path.join(path, "journal"), "wb") as f:
                    f.write(data[:cut])
                # The jobs a restart on this copy must know: their JOB record whole.
                jobs = {data[o + REC_HDR_LEN:o + REC_HDR_LEN + 16].hex()
                        for o, n in records(data[:cut])
                        if struct.unpack_from("<H", data, o + 4)[0] == 1}
                copies.append((path, off, jobs))
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.stop_clean(d)
        for path, off, jobs in copies:
            self.assertTrue(jobs)
            d = self.start(data=path)
            d.wait_line(r"cut a torn last record at byte offset %d\b" % off, 5)
            listed = {j["id"] for j in d.get("/v1/jobs?limit=1000").json()["jobs"]}
            self.assertEqual(listed, jobs)
            for job in jobs:
                doc = d.wait_job(job, timeout=60)
                self.assertEqual(doc["state"], "done", doc)
                self.assertEqual(doc["result"], float(sent[job]), doc)
            self.stop_clean(d)

    def test_recover_keeps_what_follows_the_damage(self):
        jobs = []
        for base in (2, 3):
            d = self.start()
            r = d.post("/v1/map?wait=20", {"task": "square",
                                           "items": [base * i for i in range(10)]})
            self.assertEqual(r.status, 200, r)
            jobs.append(r.json()["id"])
            self.stop_clean(d)
        path = os.path.join(self.data, "journal")
        with open(path, "rb") as f:
            off, _ = records(f.read())[0]
        with open(path, "r+b") as f:
            f.seek(off + REC_HDR_LEN + 4)
            b = f.read(1)
            f.seek(off + REC_HDR_LEN + 4)
            f.write(bytes([b[0] ^ 0xFF]))
        d = self.start("--journal-recover")
        d.wait_line(r"skipped 1 damaged region", 5)
        self.assertEqual(d.get("/v1/jobs/" + jobs[0]).status, 404)
        doc = d.wait_job(jobs[1], results=True)
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual([x["value"] for x in doc["results"]],
                         [(3 * i) ** 2 for i in range(10)])
        self.stop_clean(d)

    def test_retry_storm_over_the_journal_makes_one_job_across_a_restart(self):
        d = self.start("--fsync", "always")
        key = {"Idempotency-Key": "storm-1", "Content-Type": "application/json"}
        body = '{"task":"sleep","args":300}'
        answers = [None] * 100
        go = threading.Barrier(len(answers))

        def one(i):
            go.wait(30)
            try:
                answers[i] = d.post("/v1/apply", body, headers=key)
            except Exception as e:      # noqa: BLE001 - reported below
                answers[i] = e
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(answers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse([t for t in threads if t.is_alive()], "a storm thread hung")
        self.assertEqual([a for a in answers if isinstance(a, Exception)], [])
        self.assertEqual(sorted({a.status for a in answers}), [200, 202])
        self.assertEqual(sum(a.status == 202 for a in answers), 1)
        ids = {a.json()["id"] for a in answers}
        self.assertEqual(len(ids), 1)
        job = ids.pop()
        for a in answers:
            if a.status == 200:
                self.assertEqual(a.header("Idempotent-Replayed"), "true")
        self.assertEqual([j["id"] for j in d.get("/v1/jobs").json()["jobs"]], [job])
        d.stop(signal.SIGKILL)
        d = self.start("--fsync", "always")
        again = d.post("/v1/apply", body, headers=key)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.json()["id"], job)
        other = d.post("/v1/apply", '{"task":"sleep","args":301}', headers=key)
        self.assertEqual(other.status, 409, other)
        self.assertEqual(other.json()["error"]["code"], "idempotency_conflict")
        self.assertEqual(d.wait_job(job)["result"], 300)
        self.assertEqual([j["id"] for j in d.get("/v1/jobs").json()["jobs"]], [job])
        self.stop_clean(d)


if __name__ == "__main__":
    harness.main()
