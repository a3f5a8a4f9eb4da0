"""The result writer (djq/backends/writer.py): batched, ordered, and nothing lost at stop.

The writer stores through a real DatabaseBackend on SQLite and PostgreSQL; ``Gated``
holds a flush open so that writes pile up behind it, as they do under load.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from djq import states
from djq.backends.base import TaskInfo
from djq.backends.database import DatabaseBackend
from djq.backends.writer import ResultWriter
from djq.exceptions import EncodeError
from djq.models import TaskResult
from tests.conftest import _skip_or_fail

pytestmark = pytest.mark.django_db(databases=["default", "postgres"], transaction=True)


class Gated(DatabaseBackend):
    """Counts statements; while ``gate`` is clear, a flush waits for it."""

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        self.threads: list[str] = []

    def store_rows(self, rows: list[dict[str, Any]]) -> set[str]:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.batches.append([f"{row['task_id']}:{row['state']}" for row in rows])
        self.threads.append(threading.current_thread().name)
        return super().store_rows(rows)


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Gated:
    if request.param not in connections.settings:
        _skip_or_fail("PostgreSQL leg needs DJQ_TEST_POSTGRES_URL")
    return Gated(request.param)


@pytest.fixture
def writer(backend: Gated):
    writer = ResultWriter(backend)
    writer.start()
    yield writer
    backend.gate.set()
    writer.stop(timeout=10)


def _info(task_id: str, attempt: int = 7) -> TaskInfo:
    return TaskInfo(task_id=task_id, task_name="app.task", worker="w1", attempt=attempt, acks_late=True)


def _hold(backend: Gated, writer: ResultWriter) -> None:
    """Start a flush and keep it open: what is written next waits behind it."""
    backend.gate.clear()
    backend.entered.clear()
    writer.put(_info("blocker"), states.STARTED)
    assert backend.entered.wait(5)


def _waiting(writer: ResultWriter) -> int:
    """How many ``store`` calls wait on the writer (reads its queue under its lock)."""
    with writer._lock:
        return sum(len(entry.waiters) for batch in writer._batches for entry in batch.entries.values())


def _state(backend: Gated, task_id: str) -> str | None:
    return TaskResult.objects.using(backend.alias).filter(task_id=task_id).values_list("state", flat=True).first()


def test_writes_that_gather_go_in_one_statement_and_a_waiting_started_gives_way(backend: Gated,
                                                                                writer: ResultWriter) -> None:
    _hold(backend, writer)
    for n in range(20):
        writer.put(_info(f"t{n}"), states.STARTED)
    for n in range(10):
        writer.put(_info(f"t{n}"), states.SUCCESS, result=n, runtime=0.01)
    done = threading.Event()
    writer.after(done.set)
    assert not done.is_set(), "after() ran before the writes before it were stored"
    backend.gate.set()
    assert done.wait(5)
    assert backend.batches[1:] == [[f"t{n}:{states.SUCCESS if n < 10 else states.STARTED}" for n in range(20)]]
    assert [_state(backend, f"t{n}") for n in (0, 9, 10, 19)] == ["SUCCESS", "SUCCESS", "STARTED", "STARTED"]
    row = TaskResult.objects.using(backend.alias).get(task_id="t3")
    assert row.result == "3" and row.runtime == 0.01 and row.date_done is not None


def test_writes_each_followed_by_after_still_gather_in_one_statement(backend: Gated,
                                                                    writer: ResultWriter) -> None:
    """Every finished task is followed by an ``after()`` (its ack): those barriers must not
    split the rows piling up behind a flush into a statement each."""
    _hold(backend, writer)
    ran: list[int] = []
    for n in range(30):
        writer.put(_info(f"t{n}"), states.SUCCESS, result=n)
        writer.after(lambda n=n: ran.append(n))
    assert not ran, "after() ran before the writes before it were stored"
    backend.gate.set()
    deadline = time.monotonic() + 5
    while len(ran) < 30 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ran == list(range(30))
    assert backend.batches[1:] == [[f"t{n}:{states.SUCCESS}" for n in range(30)]]


def test_a_second_write_of_a_task_goes_after_the_first(backend: Gated, writer: ResultWriter) -> None:
    """PROGRESS of the delivery takes a waiting STARTED's place (and its start time); a
    write from outside the worker (attempt 0) goes in the next statement, after it."""
    _hold(backend, writer)
    writer.put(_info("t"), states.STARTED, date_started=timezone.now())
    mine = threading.Thread(target=writer.store, args=(_info("t"), "PROGRESS"), kwargs={"result": {"step": 1}})
    mine.start()
    deadline = time.monotonic() + 5
    while not _waiting(writer) and time.monotonic() < deadline:
        time.sleep(0.001)
    writer.put(_info("t", attempt=0), "PROGRESS", result={"step": 2})
    done = threading.Event()
    writer.after(done.set)
    backend.gate.set()
    mine.join(5)
    assert done.wait(5) and not mine.is_alive()
    assert backend.batches[1:] == [["t:PROGRESS"], ["t:PROGRESS"]]
    row = TaskResult.objects.using(backend.alias).get(task_id="t")
    assert (row.state, row.result) == ("PROGRESS", '{"step": 2}') and row.date_started is not None


def test_store_waits_and_says_whether_the_rule_let_it_through(backend: Gated, writer: ResultWriter) -> None:
    assert writer.store(_info("t"), states.SUCCESS, result=1)
    assert not writer.store(_info("t"), states.FAILURE, result="late"), "a final state was replaced"
    assert _state(backend, "t") == states.SUCCESS


def test_an_unencodable_value_is_an_error_at_once_and_stores_nothing(writer: ResultWriter, backend: Gated) -> None:
    with pytest.raises(EncodeError):
        writer.put(_info("t"), states.SUCCESS, result=object())
    writer.store(_info("u"), states.SUCCESS, result=1)
    assert _state(backend, "t") is None and _state(backend, "u") == states.SUCCESS


def test_a_row_the_database_refuses_does_not_take_its_batch_down(backend: Gated, writer: ResultWriter,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    _hold(backend, writer)
    writer.put(_info("good-1"), states.SUCCESS, result=1)
    writer.put(_info("bad"), None, result=2)  # type: ignore[arg-type]  # state is NOT NULL
    writer.put(_info("good-2"), states.SUCCESS, result=3)
    done = threading.Event()
    writer.after(done.set)
    backend.gate.set()
    assert done.wait(5)
    assert [_state(backend, t) for t in ("good-1", "bad", "good-2")] == ["SUCCESS", None, "SUCCESS"]
    assert "could not store the None state of task bad" in caplog.text


def test_stop_stores_what_waits_and_later_writes_go_straight_through(backend: Gated) -> None:
    writer = ResultWriter(backend)
    writer.start()
    _hold(backend, writer)
    for n in range(5):
        writer.put(_info(f"t{n}"), states.SUCCESS, result=n)
    threading.Timer(0.2, backend.gate.set).start()
    writer.stop(timeout=10)
    assert [_state(backend, f"t{n}") for n in range(5)] == ["SUCCESS"] * 5
    ran: list[str] = []
    writer.after(lambda: ran.append(str(_state(backend, "t0"))))
    writer.put(_info("late"), states.SUCCESS, result=1)
    assert ran == ["SUCCESS"] and _state(backend, "late") == states.SUCCESS


def test_a_stored_end_wakes_the_get_waiting_on_it_on_postgresql(backend: Gated) -> None:
    from djq.backends.wake import listener_for

    if backend.alias != "postgres":
        assert listener_for(backend) is None, "SQLite has no NOTIFY: get() polls"
        return
    listener = listener_for(backend)
    assert listener is not None
    started, ended = listener.watch("running"), listener.watch("ended")
    backend.store_rows([backend.build_row(_info("running"), states.STARTED),
                        backend.build_row(_info("ended"), states.SUCCESS, result=1)])
    assert ended.wait(5), "the statement that stored SUCCESS sent no notification"
    assert not started.is_set(), "STARTED is not an end: nobody waits for it"
    assert ended.stored == (states.SUCCESS, "1"), "the notification carries the stored state and result"
    long, failed, empty = listener.watch("long"), listener.watch("failed"), listener.watch("empty")
    many = [listener.watch(f"m{n}") for n in range(6)]  # more than FEW_ROWS: the arrays statement
    backend.store_rows([backend.build_row(_info("long"), states.SUCCESS, result="x" * 8000),
                        backend.build_row(_info("failed"), states.FAILURE, result={"exc_type": "KeyError"}),
                        backend.build_row(_info("empty"), states.SUCCESS, result=None),
                        *(backend.build_row(_info(f"m{n}"), states.SUCCESS, result=[n]) for n in range(6))])
    assert all(event.wait(5) for event in (long, failed, empty, *many))
    assert long.stored is None, "too long for a notification: get() reads the row"
    assert failed.stored == (states.FAILURE, '{"exc_type": "KeyError"}')
    assert empty.stored == (states.SUCCESS, None) or empty.stored == (states.SUCCESS, "null")
    assert [event.stored for event in many] == [(states.SUCCESS, f"[{n}]") for n in range(6)]
    later = listener.watch("later")  # a batch with no end is the bare upsert: stored, announced by its end
    assert backend.store_rows([backend.build_row(_info("later"), states.STARTED)]) == {"later"}
    assert _state(backend, "later") == states.STARTED and not later.wait(0.2)
    backend.store_rows([backend.build_row(_info("later"), states.SUCCESS, result=2)])
    assert later.wait(5) and later.stored == (states.SUCCESS, "2")


def test_direct_stores_go_from_the_caller_unless_the_writer_holds_the_task(backend: Gated) -> None:
    """Solo's setting: its STARTED overlaps the writer's store of the task before."""
    writer = ResultWriter(backend, direct_stores=True)
    writer.start()
    try:
        assert writer.store(_info("t"), states.STARTED)
        assert backend.threads == [threading.current_thread().name]
        _hold(backend, writer)
        writer.put(_info("u"), states.SUCCESS, result=1)
        late = threading.Thread(target=writer.store, args=(_info("u", attempt=0), "PROGRESS"))
        late.start()
        deadline = time.monotonic() + 5
        while not _waiting(writer) and time.monotonic() < deadline:
            time.sleep(0.001)
        backend.gate.set()
        late.join(5)
        assert not late.is_alive()
        assert backend.threads[1:] == ["djq-result-writer"] * 3, "a store of a held task must queue behind it"
    finally:
        backend.gate.set()
        writer.stop(timeout=10)


class Refusing(Gated):
    """A statement of many rows fails as a statement timeout does (OperationalError on a
    connection that stays usable); ``down`` fails every statement as a lost server does."""

    down = False

    def store_rows(self, rows: list[dict[str, Any]]) -> set[str]:
        from django.db import OperationalError

        if self.down:
            raise OperationalError("server closed the connection unexpectedly")
        if len(rows) > 1:
            raise OperationalError("canceling statement due to statement timeout")
        return super().store_rows(rows)


@pytest.mark.parametrize("alias", ["default"])
def test_a_batch_the_database_refuses_is_stored_row_by_row(alias: str) -> None:
    backend = Refusing(alias)
    writer = ResultWriter(backend)
    writer.start()
    try:
        _hold(backend, writer)
        for n in range(4):
            writer.put(_info(f"t{n}"), states.SUCCESS, result=n)
        done = threading.Event()
        writer.after(done.set)
        backend.gate.set()
        assert done.wait(10)
        assert [_state(backend, f"t{n}") for n in range(4)] == ["SUCCESS"] * 4
    finally:
        backend.gate.set()
        writer.stop(timeout=10)


@pytest.mark.parametrize("alias", ["default"])
def test_a_store_waiting_on_a_lost_database_gets_an_error_after_the_patience(alias: str, monkeypatch) -> None:
    from django.db import OperationalError

    backend = Refusing(alias)
    backend.down = True
    writer = ResultWriter(backend)
    writer.patience = 0.5
    monkeypatch.setattr(writer, "_connection_usable", lambda: False)
    writer.start()
    try:
        failed: list[BaseException] = []

        def store() -> None:
            try:
                writer.store(_info("t"), states.FAILURE, result="lost")
            except OperationalError as exc:
                failed.append(exc)

        caller = threading.Thread(target=store)
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "store() waited for a database that stays away"
        assert failed and "closed the connection" in str(failed[0])
    finally:
        writer.stop(timeout=10)
