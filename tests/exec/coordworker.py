"""test_task_kv.py's exec worker: forkpool.worker's shared values, locks and
cancel, and one task speaking the call lines by hand."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from forkpool import worker  # noqa: E402
from forkpool.worker import CallError, task, serve  # noqa: E402


@task
def incr(key):
    return worker.kv_incr(key)


@task
def get(key):
    return worker.kv_get(key, "absent")


@task
def roundtrip(key):
    """set, get, cas (lost and won), del: what each answered."""
    worker.kv_set(key, {"n": 1})
    got = worker.kv_get(key)
    lost = worker.kv_cas(key, {"n": 3}, expect={"n": 2})
    won = worker.kv_cas(key, {"n": 2}, expect={"n": 1})
    fresh = worker.kv_cas(key + "-new", 5)
    try:
        worker.kv_incr(key)
        bad = None
    except CallError as e:
        bad = [e.errno, str(e)]
    return {"got": got, "lost": list(lost), "won": list(won), "fresh": list(fresh),
            "bad": bad, "deleted": worker.kv_del(key), "again": worker.kv_del(key)}


@task
def locker(args):
    """Take a lock, record the pid under `key`, hold it `hold_ms` or until cancelled."""
    try:
        worker.lock(args["name"], args.get("timeout_ms", 10000))
    except CallError as e:
        raise RuntimeError("%s (%s)" % (e, e.errno))
    if "key" in args:
        worker.kv_set(args["key"], os.getpid())
    end = time.monotonic() + args.get("hold_ms", 0) / 1000.0
    while time.monotonic() < end and not worker.cancelled():
        time.sleep(0.002)
    if not args.get("keep"):
        worker.unlock(args["name"])
    return os.getpid()


@task
def watch(args):
    worker.cancelled()  # armed before it says it runs (see demo_kv.c)
    worker.kv_set(args["key"], "running")
    end = time.monotonic() + args["ms"] / 1000.0
    while time.monotonic() < end:
        if worker.cancelled():
            worker.kv_set(args["key"], "cancelled")
            return "cancelled"
        time.sleep(0.002)
    return args["ms"]


@task
def raw(args):
    """The protocol by hand: a call line with a bad call, then a good one."""
    out = worker._out
    answers = []
    for line in ({"id": worker._current, "call": "frobnicate", "key": "k"},
                 {"id": worker._current, "call": "incr", "key": args, "by": 5}):
        out.write(json.dumps(line) + "\n")
        out.flush()
        answers.append(json.loads(sys.stdin.readline()))
    return answers


if __name__ == "__main__":
    serve()
