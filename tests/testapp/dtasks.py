"""Tasks written against Django's own task API, run by djq workers in the tests.

Deliberately not named ``tasks.py``: workers must find Django tasks by module path, as
Django's task framework expects, not only through djq's autodiscovery.

Each worker writes the task signals it sends to ``<TMP>/djtask-signals-<id>``, so the
tests can see them from outside the worker process.
"""
from __future__ import annotations

import asyncio
import os
import time

from django.conf import settings

try:
    from django.tasks import task
    from django.tasks.signals import task_finished, task_started
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task  # type: ignore[no-redef]
    from django_tasks.signals import task_finished, task_started  # type: ignore[no-redef]


@task
def add(x: int, y: int) -> int:
    return x + y


@task(queue_name="special", priority=10)
def special_echo(value: object) -> object:
    return value


@task
def slow_echo(value: object, seconds: float) -> object:
    time.sleep(seconds)
    return value


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def unserializable() -> object:
    return object()


@task
def complex_exception() -> None:
    raise ValueError(ValueError("an exception inside an exception"))


@task
def interrupted(exit_instead: bool = False) -> None:
    raise SystemExit("exit from the task") if exit_instead else KeyboardInterrupt("Ctrl-C in the task")


@task(takes_context=True)
def with_context(context, label: str) -> dict:
    result = context.task_result
    return {"label": label, "attempt": context.attempt, "id": result.id, "status": str(result.status),
            "worker_ids": result.worker_ids, "enqueued_at": result.enqueued_at and result.enqueued_at.isoformat()}


@task
async def async_multiply(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x * y


def signal_log(task_id: str) -> str:
    return os.path.join(settings.TMP, f"djtask-signals-{task_id}")


def _record(event: str, task_result, **kwargs) -> None:
    with open(signal_log(task_result.id), "a") as fh:
        fh.write(f"{event} {task_result.status} {','.join(task_result.worker_ids)}\n")


def _started(sender, task_result, **kwargs) -> None:
    _record("started", task_result)


def _finished(sender, task_result, **kwargs) -> None:
    _record("finished", task_result)


task_started.connect(_started, dispatch_uid="djq-tests-started")
task_finished.connect(_finished, dispatch_uid="djq-tests-finished")
