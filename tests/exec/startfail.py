"""An exec-pool worker that cannot start while a marker file exists.

`python3 startfail.py MARKER`: while MARKER exists it fails as a program with
a missing dependency does, on an import, so Python writes a traceback to
stderr and exits with status 1 before the program says ready. Once MARKER is
gone it starts and serves `echo`.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

if os.path.exists(sys.argv[1]):
    import forkpool_no_such_module  # noqa: F401

from forkpool_worker import serve  # noqa: E402

serve({"echo": lambda args: args})
