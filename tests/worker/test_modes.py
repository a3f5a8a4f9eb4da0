"""Workers that end by themselves (--burst, --max-tasks) and the queues -Q '*' / -X pick."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from djq import states
from djq.models import QueueMessage, TaskResult
from tests.testapp.tasks import add

pytestmark = pytest.mark.integration


def _states(broker: str, ids: list[str]) -> dict[str, str]:
    return dict(TaskResult.objects.using(broker).filter(task_id__in=ids).values_list("task_id", "state"))


def test_burst_runs_what_is_ready_in_every_known_queue_but_the_excluded_then_exits(broker, start_worker) -> None:
    ready = [add.delay(i, 1) for i in range(3)]
    routed = add.apply_async((5, 5), queue="special")  # excluded below
    later = add.apply_async((7, 7), eta=timezone.now() + timedelta(hours=1))
    adhoc = add.apply_async((9, 9), queue="adhoc") if broker.embedded else None  # only in the message table
    worker = start_worker("--burst", "-Q", "*", "-X", "special", "-c", "2")
    assert worker.wait(timeout=30) == 0, worker.output
    done = [r.id for r in ready] + ([adhoc.id] if adhoc else [])
    assert _states(broker, done) == {task_id: states.SUCCESS for task_id in done}
    assert set(_states(broker, [routed.id, later.id]).values()) <= {states.PENDING}, "neither ran"
    if broker.embedded:  # both still wait in the queue table
        assert QueueMessage.objects.using(broker).count() == 2
    assert "--burst: no message ready" in worker.output


@pytest.mark.parametrize("db_alias", ["default", "amqp"], indirect=True)  # AMQP: prefetched ones go back
def test_max_tasks_runs_that_many_then_warm_stops(broker, start_worker) -> None:
    results = [add.delay(i, i) for i in range(5)]
    worker = start_worker("--max-tasks", "2", "-c", "1", "--prefetch-multiplier", "4")
    assert worker.wait(timeout=30) == 0, worker.output
    found = _states(broker, [r.id for r in results])
    assert sorted(found.values()).count(states.SUCCESS) == 2, found
    assert "--max-tasks 2 reached" in worker.output
    # The three others went back to the queue: the next worker runs them.
    start_worker("-c", "2")
    assert [r.get(timeout=30) for r in results] == [0, 2, 4, 6, 8]


@pytest.mark.django_db
def test_excluding_every_queue_and_a_max_tasks_below_1_are_refused() -> None:
    with pytest.raises(CommandError, match="no queue left to consume"):
        call_command("djq_worker", "-Q", "default", "-X", "default")
    for bad in ("0", "-1"):
        with pytest.raises(CommandError, match="--max-tasks"):
            call_command("djq_worker", "--max-tasks", bad)


@pytest.mark.django_db
def test_all_queues_are_the_known_task_queues_never_control_or_event_queues() -> None:
    from djq.worker.queues import resolve

    for queue in ("waiting", "djq.control.w1@host", "djq.reply.abc", "djq.events.x", "w1@host.celery.pidbox"):
        QueueMessage.objects.create(queue=queue, visible_at=0, payload="{}")
    with override_settings(DJQ_TASK_ROUTES={"reports.*": "reports"}, DJQ_BROKER_URL="djq://"):
        served = resolve(["*"], exclude=["special"])
    assert {"default", "reports", "waiting"} <= set(served)
    assert "special" not in served and not [q for q in served if "control" in q or "pidbox" in q or "djq." in q]
