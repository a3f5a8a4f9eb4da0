"""djq.signals: Celery's signal names and arguments, sent by a real djq worker (prefork,
with -B) and by the calling process (issue 14, item 6). The worker's receivers come from
tests/interop_control/signal_app and log each call to a file."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from djq import control, signals
from tests.conftest import _skip_or_fail, purge_broker, wait_for
from tests.testapp.tasks import add

from .celery_app import make_app
from .conftest import start_djq

NODE = f"djq-signals@{socket.gethostname()}"
#: the keyword arguments Celery 5 sends with each signal (besides ``signal`` and ``sender``)
CELERY_ARGUMENTS = {
    "before_task_publish": ["body", "declare", "exchange", "headers", "properties", "retry_policy", "routing_key"],
    "after_task_publish": ["body", "exchange", "headers", "routing_key"],
    "task_received": ["request"],
    "task_prerun": ["args", "kwargs", "task", "task_id"],
    "task_postrun": ["args", "kwargs", "retval", "state", "task", "task_id"],
    "task_success": ["result"],
    "task_failure": ["args", "einfo", "exception", "kwargs", "task_id", "traceback"],
    "task_retry": ["einfo", "reason", "request"],
    "task_revoked": ["expired", "request", "signum", "terminated"],
    "task_rejected": ["exc", "message"],
    "task_unknown": ["exc", "id", "message", "name"],
    "worker_init": [], "worker_ready": [], "worker_process_init": [], "worker_shutdown": [], "beat_init": [],
}


def _log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.django_db(transaction=True)
def test_signals_have_celerys_names_and_arguments(worker_db: str, tmp_path: Path) -> None:
    url = os.environ.get("DJQ_TEST_REDIS_URL", "")
    if not url:
        _skip_or_fail("the signal test needs DJQ_TEST_REDIS_URL")
    assert sorted(signals.ALL) == sorted(CELERY_ARGUMENTS)
    purge_broker(url)
    log = tmp_path / "signals.jsonl"
    worker = start_djq(url, worker_db, tmp_path / "worker.log", "-P", "prefork", "-c", "1", "-B", "-n", NODE,
                       settings="tests.interop_control.signal_settings", env={"DJQ_TEST_SIGNAL_LOG": str(log)})
    here: list[tuple[str, dict[str, Any]]] = []

    def tag(sender: Any, signal: Any, headers: dict[str, Any], **arguments: Any) -> None:
        headers["x-trace"] = "trace-1"  # a tracing handler's context travels with the message
        here.append(("before", {"sender": sender, "headers": headers, **arguments}))

    def published(sender: Any, signal: Any, **arguments: Any) -> None:
        here.append(("after", {"sender": sender, **arguments}))

    signals.before_task_publish.connect(tag)
    signals.after_task_publish.connect(published)
    try:
        with override_settings(DJQ_BROKER_URL=url):
            sent = add.delay(2, 3)
        assert [kind for kind, _ in here] == ["before", "after"]
        assert here[0][1]["sender"] == "tests.testapp.tasks.add" and here[0][1]["routing_key"] == "default"
        assert sorted(here[0][1]) == sorted(["sender", *CELERY_ARGUMENTS["before_task_publish"]])
        assert here[0][1]["body"][0] == [2, 3] and here[1][1]["headers"]["id"] == sent.id

        app = make_app(url)
        failing = app.send_task("tests.testapp.tasks.fail", ("boom",), queue="default")
        retrying = app.send_task("tests.testapp.tasks.always_retry", queue="default")
        app.send_task("no.such.task", queue="default")
        revoked = app.send_task("tests.testapp.tasks.add", (1, 1), queue="default", countdown=2)
        with override_settings(DJQ_BROKER_URL=url):
            assert control.revoke(revoked.id, destination=[NODE], reply=True, timeout=10)
        with app.connection_for_write() as connection:  # DJQ_CELERY_MAILBOX = False: Celery gets no answer
            assert app.control.ping(destination=[NODE], timeout=1, connection=connection) == []

        def calls(name: str, task_id: str | None = None) -> list[dict[str, Any]]:
            return [e for e in _log(log) if e["signal"] == name and (task_id is None or e["task_id"] == task_id)]

        wait_for(lambda: calls("task_revoked", revoked.id) and len(calls("task_failure", retrying.id)) == 1
                 and calls("task_unknown") and calls("beat_init"), timeout=60, what="the worker's signals")
    finally:
        signals.before_task_publish.disconnect(tag)
        signals.after_task_publish.disconnect(published)
        worker.stop()

    entries = _log(log)
    for entry in entries:
        assert entry["arguments"] == CELERY_ARGUMENTS[entry["signal"]], entry
    assert {e["signal"] for e in entries} == set(CELERY_ARGUMENTS)
    [child_init] = calls("worker_process_init")
    [ready] = calls("worker_ready")
    assert ready["sender_type"] == "Consumer" and calls("worker_init")[0]["sender_type"] == "Worker"
    assert calls("worker_shutdown")[0]["pid"] == ready["pid"] != child_init["pid"]

    [received] = calls("task_received", sent.id)
    assert received["trace"] == "trace-1"
    [prerun] = calls("task_prerun", sent.id)
    assert prerun["sender"] == "tests.testapp.tasks.add" and prerun["pid"] == child_init["pid"]
    [postrun] = calls("task_postrun", sent.id)
    assert postrun["state"] == "SUCCESS" and postrun["result"] == "5"
    assert [e["result"] for e in calls("task_success") if e["pid"] == prerun["pid"]][:1] == ["5"]
    [failure] = calls("task_failure", failing.id)
    assert "boom" in failure["exception"] and "boom" in failure["einfo"]
    retries = [e for e in calls("task_retry") if e["task_id"] == retrying.id]
    assert len(retries) == 2 and "still down" in retries[0]["exception"]
    # a retry is sent again from the worker's child: the publish signals go off there
    assert any(e["sender"] == "tests.testapp.tasks.always_retry" for e in calls("before_task_publish"))
    [unknown] = calls("task_unknown")
    assert unknown["sender_type"] == "Consumer" and "no.such.task" in unknown["exception"]
    assert calls("task_rejected") and calls("task_revoked", revoked.id)[0]["sender"] == "tests.testapp.tasks.add"


def test_eager_apply_sends_the_task_signals() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def receiver(name: str) -> Any:
        def receive(sender: Any, signal: Any, **arguments: Any) -> None:
            seen.append((name, arguments))
        return receive

    receivers = {name: receiver(name) for name in ("task_prerun", "task_success", "task_failure", "task_postrun")}
    for name, function in receivers.items():
        getattr(signals, name).connect(function)
    try:
        assert add.apply((4, 5)).get() == 9
    finally:
        for name, function in receivers.items():
            getattr(signals, name).disconnect(function)
    assert [name for name, _ in seen] == ["task_prerun", "task_success", "task_postrun"]
    assert seen[1][1] == {"result": 9} and seen[2][1]["retval"] == 9 and seen[2][1]["state"] == "SUCCESS"
