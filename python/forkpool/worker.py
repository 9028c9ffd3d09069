"""Python functions as forkpool workers (standard library only).

    from forkpool.worker import serve

    def resize(args):
        return {"w": args["w"] // 2, "h": args["h"] // 2}

    serve({"resize": resize})

Run it as an exec pool: ``forkpoold --exec py="python3 worker.py"``, then
call ``py.resize``. Or with a decorator:

    from forkpool.worker import task, serve

    @task
    def ocr(args): ...

    serve()

Each worker slot runs one such process, which answers tasks one at a time
over stdin/stdout in NDJSON (one JSON object per line):

    forkpool -> worker   {"id": 7, "task": "resize", "args": ...}
    worker -> forkpool   {"id": 7, "value": ...}  or  {"id": 7, "error": "...", "traceback": "..."}

A generator function answers with {"id": 7, "emit": ...} per item it yields,
then {"id": 7, "end": true}; the ready line declares it as one
({"name": "split", "generator": true, "doc": ...}, the doc being the first
line of the function's docstring), so /v1/tasks says so and a pipeline
stage runs it one item at a time. An exception becomes an error line with the
exception's type and text and its traceback (which forkpoold gives the
client as the item's error.traceback); the traceback also goes to stderr,
so forkpoold's log has it. The worker goes on with the next task.

The protocol owns the real stdout: sys.stdout is pointed at stderr, so a
print() in a task goes to forkpool's log instead of corrupting an answer.

Coordination (issue 18): while a task runs it may use the pool's shared
values, named locks and cooperative cancel, each one round trip to the
master (a "call" line answered on stdin; see README "Coordination"):

    from forkpool.worker import kv_incr, kv_get, locked, cancelled

    @task
    def count(args):
        return kv_incr("seen")            # atomic across every worker

    @task
    def report(args):
        with locked("report.csv", timeout_ms=5000):
            ...                           # one task at a time, pool-wide
        while not cancelled():            # the job was cancelled or timed out
            ...

A failed call raises CallError (its .errno is "ENOENT", "ETIMEDOUT", ...).
"""

import inspect
import json
import os
import signal
import sys
import traceback

__all__ = ["serve", "task", "CallError", "kv_get", "kv_set", "kv_del", "kv_incr", "kv_cas",
           "lock", "unlock", "locked", "cancelled"]

_registry = {}
_out = None  # the protocol's stream, once serve() runs
_current = None  # the running task's id, for its calls
_term = False  # SIGTERM came while a task said it stops by itself
_ABSENT = object()


class CallError(Exception):
    """A shared-value, lock or cancel call was refused: .errno names why
    ("ENOENT" no such key, "ETIMEDOUT" a lock not free in time, ...)."""

    def __init__(self, message, errno):
        super().__init__(message)
        self.errno = errno


def _call(op, **fields):
    """One call of the running task: a line out, its answer line back."""
    if _current is None:
        raise RuntimeError("forkpool.worker.%s is for a running task" % op)
    fields.update(id=_current, call=op)
    _answer(_out, fields)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)  # forkpool is gone
    reply = json.loads(line)
    if not reply.get("ok"):
        raise CallError(reply.get("error", "call %s failed" % op), reply.get("errno"))
    return reply.get("value")


def kv_get(key, default=None):
    """The shared value at `key`, or `default` when there is none."""
    try:
        return _call("get", key=key)
    except CallError as e:
        if e.errno == "ENOENT":
            return default
        raise


def kv_set(key, value, ttl_ms=0):
    """Set `key` to the JSON-serialisable `value` (gone after ttl_ms; 0: never)."""
    _call("set", key=key, value=value, ttl_ms=ttl_ms)


def kv_del(key):
    """Delete `key`; True when it existed."""
    try:
        _call("del", key=key)
        return True
    except CallError as e:
        if e.errno == "ENOENT":
            return False
        raise


def kv_incr(key, by=1):
    """Add `by` to the integer at `key` (missing: 0), atomically; the new value."""
    return _call("incr", key=key, by=by)


