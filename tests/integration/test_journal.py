"""forkpoold's journal (issue 14): jobs that survive a crash or a restart.

Crash injection: the master is SIGKILLed at 20 points of a 100,000-item map
and at 20 points of 1,000 applies, restarted on the same --data-dir each
time; every item must end exactly once with its right value, and a job that
had finished before a kill still answers with its results. A pipeline killed
at 4 points reruns from its inputs and ends with each input's outputs once;
a finished one (with a reduce) answers after a restart. The journal's
damage (a torn tail cut from a copy mid-record, a corrupt record in the
middle, a wrong format version) and the data directory's troubles (locked
by another forkpoold, not writable, full) each have their message.

Every daemon is started and stopped by pid through the harness (SIGKILL of
the master kills its process group too, so no worker outlives it).
"""

import os
import shutil
import signal
import struct
import subprocess
import threading
import time

import harness
from harness import Daemon, wait_until

N_MAP = 100000
N_APPLY = 1000
KILLS = 20

HDR_LEN = 24
REC_HDR_LEN = 16


def crc32c(data, crc=0):
    """CRC32C (Castagnoli), bit by bit: only for the 20 bytes of a header."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def records(path):
    """(offset, size) of each record of a journal file, from its headers."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], HDR_LEN
    while off + REC_HDR_LEN <= len(data):
        (length,) = struct.unpack_from("<I", data, off)
        out.append((off, REC_HDR_LEN + length))
        off += REC_HDR_LEN + length
    return out


def map_item(i):
    # A sleep task's milliseconds, returned as given: distinct per item, and
    # one item in 500 sleeps 10 ms so that the map lasts long enough to be
    # killed in the middle (about 1 s of work for two workers).
    return ("10.%09d" if i % 500 == 0 else "0.%09d") % i


