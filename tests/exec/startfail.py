"""An exec-pool worker that cannot start while a marker file exists.

`python3 startfail.py MARKER [SECONDS]`: while MARKER exists it fails as a
program with a missing dependency does, on an import (after SECONDS, 0 by
default, as a slow start-up would), so Python writes a traceback to stderr
and exits with status 1 before the program says ready. Once MARKER is gone it
starts and serves `echo`.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

if os.path.exists(sys.argv[1]):
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
    import forkpool_no_such_module  # noqa: F401

from forkpool_worker import serve  # noqa: E402

serve({"echo": lambda args: args})
