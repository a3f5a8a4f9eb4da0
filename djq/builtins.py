"""Tasks djq itself provides: ``djq.map``, ``djq.starmap`` (for ``map``/``starmap``/``chunks``)
and ``djq.cleanup`` (result housekeeping, run by beat on DJQ_RESULT_CLEANUP_SCHEDULE)."""
from __future__ import annotations

from typing import Any

from .registry import registry
from .decorators import task


@task(name="djq.map")
def xmap(task_name: str, items: list[Any]) -> list[Any]:
    """Call ``task_name`` on each item, in this task; the list of results."""
    target = registry.get(task_name)
    return [target(item) for item in items]


@task(name="djq.starmap")
def xstarmap(task_name: str, items: list[list[Any]]) -> list[Any]:
    """Call ``task_name`` with each item as its positional arguments."""
    target = registry.get(task_name)
    return [target(*item) for item in items]


@task(name="djq.cleanup", ignore_result=True)
def cleanup() -> dict[str, int]:
    """Delete finished results older than DJQ_RESULT_EXPIRES (and expired revokes)."""
    from .housekeeping import cleanup as run_cleanup

    return run_cleanup()
