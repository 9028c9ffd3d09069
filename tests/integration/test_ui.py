#!/usr/bin/env python3
"""The status page (issue 17) in a real browser: headless Chromium.

forkpoold serves one HTML page at / and /ui; this drives Debian's `chromium`
through the DevTools protocol over a pipe (--remote-debugging-pipe: JSON
messages ending in NUL on fds 3 and 4, no port, no websocket), so every check
waits for a condition in the live page rather than for a time budget. It
checks the page shows each worker's pid and a running map's id and progress,
that items/s moves, the token prompt (the token kept in the page's memory
only), the headers, and saves a screenshot under the build directory
(ui-screenshot-BACKEND.png) for people to look at.

Run by meson once per backend:
    test_ui.py --forkpoold build/server/forkpoold --loop uring|epoll [unittest args]
FORKPOOL_UI_OUT names the directory for the screenshot (default: the current one).
Exits 77 (a skip) only when no chromium is installed.
"""

import base64
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, error_of, wait_until  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags the machine notes (/work/.library/env/machines/c.md) ask for: no
# sandbox as root, and no background traffic to hosts a closed network refuses.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions",
                  "--window-size=1280,1000", "--remote-debugging-pipe"]
# Generous: chromium's start on a loaded 2-core machine (CI runs 4 builds' tests).
CDP_TIMEOUT = 60.0


