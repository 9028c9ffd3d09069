"""forkpool_worker, the exec helper's old name: now forkpool.worker.

Kept so that programs written as ``from forkpool_worker import serve`` (with
PYTHONPATH pointing here, or this file installed under share/forkpool/python/
beside its forkpool/ package) keep working. Importing it gives the very
module forkpool.worker, so its state (the protocol stream ``_out``, the @task
registry) is one and the same under both names.
"""

import os
import sys

try:
    from forkpool import worker as _worker
except ImportError:
    # Run from a copy of this directory that is not on sys.path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from forkpool import worker as _worker

sys.modules[__name__] = _worker
