"""Bootsteps: the parts of a worker, started in order and stopped in reverse.

A step keeps its own state. Steps that need another step name it in ``requires`` and
get it from the blueprint; nothing is patched onto the worker.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)
S = TypeVar("S", bound="Step")


class Step:
    #: steps that must be created before this one
    requires: tuple[type[Step], ...] = ()

    def __init__(self, blueprint: Blueprint) -> None:
        self.blueprint = blueprint

    def include_if(self, worker: Worker) -> bool:
        return True

    def create(self, worker: Worker) -> None:
        """Build what the step owns; nothing is started yet."""

    def start(self) -> None:
        """Start; must not block."""

    def stop(self) -> None:
        """Warm stop: finish gracefully."""

    def terminate(self) -> None:
        """Cold stop: as fast as possible."""
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {}


class Blueprint:
    def __init__(self, step_classes: tuple[type[Step], ...]) -> None:
        self.step_classes = step_classes
        self.steps: dict[type[Step], Step] = {}
        self.started: list[Step] = []

    def get(self, cls: type[S]) -> S:
        step = self.steps[cls]
        return step  # type: ignore[return-value]

    def create(self, worker: Worker) -> None:
        for cls in self.step_classes:
            missing = [dep.__name__ for dep in cls.requires if dep not in self.steps]
            if missing:
                raise RuntimeError(f"bootstep {cls.__name__} needs {', '.join(missing)} listed before it")
            step = cls(self)
            if step.include_if(worker):
                step.create(worker)
                self.steps[cls] = step

    def start(self) -> None:
        for step in self.steps.values():
            step.start()
            self.started.append(step)

    def stop(self, cold: bool = False) -> None:
        while self.started:
            step = self.started.pop()
            try:
                step.terminate() if cold else step.stop()
            except Exception:
                logger.exception("bootstep %s failed to stop", type(step).__name__)
