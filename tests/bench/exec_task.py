#!/usr/bin/env python3
"""The exec suite's worker: the same trivial function the references run,
served to forkpool through python/forkpool_worker.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from forkpool_worker import serve  # noqa: E402


def square(x):
    return x * x


serve({"square": square})
