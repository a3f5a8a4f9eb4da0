"""Real ``djq_beat`` processes (and ``djq_worker -B``) on SQLite and PostgreSQL.

Each due run must be sent exactly once however many beats run, and a beat killed at
any moment, even in the middle of sending, must leave no gap and no duplicate.
"""
from __future__ import annotations

import signal
import sys
import time
from datetime import timedelta

import pytest

from djq import states
from djq.beat import timing
from djq.models import ClockedSchedule, PeriodicRun, PeriodicTask, TaskResult
from tests.beat.conftest import make_task, message_ids, runs
from tests.conftest import EMBEDDED, wait_for

pytestmark = pytest.mark.integration
TICK = ("--max-tick", "0.2")


def assert_each_second_sent_once(broker: str, name: str, minimum: int) -> list[PeriodicRun]:
    """Runs of a 1-second task: one per second from the first to the last, each with its message."""
    sent = runs(broker, name)
    assert len(sent) >= minimum, f"only {len(sent)} runs"
    times = [timing.from_db(run.scheduled_at) for run in sent]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert gaps == [1.0] * len(gaps), f"gaps or duplicates between scheduled times: {gaps}"
    assert sorted(message_ids(broker)) == sorted(run.task_id for run in sent), "one message per run, no more"
    return sent


def test_three_beats_send_every_run_exactly_once(broker: str, start_beat) -> None:
    every_second = {"every second": {"task": "tests.testapp.tasks.noop", "schedule": 1}}
    beats = [start_beat(*TICK, schedule=every_second, ready=False) for _ in range(3)]
    for beat in beats:
        beat.wait_ready()
    job = PeriodicTask.objects.using(broker).get(name="every second")
    time.sleep(4.2)
    for beat in beats:
        beat.signal(signal.SIGTERM)
    assert [beat.wait(timeout=20) for beat in beats] == [0, 0, 0]
    sent = assert_each_second_sent_once(broker, "every second", minimum=3)
    first_due = timing.from_db(job.date_created) + timedelta(seconds=1)
    assert abs(timing.from_db(sent[0].scheduled_at) - first_due) < timedelta(seconds=0.1), "no gap at the start"
    assert PeriodicTask.objects.using(broker).get(pk=job.pk).total_run_count == len(sent)
    for beat in beats:
        assert "Traceback" not in beat.output


# The claim is the database's: the test above covers the external brokers in 4 s, not 30.
@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)
def test_three_beats_and_a_worker_for_30_seconds_run_each_second_once(broker: str, start_beat,
                                                                      start_worker) -> None:
    start_worker("-P", "threads", "-c", "2")
    beats = [start_beat(*TICK, ready=False) for _ in range(3)]
    for beat in beats:
        beat.wait_ready()
    job = make_task(broker, name="adder", task="tests.testapp.tasks.add", args=[2, 3])
    time.sleep(30)
    stopped_at = timing.now()
    for beat in beats:
        beat.signal(signal.SIGTERM)
    assert [beat.wait(timeout=20) for beat in beats] == [0, 0, 0]
    sent = runs(broker, "adder")
    results = TaskResult.objects.using(broker).filter(task_name="tests.testapp.tasks.add", state=states.SUCCESS)
    wait_for(lambda: results.count() >= len(sent), timeout=30, what=f"the worker to run all {len(sent)} runs")
    assert sorted(results.values_list("task_id", flat=True)) == sorted(run.task_id for run in sent)
    assert set(results.values_list("result", flat=True)) == {"5"}
    created = timing.from_db(job.last_run_at)
    offsets = [(timing.from_db(run.scheduled_at) - created).total_seconds() for run in sent]
    assert len(set(offsets)) == len(sent) == results.count(), "each scheduled time dispatched once"
    assert all(offset == int(offset) and offset >= 1 for offset in offsets), f"off the 1-second grid: {offsets}"
    # Every whole second from the creation to the stop, but the last may have been cut short
    # by the stop, and one run may have been late enough to merge with the next.
    elapsed = int((stopped_at - created).total_seconds())
    assert elapsed - 2 <= len(sent) <= elapsed, f"{len(sent)} runs in {elapsed} s: {offsets}"
    assert PeriodicTask.objects.using(broker).get(pk=job.pk).total_run_count == len(sent)
    for beat in beats:
        assert "Traceback" not in beat.output


@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)  # "mid-send" is inside the transaction
def test_a_beat_killed_mid_send_loses_nothing_and_doubles_nothing(broker: str, start_beat) -> None:
    dying = start_beat(*TICK, argv=[sys.executable, "-m", "tests.beat.dying_beat"])
    steady = start_beat(*TICK)
    victim = start_beat(*TICK)
    make_task(broker, name="tick")
    wait_for(lambda: dying.proc.poll() is not None, timeout=30, what="the dying beat to win a claim and die")
    assert "dying mid-send" in dying.output and dying.proc.returncode == -signal.SIGKILL
    time.sleep(1.2)
    victim.signal(signal.SIGKILL)
    victim.wait(timeout=10)
    time.sleep(2.2)
    steady.signal(signal.SIGTERM)
    assert steady.wait(timeout=20) == 0
    assert_each_second_sent_once(broker, "tick", minimum=3)


@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)  # database-only logic
def test_admin_edits_reach_a_running_beat_within_a_tick(broker: str, start_beat) -> None:
    beat = start_beat(*TICK)
    soon = ClockedSchedule.objects.using(broker).create(clocked_time=timing.now() + timedelta(seconds=0.5))
    make_task(broker, name="once", schedule=soon)
    ticking = make_task(broker, name="ticking")
    wait_for(lambda: runs(broker, "once"), timeout=10, what="the new clocked task to run")
    wait_for(lambda: runs(broker, "ticking"), timeout=10, what="the new interval task to run")
    PeriodicTask.objects.using(broker).filter(pk=ticking.pk).update(enabled=False, date_changed=timing.now())
    time.sleep(0.5)  # more than a tick: the beat has seen the change
    count = len(runs(broker, "ticking"))
    time.sleep(1.5)
    assert len(runs(broker, "ticking")) == count, "a disabled task is not sent"
    assert PeriodicTask.objects.using(broker).get(name="once").enabled is False, "a clocked task runs once"
    assert len(runs(broker, "once")) == 1
    beat.stop()
    assert "Traceback" not in beat.output


def test_worker_with_embedded_beat_runs_periodic_tasks(broker: str, start_worker) -> None:
    make_task(broker, name="adder", task="tests.testapp.tasks.add", args=[2, 3])
    worker = start_worker("-B", "-P", "threads", "-c", "2")

    def successes() -> int:
        return TaskResult.objects.using(broker).filter(task_name="tests.testapp.tasks.add", state=states.SUCCESS,
                                                       result="5").count()

    wait_for(lambda: successes() >= 2, timeout=20, what="two periodic runs to succeed")
    assert "(embedded beat) ready" in worker.output
    worker.stop()
    assert "beat" in worker.output and "stopped" in worker.output


@pytest.mark.parametrize("db_alias", EMBEDDED[:1], indirect=True)
def test_bad_schedule_in_settings_stops_beat_with_a_clear_error(broker: str, start_beat) -> None:
    beat = start_beat(schedule={"report": {"task": "no.such.task", "schedule": "30 2 * * *"}}, ready=False)
    assert beat.wait(timeout=30) == 1
    # manage.py's system checks catch it (djq.E009) before beat starts.
    assert "(djq.E009) DJQ_BEAT_SCHEDULE['report']: task 'no.such.task' is not registered" in beat.output
