"""The task registry: task name -> Task, filled by ``@task`` as modules are imported."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError, NotRegistered

if TYPE_CHECKING:
    from .task import Task


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}

    def register(self, task: Task[Any, Any]) -> None:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.func is not task.func:
            same_code = (
                existing.func.__module__ == task.func.__module__
                and existing.func.__qualname__ == task.func.__qualname__
            )
            if not same_code:  # the same module imported twice is fine; two functions are not
                raise ConfigurationError(
                    f"two functions are registered as task {task.name!r}: "
                    f"{existing.func.__module__}.{existing.func.__qualname__} and "
                    f"{task.func.__module__}.{task.func.__qualname__}; give one of them name=..."
                )
        self._tasks[task.name] = task

    def get(self, name: str) -> Task[Any, Any]:
        try:
            return self._tasks[name]
        except KeyError:
            raise NotRegistered(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)


registry = TaskRegistry()