def kv_cas(key, value, expect=_ABSENT, ttl_ms=0):
    """Set `key` to `value` only if it now holds `expect` (left out: only
    if there is no such key). Returns (swapped, value now)."""
    fields = dict(key=key, value=value, ttl_ms=ttl_ms)
    if expect is not _ABSENT:
        fields["expect"] = expect
    got = _call("cas", **fields)
    return got["swapped"], got["value"]


def lock(name, timeout_ms=10000):
    """Take the pool-wide lock `name`, waiting up to timeout_ms; CallError
    (errno "ETIMEDOUT", the message naming the timeout) when not free in time.
    Given back by unlock(), or when the task ends or its worker dies."""
    _call("lock", key=name, timeout_ms=timeout_ms)


def unlock(name):
    """Give the lock `name` back."""
    _call("unlock", key=name)


class locked:
    """with locked(name, timeout_ms=...): lock() around a block."""

    def __init__(self, name, timeout_ms=10000):
        self.name, self.timeout_ms = name, timeout_ms

    def __enter__(self):
        lock(self.name, self.timeout_ms)
        return self

    def __exit__(self, *exc):
        unlock(self.name)
        return False


def _on_term(signum, frame):
    global _term
    _term = True


def cancelled():
    """True when the running task's job was cancelled or its item timed out:
    stop and return soon, before the kill that follows the grace. The first
    call makes SIGTERM (the grace's start) only noted, for the rest of the task."""
    if signal.getsignal(signal.SIGTERM) is not _on_term:
        signal.signal(signal.SIGTERM, _on_term)
    return _term or bool(_call("cancelled"))


def task(fn=None, *, name=None):
    """Register fn as a task (under its own name, or `name`) for serve()."""
    def register(f):
        _registry[name or f.__name__] = f
        return f
    return register(fn) if fn is not None else register


def _answer(out, obj):
    out.write(json.dumps(obj, separators=(",", ":"), allow_nan=False))
    out.write("\n")
    out.flush()


def _error_text(exc):
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


def _run(out, tasks, req):
    global _current
    ident = _current = req.get("id")
    try:
        _run_task(out, tasks, req, ident)
    finally:
        _current = None
        if signal.getsignal(signal.SIGTERM) is _on_term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_task(out, tasks, req, ident):
    fn = tasks.get(req.get("task"))
    if fn is None:
        _answer(out, {"id": ident, "error": "unknown task %r" % req.get("task")})
        return
    try:
        if inspect.isgeneratorfunction(fn):
            for value in fn(req.get("args")):
                _answer(out, {"id": ident, "emit": value})
            _answer(out, {"id": ident, "end": True})
        else:
            _answer(out, {"id": ident, "value": fn(req.get("args"))})
    except Exception as exc:  # noqa: BLE001 - every task failure is the item's
        tb = traceback.format_exc()
        # stderr is forkpoold's log (one line per line, naming this program).
        sys.stderr.write("task %s (id %s) raised:\n%s" % (req.get("task"), ident, tb))
        sys.stderr.flush()
        _answer(out, {"id": ident, "error": _error_text(exc), "traceback": tb})


def _describe(name, fn):
    """A task's entry in the ready line: its name, whether it is a generator
    (forkpool then runs it one item at a time in a pipeline stage) and the
    first line of its docstring."""
    entry = {"name": name}
    if inspect.isgeneratorfunction(fn):
        entry["generator"] = True
    doc = inspect.cleandoc(fn.__doc__) if isinstance(getattr(fn, "__doc__", None), str) else ""
    if doc.strip():
        entry["doc"] = doc.strip().splitlines()[0]
    return entry


def serve(tasks=None):
    """Announce the tasks, then answer task lines until stdin ends.

    `tasks` maps names to functions taking the task's arguments (decoded
    JSON) and returning a JSON-serialisable value; functions registered
    with @task are added.
    """
    global _out
    tasks = dict(_registry, **(tasks or {}))
    # Keep the real stdout for the protocol; user output goes to stderr.
    out = _out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    _answer(out, {"ready": {"tasks": [_describe(n, tasks[n]) for n in sorted(tasks)]}})
    for line in sys.stdin:
        if not line.strip():
            continue
        _run(out, tasks, json.loads(line))


if __name__ == "__main__":
    sys.exit("forkpool.worker is a module: from forkpool.worker import serve")
