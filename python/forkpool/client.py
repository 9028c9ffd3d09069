"""forkpool.Client: forkpoold's HTTP API as Python calls (standard library only).

    from forkpool import Client

    fp = Client()                       # FORKPOOL_URL, else http://127.0.0.1:8080
    fp.apply("square", 7)               # 49
    for v in fp.map("square", range(10**6)):
        ...                             # values in input order, as they finish

Names follow multiprocessing.Pool where they fit: apply, map, imap,
imap_unordered, apply_async (= submit) and map_async give a Job handle.

Each request opens its own connection, so one Client may be used from
several threads. A map's items are sent as an NDJSON body with chunked
transfer encoding, written from the iterable as it is consumed (never one
list in memory), and its results are read from the job's results stream as
items finish.
"""

import collections
import http.client
import json
import os
import socket
import time
import urllib.parse

from .errors import ProtocolError, ServerError, TaskError, server_error

__all__ = ["Client", "Job", "Progress"]

DEFAULT_URL = "http://127.0.0.1:8080"
# One long-poll's length; the server caps it at its own --max-wait anyway.
POLL_S = 30.0
# Bytes of NDJSON items gathered into one chunk of the upload.
UPLOAD_CHUNK = 64 * 1024

Progress = collections.namedtuple("Progress", "done total failed")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket (forkpoold --listen unix:/path)."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _ndjson_chunks(items):
    """The items as NDJSON, in pieces of about UPLOAD_CHUNK bytes."""
    buf, size = [], 0
    for item in items:
        line = json.dumps(item, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        buf.append(line)
        size += len(line)
        if size >= UPLOAD_CHUNK:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def _ms(seconds):
    return None if seconds is None else max(1, int(round(seconds * 1000)))


class Client:
    """A connection to one forkpoold.

    url: "http://HOST:PORT" (with an optional path prefix) or "unix:/PATH";
    default FORKPOOL_URL, else http://127.0.0.1:8080.
    token / token_file: the bearer token, or the file holding it (default
    FORKPOOL_TOKEN_FILE); none by default.
    timeout: seconds to wait for the server (connecting, and for each
    answer that does not wait for tasks); long-polls and result streams
    wait for the tasks themselves as long as they run.
    """

    def __init__(self, url=None, token=None, token_file=None, timeout=60.0):
        url = url or os.environ.get("FORKPOOL_URL") or DEFAULT_URL
        self.url = url
        self.timeout = timeout
        if url.startswith("unix:"):
            path = url[len("unix:"):]
            if path.startswith("//"):
                path = path[2:]
            if not path:
                raise ValueError("forkpool: %r names no socket path" % url)
            self._unix, self._host, self._port, self._https, self._prefix = path, None, None, False, ""
        else:
            u = urllib.parse.urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError("forkpool: URL %r is not http://HOST[:PORT] or unix:/PATH" % url)
            self._unix = None
            self._host, self._https = u.hostname, u.scheme == "https"
            self._port = u.port or (443 if self._https else 80)
            self._prefix = u.path.rstrip("/")
        if token is None:
            token_file = token_file or os.environ.get("FORKPOOL_TOKEN_FILE")
            if token_file:
                with open(token_file, encoding="utf-8") as f:
                    token = f.read().strip()
                if not token:
                    raise ValueError("forkpool: token file %s is empty" % token_file)
        self._token = token

    def __repr__(self):
        return "forkpool.Client(%r)" % self.url

    # --- HTTP ------------------------------------------------------------

    def _connection(self, timeout):
        if self._unix:
            return _UnixConnection(self._unix, timeout)
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _open(self, method, path, body=None, headers=None, query=None, wait=None,
              stream=False):
        """Send a request and return (connection, response) once the
        status is in; an error status raises its ServerError.

        wait: seconds the server may take on purpose (a long-poll), added
        to the timeout. stream: the answer is read for as long as tasks run.
        """
        hdrs = {"Accept": "application/json"}
        if self._token:
            hdrs["Authorization"] = "Bearer " + self._token
        hdrs.update(headers or {})
        chunked = False
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None and not isinstance(body, bytes):
            chunked = True               # an iterable of bytes
            hdrs["Transfer-Encoding"] = "chunked"
        q = {k: v for k, v in (query or {}).items() if v is not None}
        target = self._prefix + path + ("?" + urllib.parse.urlencode(q, safe=",") if q else "")
        timeout = self.timeout
        if wait is not None and timeout is not None:
            timeout += wait
        conn = self._connection(timeout)
        try:
            try:
                conn.request(method, target, body=body, headers=hdrs, encode_chunked=chunked)
            except (BrokenPipeError, ConnectionResetError):
                # The server may refuse a body before reading it all: its
                # answer says why (a connection it closed says nothing).
                if conn.sock is None:
                    raise
            resp = conn.getresponse()
            if stream and conn.sock is not None:
                conn.sock.settimeout(None)
            if resp.status >= 400:
                raise self._error(resp)
            return conn, resp
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _error(resp, data=None):
        if data is None:
            data = resp.read()
        try:
            err = json.loads(data.decode("utf-8"))["error"]
            return server_error(resp.status, err["code"], err["message"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            text = data.decode("utf-8", "replace").strip()[:300]
            return ServerError(resp.status, "http_%d" % resp.status,
                               text or resp.reason or "HTTP %d" % resp.status)

    def _json(self, method, path, body=None, headers=None, query=None, wait=None):
        conn, resp = self._open(method, path, body, headers, query, wait)
        try:
            data = resp.read()
        finally:
            conn.close()
        if resp.status == 204 or not data:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ProtocolError("%s %s: the answer is not JSON: %s" % (method, path, e))

    def _lines(self, path, query=None):
        """The objects of an NDJSON stream, read as the server writes them."""
        conn, resp = self._open("GET", path, query=query, stream=True)
        try:
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line.decode("utf-8"))
        finally:
            conn.close()

    @staticmethod
    def _submit_headers(idempotency_key):
        return {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}

    # --- one task --------------------------------------------------------

    def submit(self, task, args=None, timeout=None, retries=None, retry_on=None,
               idempotency_key=None, _wait=None, concurrency=None):
        """Start task(args); returns its Job at once.

        timeout: the task's own time limit in seconds (the server's
        --task-timeout by default); retries, retry_on, concurrency (at most
        that many of the job's items at once): as the API's."""
        body = {"task": task, "args": args}
        for k, v in (("timeout_ms", _ms(timeout)), ("retries", retries),
                     ("retry_on", list(retry_on) if retry_on is not None else None),
                     ("concurrency", concurrency)):
            if v is not None:
                body[k] = v
        query = {"wait": "%g" % _wait} if _wait else None
        doc = self._json("POST", "/v1/apply", body, self._submit_headers(idempotency_key),
                         query, wait=_wait)
        return Job(self, doc)

    apply_async = submit

    def apply(self, task, args=None, timeout=None, retries=None, retry_on=None,
              idempotency_key=None, concurrency=None):
        """Run task(args) and return its value; a failure raises TaskError."""
        # Waiting in the submission saves a round trip for quick tasks.
        return self.submit(task, args, timeout, retries, retry_on, idempotency_key,
                           _wait=POLL_S, concurrency=concurrency).get()

    # --- many items ------------------------------------------------------

    def map_async(self, task, iterable, chunksize=None, timeout=None, retries=None,
                  retry_on=None, idempotency_key=None, concurrency=None):
        """Submit task over every item of iterable (streamed up as NDJSON);
        returns the Job once the server has taken them all. concurrency:
        at most that many of its items run at once (None: as many as the
        workers and the tasks' limits allow)."""
        query = {"task": task, "chunksize": chunksize, "timeout_ms": _ms(timeout),
                 "retries": retries, "concurrency": concurrency,
                 "retry_on": ",".join(retry_on) if retry_on is not None else None}
        headers = {"Content-Type": "application/x-ndjson"}
        headers.update(self._submit_headers(idempotency_key))
        doc = self._json("POST", "/v1/map", _ndjson_chunks(iterable), headers, query)
        return Job(self, doc)

    def map(self, task, iterable, chunksize=None, ordered=True, return_exceptions=False,
            timeout=None, retries=None, retry_on=None, idempotency_key=None,
            concurrency=None):
        """Run task over every item; an iterator of the values, yielded as
        they finish: in input order (ordered=True) or completion order.

        The items are submitted before this returns. A failed item raises
        TaskError when the iterator reaches it, or, with
        return_exceptions=True, is yielded as that TaskError (as
        asyncio.gather does). The iterator's .job is the Job."""
        job = self.map_async(task, iterable, chunksize, timeout, retries, retry_on,
                             idempotency_key, concurrency=concurrency)
        return _Results(job, job.results(ordered=ordered, return_exceptions=return_exceptions))

    def imap(self, task, iterable, chunksize=None, **kw):
        """map() in input order (multiprocessing.Pool.imap)."""
        return self.map(task, iterable, chunksize, ordered=True, **kw)

    def imap_unordered(self, task, iterable, chunksize=None, **kw):
        """map() in completion order (multiprocessing.Pool.imap_unordered)."""
        return self.map(task, iterable, chunksize, ordered=False, **kw)

    # --- pipelines -------------------------------------------------------

    def pipeline_async(self, stages, iterable, reduce=None, ordered=False, timeout=None,
                       retries=None, retry_on=None, idempotency_key=None, concurrency=None):
        """Submit a pipeline; returns its Job.

        stages: task names, or dicts as the API takes them ({"task":
        "lower", "workers": 1, "buffer": 100, ...}); reduce: a task name or
        {"task", "batch"}. Names only: the items are streamed up as NDJSON;
        with dicts they go in one JSON body. concurrency caps every stage's
        workers, as the API's does."""
        stages = list(stages)
        headers = self._submit_headers(idempotency_key)
        common = {"timeout_ms": _ms(timeout), "retries": retries, "concurrency": concurrency}
        if all(isinstance(s, str) for s in stages) and not isinstance(reduce, dict):
            query = dict(common, stages=",".join(stages), reduce=reduce,
                         ordered="1" if ordered else None,
                         retry_on=",".join(retry_on) if retry_on is not None else None)
            headers["Content-Type"] = "application/x-ndjson"
            doc = self._json("POST", "/v1/pipelines", _ndjson_chunks(iterable), headers, query)
        else:
            body = {"stages": stages, "items": list(iterable), "ordered": bool(ordered)}
            if reduce is not None:
                body["reduce"] = reduce
            for k, v in common.items():
                if v is not None:
                    body[k] = v
            if retry_on is not None:
                body["retry_on"] = list(retry_on)
            doc = self._json("POST", "/v1/pipelines", body, headers)
        return Job(self, doc)

    def pipeline(self, stages, iterable, reduce=None, ordered=False, return_exceptions=False,
                 **kw):
        """Run a pipeline. Without reduce: an iterator of the last stage's
        outputs as they come (input order with ordered=True); a failed input
        raises TaskError (with its stage) or is yielded as it, as for map.
        With reduce: the reduced value, once the pipeline is done."""
        job = self.pipeline_async(stages, iterable, reduce, ordered, **kw)
        if reduce is not None:
            return job.get()
        return _Results(job, job.results(return_exceptions=return_exceptions))

    # --- the server ------------------------------------------------------

    def job(self, job_id):
        """The Job of an id (GET /v1/jobs/ID; NotFound or Expired if none)."""
        return Job(self, self._json("GET", "/v1/jobs/" + urllib.parse.quote(job_id)))

    def jobs(self, state=None, limit=None):
        """The kept jobs' documents, newest first, every page (or `limit` of them)."""
        out, after = [], None
        while True:
            page = self._json("GET", "/v1/jobs", query={
                "state": state, "after": after,
                "limit": min(1000, limit - len(out)) if limit is not None else 1000})
            out.extend(page["jobs"])
            after = page.get("next")
            if after is None or (limit is not None and len(out) >= limit):
                return out

    def workers(self):
        """The workers (GET /v1/workers): pid, pool, state, tasks done, RSS, ..."""
        return self._json("GET", "/v1/workers")["workers"]

    def tasks(self):
        """The tasks every pool offers (GET /v1/tasks)."""
        return self._json("GET", "/v1/tasks")["tasks"]

    def health(self):
        """The health document (GET /v1/health), healthy or not: a 503 whose
        body is the health document is returned, not raised."""
        conn = self._connection(self.timeout)
        try:
            hdrs = {"Authorization": "Bearer " + self._token} if self._token else {}
            conn.request("GET", self._prefix + "/v1/health", headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status >= 400:
                try:
                    doc = json.loads(data.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    doc = None
                if not isinstance(doc, dict) or "error" in doc:
                    raise self._error(resp, data)
                return doc
            return json.loads(data.decode("utf-8"))
        finally:
            conn.close()


class _Results:
    """An iterator over a job's results that also holds the job (.job)."""

    def __init__(self, job, it):
        self.job = job
        self._it = it

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self):
        """Stop reading (the job runs on; job.cancel() stops it)."""
        self._it.close()


class Job:
    """A submitted job: .id, .kind, .task; .status and .progress ask the
    server each time; .wait(), .get(), .results(), .cancel()."""

    def __init__(self, client, doc):
        self.client = client
        self.id = doc["id"]
        self.doc = doc           # the last document fetched
        self.kind = doc.get("kind")
        self.task = doc.get("task")

    def __repr__(self):
        return "<forkpool.Job %s %s %s>" % (self.id, self.kind, self.doc.get("state"))

    def _path(self):
        return "/v1/jobs/" + urllib.parse.quote(self.id)

    def refresh(self, wait=None, results=False):
        """Fetch the job's document (long-polling up to `wait` seconds)."""
        query = {"wait": "%.3f" % wait if wait else None, "results": "1" if results else None}
        self.doc = self.client._json("GET", self._path(), query=query, wait=wait)
        self.kind = self.doc.get("kind", self.kind)
        self.task = self.doc.get("task", self.task)
        return self.doc

    @property
    def status(self):
        """queued, running, done, failed or cancelled (asked now)."""
        return self.refresh()["state"]

    @property
    def progress(self):
        """Progress(done, total, failed) (asked now)."""
        d = self.refresh()
        return Progress(d.get("done", 0), d.get("total", 0), d.get("failed", 0))

    def ready(self):
        """Whether the job has finished (multiprocessing's AsyncResult.ready)."""
        return self.status in ("done", "failed", "cancelled")

    def successful(self):
        return self.status == "done"

    def wait(self, timeout=None):
        """Until the job finishes (or `timeout` seconds pass: TimeoutError).
        Returns its final document."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.doc.get("state") in ("done", "failed", "cancelled"):
            return self.doc
        while True:
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError("job %s did not finish in %g s" % (self.id, timeout))
            doc = self.refresh(wait=left)
            if doc["state"] in ("done", "failed", "cancelled"):
                return doc

    def get(self, timeout=None):
        """The job's outcome once it finishes: an apply's value, a map's
        values as a list, a pipeline's reduced value (else its outputs).
        A failed item raises TaskError."""
        doc = self.wait(timeout)
        if self.kind == "apply":
            if "error" in doc:
                raise TaskError.from_error(doc["error"], index=0, job_id=self.id)
            return doc.get("result")
        if self.kind == "pipeline" and "result" in doc:
            if "error" in doc:
                raise TaskError.from_error(doc["error"], job_id=self.id)
            return doc["result"]
        return list(self.results())

    def results(self, ordered=True, return_exceptions=False):
        """The items' values as the server streams them (GET .../results):
        in input order or, ordered=False, completion order; a pipeline's in
        the order chosen at submission. A failed item raises TaskError, or
        is yielded as one with return_exceptions=True."""
        query = None if self.kind == "pipeline" else \
            {"order": "input" if ordered else "completion"}
        for line in self.client._lines(self._path() + "/results", query):
            if "error" in line:
                err = TaskError.from_error(line["error"], line.get("index"),
                                           line.get("stage"), self.id)
                if not return_exceptions:
                    raise err
                yield err
            else:
                yield line.get("value")

    def cancel(self):
        """Cancel the job if it runs (its running tasks are killed); a
        finished job is forgotten by the server (then Expired)."""
        self.client._json("DELETE", self._path())
