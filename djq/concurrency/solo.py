"""``solo``: run each task in the worker's own thread, one at a time. No parallelism."""
from __future__ import annotations

from typing import Any

from .base import BasePool, Callback, Job


class SoloPool(BasePool):
    name = "solo"
    parallel = False

    def __init__(self, concurrency: int = 1) -> None:
        super().__init__(1)
        self._active = 0

    def apply_async(self, job: Job, arg: Any, callback: Callback) -> None:
        self._active = 1
        try:
            result = job(arg)
        finally:
            self._active = 0
        callback(arg, result)

    def free_slots(self) -> int:
        return 1 - self._active

    def active(self) -> int:
        return self._active

    def stop(self, timeout: float | None = None) -> bool:
        return True
