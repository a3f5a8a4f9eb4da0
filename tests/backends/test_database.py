"""The database result backend and AsyncResult."""
from __future__ import annotations

import pytest

from djq import AsyncResult, states
from djq.backends import get_backend, load_backend
from djq.backends.base import TaskInfo, exception_to_meta
from djq.exceptions import ConfigurationError, TaskError, TimeoutError
from djq.models import TaskResult

pytestmark = pytest.mark.django_db


def _info(task_id: str = "t-1") -> TaskInfo:
    return TaskInfo(task_id=task_id, task_name="app.task", args_repr="(1,)", worker="w1", queue="default")


def test_unknown_id_is_pending() -> None:
    result = AsyncResult("nobody")
    assert result.state == states.PENDING and not result.ready() and result.result is None


def test_states_are_upserted_into_one_row() -> None:
    backend = get_backend()
    backend.store(_info(), states.STARTED)
    assert AsyncResult("t-1").state == states.STARTED
    backend.store(_info(), states.SUCCESS, result={"total": 3}, runtime=0.5)
    row = TaskResult.objects.get(task_id="t-1")
    assert row.state == states.SUCCESS and row.date_done is not None and row.runtime == 0.5
    assert row.worker == "w1" and row.args_repr == "(1,)"
    result = AsyncResult("t-1")
    assert result.ready() and result.successful() and result.get(timeout=1) == {"total": 3}


def test_failure_is_rebuilt_as_the_original_exception() -> None:
    get_backend().store(_info(), states.FAILURE, result=exception_to_meta(KeyError("k")), traceback="tb")
    result = AsyncResult("t-1")
    assert result.failed() and result.traceback == "tb"
    with pytest.raises(KeyError):
        result.get(timeout=1)
    assert isinstance(result.get(timeout=1, propagate=False), KeyError)


def test_exception_from_an_unimported_module_becomes_task_error() -> None:
    meta = {"exc_type": "Boom", "exc_module": "somewhere.not.imported", "exc_message": "bad", "exc_args": ["bad"]}
    get_backend().store(_info(), states.FAILURE, result=meta)
    with pytest.raises(TaskError, match="Boom: bad"):
        AsyncResult("t-1").get(timeout=1)


def test_get_times_out() -> None:
    get_backend().store(_info(), states.STARTED)
    with pytest.raises(TimeoutError, match="not ready after 0.05"):
        AsyncResult("t-1").get(timeout=0.05)


def test_forget_deletes_the_row() -> None:
    get_backend().store(_info(), states.SUCCESS, result=1)
    AsyncResult("t-1").forget()
    assert not TaskResult.objects.filter(task_id="t-1").exists()


@pytest.mark.parametrize("value", ["nosuch", "nosuch.module.Backend", "django.db.models.Model", ""])
def test_bad_backend_setting_is_a_clear_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="DJQ_RESULT_BACKEND"):
        load_backend(value)


