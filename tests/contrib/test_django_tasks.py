"""Conformance: code written against Django's public task API, run on djq.

Django 6.x provides the API as ``django.tasks``; on Django 5.2 the ``django-tasks``
backport provides it as ``django_tasks``. These tests use only that public API (the
decorator, ``using()``, ``enqueue``/``aenqueue``, ``get_result``, ``refresh``, the
signals); the integration tests run the tasks on real ``djq_worker`` subprocesses on
every broker.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from tests.conftest import wait_for
from tests.testapp import dtasks

try:
    from django.tasks import TaskResultStatus, default_task_backend, task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued
except ImportError:  # Django 5.2 with the backport
    from django_tasks import TaskResultStatus, default_task_backend, task_backends  # type: ignore[no-redef]
    from django_tasks.exceptions import InvalidTaskError as InvalidTask  # type: ignore[no-redef]
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch  # type: ignore[no-redef]
    from django_tasks.signals import task_enqueued  # type: ignore[no-redef]

pytestmark = pytest.mark.integration


def finished(result, timeout: float = 30):
    def done():
        result.refresh()
        return result.is_finished

    wait_for(done, timeout=timeout, what=f"Django task {result.id} to finish")
    return result


def signals_sent(task_id: str) -> list[str]:
    path = Path(dtasks.signal_log(task_id))
    return path.read_text().splitlines() if path.exists() else []


def test_backend_declares_what_djq_supports() -> None:
    backend = task_backends["default"]
    assert type(backend).__module__ == "djq.contrib.tasks.backend"
    assert (backend.supports_defer, backend.supports_priority, backend.supports_get_result,
            backend.supports_async_task) == (True, True, True, True)


def test_tasks_run_on_a_worker_with_results_signals_and_context(start_worker, broker) -> None:
    enqueued = []
    task_enqueued.connect(lambda sender, task_result, **kw: enqueued.append(task_result.id), weak=False,
                          dispatch_uid="conformance-enqueued")
    try:
        result = dtasks.add.enqueue(2, 3)
    finally:
        task_enqueued.disconnect(dispatch_uid="conformance-enqueued")
    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert (result.args, result.kwargs, result.worker_ids, result.errors) == ([2, 3], {}, [], [])
    assert result.enqueued_at is not None and result.started_at is None
    assert enqueued == [result.id]
    waiting = dtasks.add.get_result(result.id)  # known before any worker saw it
    assert waiting.status == TaskResultStatus.READY and waiting.args == [2, 3]
    assert waiting == result and waiting.enqueued_at == result.enqueued_at  # one timestamp, not two

    worker = start_worker("-P", "threads", "-c", "2", "-Q", "default,special", "-n", "conformance@test")
    finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.worker_ids == ["conformance@test"] and result.attempts == 1 and result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert signals_sent(result.id) == ["started RUNNING conformance@test",
                                       "finished SUCCESSFUL conformance@test"]

    fetched = dtasks.add.get_result(result.id)
    assert fetched.task.func is dtasks.add.func and fetched.return_value == 5
    assert fetched.backend == "default"
    with pytest.raises(TaskResultMismatch):
        dtasks.fail.get_result(result.id)

    assert result.enqueued_at == waiting.enqueued_at, "refresh() keeps the enqueued_at enqueue() returned"
    context = dtasks.with_context.enqueue("ctx")
    enqueued_at = context.enqueued_at.isoformat()
    assert finished(context).return_value == {
        "label": "ctx", "attempt": 1, "id": context.id, "status": "RUNNING",
        "worker_ids": ["conformance@test"], "enqueued_at": enqueued_at,
    }

    coroutine = dtasks.async_multiply.enqueue(6, 7)
    assert finished(coroutine).return_value == 42

    special = dtasks.special_echo.enqueue({"a": [1, 2]})
    assert finished(special).return_value == {"a": [1, 2]}
    moved = dtasks.special_echo.using(queue_name="default", priority=-20).enqueue("moved")
    assert finished(moved).return_value == "moved"

    run_after = timezone.now() + timedelta(seconds=1)
    deferred = dtasks.add.using(run_after=run_after).enqueue(1, 1)
    assert finished(deferred).return_value == 2
    assert deferred.started_at >= run_after
    assert "error" not in worker.output.lower(), worker.output


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_every_pool_runs_django_tasks(start_worker, broker, pool: str) -> None:
    start_worker("-P", pool, "-c", "1", "-n", f"{pool}@test")
    slow = dtasks.slow_echo.enqueue("slow", 1.0)
    running = wait_for(lambda: (r := dtasks.slow_echo.get_result(slow.id)).status == TaskResultStatus.RUNNING and r,
                       what="the slow task to be RUNNING")
    assert running.worker_ids == [f"{pool}@test"] and running.started_at is not None and running.finished_at is None
    with pytest.raises(ValueError, match="not finished"):
        running.return_value
    context = dtasks.with_context.enqueue(pool)
    coroutine = dtasks.async_multiply.enqueue(2, 21)
    failed = dtasks.fail.enqueue(pool)
    assert finished(slow).return_value == "slow"
    assert finished(context).return_value["attempt"] == 1
    assert finished(coroutine).return_value == 42
    assert finished(failed).errors[0].exception_class_path == "builtins.ValueError"
    assert signals_sent(coroutine.id) == [f"started RUNNING {pool}@test", f"finished SUCCESSFUL {pool}@test"]


def test_failures_and_transactions(start_worker, broker) -> None:
    start_worker("-P", "threads", "-c", "2", "-n", "failures@test")
    failed = finished(dtasks.fail.enqueue("boom"))
    assert failed.status == TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class_path == "builtins.ValueError" and error.exception_class is ValueError
    assert "ValueError: boom" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value
    assert signals_sent(failed.id) == ["started RUNNING failures@test", "finished FAILED failures@test"]

    bad_return = finished(dtasks.unserializable.enqueue())
    assert bad_return.status == TaskResultStatus.FAILED
    # Django's rule and Django's error class (djq's own tasks record djq's EncodeError)
    assert bad_return.errors[0].exception_class_path == "builtins.TypeError"
    assert "Unsupported type" in bad_return.errors[0].traceback

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic(using=broker):
        rolled_back = dtasks.add.enqueue(100, 1)
        raise Rollback
    kept_id = None
    with transaction.atomic(using=broker):
        kept_id = dtasks.add.enqueue(100, 2).id
        assert dtasks.add.get_result(kept_id).status == TaskResultStatus.READY
    assert finished(dtasks.add.get_result(kept_id)).return_value == 102
    with pytest.raises(TaskResultDoesNotExist):
        dtasks.add.get_result(rolled_back.id)
    assert signals_sent(rolled_back.id) == []


def test_async_enqueue_and_get_result(start_worker, broker) -> None:
    start_worker("-P", "threads", "-c", "1")

    async def go():
        result = await dtasks.async_multiply.aenqueue(3, 5)
        assert result.status == TaskResultStatus.READY
        for _ in range(600):
            await result.arefresh()
            if result.is_finished:
                break
            await asyncio.sleep(0.05)
        again = await dtasks.async_multiply.aget_result(result.id)
        # the framework ran enqueue in asgiref's thread: close what that thread opened
        await sync_to_async(connections.close_all, thread_sensitive=True)()
        return result, again

    result, again = asyncio.run(go())
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 15
    assert again.return_value == 15 and again.task.func is dtasks.async_multiply.func


def test_beat_and_run_now_send_django_tasks(start_worker, broker) -> None:
    from djq.beat.scheduler import run_now
    from djq.models import IntervalSchedule, PeriodicTask

    schedule = IntervalSchedule.objects.using(broker).create(every=1, period="hours")
    row = PeriodicTask.objects.using(broker).create(name="django add", task="tests.testapp.dtasks.add",
                                                    interval=schedule, args=[20, 22])
    start_worker("-P", "threads", "-c", "1")
    task_id = run_now(row, using=broker, sent_by="test")
    result = finished(default_task_backend.get_result(task_id))
    assert (result.args, result.return_value, result.task.func) == ([20, 22], 42, dtasks.add.func)


@pytest.mark.django_db
@override_settings(TASKS={"default": {"BACKEND": "djq.contrib.tasks.DjqTaskBackend", "QUEUES": ["default", "special"]}})
def test_validation_errors_are_raised_at_definition_or_enqueue() -> None:
    from django.db import connection

    with pytest.raises(InvalidTask, match="module level"):
        def local() -> None:
            pass
        type(dtasks.add)(func=local)
    with pytest.raises(InvalidTask, match="context"):
        type(dtasks.add)(func=dtasks.add.func, takes_context=True)
    with pytest.raises(InvalidTask, match="priority"):
        dtasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="Queue 'nowhere'"):
        dtasks.add.using(queue_name="nowhere")
    with pytest.raises(InvalidTask, match="aware"):
        dtasks.add.using(run_after=datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="JSON"):
        dtasks.add.enqueue(object(), 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM djq_taskresult")
        assert cursor.fetchone()[0] == 0, "a refused enqueue leaves nothing behind"


@pytest.mark.django_db
def test_unknown_ids_and_djq_task_ids_are_not_django_results() -> None:
    from tests.testapp.tasks import add

    with pytest.raises(TaskResultDoesNotExist):
        dtasks.add.get_result("no-such-id")
    djq_id = add.delay(1, 2).id
    from djq.backends import get_backend
    from djq.backends.base import TaskInfo

    get_backend().store(TaskInfo(task_id=djq_id, task_name=add.name), "SUCCESS", result=3)
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        task_backends["default"].get_result(djq_id)
