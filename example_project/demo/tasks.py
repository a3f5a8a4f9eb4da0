"""Sample tasks: one quick, one slow, one that always fails, one that reads its own request,
one that reports its progress, and one that beat runs every 30 seconds.

djq finds this module on start-up (every installed app's ``tasks`` module is imported),
so the worker knows these tasks by their names: ``demo.tasks.add`` and so on.
"""
from __future__ import annotations

import time
from typing import Any

from djq import Task, task
from djq.beat import every, periodic


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


@task(bind=True)
def count_to(self: Task[[int, float], int], total: int = 10, pause: float = 0.5) -> int:
    """Reports {"current": n, "total": m} as it goes: a progress bar on Task results."""
    for current in range(total):
        self.update_state(state="PROGRESS", meta={"current": current, "total": total})
        time.sleep(pause)
    return total


@periodic(every(seconds=30), name="demo: tick every 30 s")
@task
def tick() -> str:
    """Declared periodic: beat (started by the demo) sends it, see Periodic tasks."""
    return f"tick at {time.strftime('%H:%M:%S')}"
