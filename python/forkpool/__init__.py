"""forkpool: Python's side of the forkpool process-pool server.

- forkpool.Client talks to forkpoold over HTTP: apply, map (streamed both
  ways), submit/map_async (Job handles), pipeline, jobs, workers, health,
  tasks. Server refusals raise ServerError subclasses, failed items TaskError.
- forkpool.worker makes Python functions the tasks of an exec pool:
  ``forkpoold --exec py="python3 -m your_worker"``, see its docstring.

Standard library only.
"""

from .client import Client, Job, Progress
from .errors import (BadRequest, Busy, Conflict, Expired, ForkpoolError,
                     IdempotencyConflict, InsufficientStorage, NotFound,
                     PoolUnavailable, ProtocolError, ServerError, ShuttingDown,
                     TaskError, TooLarge, Unauthorized, Unavailable, UnknownTask)

__version__ = "0.1.0"

__all__ = [
    "Client", "Job", "Progress", "ForkpoolError", "ServerError", "BadRequest",
    "UnknownTask", "Unauthorized", "NotFound", "Conflict", "IdempotencyConflict",
    "Expired", "TooLarge", "Busy", "Unavailable", "PoolUnavailable", "ShuttingDown",
    "InsufficientStorage", "ProtocolError", "TaskError",
]
