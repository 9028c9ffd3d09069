#!/usr/bin/env python3
"""The kill storm of issue 13: workers SIGKILLed every 100 ms during a big map.

  limits_storm.py PORT ITEMS MS [KILL_MS]

forkpoold listens on 127.0.0.1:PORT. One map job of ITEMS `sleep` items of MS ms
each, with retries 3, is submitted as NDJSON; every KILL_MS (default 100) ms
until it ends, one of the workers the daemon reports busy (GET /v1/workers) gets
SIGKILL. Then the job's items are read back (GET /v1/jobs/ID?results=1).

Prints one line:
  result name=storm items=N kills=K seconds=T lost=L failed=F wrong=W attempts_max=A summary=...
where lost counts the items with no outcome when the job did not finish (the
wait is bounded), failed those that failed, wrong the values that are not what
`sleep` answers, and attempts_max the most times one item was started (retries 3:
at most 4). The goal is 0 lost and 0 failed. Exits 1 when the daemon breaks
what it promises whatever the storm (a wrong value, more than 4 attempts, an
item answered twice or an answer missing from a finished job), so a regression
fails the run; lost and failed are the figures, printed, not asserted.
"""

import http.client
import json
import os
import random
import signal
import sys
import threading
import time

RETRIES = 3
WAIT_S = 150


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def request(port, method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if r.status not in (200, 202):
            raise RuntimeError("%s %s: %d %r" % (method, path, r.status, data[:300]))
        return json.loads(data)
    finally:
        c.close()


def storm(port, kill_s, stop, kills):
    """SIGKILL a random busy worker every kill_s seconds until stop is set."""
    while not stop.wait(kill_s):
        try:
            busy = [w["pid"] for w in request(port, "GET", "/v1/workers", timeout=5)["workers"]
                    if w["state"] == "busy" and w["pid"]]
        except (OSError, RuntimeError, ValueError):
            continue
        if busy:
            try:
                os.kill(random.choice(busy), signal.SIGKILL)
                kills.append(1)
            except ProcessLookupError:
                pass


def main():
    if len(sys.argv) not in (4, 5):
        usage()
    try:
        port, items, ms = (int(x) for x in sys.argv[1:4])
        kill_ms = int(sys.argv[4]) if len(sys.argv) == 5 else 100
    except ValueError:
        usage()
    body = ("%d\n" % ms).encode() * items
    stop = threading.Event()
    kills = []
    t0 = time.monotonic()
    job = request(port, "POST", "/v1/map?task=sleep&retries=%d" % RETRIES, body,
                  {"Content-Type": "application/x-ndjson"})
    killer = threading.Thread(target=storm, args=(port, kill_ms / 1000.0, stop, kills),
                              daemon=True)
    killer.start()
    doc = job
    try:
        while doc["state"] not in ("done", "failed", "cancelled"):
            left = WAIT_S - (time.monotonic() - t0)
            if left <= 0:
                break
            doc = request(port, "GET", "/v1/jobs/%s?wait=%.1f" % (job["id"], min(left, 10.0)),
                          timeout=min(left, 10.0) + 10)
    finally:
        stop.set()
        killer.join(10)
    seconds = time.monotonic() - t0
    finished = doc["state"] in ("done", "failed", "cancelled")
    bad = []
    wrong = 0
    attempts_max = 0
    if finished:
        full = request(port, "GET", "/v1/jobs/%s?results=1" % job["id"])
        results = full["results"]
        if len(results) != items or full["done"] + full["failed"] != items:
            bad.append("a finished job of %d items has %d outcomes (%d done, %d failed)" % (
                items, len(results), full["done"], full["failed"]))
        for x in results:
            attempts_max = max(attempts_max, x.get("attempts", 0))
            if "value" in x and x["value"] != ms:
                wrong += 1
        lost = 0
        failed = full["failed"]
    else:
        lost = items - doc["done"] - doc["failed"]
        failed = doc["failed"]
    if wrong:
        bad.append("%d wrong values" % wrong)
    if attempts_max > RETRIES + 1:
        bad.append("an item was started %d times with retries %d" % (attempts_max, RETRIES))
    summary = "%d lost, %d failed, %d kills in %.1f s" % (lost, failed, len(kills), seconds)
    print("result name=storm items=%d kills=%d seconds=%.3f lost=%d failed=%d wrong=%d "
          "attempts_max=%d summary=%s" % (items, len(kills), seconds, lost, failed, wrong,
                                          attempts_max, summary.replace(" ", "_")))
    if bad:
        sys.stderr.write("limits_storm: %s\n" % "; ".join(bad))
        sys.exit(1)


if __name__ == "__main__":
    main()
