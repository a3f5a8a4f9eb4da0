"""The behaviour django-tasks-db's tests (``tests/tests.py``) hold its worker to, on djq.

Those tests cannot run as they are: they drive that package's own ``db_worker`` command
and read its ``DBTaskResult`` model. Each test here checks the same behaviour through
Django's task API and a real ``djq_worker`` (``--burst`` for its ``--batch``,
``--max-tasks``, ``-Q '*'`` / ``-X`` for its ``--queue-name '*'`` / ``--exclude-queues``).
Left out: its ID functions, prune command, row locking, admin and migrations (that
backend's internals), and run_after-before-enqueue-order among equal priorities
(issue 18 item 6, tested with the transport).
"""
from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import wait_for
from tests.testapp import dtasks

try:
    from django.tasks import TaskResultStatus
except ImportError:  # Django 5.2 with the backport
    from django_tasks import TaskResultStatus  # type: ignore[no-redef]

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db_alias", ["default"], indirect=True)]


def test_a_burst_worker_records_every_kind_of_end_and_exits_0(broker, start_worker) -> None:
    ok = dtasks.add.enqueue(1, 2)
    failing = dtasks.fail.enqueue("boom")
    nested = dtasks.complex_exception.enqueue()
    not_json = dtasks.unserializable.enqueue()
    exits = dtasks.interrupted.enqueue(True)
    interrupts = dtasks.interrupted.enqueue()
    context = dtasks.with_context.enqueue("ctx")
    later = dtasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(3, 4)
    elsewhere = dtasks.special_echo.enqueue("not served")
    # threads, as that backend's worker runs tasks in its own process: on prefork a task's
    # SystemExit ends its child, recorded as WorkerLostError (docs/django-tasks.md)
    worker = start_worker("--burst", "-P", "threads", "-c", "2", "-n", "burst@test")
    assert worker.wait(timeout=60) == 0, worker.output

    enqueued_at = ok.enqueued_at
    ok.refresh()
    assert (ok.status, ok.return_value, ok.worker_ids) == (TaskResultStatus.SUCCESSFUL, 3, ["burst@test"])
    assert ok.enqueued_at == enqueued_at, "enqueue() and refresh() agree on enqueued_at"
    for result, exception, text in [(failing, ValueError, "ValueError: boom"),
                                    (nested, ValueError, "ValueError(ValueError("),
                                    (not_json, TypeError, "Unsupported type"),
                                    (exits, SystemExit, "exit from the task"),
                                    (interrupts, KeyboardInterrupt, "Ctrl-C in the task")]:
        result.refresh()
        assert result.status == TaskResultStatus.FAILED, result
        assert result.errors[0].exception_class is exception and text in result.errors[0].traceback
    with pytest.raises(ValueError, match="Task failed"):
        failing.return_value
    context.refresh()
    assert context.return_value["attempt"] == 1 and context.return_value["id"] == context.id
    for waiting in (later, elsewhere):  # run_after ahead; a queue the worker does not serve
        waiting.refresh()
        assert waiting.status == TaskResultStatus.READY and waiting.started_at is None


def test_all_queues_but_the_excluded_and_max_tasks(broker, start_worker) -> None:
    special = [dtasks.special_echo.enqueue(i) for i in range(3)]
    default = dtasks.add.enqueue(5, 5)
    worker = start_worker("-Q", "*", "-X", "default", "--max-tasks", "2", "-c", "1")
    assert worker.wait(timeout=60) == 0, worker.output
    for result in [*special, default]:
        result.refresh()
    assert [r.status for r in special].count(TaskResultStatus.SUCCESSFUL) == 2
    assert default.status == TaskResultStatus.READY


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_warm_shutdown_lets_the_running_task_finish(broker, start_worker, signum: int) -> None:
    slow = dtasks.slow_echo.enqueue("done", 1.5)
    worker = start_worker("-c", "1")
    wait_for(lambda: dtasks.slow_echo.get_result(slow.id).status == TaskResultStatus.RUNNING,
             what="the task to run")
    worker.signal(signum)
    assert worker.wait(timeout=30) == 0, worker.output
    slow.refresh()
    assert (slow.status, slow.return_value) == (TaskResultStatus.SUCCESSFUL, "done")