class JournalTest(harness.DataDirTestCase):

    tmp_prefix = "fp-test-journal-"

    def start(self, *args, **kw):
        d = Daemon("--data-dir", kw.pop("data", self.data), *args, **kw).start()
        self.daemons.append(d)
        d.wait_line(r"forkpoold .* ready", 20, fail_on_exit=True)
        return d

    def crash(self, d):
        """SIGKILL the master (and, with its group, its workers)."""
        d.stop(signal.SIGKILL)

    def stop_clean(self, d):
        status = d.stop()
        self.assertEqual(status, 0, d.log_text()[-3000:])
        self.assertEqual(d.sanitizer_reports(), [])

    def start_fails(self, args, want, data=None, user=None):
        """forkpoold refuses to start: status 1, one line naming `want`."""
        argv = [harness.FORKPOOLD, "--listen", "127.0.0.1:0", "--loop", harness.LOOP,
                "--workers", "1", "--data-dir", data or self.data] + list(args)
        kw = {"user": user, "group": user} if user is not None else {}
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60, **kw)
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 1, err)
        self.assertIn(want, err)
        self.assertNotIn("listening on", err)
        return err

    # --- crash injection ---------------------------------------------------

    def test_map_survives_20_kills(self):
        d = self.start()
        body = "\n".join(map_item(i) for i in range(N_MAP)) + "\n"
        r = d.post("/v1/map?task=sleep&chunksize=250", body,
                   headers={"Content-Type": "application/x-ndjson"})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        kills_mid_map = 0
        for k in range(1, KILLS + 1):
            target = k * N_MAP // (KILLS + 2)
            wait_until(lambda: d.get("/v1/jobs/" + job).json()["done"] >= target or
                       d.job_state(job) == "done", 60, interval=0.005,
                       what="%d items done" % target)
            doc = d.get("/v1/jobs/" + job).json()
            kills_mid_map += doc["state"] != "done"
            self.crash(d)
            d = self.start()
            # Nothing recorded is lost: the outcomes are at least those the
            # journal had been given (the last turn's may rerun).
            after = d.get("/v1/jobs/" + job)
            self.assertEqual(after.status, 200, after)
            self.assertEqual(after.json()["total"], N_MAP)
        self.assertGreaterEqual(kills_mid_map, KILLS // 2,
                                "most kills should land while the map runs")
        doc = d.wait_job(job, timeout=120)
        self.assertEqual(doc["state"], "done", doc)
        self.check_map_results(d, job)
        # Finished before this kill: it still answers, with its results.
        self.crash(d)
        d = self.start()
        self.assertEqual(d.job_state(job), "done")
        self.check_map_results(d, job)
        self.stop_clean(d)

    def check_map_results(self, d, job):
        r = d.get("/v1/jobs/%s/results" % job, timeout=120)
        self.assertEqual(r.status, 200, r)
        lines = r.ndjson()
        self.assertEqual(len(lines), N_MAP)
        for i, line in enumerate(lines):
            self.assertEqual(line.get("index"), i, line)
            self.assertEqual(line.get("value"), float(map_item(i)), line)

    def test_applies_survive_20_kills(self):
        d = self.start()
        accepted = {}            # job id -> the sleep text it was given
        lock = threading.Lock()
        counter = [0]

        def submit_loop(daemon, stop):
            while not stop.is_set():
                with lock:
                    i = counter[0]
                    counter[0] += 1
                text = "1.%09d" % i
                try:
                    r = daemon.request("POST", "/v1/apply", body=text.join(
                        ['{"task":"sleep","args":', '}']), timeout=10,
                        headers={"Content-Type": "application/json"})
                except OSError:
                    return          # the master is gone: this round ends
                if r.status == 202:
                    with lock:
                        accepted[r.json()["id"]] = text

        per_round = N_APPLY // KILLS
        for k in range(1, KILLS + 1):
            stop = threading.Event()
            threads = [threading.Thread(target=submit_loop, args=(d, stop)) for _ in range(4)]
            for t in threads:
                t.start()
            # Killed while submissions are on the wire and applies run.
            wait_until(lambda: len(accepted) >= k * per_round, 60, interval=0.002,
                       what="%d applies accepted" % (k * per_round))
            self.crash(d)
            stop.set()
            for t in threads:
                t.join(30)
            d = self.start()
        self.assertGreaterEqual(len(accepted), N_APPLY)
        for job, text in accepted.items():
            doc = d.wait_job(job, timeout=60)
            self.assertEqual(doc["state"], "done", doc)
            self.assertEqual(doc["result"], float(text), doc)
        self.stop_clean(d)

    def test_idempotency_holds_across_a_restart(self):
        d = self.start()
        key = {"Idempotency-Key": "order-17", "Content-Type": "application/json"}
        body = '{"task":"sleep","args":300}'
        first = d.post("/v1/apply", body, headers=key)
        self.assertEqual(first.status, 202, first)
        job = first.json()["id"]
        done = d.post("/v1/apply?wait=20", '{"task":"square","args":5}',
                      headers={"Idempotency-Key": "done-1", "Content-Type": "application/json"})
        self.assertEqual(done.status, 200, done)
        self.crash(d)
        d = self.start()
        # Unfinished at the kill, resumed: a retry gets it, not a second job.
        again = d.post("/v1/apply", body, headers=key)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.json()["id"], job)
        other = d.post("/v1/apply", '{"task":"sleep","args":301}', headers=key)
        self.assertEqual(other.status, 409, other)
        self.assertEqual(other.json()["error"]["code"], "idempotency_conflict")
        self.assertEqual(d.wait_job(job)["result"], 300)
        # Finished before the kill: the same, with its result.
        again = d.post("/v1/apply", '{"task":"square","args":5}',
                       headers={"Idempotency-Key": "done-1", "Content-Type": "application/json"})
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["id"], done.json()["id"])
        self.assertEqual(again.json()["result"], 25)
        self.assertEqual(len(d.get("/v1/jobs").json()["jobs"]), 2)
        self.stop_clean(d)

    # --- pipelines -----------------------------------------------------------

    def check_pipeline_outputs(self, d, job, inputs):
        """Every input's outputs once each: range(v) slept, 0..v-1 for input v."""
        r = d.get("/v1/jobs/%s/results" % job, timeout=60)
        self.assertEqual(r.status, 200, r)
        got = {}
        for line in r.ndjson():
            self.assertIn("value", line, line)
            got.setdefault(line["index"], []).append(line["value"])
        self.assertEqual(sorted(got), [i for i, v in enumerate(inputs) if v > 0])
        for i, values in got.items():
            self.assertEqual(sorted(values), list(range(inputs[i])), "input %d" % i)

    def test_pipeline_killed_mid_run_reruns_from_its_inputs(self):
        # range(v) then sleep: input v makes v outputs 0..v-1 (sleeping that
        # many ms), about 1 s of work for two workers, so that kills land in it.
        inputs = [i % 4 for i in range(2000)]
        total = sum(inputs)
        d = self.start()
        r = d.post("/v1/pipelines", {"stages": ["range", "sleep"], "items": inputs})
        self.assertEqual(r.status, 202, r)
        job = r.json()["id"]
        kills_mid_run = 0
        for k in range(1, 5):
            # A rerun starts from no outputs: each kill lands further into it.
            target = k * total // 6
            wait_until(lambda: d.get("/v1/jobs/" + job).json()["done"] >= target or
                       d.job_state(job) == "done", 60, interval=0.005,
                       what="%d outputs" % target)
            kills_mid_run += d.job_state(job) != "done"
            self.crash(d)
            d = self.start()
            doc = d.get("/v1/jobs/" + job).json()
            self.assertEqual(doc["kind"], "pipeline")
            self.assertEqual(doc["inputs"], len(inputs))
            # Never more outputs than the inputs make: none is given twice.
            self.assertLessEqual(doc["total"], total)
        self.assertGreaterEqual(kills_mid_run, 2, "kills should land while it runs")
        doc = d.wait_job(job, timeout=120)
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(doc["total"], total)
        self.check_pipeline_outputs(d, job, inputs)
        self.stop_clean(d)

    def test_finished_pipeline_answers_after_a_restart(self):
        d = self.start()
        body = {"stages": ["range", "square"], "items": [3, 5], "reduce": "sum"}
        key = {"Idempotency-Key": "pipe-1"}
        r = d.post("/v1/pipelines?wait=20", body, headers=key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["result"], 35)
        reduced = r.json()["id"]
        r = d.post("/v1/pipelines?wait=20", {"stages": ["range", "sleep"], "items": [2, 0, 3]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "done")
        plain = r.json()["id"]
        self.crash(d)
        d = self.start()
        doc = d.get("/v1/jobs/" + reduced).json()
        self.assertEqual(doc["state"], "done", doc)
        self.assertEqual(doc["task"], "range|square|sum")
        self.assertEqual([s["task"] for s in doc["stages"]], ["range", "square", "sum"])
        self.assertEqual(doc["result"], 35)
        self.check_pipeline_outputs(d, plain, [2, 0, 3])
        # Its key came back with it: a retry gets it, not a second job.
        again = d.post("/v1/pipelines", body, headers=key)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.json()["id"], reduced)
        self.stop_clean(d)

    # --- damage --------------------------------------------------------------

    def finished_job(self):
        """A data directory holding one finished map of 10 items; its id."""
        d = self.start()
        r = d.post("/v1/map?wait=20", {"task": "square", "items": list(range(10))})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "done")
        self.stop_clean(d)
        return r.json()["id"]

    def test_torn_tail_is_cut_with_a_warning(self):
        job = self.finished_job()
        path = os.path.join(self.data, "journal")
        recs = records(path)
        last_off, last_size = recs[-1]
        # A copy of the directory cut in the middle of its last record.
        torn = os.path.join(self.dir, "torn")
        shutil.copytree(self.data, torn)
        os.truncate(os.path.join(torn, "journal"), last_off + last_size // 2)
        d = self.start(data=torn)
        d.wait_line(r"cut a torn last record at byte offset %d\b" % last_off, 5)
        # The job came back from the records before it (its END was cut).
        doc = d.wait_job(job, results=True)
        self.assertEqual([x["value"] for x in doc["results"]], [i * i for i in range(10)])
        self.assertIn("forkpool_journal_torn_bytes %d\n" % (last_size // 2),
                      d.get("/metrics").body.decode())
        self.stop_clean(d)

    def test_corrupt_middle_refused_then_recovered(self):
        job = self.finished_job()
        path = os.path.join(self.data, "journal")
        off, size = records(path)[0]
        with open(path, "r+b") as f:
            f.seek(off + REC_HDR_LEN + 4)
            b = f.read(1)
            f.seek(off + REC_HDR_LEN + 4)
            f.write(bytes([b[0] ^ 0xFF]))
        err = self.start_fails([], "offset %d" % off)
        self.assertIn(path, err)
        self.assertIn("--journal-recover", err)
        d = self.start("--journal-recover")
        d.wait_line(r"skipped 1 damaged region", 5)
        self.assertIn("forkpool_journal_recover_skipped 1\n", d.get("/metrics").body.decode())
        # The JOB record was the damaged one: the job is not known.
        self.assertEqual(d.get("/v1/jobs/" + job).status, 404)
        self.stop_clean(d)

    def test_wrong_version_refused(self):
        self.finished_job()
        path = os.path.join(self.data, "journal")
        with open(path, "r+b") as f:
            hdr = bytearray(f.read(HDR_LEN))
            struct.pack_into("<I", hdr, 8, 99)
            struct.pack_into("<I", hdr, 20, crc32c(bytes(hdr[:20])))
            f.seek(0)
            f.write(hdr)
        err = self.start_fails([], path)
        self.assertIn("99", err)

    # --- the directory -------------------------------------------------------

    def test_locked_directory_refused(self):
        d = self.start()
        self.start_fails([], "in use by another forkpoold (pid %d)" % d.pid)
        self.stop_clean(d)

    def test_unwritable_directory_refused(self):
        os.makedirs(self.data, mode=0o555)
        os.chmod(self.data, 0o555)
        if os.geteuid() != 0:
            self.start_fails([], "is not writable")
            return
        # Root writes anywhere: nobody tries, in a directory nobody can reach.
        os.chmod(self.dir, 0o755)
        self.start_fails([], "data directory %s is not writable" % self.data, user=65534)

    def test_full_directory_refused_and_507(self):
        # A small filesystem needs root (a tmpfs); without root the next
        # test's file size limit stands in for a full disk at run time.
        if os.geteuid() != 0 or not shutil.which("mount"):
            self.skipTest("a small tmpfs needs root")
        os.makedirs(self.data)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "fp-test", self.data],
                           stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs: %s" % r.stderr.decode().strip())
        try:
            # Full at start: forkpoold checks for a MiB of room.
            filler = os.path.join(self.data, "filler")
            with open(filler, "wb") as f:
                f.write(b"x" * (1536 << 10))
            self.start_fails([], "data directory %s is full: No space left on device"
                             % self.data)
            os.unlink(filler)
            d = self.start()
            # A running job goes on while the disk fills up.
            long = d.post("/v1/apply", {"task": "sleep", "args": 300})
            self.assertEqual(long.status, 202, long)
            big = {"task": "echo", "items": ["x" * 1000] * 100}
            refused = None
            for _ in range(40):
                r = d.post("/v1/map", big)
                if r.status == 507:
                    refused = r
                    break
                self.assertEqual(r.status, 202, r)
            self.assertIsNotNone(refused, "the tmpfs never filled")
            e = refused.json()["error"]
            self.assertEqual(e["code"], "insufficient_storage")
            self.assertIn("the data directory is full", e["message"])
            self.assertEqual(d.wait_job(long.json()["id"])["state"], "done")
            self.assertNotIn("forkpool_journal_write_errors_total 0\n",
                             d.get("/metrics").body.decode())
            self.stop_clean(d)
        finally:
            for d in self.daemons:
                if d.alive():
                    d.stop(signal.SIGKILL)
            subprocess.run(["umount", self.data], timeout=30)

    def test_file_size_limit_refuses_submissions_with_507(self):
        """Without root: RLIMIT_FSIZE makes the journal's writes fail (EFBIG)."""
        import resource
        d = self.start()
        self.stop_clean(d)
        size = os.path.getsize(os.path.join(self.data, "journal"))

        # The harness's Daemon has no preexec hook: forkpoold inherits the
        # limit and the ignored SIGXFSZ from this process, for its start only.
        old = signal.getsignal(signal.SIGXFSZ)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, hard))
        try:
            d = self.start()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old)
        long = d.post("/v1/apply", {"task": "sleep", "args": 200})
        self.assertEqual(long.status, 202, long)
        big = {"task": "echo", "items": ["x" * 1000] * 10}
        r = d.post("/v1/map", big)
        self.assertEqual(r.status, 507, r)
        e = r.json()["error"]
        self.assertEqual(e["code"], "insufficient_storage")
        self.assertIn("journal cannot be written", e["message"])
        # Not accepted: not listed, and the running job finishes.
        self.assertEqual(d.wait_job(long.json()["id"])["state"], "done")
        jobs = d.get("/v1/jobs").json()["jobs"]
        self.assertEqual([j["id"] for j in jobs], [long.json()["id"]])
        self.stop_clean(d)


if __name__ == "__main__":
    harness.main()
