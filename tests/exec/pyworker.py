"""The exec-pool tests' Python worker: well-behaved tasks and misbehaving ones."""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import forkpool_worker  # noqa: E402
from forkpool_worker import serve, task  # noqa: E402


@task
def pid(args):
    return os.getpid()


@task
def count(args):
    # A generator task: one output per yield.
    yield from range(args)


@task
def ppid(args):
    return os.getppid()


@task
def spawn(args):
    # A child of the program that outlives the task, holding the program's
    # stdin and protocol stdout open as `sleep 300 &` in a shell script would.
    return subprocess.Popen(["sleep", "300"], stdout=forkpool_worker._out).pid


@task
def exit_soon(status):
    # Exits between tasks: a moment after this task's answer.
    threading.Timer(0.2, os._exit, (status,)).start()
    return status


_hoard = []


@task
def grow(mib):
    # Written, so resident: RSS grows by `mib` MiB and stays.
    _hoard.append(b"x" * (mib << 20))
    return mib


@task
def split(args):
    """Split a string into its words."""
    yield from args.split()


@task
def tally(values):
    """Words and {word: n} objects -> one {word: n} (a reduce)."""
    counts = {}
    for v in values:
        for word, n in (v.items() if isinstance(v, dict) else [(v, 1)]):
            counts[word] = counts.get(word, 0) + n
    return counts


@task
def crash13(args):
    # A pipeline stage that kills its program on one item.
    if args == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return args


@task
def noisy(args):
    print("a print() from a task")
    return "quiet"


def hang(args):
    signal.signal(signal.SIGTERM, signal.SIG_IGN) if args == "stubborn" else None
    while True:
        time.sleep(1)


def garbage(args):
    # Past the helper, straight onto the protocol's pipe.
    forkpool_worker._out.write("hello world, not json\n")
    forkpool_worker._out.flush()
    time.sleep(60)


def fail(args):
    raise ValueError(args)


serve({
    "square": lambda x: x * x,
    "inc": lambda x: x + 1,
    "add": lambda xs: sum(xs),
    "echo": lambda x: x,
    "bytes": lambda n: "x" * n,
    "sleep": lambda ms: time.sleep(ms / 1000) or ms,
    "crash": lambda _: os.kill(os.getpid(), signal.SIGSEGV),
    "exit": lambda status: os._exit(status),
    "hang": hang,
    "garbage": garbage,
    "fail": fail,
})
