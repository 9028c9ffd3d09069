#!/usr/bin/env python3
"""Memory: a pool master's RSS idle and with many idle keep-alive connections,
and its workers' RSS. One measurement per run.

  mem_bench.py fpd PORT PID CONNS    forkpoold (pid PID) on 127.0.0.1:PORT: its RSS
                                     idle, then with CONNS idle keep-alive connections
                                     held open by this process (each has had one
                                     GET /v1/health answered), and its workers' RSS
  mem_bench.py python                multiprocessing.Pool(2) after a warm-up apply:
                                     the master's and the workers' RSS

RSS is VmRSS of /proc/PID/status; PSS (shared pages divided among the processes
sharing them, /proc/PID/smaps_rollup) is printed beside the workers' RSS, since
forked workers share most of their pages with the master. Worker figures are the
mean over the workers. This process raises its own RLIMIT_NOFILE to hold the
connections; forkpoold must have been started with room for them (scripts/bench
raises its limit and passes --max-connections). The run fails unless forkpoold's
/metrics counts every connection open while the RSS is read.

Prints one line, e.g.
  result name=memory system=forkpoold conns=10000 master_idle_kb=... master_conns_kb=...
    per_conn_b=... worker_kb=... worker_pss_kb=... workers=2
"""

import json
import multiprocessing
import os
import resource
import socket
import sys
import urllib.request


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def status_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (field, pid))


def pss_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError("no Pss in /proc/%d/smaps_rollup" % pid)


def mean(values):
    return sum(values) / len(values)


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as resp:
        return resp.read().decode()


def open_connections(port, n):
    """n keep-alive connections, each with one /v1/health answered and left idle."""
    request = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("connection %d closed before its answer" % i)
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError("connection %d: %r" % (i, head[:80]))
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("connection %d closed mid-answer" % i)
                rest += chunk
            if b"close" in head.lower().split(b"connection:")[-1].split(b"\r\n")[0]:
                raise RuntimeError("connection %d: the server closes it" % i)
    except Exception:
        for s in socks:
            s.close()
        raise
    return socks


def run_fpd(port, pid, conns):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = conns + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise RuntimeError("RLIMIT_NOFILE hard limit %d is under the %d this needs"
                               % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    get(port, "/v1/health")
    workers = json.loads(get(port, "/v1/workers"))["workers"]
    pids = [w["pid"] for w in workers]
    idle = status_kb(pid)
    worker_rss = mean([status_kb(p) for p in pids])
    worker_pss = mean([pss_kb(p) for p in pids])
    socks = open_connections(port, conns)
    try:
        loaded = status_kb(pid)
        metrics = get(port, "/metrics")
        open_now = None
        for line in metrics.splitlines():
            if line.startswith("forkpool_http_connections "):
                open_now = int(float(line.split()[1]))
        # The /metrics request's own connection counts too.
        if open_now is None or open_now < conns:
            raise RuntimeError("forkpoold counts %s open connections, want %d"
                               % (open_now, conns))
    finally:
        for s in socks:
            s.close()
    return ("system=forkpoold conns=%d master_idle_kb=%d master_conns_kb=%d per_conn_b=%.0f "
            "worker_kb=%.0f worker_pss_kb=%.0f workers=%d"
            % (conns, idle, loaded, (loaded - idle) * 1024.0 / conns, worker_rss,
               worker_pss, len(pids)))


def square(x):
    return x * x


def run_python():
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        if pool.apply(square, (7,)) != 49:
            raise RuntimeError("warm-up apply returned a wrong value")
        pids = [p.pid for p in multiprocessing.active_children()]
        if len(pids) != 2:
            raise RuntimeError("%d pool processes, want 2" % len(pids))
        me = os.getpid()
        return ("system=python master_idle_kb=%d worker_kb=%.0f worker_pss_kb=%.0f workers=2"
                % (status_kb(me), mean([status_kb(p) for p in pids]),
                   mean([pss_kb(p) for p in pids])))
    finally:
        pool.close()
        pool.join()


def main(argv):
    if len(argv) == 5 and argv[1] == "fpd":
        try:
            port, pid, conns = int(argv[2]), int(argv[3]), int(argv[4])
        except ValueError:
            usage()
        if conns <= 0:
            usage()
        line = run_fpd(port, pid, conns)
    elif len(argv) == 2 and argv[1] == "python":
        line = run_python()
    else:
        usage()
    print("result name=memory " + line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
