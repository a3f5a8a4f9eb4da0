"""djq: background tasks for Django.

    from djq import task

    @task
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(2, 3)
"""
from __future__ import annotations

from .exceptions import DjqError
from .result import AsyncResult, EagerResult
from .task import Task, shared_task, task

__version__ = "0.1.0"
__all__ = ["AsyncResult", "DjqError", "EagerResult", "Task", "shared_task", "task", "__version__"]