@pytest.mark.parametrize("db_alias", ["default", "postgres"], indirect=True)
def test_get_reads_every_field_as_stored(db_alias) -> None:
    """On PostgreSQL ``get`` reads with one plain statement, elsewhere with the queryset:
    both give the row's own values (aware datetimes, the decoded result)."""
    from djq.backends.database import DatabaseBackend

    backend = DatabaseBackend(str(db_alias))
    info = TaskInfo(task_id="t-read", task_name="app.task", args_repr="(1,)", kwargs_repr="{'a': 2}",
                    worker="w1", queue="special", retries=2, parent_id="p-1")
    backend.store(info, states.STARTED)
    backend.store(info, states.FAILURE, result=exception_to_meta(KeyError("k")), traceback="Traceback: here")
    row = TaskResult.objects.using(db_alias).get(task_id="t-read")
    meta = backend.get("t-read")
    assert meta is not None
    assert (meta.state, meta.traceback, meta.task_name, meta.worker, meta.retries, meta.queue, meta.args_repr,
            meta.kwargs_repr, meta.parent_id) == (states.FAILURE, "Traceback: here", "app.task", "w1", 2, "special",
                                                  "(1,)", "{'a': 2}", "p-1")
    assert (meta.date_done, meta.date_created, meta.date_started) == (row.date_done, row.date_created, row.date_started)
    assert meta.date_done is not None and meta.date_done.utcoffset() is not None
    assert isinstance(meta.result, KeyError) and meta.exception_path
    assert backend.get("t-none") is None


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(("result", "reads_after_the_end"), [({"total": 3}, 0), ("x" * 8000, 1)])
def test_get_returns_what_the_notification_carried_without_reading_the_row_again(db_alias, monkeypatch, result,
                                                                                 reads_after_the_end) -> None:
    """The stored end's NOTIFY carries its state and result: get() returns them without
    reading the row again; a result too long for a notification is read."""
    import threading

    from django.test import override_settings

    from djq.backends.database import DatabaseBackend

    looks: list[str] = []
    read = DatabaseBackend.get
    monkeypatch.setattr(DatabaseBackend, "get", lambda self, task_id: looks.append(task_id) or read(self, task_id))
    with override_settings(DJQ_RESULT_BACKEND=f"database://{db_alias}"):
        backend = get_backend()
        for task_id, end, expected in (("t-push", states.SUCCESS, reads_after_the_end),
                                       ("t-fail", states.FAILURE, 0)):
            backend.store(_info(task_id), states.STARTED)
            value = exception_to_meta(KeyError("k")) if end == states.FAILURE else result
            before_end: list[int] = []

            def finish(task_id: str = task_id, end: str = end, value: object = value) -> None:
                before_end.append(len(looks))
                backend.store(_info(task_id), end, result=value)

            # polls back off to 5 s (at 0.32 s, then 0.64 s): none falls near the end at 0.45 s
            timer = threading.Timer(0.45, finish)
            timer.start()
            try:
                if end == states.FAILURE:
                    with pytest.raises(KeyError):
                        AsyncResult(task_id).get(timeout=5, interval=5)
                else:
                    assert AsyncResult(task_id).get(timeout=5, interval=5) == result
            finally:
                timer.join(5)
            assert len(looks) - before_end[0] == expected, looks
            looks.clear()


@pytest.mark.parametrize("db_alias", ["default", "postgres"], indirect=True)
def test_an_ack_stores_the_started_rows_of_the_messages_it_deleted_and_no_others(broker) -> None:
    """``Store.delete_and_start``: one statement (PostgreSQL) or transaction (SQLite)
    deletes the acked messages and stores the STARTED row of each message it deleted; a
    message already gone (its ack would not go through) gets no row."""
    from kombu import Connection, Producer

    from djq.backends.database import DatabaseBackend
    from djq.messaging.store import Store
    from djq.messaging.transport import register
    from djq.models import QueueMessage

    register()

    def _publish(n: int) -> None:
        with Connection(f"djq://{broker}") as conn, conn.channel() as channel:
            Producer(channel).publish({"n": n}, routing_key="q", exchange="", serializer="json")

    for n in range(3):
        _publish(n)
    store = Store(str(broker))
    ids = list(QueueMessage.objects.using(broker).order_by("id").values_list("id", flat=True))
    gone = ids[2]
    QueueMessage.objects.using(broker).filter(id=gone).delete()  # acked elsewhere meanwhile
    backend = DatabaseBackend(str(broker))
    rows = [(message_id, backend.build_row(TaskInfo(task_id=f"t{n}", task_name="app.t", worker="w", attempt=5),
                                           states.STARTED)) for n, message_id in enumerate(ids)]
    assert store.delete_and_start(ids, rows) == {"t0", "t1"}
    assert not QueueMessage.objects.using(broker).exists()
    stored = dict(TaskResult.objects.using(broker).values_list("task_id", "state"))
    assert stored == {"t0": states.STARTED, "t1": states.STARTED}
    # the conditional upsert's rule holds: a stored end is not taken back to STARTED
    backend.store(TaskInfo(task_id="t0", task_name="app.t", worker="w", attempt=5), states.SUCCESS, result=1)
    _publish(9)
    again = QueueMessage.objects.using(broker).values_list("id", flat=True).get()
    assert store.delete_and_start([again], [(again, rows[0][1])]) == set()
    assert TaskResult.objects.using(broker).get(task_id="t0").state == states.SUCCESS
