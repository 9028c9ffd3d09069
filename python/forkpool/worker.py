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
"""

import inspect
import json
import os
import sys
import traceback

__all__ = ["serve", "task"]

_registry = {}
_out = None  # the protocol's stream, once serve() runs


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
    ident = req.get("id")
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
