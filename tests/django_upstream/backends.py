"""djq backends standing in for the two backends Django's tests are written against.

- ``Immediate`` (for ``ImmediateBackend``: the task has run when ``enqueue`` returns):
  in the worker pass, the task goes through the broker to the one real ``djq_worker``
  run.py started, and ``enqueue`` returns once that worker stored its end; in the eager
  pass (``MODE = "eager"``), it runs in-process under ``DJQ_TASK_ALWAYS_EAGER``.
- ``Dummy`` (for ``DummyBackend``: nothing runs): tasks go to a queue no worker serves;
  ``results`` and ``clear()``, which Django's tests call on the dummy backend, list and
  drop what this process enqueued, read back from djq's result rows.
"""
from __future__ import annotations

import time
from typing import Any

from django.test import override_settings

from djq.contrib.tasks import DjqTaskBackend
from djq.models import QueueMessage, TaskResult

#: "worker" (a real djq_worker runs each task) or "eager" (in-process), set by run.py
MODE = "worker"
UNSERVED_QUEUE = "upstream-unserved"
WAIT = 30.0


class Immediate(DjqTaskBackend):
    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        if MODE == "eager":
            with override_settings(DJQ_TASK_ALWAYS_EAGER=True):
                return super().enqueue(task, args, kwargs)
        result = super().enqueue(task, args, kwargs)
        deadline = time.monotonic() + WAIT
        while not result.is_finished:
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not finish {task.module_path}[{result.id}] in {WAIT}s")
            time.sleep(0.005)
            result.refresh()
        return result


class Dummy(DjqTaskBackend):
    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._ids: list[str] = []

    def queue_for(self, queue_name: str) -> str:
        return UNSERVED_QUEUE

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        result = super().enqueue(task, args, kwargs)
        self._ids.append(result.id)
        return result

    @property
    def results(self) -> list[Any]:
        return [self.get_result(task_id) for task_id in self._ids
                if TaskResult.objects.filter(task_id=task_id).exists()]

    def clear(self) -> None:
        TaskResult.objects.filter(task_id__in=self._ids).delete()
        QueueMessage.objects.filter(queue=UNSERVED_QUEUE).delete()
        self._ids.clear()
