#!/usr/bin/env python3
"""Limits, memory: forkpoold's master RSS growth with stalled readers of a big
job's results (issue 13: 20 such streams of a running 300 x 1 MB map took the
master to 6 GB). One measurement per run.

  limits_memory.py PORT PID [READERS [ITEMS]]

forkpoold (pid PID) on 127.0.0.1:PORT. Reads the master's VmRSS, submits a map
of ITEMS (default 300) `bytes` items of 1 MB, and at once opens READERS
(default 20) connections that ask for its results (GET /v1/jobs/ID/results)
and never read past the response head: they attach while the map runs, as in
the issue. Once the map is done and every reader has 64 KiB or more waiting in
its socket (the server has streamed to each), the master's VmRSS is read again,
and /v1/health is timed once. The growth the readers cause is the RSS growth
less what the job itself holds (forkpool_results_bytes of /metrics, the records
and values it keeps whether or not anyone reads them). Then one reader reads its
stream to the end, which must be ITEMS lines of 1 MB values in item order, or the
run fails.

Prints one line, e.g.
  result name=limits-memory readers=20 items=300 growth_kb=... total_kb=...
    job_kb=... per_reader_kb=... health_ms=... rss_before_kb=... rss_after_kb=...
"""

import fcntl
import json
import socket
import struct
import sys
import termios
import time
import urllib.request

MB = 1000 * 1000


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/%d/status" % pid)


def request(port, method, path, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                 method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


def results_bytes(port):
    for line in request(port, "GET", "/metrics").splitlines():
        if line.startswith("forkpool_results_bytes "):
            return int(float(line.split()[1]))
    raise RuntimeError("/metrics has no forkpool_results_bytes")


def pending(sock):
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def read_head(sock):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        c = sock.recv(1)
        if not c:
            raise RuntimeError("a reader's connection closed before the head: %r" % head)
        head += c
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("a reader got %r" % head[:80])
    if b"chunked" not in head.lower():
        raise RuntimeError("the stream is not chunked: %r" % head)


def read_chunked(sock):
    """The rest of a chunked body, as bytes."""
    f = sock.makefile("rb")
    out = []
    while True:
        size = int(f.readline().split(b";")[0], 16)
        if size == 0:
            f.readline()
            return b"".join(out)
        out.append(f.read(size))
        f.read(2)


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(0.05)


def main(argv):
    if len(argv) not in (3, 4, 5):
        usage()
    try:
        port, pid = int(argv[1]), int(argv[2])
        readers = int(argv[3]) if len(argv) > 3 else 20
        items = int(argv[4]) if len(argv) > 4 else 300
    except ValueError:
        usage()
    request(port, "GET", "/v1/health")
    held_before = results_bytes(port)
    before = rss_kb(pid)
    job = json.loads(request(port, "POST", "/v1/map",
                             {"task": "bytes", "items": [MB] * items, "chunksize": 1}))
    job_id = job["id"]
    socks = []
    try:
        for _ in range(readers):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            socks.append(s)
            s.sendall(b"GET /v1/jobs/%s/results HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                      % job_id.encode())
        for s in socks:
            read_head(s)
        deadline = time.monotonic() + 120
        while True:
            doc = json.loads(request(port, "GET", "/v1/jobs/%s?wait=10" % job_id))
            if doc["state"] != "queued" and doc["state"] != "running":
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the map did not finish in 120 s")
        if doc["state"] != "done" or doc["done"] != items:
            raise RuntimeError("the map ended %s with %d of %d done"
                               % (doc["state"], doc["done"], items))
        wait_until(lambda: all(pending(s) >= 64 * 1024 for s in socks), 60,
                   "every reader to have 64 KiB waiting")
        after = rss_kb(pid)
        t0 = time.monotonic()
        request(port, "GET", "/v1/health")
        health_ms = (time.monotonic() - t0) * 1000
        job_kb = (results_bytes(port) - held_before) // 1024
        # One reader reads to the end: every line, in order, whole.
        body = read_chunked(socks[0])
        lines = body.split(b"\n")
        if lines[-1] != b"" or len(lines) != items + 1:
            raise RuntimeError("the stream had %d lines, want %d" % (len(lines) - 1, items))
        for i, line in enumerate(lines[:-1]):
            x = json.loads(line)
            if x.get("index") != i or len(x.get("value", "")) != MB:
                raise RuntimeError("line %d is wrong: %r" % (i, line[:80]))
    finally:
        for s in socks:
            s.close()
    request(port, "DELETE", "/v1/jobs/" + job_id)
    total = after - before
    growth = total - job_kb
    print("result name=limits-memory readers=%d items=%d growth_kb=%d total_kb=%d job_kb=%d "
          "per_reader_kb=%.0f health_ms=%.1f rss_before_kb=%d rss_after_kb=%d"
          % (readers, items, growth, total, job_kb, growth / readers, health_ms, before, after),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
