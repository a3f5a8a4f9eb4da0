"""A prefork job held until the writer has stored its STARTED (djq.worker.started_ahead
``until_started``): let go once, by whichever comes first of the writer's callback and
the consumer's deadline, and with ``started_stored`` saying what is true then."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from djq.backends.base import TaskInfo
from djq.context import RequestContext
from djq.worker import started_ahead
from djq.worker.request import TaskCall


class Writer:
    """Stands in for the result writer's ``after``: the test runs the callbacks."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def after(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)


def _call() -> TaskCall:
    return TaskCall(1, "tests.noop", RequestContext(id="t1", task="tests.noop"),
                    TaskInfo(task_id="t1", task_name="tests.noop", worker="w", queue="default", attempt=7),
                    False, None, None)


@pytest.fixture
def writer(monkeypatch) -> Writer:
    fake = Writer()
    monkeypatch.setattr(started_ahead, "current_writer", lambda: fake)
    return fake


def _released() -> tuple[list[Any], Callable[[Any], None]]:
    got: list[Any] = []
    return got, got.append


def test_a_stored_started_lets_the_job_go_as_pickled(writer: Writer) -> None:
    call = _call()
    hold, let_go = started_ahead.until_started(call, lambda timeout: True)
    assert call.started_stored is True  # what the pool pickles before the job is let go
    got, release = _released()
    hold(release)
    assert got == []
    writer.callbacks[0]()
    let_go()  # the consumer's deadline comes after: nothing more
    assert got == [None] and call.started_stored is True


def test_a_started_not_stored_goes_with_started_stored_off(writer: Writer) -> None:
    call = _call()
    hold, _ = started_ahead.until_started(call, lambda timeout: False)
    got, release = _released()
    hold(release)
    writer.callbacks[0]()
    assert got == [call] and call.started_stored is False


def test_the_deadline_lets_a_job_go_when_the_writer_has_not_answered(writer: Writer) -> None:
    call = _call()
    stored = [False]
    hold, let_go = started_ahead.until_started(call, lambda timeout: stored[0])
    got, release = _released()
    hold(release)
    let_go()
    assert got == [call] and call.started_stored is False
    stored[0] = True
    writer.callbacks[0]()  # the writer answers late: the job went already
    assert got == [call]


def test_with_no_writer_the_job_goes_at_once() -> None:
    call = _call()
    hold, _ = started_ahead.until_started(call, lambda timeout: True)
    got, release = _released()
    hold(release)
    assert got == [None]
