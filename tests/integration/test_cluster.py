#!/usr/bin/env python3
"""forkpoold nodes find each other through Redis (issue 15, its foundation).

- Three nodes on one Redis list each other in /v1/health and /v1/workers,
  each marking itself; a node SIGKILLed leaves the lists within the
  heartbeat TTL; a node stopped cleanly deletes its key on the way out.
- Redis unreachable at start: exit 1 naming the URL; with --cluster-wait the
  node serves meanwhile and registers once Redis comes up.
- Redis restarted under a running node: it reports "disconnected", refuses
  submissions with 503 store_unavailable meanwhile, reconnects, registers again, counts the reconnect.
- A password from --cluster-auth-file, a wrong one refused by name; two
  prefixes on one Redis are two clusters; a unix: socket URL; a peer that is
  not Redis named; bad URLs and flags exit 2 with the reason.

Needs redis-server (scripts/deps installs it); without it the suite exits 77.

Run by meson once per backend:
    test_cluster.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, wait_until  # noqa: E402
from redis_harness import REDIS_SERVER, RedisServer, free_port  # noqa: E402

# cluster.c's defaults: a heartbeat a second, a key that lives three.
HEARTBEAT_S = 1.0
TTL_S = 3.0


class ClusterTest(unittest.TestCase):

    def redis(self, **kw):
        r = RedisServer(**kw).start()
        self.addCleanup(r.close)
        return r

    def node(self, url, *args, **kw):
        d = Daemon("--cluster", url, *args, workers=kw.pop("workers", 1), **kw).start()
        self.addCleanup(self.stop_clean, d)
        return d

    def stop_clean(self, d):
        """SIGTERM, so that a sanitizer build checks the exit for leaks too."""
        d.stop(signal.SIGTERM)
        self.assertEqual(d.sanitizer_reports(), [], d.log_text()[-4000:])

    def health(self, d):
        r = d.get("/v1/health")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def names(self, d, path="/v1/health"):
        return sorted(n["name"] for n in d.get(path).json().get("nodes", []))

    def run_fails(self, *args, timeout=20):
        """forkpoold that must exit by itself: its status and stderr."""
        p = subprocess.run([harness.FORKPOOLD, "--listen", "127.0.0.1:0", "--loop",
                            harness.LOOP, "--workers", "1"] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout,
                           preexec_fn=harness._die_with_parent)
        err = p.stderr.decode("utf-8", "replace")
        self.assertNotRegex(err, r"AddressSanitizer|LeakSanitizer|runtime error:")
        return p.returncode, err

    # --- the registry -----------------------------------------------------

    def test_nodes_see_each_other_and_leave(self):
        r = self.redis()
        a = self.node(r.url, "--node-name", "a")
        b = self.node(r.url, "--node-name", "b")
        c = self.node(r.url, "--node-name", "c", workers=2)
        for d in (a, b, c):
            wait_until(lambda: self.names(d) == ["a", "b", "c"], 10,
                       what="three nodes in /v1/health")
        h = self.health(b)
        self.assertEqual(h["cluster"], "connected")
        self.assertEqual(h["node"], "b")
        self.assertEqual([n["name"] for n in h["nodes"] if n["self"]], ["b"])
        self.assertEqual(h["nodes"][0]["name"], "b", "this node comes first")
        by = {n["name"]: n for n in h["nodes"]}
        self.assertEqual(by["c"]["pid"], c.pid)
        self.assertEqual(by["c"]["address"], "127.0.0.1:%d" % c.port)
        self.assertEqual(by["c"]["backend"], harness.BACKEND_NAMES.get(harness.LOOP, by["c"]["backend"]))
        self.assertEqual(by["c"]["workers"]["count"], 2)
        wait_until(lambda: self.names(a, "/v1/workers") == ["a", "b", "c"], 10,
                   what="three nodes in /v1/workers")
        self.assertIn("workers", a.get("/v1/workers").json(), "the local workers stay")
        m = a.get("/metrics").body.decode()
        self.assertIn("forkpool_cluster_nodes 3", m)
        self.assertIn("forkpool_cluster_connected 1", m)

        # SIGKILL: no goodbye; the key expires with its TTL.
        killed_at = time.monotonic()
        c.stop(signal.SIGKILL)
        wait_until(lambda: self.names(a) == ["a", "b"], TTL_S + 3 * HEARTBEAT_S + 2,
                   what="the killed node gone from the list")
        self.assertGreater(time.monotonic() - killed_at, 0.5,
                           "a killed node stays until its key expires")

        # A clean stop deletes the key before exiting.
        self.assertEqual(b.stop(signal.SIGTERM), 0)
        self.assertEqual(r.command("EXISTS", "forkpool:node:b"), 0)
        self.assertEqual(r.command("EXISTS", "forkpool:node:a"), 1)
        self.assertIn("left the registry", b.log_text())
        wait_until(lambda: self.names(a) == ["a"], 2 * HEARTBEAT_S + 2,
                   what="the stopped node gone, before any TTL")

    # --- Redis absent, late, restarted ---------------------------------

    def test_redis_down_at_start_exits_1(self):
        url = "redis://127.0.0.1:%d" % free_port()
        status, err = self.run_fails("--cluster", url)
        self.assertEqual(status, 1, err)
        self.assertIn("--cluster %s: cannot reach Redis" % url, err)
        self.assertIn("--cluster-wait", err)

    def test_cluster_wait_starts_once_redis_is_up(self):
        port = free_port()
        url = "redis://127.0.0.1:%d" % port
        d = self.node(url, "--cluster-wait", "--node-name", "late")
        self.assertEqual(self.health(d)["cluster"], "disconnected")
        self.assertEqual(self.names(d), ["late"], "alone while Redis is away")
        d.wait_line(r"cannot connect to Redis at %s" % url, 10)
        r = self.redis(port=port)
        wait_until(lambda: self.health(d)["cluster"] == "connected", 10,
                   what="connected once Redis is up")
        wait_until(lambda: r.command("EXISTS", "forkpool:node:late") == 1, 5,
                   what="registered")

    def test_redis_restart_reconnects_and_registers_again(self):
        r = self.redis()
        d = self.node(r.url, "--node-name", "n1")
        wait_until(lambda: r.command("EXISTS", "forkpool:node:n1") == 1, 5, what="registered")
        r.stop()
        wait_until(lambda: self.health(d)["cluster"] == "disconnected", 10,
                   what="disconnected")
        d.wait_line(r"lost Redis at %s" % r.url, 5)
        # Jobs live in Redis: a submission meanwhile is refused by name (503).
        res = d.post("/v1/apply?wait=20", b'{"task":"square","args":7}',
                     headers={"Content-Type": "application/json"})
        self.assertEqual(res.status, 503, res)
        self.assertEqual(res.json()["error"]["code"], "store_unavailable")
        r.start()
        wait_until(lambda: self.health(d)["cluster"] == "connected", 10,
                   what="reconnected")

        def applied():
            x = d.post("/v1/apply?wait=20", b'{"task":"square","args":7}',
                       headers={"Content-Type": "application/json"})
            return x.status == 200 and x.json()
        self.assertEqual(wait_until(applied, 10, interval=0.1, what="taken again")["result"],
                         49)
        wait_until(lambda: r.command("EXISTS", "forkpool:node:n1") == 1, 5,
                   what="registered again")
        self.assertIn("forkpool_cluster_reconnects_total 1", d.get("/metrics").body.decode())

    # --- auth, prefixes, sockets, URLs -----------------------------------

    def test_auth_file_and_prefixes(self):
        r = self.redis(password="s3cret-pw")
        tmp = tempfile.mkdtemp(prefix="fp-cluster-")
        good = os.path.join(tmp, "good")
        bad = os.path.join(tmp, "bad")
        for path, text in ((good, "s3cret-pw\n"), (bad, "wrong")):
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o600)
        x = self.node(r.url, "--cluster-auth-file", good, "--cluster-prefix", "one:",
                      "--node-name", "x")
        y = self.node(r.url, "--cluster-auth-file", good, "--cluster-prefix", "two:",
                      "--node-name", "y")
        wait_until(lambda: r.command("EXISTS", "one:node:x") == 1 and
                   r.command("EXISTS", "two:node:y") == 1, 5, what="both registered")
        # A node of each prefix more, started after both: once x lists z and
        # y lists w, each has read its list since the other prefix's node came.
        self.node(r.url, "--cluster-auth-file", good, "--cluster-prefix", "one:",
                  "--node-name", "z")
        self.node(r.url, "--cluster-auth-file", good, "--cluster-prefix", "two:",
                  "--node-name", "w")
        wait_until(lambda: "z" in self.names(x) and "w" in self.names(y), 10,
                   what="each prefix's second node listed")
        self.assertEqual(self.names(x), ["x", "z"])
        self.assertEqual(self.names(y), ["w", "y"])
        self.assertEqual(sorted(r.command("ZRANGE", "two:nodes", 0, -1)), ["w", "y"])
        self.assertNotIn(r.password, x.log_text())

        status, err = self.run_fails("--cluster", r.url, "--cluster-auth-file", bad)
        self.assertEqual(status, 1, err)
        self.assertIn("AUTH refused", err)
        status, err = self.run_fails("--cluster", r.url)
        self.assertEqual(status, 1, err)
        self.assertIn("NOAUTH", err)

        os.chmod(good, 0o644)
        status, err = self.run_fails("--cluster", r.url, "--cluster-auth-file", good,
                                     "--strict-perms")
        self.assertEqual(status, 2, err)
        self.assertIn("--cluster-auth-file %s: readable or writable by group or others" % good,
                      err)

    def test_unix_socket_url(self):
        r = self.redis(unix=True)
        d = self.node("unix:" + r.sock_path + "?db=3", "--node-name", "u")
        wait_until(lambda: self.health(d)["cluster"] == "connected", 10, what="connected")
        wait_until(lambda: self._exists_in_db(r, 3, "forkpool:node:u"), 5,
                   what="registered in database 3")

    def _exists_in_db(self, r, db, key):
        import socket as s_
        from redis_harness import _Reader, _encode
        with s_.create_connection(("127.0.0.1", r.port), timeout=5) as s:
            rd = _Reader(s)
            s.sendall(_encode(["SELECT", db]) + _encode(["EXISTS", key]))
            rd.reply()
            return rd.reply() == 1

    def test_not_redis_is_named(self):
        other = Daemon(workers=1).start()
        self.addCleanup(other.stop, signal.SIGKILL)
        status, err = self.run_fails("--cluster", "redis://127.0.0.1:%d" % other.port)
        self.assertEqual(status, 1, err)
        self.assertIn("is it Redis?", err)

    def test_bad_settings_exit_2(self):
        cases = [
            (["--cluster", "http://127.0.0.1:6379"], "expected redis://HOST[:PORT][/DB]"),
            (["--cluster", "redis://127.0.0.1:99999"], "the port must be a number"),
            (["--cluster", "redis://user:pw@127.0.0.1"], "put the password in --cluster-auth-file"),
            (["--cluster", "redis://127.0.0.1/x"], "database number"),
            (["--cluster", "unix:relative.sock"], "must be absolute"),
            (["--cluster", "redis://no-such-host.invalid"], "cannot resolve no-such-host.invalid"),
            (["--cluster-prefix", "p:"], "--cluster-prefix: needs --cluster URL"),
            (["--cluster-wait"], "--cluster-wait: needs --cluster URL"),
            (["--cluster", "redis://127.0.0.1:1", "--node-name", "a b"], "--node-name"),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                status, err = self.run_fails(*args)
                self.assertIn(want, err)
                # A resolution failure is found when the cluster starts: 1.
                self.assertEqual(status, 1 if "resolve" in want or "node-name" in want else 2,
                                 err)


if __name__ == "__main__":
    if not REDIS_SERVER:
        print("redis-server not found (scripts/deps installs it): skipping")
        sys.exit(77)
    harness.main()
