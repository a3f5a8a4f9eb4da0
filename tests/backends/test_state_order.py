"""Stored states never move backwards: late, wrong and out-of-order writes, on SQLite and
PostgreSQL (the conditional upsert) and in ``supersedes`` (the rule in Python)."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest
from django.db import connections

from djq import states
from djq.backends.base import TaskInfo, exception_to_meta, supersedes
from djq.backends.database import DatabaseBackend
from djq.exceptions import WorkerLostError
from djq.models import TaskResult
from tests.conftest import _skip_or_fail

pytestmark = pytest.mark.django_db(databases=["default", "postgres"], transaction=True)


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> DatabaseBackend:
    if request.param not in connections.settings:
        _skip_or_fail("PostgreSQL leg needs DJQ_TEST_POSTGRES_URL")
    return DatabaseBackend(request.param)


@dataclass(frozen=True)
class Write:
    state: str
    retries: int = 0
    attempt: int = 100
    worker: str = "w1"

    def store(self, backend: DatabaseBackend, task_id: str = "t") -> bool:
        info = TaskInfo(task_id=task_id, task_name="app.task", worker=self.worker, retries=self.retries,
                        attempt=self.attempt)
        result = exception_to_meta(WorkerLostError("lost")) if self.state == states.FAILURE else self.state
        return backend.store(info, self.state, result=result)


def _row(backend: DatabaseBackend, task_id: str = "t") -> TaskResult:
    return TaskResult.objects.using(backend.alias).get(task_id=task_id)


def test_a_late_worker_lost_error_does_not_replace_success(backend: DatabaseBackend) -> None:
    assert Write(states.STARTED).store(backend)
    assert Write(states.SUCCESS).store(backend)
    assert not Write(states.FAILURE).store(backend), "the pool blamed a task that had finished"
    assert not Write(states.STARTED).store(backend), "a late STARTED of the same delivery"
    assert not Write("PROGRESS").store(backend)
    row = _row(backend)
    assert (row.state, row.result) == (states.SUCCESS, '"SUCCESS"')


def test_a_newer_delivery_replaces_a_final_state(backend: DatabaseBackend) -> None:
    Write(states.SUCCESS, attempt=100).store(backend)
    assert Write(states.STARTED, attempt=200, worker="w2").store(backend), "a redelivery starts again"
    assert _row(backend).state == states.STARTED
    assert Write(states.SUCCESS, attempt=200, worker="w2").store(backend)
    assert not Write(states.FAILURE, attempt=100).store(backend), "the older delivery's late failure"
    row = _row(backend)
    assert (row.state, row.worker, row.attempt) == (states.SUCCESS, "w2", 200)


def test_an_older_delivery_does_not_take_a_running_row_back(backend: DatabaseBackend) -> None:
    Write(states.STARTED, attempt=200, worker="w2").store(backend)
    assert not Write(states.STARTED, attempt=100, worker="w1").store(backend)
    assert not Write("PROGRESS", attempt=100, worker="w1").store(backend)
    assert Write("PROGRESS", attempt=200, worker="w2").store(backend), "the same delivery goes on"
    assert (_row(backend).state, _row(backend).worker) == ("PROGRESS", "w2")


def test_a_retry_outranks_the_attempt_before_it(backend: DatabaseBackend) -> None:
    Write(states.STARTED, retries=0).store(backend)
    assert Write(states.RETRY, retries=1).store(backend)
    assert not Write(states.FAILURE, retries=0).store(backend), "the retried run's late failure"
    assert Write(states.STARTED, retries=1, attempt=300).store(backend)
    assert Write(states.SUCCESS, retries=1, attempt=300).store(backend)
    assert (_row(backend).state, _row(backend).retries) == (states.SUCCESS, 1)


def test_pending_only_creates_a_row(backend: DatabaseBackend) -> None:
    assert Write(states.PENDING, attempt=0, worker="").store(backend, "fresh")
    assert _row(backend, "fresh").state == states.PENDING
    Write(states.STARTED).store(backend)
    assert not Write(states.PENDING, attempt=0, worker="").store(backend)
    assert _row(backend).state == states.STARTED


def test_a_write_from_outside_a_worker_keeps_what_it_does_not_know(backend: DatabaseBackend) -> None:
    Write(states.STARTED, attempt=100).store(backend)
    outside = TaskInfo(task_id="t", task_name="app.task")  # update_state(task_id=...) from a view
    assert backend.store(outside, "PROGRESS", result={"current": 1})
    row = _row(backend)
    assert (row.state, row.worker, row.attempt) == ("PROGRESS", "w1", 100)
    assert Write(states.SUCCESS, attempt=100).store(backend), "the running delivery still finishes"


WRITES = [
    Write(states.STARTED, attempt=100), Write("PROGRESS", attempt=100), Write(states.SUCCESS, attempt=100),
    Write(states.FAILURE, attempt=100), Write(states.STARTED, attempt=200, worker="w2"),
    Write(states.SUCCESS, attempt=200, worker="w2"), Write(states.RETRY, retries=1, attempt=100),
    Write(states.STARTED, retries=1, attempt=300), Write(states.REVOKED, retries=1, attempt=300),
    Write("PROGRESS", attempt=0, worker=""), Write(states.PENDING, attempt=0, worker=""),
]


def _fold(writes: list[Write]) -> tuple[str, int, int] | None:
    """What ``supersedes`` says the row holds after ``writes``, in that order."""
    row: tuple[str, int, int] | None = None
    for write in writes:
        if row is None or supersedes(write.state, write.retries, write.attempt, *row):
            attempt = write.attempt if write.attempt or row is None else row[2]
            row = (write.state, write.retries, attempt)
    return row


def test_the_sql_and_the_rule_agree_in_any_order(backend: DatabaseBackend) -> None:
    rng = random.Random(1201)
    orders = [rng.sample(WRITES, k=rng.randint(2, len(WRITES))) for _ in range(60)]
    orders += [list(pair) for pair in itertools.permutations(WRITES, 2)]
    for n, order in enumerate(orders):
        task_id = f"order-{n}"
        for write in order:
            write.store(backend, task_id)
        row = TaskResult.objects.using(backend.alias).get(task_id=task_id)
        assert (row.state, row.retries, row.attempt) == _fold(order), order


def test_the_final_state_of_a_task_does_not_depend_on_the_order_of_its_end_writes() -> None:
    """Whatever order a delivery's own writes arrive in, its final state wins."""
    end = [Write(states.STARTED), Write("PROGRESS"), Write(states.SUCCESS)]
    for order in itertools.permutations(end):
        assert _fold(list(order))[0] == states.SUCCESS
