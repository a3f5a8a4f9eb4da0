"""The beat service in this process: edits no probe can see (``QuerySet.update()`` leaving
``date_changed`` alone) reach the ticks through the thread that checks every stored next run."""
from __future__ import annotations

import threading

import pytest

from djq.beat.service import Beat
from djq.models import IntervalSchedule, PeriodicTask
from tests.beat.conftest import make_task, runs
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_queryset_updates_reach_a_running_beat_through_the_revalidating_thread() -> None:
    every_second = IntervalSchedule.objects.create(every=1, period="seconds")
    hourly = IntervalSchedule.objects.create(every=1, period="hours")
    asleep = make_task(name="asleep", schedule=every_second, enabled=False)
    assert asleep.due_at is None, "a disabled task has no next run"
    beat = Beat(max_tick=0.1, revalidate_every=0.3, name="service-test")
    thread = threading.Thread(target=beat.run)
    thread.start()
    try:
        PeriodicTask.objects.filter(pk=asleep.pk).update(enabled=True)  # date_changed untouched
        wait_for(lambda: len(runs(name="asleep")) >= 2, timeout=15, what="the re-enabled task to run")
        row = PeriodicTask.objects.get(pk=asleep.pk)
        assert row.date_changed == asleep.date_changed, "the update really left date_changed alone"
        PeriodicTask.objects.filter(pk=asleep.pk).update(interval=hourly)

        def an_hour_on() -> bool:
            now = PeriodicTask.objects.get(pk=asleep.pk)
            return (now.due_at - now.last_run_at).total_seconds() >= 3599

        wait_for(an_hour_on, timeout=15, what="the next run to move an hour on")
        count = len(runs(name="asleep"))
        threading.Event().wait(1.5)
        assert len(runs(name="asleep")) == count, "rescheduled hourly: no more runs each second"
    finally:
        beat.stop()
        thread.join(15)
    assert not thread.is_alive()
