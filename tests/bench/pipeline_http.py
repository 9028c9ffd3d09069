#!/usr/bin/env python3
"""The pipeline benchmark through forkpoold: bench-pipeline's three stages
(square, echo, square) over N items, as one HTTP client would run it:

  pipeline_http.py PORT N

POST /v1/pipelines with the items as NDJSON and ?wait (the answer comes when
the job is finished), then GET its /results stream to the last byte. Both are
timed, on one keep-alive connection; building the body before and checking
the outputs after (their sum and input indices, item i being i % 1000) are
not. Prints bench-pipeline's result line (with the time until the POST's answer
and the time of the stream); exits 1 on a wrong answer.
"""

import http.client
import json
import sys
import time


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    port, n = int(sys.argv[1]), int(sys.argv[2])
    body = "".join("%d\n" % (i % 1000) for i in range(n)).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    t0 = time.monotonic()
    c.request("POST", "/v1/pipelines?stages=square,echo,square&wait=600", body=body,
              headers={"Content-Type": "application/x-ndjson"})
    r = c.getresponse()
    doc = json.loads(r.read())
    if r.status != 200 or doc.get("state") != "done":
        sys.stderr.write("pipeline_http: POST answered %d: %r\n" % (r.status, doc))
        sys.exit(1)
    t1 = time.monotonic()
    c.request("GET", "/v1/jobs/%s/results" % doc["id"])
    r = c.getresponse()
    data = r.read()
    secs = time.monotonic() - t0

    total = 0
    outputs = 0
    bad = 0
    for line in data.splitlines():
        x = json.loads(line)
        outputs += 1
        if "value" not in x or not 0 <= x["index"] < n:
            bad += 1
            continue
        total += x["value"]
    c.request("DELETE", "/v1/jobs/" + doc["id"])
    c.getresponse().read()
    c.close()
    want = sum((i % 1000) ** 4 for i in range(n))
    print("result name=pipeline-http backend=http items=%d outputs=%d seconds=%.3f rate=%.1f "
          "post_seconds=%.3f results_seconds=%.3f"
          % (n, outputs, secs, n / secs, t1 - t0, secs - (t1 - t0)))
    if r.status != 200 or outputs != n or bad or total != want:
        sys.stderr.write("pipeline_http: wrong: status %d outputs=%d bad=%d sum=%d want=%d\n"
                         % (r.status, outputs, bad, total, want))
        sys.exit(1)


if __name__ == "__main__":
    main()