class Browser:
    """One headless Chromium, one tab, driven over --remote-debugging-pipe."""

    def __init__(self, profile):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child():
            harness._die_with_parent()
            # Chromium reads commands on fd 3 and writes answers on fd 4.
            a = os.dup(to_chrome_r)
            b = os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM] + CHROMIUM_FLAGS + ["--user-data-dir=" + profile, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=child, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method, session=False, **params):
        """Send one command and return its result (events are passed over)."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._to_chrome, data):]
        deadline = time.monotonic() + CDP_TIMEOUT
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") != self._next_id:
                    continue
                if "error" in reply:
                    raise AssertionError("%s: %s" % (method, reply["error"]))
                return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise AssertionError("chromium did not answer %s in %.0f s" % (method, CDP_TIMEOUT))
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed its pipe (exit %s)" % self.proc.poll())
            self._buf += chunk

    def goto(self, url):
        self.call("Page.navigate", session=True, url=url)

    def js(self, expression):
        """The value of a JavaScript expression in the page."""
        r = self.call("Runtime.evaluate", session=True, expression=expression,
                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def screenshot(self, path):
        png = base64.b64decode(self.call("Page.captureScreenshot", session=True,
                                         format="png", captureBeyondViewport=True)["data"])
        with open(path, "wb") as f:
            f.write(png)
        return png

    def close(self):
        """Stop by pid: SIGTERM, a bounded wait, SIGKILL; then its process group."""
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# What the page shows, read from its DOM.
SHOWN = """(() => {
  if (document.readyState === 'loading' || !document.getElementById('health') ||
      !document.body) return null;
  const rows = (id, attr) => [...document.querySelectorAll('#' + id + ' tr')]
    .filter((r) => r.dataset[attr] !== undefined).map((r) => Object.assign({}, r.dataset,
      {text: r.textContent}));
  return {workers: rows('workers', 'pid'), jobs: rows('jobs', 'job'),
          pools: rows('pools', 'pool'),
          health: document.getElementById('health').dataset.status || null,
          backend: document.getElementById('backend').dataset.backend || null,
          rate: Number(document.getElementById('rate').dataset.rate || 0),
          chart: document.getElementById('chart-line').getAttribute('d'),
          login: !document.getElementById('login').hidden,
          loginError: document.getElementById('login-error').textContent,
          loaded: document.body.dataset.loaded === '1'};
})()"""


class UiTest(unittest.TestCase):
    browser = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="forkpool-ui-")
        cls.browser = Browser(os.path.join(cls.tmp, "profile"))

    @classmethod
    def tearDownClass(cls):
        if cls.browser:
            cls.browser.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.daemons = []

    def tearDown(self):
        # Back to a blank page first, so no refresh runs against a stopped daemon.
        self.browser.goto("about:blank")
        bad = []
        for d in self.daemons:
            status = d.stop()
            if status != 0 or d.sanitizer_reports():
                bad.append("forkpoold exited %s:\n%s" % (status, d.log_text()[-4000:]))
        if bad:
            self.fail("\n".join(bad))

    def daemon(self, *args, **kw):
        d = Daemon(*args, **kw).start()
        self.daemons.append(d)
        return d

    def shown(self):
        """What the page shows now, or None while it is not (yet) the status page."""
        return self.browser.js(SHOWN)

    def until(self, pred, what, timeout=20):
        """What the page shows, once pred(it) holds."""
        def cond():
            s = self.shown()
            return s if s and pred(s) else None
        return wait_until(cond, timeout, what=what)

    def open_page(self, d, path="/"):
        self.browser.goto("http://127.0.0.1:%d%s" % (d.port, path))
        return self.until(lambda s: s["loaded"], "the page's first refresh", 30)

    # --- HTTP -------------------------------------------------------------

    def test_page_served_with_its_headers(self):
        d = self.daemon()
        r = d.get("/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        csp = r.header("Content-Security-Policy")
        html = r.body.decode("utf-8")
        # The page's own inline script and style, by hash, and nothing else.
        for tag, directive in (("script", "script-src"), ("style", "style-src")):
            body = re.findall(r"<%s>(.*?)</%s>" % (tag, tag), html, re.S)
            self.assertEqual(len(body), 1, tag)
            digest = base64.b64encode(hashlib.sha256(body[0].encode()).digest()).decode()
            self.assertIn("%s 'sha256-%s';" % (directive, digest), csp)
        self.assertIn("default-src 'none'", csp)
        self.assertIn("connect-src 'self'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotRegex(html, r"(src|href)=\"(https?:)?//", "an external asset")
        self.assertNotRegex(html, r"localStorage|sessionStorage|document\.cookie")
        self.assertEqual(d.get("/ui").body, r.body)
        head = d.request("HEAD", "/ui")
        self.assertEqual((head.status, head.body), (200, b""))
        self.assertEqual(int(head.header("Content-Length")), len(r.body))
        r = d.post("/", {"a": 1})
        error_of(self, r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "GET, HEAD")
        self.assertIn('"x"', error_of(self, d.get("/?x=1"), 400, "unknown_parameter"))

    # --- in the browser ---------------------------------------------------

    def test_page_shows_workers_and_a_running_map(self):
        d = self.daemon(workers=2)
        # 2 workers through 200 items of 200 ms: 20 s of a running map (cancelled at the end),
        # time enough under a sanitizer and a loaded machine.
        job = d.post("/v1/map", {"task": "sleep", "items": [200] * 200, "chunksize": 1}).json()
        wait_until(lambda: d.get("/v1/jobs/" + job["id"]).json()["done"] >= 1, 10,
                   what="the map's first item")
        pids = d.worker_pids()
        s = self.open_page(d)
        self.assertFalse(s["login"], s)

        def shows_all(s):
            rows = [j for j in s["jobs"] if j["job"] == job["id"]]
            return (sorted(int(w["pid"]) for w in s["workers"]) == sorted(pids) and rows
                    and int(rows[0]["done"]) >= 1)
        s = self.until(shows_all, "every worker's pid and the map's progress")
        row = [j for j in s["jobs"] if j["job"] == job["id"]][0]
        self.assertEqual(row["total"], "200")
        self.assertEqual(row["state"], "running")
        self.assertIn("%s / 200" % row["done"], row["text"])
        self.assertEqual(s["health"], "ok")
        self.assertEqual(s["backend"], d.get("/v1/health").json()["backend"])
        self.assertEqual(s["backend"], harness.BACKEND_NAMES.get(harness.LOOP, s["backend"]))
        modules = [p for p in s["pools"] if p["pool"] == "modules"]
        self.assertTrue(modules and "sleep" in modules[0]["text"], s["pools"])
        # Refreshed: the progress moves, and items/s is measured from it.
        first = int(row["done"])
        s = self.until(lambda s: s["rate"] > 0 and s["chart"] and any(
            j["job"] == job["id"] and int(j["done"]) > first for j in s["jobs"]),
            "the progress and items/s to move")
        out = os.environ.get("FORKPOOL_UI_OUT", ".")
        png = self.browser.screenshot(os.path.join(out, "ui-screenshot-%s.png" % harness.LOOP))
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(png), 10000)
        self.assertEqual(d.delete("/v1/jobs/" + job["id"]).status, 200)

    def test_token_asked_and_kept_in_memory_only(self):
        path = os.path.join(self.tmp, "token")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write("s3cret-ui\n")
        d = self.daemon("--token-file", path, workers=2)
        d.token = "s3cret-ui"
        self.assertEqual(d.get("/", token="").status, 200)
        self.assertEqual(d.get("/v1/workers", token="").status, 401)
        pids = d.worker_pids()
        s = self.open_page(d, "/ui")
        s = self.until(lambda s: s["login"], "the token prompt")
        self.assertEqual(s["workers"], [], "no data before the token")
        self.assertEqual(s["health"], "ok", "health needs no token")

        def enter(token):
            self.browser.js("(() => { document.getElementById('token').value = %s;"
                            " document.getElementById('login-form').requestSubmit(); })()"
                            % json.dumps(token))
        enter("wrong")
        self.until(lambda s: "refused" in s["loginError"], "a wrong token refused")
        enter("s3cret-ui")
        s = self.until(lambda s: not s["login"] and s["workers"],
                       "the workers once the token is given")
        self.assertEqual(sorted(int(w["pid"]) for w in s["workers"]), sorted(pids))
        kept = self.browser.js("[localStorage.length, sessionStorage.length, document.cookie]")
        self.assertEqual(kept, [0, 0, ""])
        # A reload forgets it: the page asks again.
        self.open_page(d, "/ui")
        self.until(lambda s: s["login"], "the prompt after a reload")


if __name__ == "__main__":
    if not CHROMIUM:
        print("test_ui: no chromium installed (scripts/deps installs Debian's): skipped")
        sys.exit(77)
    harness.main()
