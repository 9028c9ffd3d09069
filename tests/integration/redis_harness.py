"""A redis-server of a test's own, for the cluster's tests (issue 15).

RedisServer starts Debian's redis-server on 127.0.0.1 with a free port (and
a unix socket when asked), in a temporary directory that holds everything it
writes; persistence is off unless asked (appendonly=True). It gets
PDEATHSIG, is awaited with PING until it answers, and is always stopped by
pid. restart() brings it back on the same port, socket and directory.
command() speaks RESP over a plain socket, for tests to look at keys.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, _die_with_parent, wait_until

REDIS_SERVER = shutil.which("redis-server")


def free_port():
    """A port the kernel just gave out and took back: free, barring a race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.f = sock.makefile("rb")

    def reply(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError("not RESP: %r" % line)


class RedisServer:
    def __init__(self, password=None, unix=False, appendonly=False, port=None):
        self.dir = tempfile.mkdtemp(prefix="fp-redis-")
        self.port = port or free_port()
        self.sock_path = os.path.join(self.dir, "redis.sock") if unix else None
        self.password = password
        self.argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port),
                     "--dir", self.dir, "--save", "",
                     "--appendonly", "yes" if appendonly else "no",
                     "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")]
        if self.sock_path:
            self.argv += ["--unixsocket", self.sock_path, "--unixsocketperm", "700"]
        if password:
            self.argv += ["--requirepass", password]
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited (%s): %s" % (
                    self.proc.returncode, self.log()))
            try:
                return self.command("PING") == "PONG"
            except (OSError, ConnectionError):
                return False
            except RuntimeError as e:
                # Restarted with appendonly: it answers LOADING until the file is read.
                if str(e).startswith("LOADING"):
                    return False
                raise
        wait_until(up, timeout, what="redis-server answering PING")
        return self

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def command(self, *args, timeout=5.0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            r = _Reader(s)
            if self.password:
                s.sendall(_encode(["AUTH", self.password]))
                r.reply()
            s.sendall(_encode(args))
            return r.reply()

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop by pid: sig, a bounded wait, then SIGKILL; reaped."""
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            self.proc.wait(timeout=timeout)

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterCase(unittest.TestCase):
    """A test case that starts forkpoold nodes joined to a Redis of its own."""

    def cluster_node(self, url, name, *args, workers=1, clean=True):
        """A node of the cluster at url, named name, ready: stopped cleanly
        (SIGTERM, checked for sanitizer reports) or, clean=False, by SIGKILL
        (a test that kills it itself)."""
        d = Daemon("--cluster", url, "--node-name", name, *args, workers=workers).start()
        if clean:
            self.addCleanup(self.stop_clean, d)
        else:
            self.addCleanup(d.stop, signal.SIGKILL)
        # It listens before it joins: a request in between is answered 503.
        d.wait_line(r"forkpoold .* ready", 20, fail_on_exit=True)
        return d

    def stop_clean(self, d):
        """SIGTERM, so that a sanitizer build checks the exit for leaks too."""
        if not d.alive():
            return
        d.stop(signal.SIGTERM)
        self.assertEqual(d.sanitizer_reports(), [], d.log_text()[-4000:])
