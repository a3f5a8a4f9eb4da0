"""djq: background tasks for Django.

    from djq import task

    @task
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(2, 3)
"""
from __future__ import annotations

from .canvas import Signature, chain, chord, chunks, group, signature
from .control import revoke
from .exceptions import DjqError, MaxRetriesExceededError, Retry
from .result import AsyncResult, EagerResult, GroupResult
from .decorators import shared_task, task
from .task import AsyncTask, Task

__version__ = "0.1.0"
__all__ = [
    "AsyncResult", "AsyncTask", "DjqError", "EagerResult", "GroupResult", "MaxRetriesExceededError", "Retry", "Signature", "Task",
    "chain", "chord", "chunks", "group", "revoke", "shared_task", "signature", "task", "__version__",
]
