#!/usr/bin/env python3
"""forkpoold's map over HTTP in its NDJSON form: one measurement per run.

  map_http.py PORT N [CHUNKSIZE]

POSTs N items 0..N-1, one JSON number a line, to
127.0.0.1:PORT/v1/map?task=square&chunksize=CHUNKSIZE (Content-Type:
application/x-ndjson; CHUNKSIZE 0 or absent: the server's default) and reads the
job's results as they stream from GET /v1/jobs/ID/results?order=input. Timed:
from the first byte sent to the last byte of results read; the body is built
before and the results are checked after. The transfers are curl's (into a
file), not Python's: http.client's chunked reading alone takes ~0.9 s for the
37 MB of a million results here, which would be the client's cost, not the
server's. Every result must be its item's square
(the sum of squares is compared too), or the run fails.

Prints one line:
  result name=map-http items=N chunksize=C seconds=S rate=R ok=N failed=0
"""

import json
import os
import subprocess
import sys
import tempfile
import time


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def main(argv):
    if len(argv) not in (3, 4):
        usage()
    try:
        port, n = int(argv[1]), int(argv[2])
        chunksize = int(argv[3]) if len(argv) == 4 else 0
    except ValueError:
        usage()
    if port <= 0 or n <= 0 or chunksize < 0:
        usage()

    with tempfile.TemporaryDirectory(prefix="fp-map-http.") as tmp:
        items = os.path.join(tmp, "items.ndjson")
        out = os.path.join(tmp, "results.ndjson")
        with open(items, "w") as f:
            f.write("".join("%d\n" % i for i in range(n)))
        base = "http://127.0.0.1:%d" % port
        curl = ["curl", "-sS", "-m", "120"]
        t0 = time.monotonic()
        post = subprocess.run(curl + ["-w", "\n%{http_code}", "-H",
                                      "Content-Type: application/x-ndjson",
                                      "--data-binary", "@" + items,
                                      base + "/v1/map?task=square&chunksize=%d" % chunksize],
                              capture_output=True, text=True)
        answer, _, status = post.stdout.rpartition("\n")
        if post.returncode != 0 or status != "202":
            sys.stderr.write("map_http: POST /v1/map: curl exit %d, status %s: %s%s\n"
                             % (post.returncode, status, answer[:300], post.stderr[:300]))
            return 1
        job_id = json.loads(answer)["id"]
        get = subprocess.run(curl + ["-o", out, "-w", "%{http_code}",
                                     base + "/v1/jobs/%s/results?order=input" % job_id],
                             capture_output=True, text=True)
        secs = time.monotonic() - t0
        if get.returncode != 0 or get.stdout != "200":
            sys.stderr.write("map_http: GET results: curl exit %d, status %s: %s\n"
                             % (get.returncode, get.stdout, get.stderr[:300]))
            return 1
        with open(out, "rb") as f:
            results = f.read()

    ok = failed = 0
    total = 0
    first = None
    for i, line in enumerate(results.splitlines()):
        item = json.loads(line)
        if item.get("index") == i and item.get("value") == i * i:
            ok += 1
            total += item["value"]
        else:
            failed += 1
            first = first or "line %d: %r" % (i, item)
    want_total = (n - 1) * n * (2 * n - 1) // 6
    if ok + failed != n:
        first = first or "%d results for %d items" % (ok + failed, n)
    elif total != want_total:
        first = first or "sum of squares %d, want %d" % (total, want_total)
    print("result name=map-http items=%d chunksize=%d seconds=%.6f rate=%.1f ok=%d failed=%d"
          % (n, chunksize, secs, n / secs, ok, n - ok), flush=True)
    if first:
        sys.stderr.write("map_http: %s\n" % first)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
