"""An exec program for the concurrency-limit tests (test-limit.c): the same
record as tests/modules/overlap.c, so that a C task and this program's task
count in one file and a limit shared by both can be seen to hold.

Task `hold`, args "PATH MS": under an exclusive flock on PATH, add one to the
running count kept there ("RUNNING MOST") and raise the most seen; sleep MS;
take one off again; return the most seen so far."""
import fcntl
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from forkpool_worker import serve, task  # noqa: E402


def count(fd, delta):
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        text = os.pread(fd, 64, 0).decode()
        running, most = (int(x) for x in text.split()) if text.strip() else (0, 0)
        running += delta
        most = max(most, running)
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("%d %d\n" % (running, most)).encode(), 0)
        return most
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@task
def hold(args):
    path, ms = args.split()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        count(fd, 1)
        time.sleep(int(ms) / 1000)
        return count(fd, -1)
    finally:
        os.close(fd)


if __name__ == "__main__":
    serve()
