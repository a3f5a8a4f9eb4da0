"""Fixtures for beat tests: real ``djq_beat`` subprocesses, and periodic tasks made at fixed times."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kombu import Connection

from djq.messaging.producer import task_queue
from djq.models import IntervalSchedule, PeriodicRun, PeriodicTask, QueueMessage
from tests.conftest import WorkerProcess


class BeatProcess(WorkerProcess):
    """A real ``manage.py djq_beat`` (or ``argv``) subprocess on the test database."""

    def __init__(self, alias: str, args: list[str], log: Path, env: dict[str, str] | None = None,
                 argv: list[str] | None = None) -> None:
        super().__init__(alias, args, log, env, "djq_beat", settings="tests.beat.settings", argv=argv)


@pytest.fixture
def start_beat(broker: str, tmp_path: Path) -> Iterator[Callable[..., BeatProcess]]:
    """Start beats with ``start_beat("--max-tick", "0.2")``; all are stopped at the end."""
    beats: list[BeatProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, schedule: dict[str, Any] | None = None,
              argv: list[str] | None = None, ready: bool = True) -> BeatProcess:
        env = dict(env or {})
        if schedule is not None:
            env["DJQ_TEST_BEAT_SCHEDULE"] = json.dumps(schedule)
        beat = BeatProcess(broker, list(args), tmp_path / f"beat-{len(beats)}.log", env, argv)
        beats.append(beat)
        if ready:
            beat.wait_ready()
        return beat

    try:
        yield start
    finally:
        for beat in beats:
            beat.stop()


def make_task(using: str = "default", *, name: str = "job", task: str = "tests.testapp.tasks.noop",
              at: datetime | None = None, schedule: Any = None, **fields: Any) -> PeriodicTask:
    """A periodic task whose creation (last_run_at and date_changed) happened at ``at``."""
    if schedule is None:
        schedule, _ = IntervalSchedule.objects.using(using).get_or_create(every=1, period="seconds")
    kind = type(schedule).__name__.removesuffix("Schedule").lower()
    created = PeriodicTask.objects.using(using).create(name=name, task=task, **{kind: schedule}, **fields)
    if at is not None:
        stamps: dict[str, Any] = {"date_changed": at}
        if "last_run_at" not in fields:
            stamps["last_run_at"] = at
        PeriodicTask.objects.using(using).filter(pk=created.pk).update(**stamps)
        type(schedule).objects.using(using).filter(pk=schedule.pk).update(date_changed=at)
    return PeriodicTask.objects.using(using).get(pk=created.pk)


def runs(using: str = "default", name: str | None = None) -> list[PeriodicRun]:
    found = PeriodicRun.objects.using(using).select_related("periodic_task").order_by("scheduled_at")
    if name is not None:
        found = found.filter(periodic_task__name=name)
    return list(found)


def message_ids(broker: str = "default") -> list[str]:
    """Task ids of the messages waiting in the leg's broker (taken off an external broker)."""
    url = getattr(broker, "broker_url", "djq://")
    if url.startswith("djq://"):
        return [json.loads(payload)["headers"]["id"]
                for payload in QueueMessage.objects.using(broker).values_list("payload", flat=True)]
    ids = []
    with Connection(url) as connection:
        # Declared as djq declares it (the broker fixture has set DJQ_BROKER_URL to ``url``).
        queue = connection.SimpleQueue(task_queue("default"))
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            ids.append(message.headers["id"])
            message.ack()
        queue.close()
    return ids
