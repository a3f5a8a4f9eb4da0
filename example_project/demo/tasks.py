"""Sample tasks: one quick, one slow, one that always fails, one that reads its own request.

djq finds this module on start-up (every installed app's ``tasks`` module is imported),
so the worker knows these tasks by their names: ``demo.tasks.add`` and so on.
"""
from __future__ import annotations

import time
from typing import Any

from djq import Task, task


class DemoFailure(Exception):
    """What ``fail`` raises, so its FAILURE in the admin is easy to recognise."""


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def slow(seconds: float = 3.0) -> str:
    """Sleeps, so the admin shows it STARTED for a while before SUCCESS."""
    time.sleep(seconds)
    return f"slept {seconds} s"


@task
def fail(reason: str = "this task always fails, to show a FAILURE and its traceback in the admin") -> None:
    raise DemoFailure(reason)


@task(bind=True)
def whoami(self: Task[[], dict[str, Any]]) -> dict[str, Any]:
    """A bound task gets itself first; ``self.request`` describes this execution."""
    return {"task_id": self.request.id, "worker": self.request.hostname, "queue": self.request.queue}
