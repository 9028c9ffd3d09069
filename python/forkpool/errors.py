"""The exceptions of forkpool.Client.

Two families: ServerError, when forkpoold refused a request (its HTTP
status and the error code and message of its body, one subclass per kind
of refusal), and TaskError, when the request was taken but an item failed
(the item's error type, message, index, and the traceback of a Python task).
"""

__all__ = [
    "ForkpoolError", "ServerError", "BadRequest", "UnknownTask", "Unauthorized",
    "NotFound", "Conflict", "IdempotencyConflict", "Expired", "TooLarge", "Busy",
    "Unavailable", "PoolUnavailable", "ShuttingDown", "InsufficientStorage",
    "ProtocolError", "TaskError",
]


class ForkpoolError(Exception):
    """Base of every error this package raises (besides OSError for a
    server that cannot be reached and TimeoutError for a wait that ran out)."""


class ServerError(ForkpoolError):
    """forkpoold answered a request with an error: `status` (HTTP), `code`
    (the body's error.code, such as "unknown_task") and `message` (what was
    wrong, in the server's words)."""

    def __init__(self, status, code, message):
        super().__init__("%s (%d %s)" % (message, status, code))
        self.status = status
        self.code = code
        self.message = message


class BadRequest(ServerError):
    """400: bad_request, bad_json, unknown_member, unknown_parameter, unknown_task."""


class UnknownTask(BadRequest):
    """400 unknown_task: no pool has a task of that name."""


class Unauthorized(ServerError):
    """401 unauthorized: the token is missing or wrong."""


class NotFound(ServerError):
    """404: no_such_job (an id never seen) or not_found (no such route)."""


class Conflict(ServerError):
    """409: the request conflicts with what the server holds."""


class IdempotencyConflict(Conflict):
    """409 idempotency_conflict: the Idempotency-Key was used for another request."""


class Expired(ServerError):
    """410 expired: the job was forgotten (TTL, eviction, deleted)."""


class TooLarge(ServerError):
    """413 body_too_large: the request body is over the server's limit."""


class Busy(ServerError):
    """429: queue_full or too_many_connections; try again later."""


class Unavailable(ServerError):
    """503: the server cannot take the job now."""


class PoolUnavailable(Unavailable):
    """503 pool_unavailable: the task's pool keeps failing to start."""


class ShuttingDown(Unavailable):
    """503 shutting_down: the server is draining."""


class InsufficientStorage(ServerError):
    """507 insufficient_storage: the results could not fit (--max-results-memory)."""


class ProtocolError(ForkpoolError):
    """The server's answer was not what the API says (not JSON, cut short)."""


_BY_CODE = {
    "unknown_task": UnknownTask,
    "idempotency_conflict": IdempotencyConflict,
    "pool_unavailable": PoolUnavailable,
    "shutting_down": ShuttingDown,
}

_BY_STATUS = {
    400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 410: Expired,
    413: TooLarge, 429: Busy, 503: Unavailable, 507: InsufficientStorage,
}


def server_error(status, code, message):
    """The exception for an error answer: by its code, else by its status."""
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status, ServerError)
    return cls(status, code, message)


class TaskError(ForkpoolError):
    """An item failed: `type` (task_error, crash, timeout, cancelled,
    too_large, bad_output, unknown_task, start_failure), `message`, `index`
    (its position in the call's items; 0 for apply), `traceback` (the text
    of a Python task's traceback, else None), `stage` (a pipeline's stage
    that failed it, else None) and `job_id`."""

    def __init__(self, type, message, index=None, traceback=None, stage=None, job_id=None):
        where = "" if index is None else "item %d: " % index
        if stage is not None:
            where += "stage %d: " % stage
        super().__init__("%s%s: %s" % (where, type, message))
        self.type = type
        self.message = message
        self.index = index
        self.traceback = traceback
        self.stage = stage
        self.job_id = job_id

    @classmethod
    def from_error(cls, error, index=None, stage=None, job_id=None):
        """From the API's {"type", "message"[, "traceback"]}."""
        if not isinstance(error, dict):
            return cls("task_error", str(error), index, None, stage, job_id)
        return cls(error.get("type", "task_error"), error.get("message", ""), index,
                   error.get("traceback"), stage, job_id)
