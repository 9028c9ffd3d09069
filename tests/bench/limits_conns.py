#!/usr/bin/env python3
"""Limits, connections: a normal client's /v1/health and apply latency while
slow and idle connections are open (issue 13's "2,048 slow/idle connections").

  limits_conns.py PORT SLOW IDLE [SECONDS]

against forkpoold on 127.0.0.1:PORT, started with its default deadlines. The
normal client (one keep-alive connection) makes GET /v1/health and POST
/v1/apply?wait=10 of `square` in turn, one after the other, for SECONDS
(default 6, and at least 300 of each): first for a third of that with
nothing else open (quiet), then with IDLE keep-alive connections idle after
one answered request each and SLOW connections sending a request body a
byte a second each (well inside the default body deadline of 20 s after
the headers plus 1 s per 500 bytes, so none is cut while measuring). This
process raises its own RLIMIT_NOFILE to hold them.

The run fails unless every request of the normal client is answered 200, no
connection was refused, and /metrics counts all SLOW + IDLE connections
open at the end of the loaded phase.

Prints one line, e.g.
  result name=limits_conns slow=1024 idle=1024 requests=N health_p50_ms=...
    health_p99_ms=... apply_p50_ms=... apply_p99_ms=... quiet_health_p99_ms=...
    quiet_apply_p99_ms=... open=... seconds=...
"""

import http.client
import json
import resource
import socket
import sys
import time

DRIP_EVERY = 1.0
MIN_REQUESTS = 300


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else need
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        sys.stderr.write("limits_conns: RLIMIT_NOFILE %d is under the %d this needs\n" % (soft, need))
        sys.exit(1)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100.0))]


def read_one(s):
    """One Content-Length response from a blocking socket; its status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before an answer (refused?)")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed mid-answer")
        rest += chunk
    return int(head.split()[1])


class Normal:
    """The normal client: one keep-alive connection, timed requests."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.apply_body = json.dumps({"task": "square", "args": 7})

    def one(self, method, path, body=None):
        t0 = time.perf_counter()
        hdrs = {"Content-Type": "application/json"} if body else {}
        self.conn.request(method, path, body=body, headers=hdrs)
        r = self.conn.getresponse()
        data = r.read()
        ms = (time.perf_counter() - t0) * 1000.0
        if r.status != 200:
            raise RuntimeError("%s %s: %d %r" % (method, path, r.status, data[:200]))
        return ms, data

    def round(self, seconds, between=None):
        health, apply = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(health) < MIN_REQUESTS:
            if between:
                between()
            ms, _ = self.one("GET", "/v1/health")
            health.append(ms)
            ms, data = self.one("POST", "/v1/apply?wait=10", self.apply_body)
            if json.loads(data).get("result") != 49:
                raise RuntimeError("apply answered %r" % data[:200])
            apply.append(ms)
        return health, apply

    def metric(self, name):
        _, data = self.one("GET", "/metrics")
        for line in data.decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
        raise RuntimeError("no metric " + name)


def main():
    if len(sys.argv) not in (4, 5):
        usage()
    port, nslow, nidle = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) == 5 else 6.0
    raise_nofile(nslow + nidle + 64)
    normal = Normal(port)
    normal.round(0)                                  # warm-up
    quiet_h, quiet_a = normal.round(seconds / 3)

    t_start = time.monotonic()
    idle = []
    for _ in range(nidle):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: bench\r\n\r\n")
        idle.append(s)
    for s in idle:
        if read_one(s) != 200:
            raise RuntimeError("an idle connection's request was not answered 200")
    body = b'{"task":"square","args":7}'.ljust(4096)
    head = (b"POST /v1/apply HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    slow = []
    for _ in range(nslow):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(head)
        s.setblocking(False)
        slow.append(s)
    state = {"sent": 0, "next": time.monotonic() + DRIP_EVERY}

    def drip():
        if time.monotonic() < state["next"]:
            return
        i = state["sent"]
        for s in slow:
            try:
                s.send(body[i:i + 1])
            except OSError as e:
                raise RuntimeError("a slow connection was closed while measuring: %r" % e)
        state["sent"] += 1
        state["next"] += DRIP_EVERY

    loaded_h, loaded_a = normal.round(seconds, drip)
    opened = normal.metric("forkpool_http_connections")
    refused = normal.metric("forkpool_http_connections_refused_total")
    took = time.monotonic() - t_start
    for s in slow + idle:
        s.close()
    if refused:
        raise RuntimeError("%d connections refused" % refused)
    if opened < nslow + nidle:
        raise RuntimeError("/metrics counts %d connections open, not %d" % (opened, nslow + nidle))
    print("result name=limits_conns slow=%d idle=%d requests=%d health_p50_ms=%.3f"
          " health_p99_ms=%.3f apply_p50_ms=%.3f apply_p99_ms=%.3f quiet_health_p99_ms=%.3f"
          " quiet_apply_p99_ms=%.3f open=%d seconds=%.1f summary=health_p99_%.1f_ms,"
          "_apply_p99_%.1f_ms_with_%d_slow_%d_idle" % (
              nslow, nidle, len(loaded_h), pct(loaded_h, 50), pct(loaded_h, 99),
              pct(loaded_a, 50), pct(loaded_a, 99), pct(quiet_h, 99), pct(quiet_a, 99),
              opened, took, pct(loaded_h, 99), pct(loaded_a, 99), nslow, nidle))


if __name__ == "__main__":
    main()
