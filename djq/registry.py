"""The task registry: task name -> Task, filled by ``@task`` as modules are imported.

Resolvers find tasks the registry has not seen yet: ``djq.contrib.tasks`` adds one that
imports a Django ``@task`` by its module path, as Django's own backends do.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .exceptions import ConfigurationError, NotRegistered

if TYPE_CHECKING:
    from .task import Task


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._resolvers: list[Callable[[str], Task[Any, Any] | None]] = []

    def add_resolver(self, resolver: Callable[[str], Task[Any, Any] | None]) -> None:
        """``resolver(name)`` returns a Task for an unregistered name, or None."""
        if resolver not in self._resolvers:
            self._resolvers.append(resolver)

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
            pass
        for resolver in self._resolvers:
            found = resolver(name)
            if found is not None:
                return found
        raise NotRegistered(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)


registry = TaskRegistry()
