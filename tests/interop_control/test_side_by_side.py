"""A djq worker and a real Celery worker on one broker: each side's remote control,
events and Flower see the other (issue 14, items 4 and 5). One pair of workers per
broker serves the whole module (tests/interop_control/conftest.py); the last test
shuts the djq worker down through Celery's mailbox."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from io import StringIO
from typing import Any, Callable

import pytest
from celery.events.state import State
from django.core.management import call_command
from django.test import override_settings

from djq import control
from djq.messaging.events import EventReceiver
from djq.models import TaskEvent
from djq.monitor import Camera
from tests.conftest import wait_for

from .celery_app import make_app
from .conftest import CELERY_NODE, DJQ_NODE, Pair, Process, celery_bin, celery_env

BOTH = [DJQ_NODE, CELERY_NODE]


def _inspect(app: Any, method: str, *args: Any, nodes: list[str] = BOTH) -> dict[str, Any]:
    with app.connection_for_write() as connection:
        replies = getattr(app.control.inspect(destination=nodes, timeout=10, connection=connection), method)(*args)
    assert replies is not None and set(replies) == set(nodes), f"{method}: {replies}"
    return replies


def _control(app: Any, command: str, node: str, **arguments: Any) -> Any:
    with app.connection_for_write() as connection:
        replies = app.control.broadcast(command, arguments=arguments, destination=[node], reply=True, timeout=10,
                                        limit=1, connection=connection)
    assert len(replies) == 1 and node in replies[0], f"{command}: {replies}"
    return replies[0][node]


def _same_shape(djq: Any, celery: Any, where: str) -> None:
    """Every key a Celery worker sends is there, with a value of the same kind."""
    assert isinstance(djq, dict) and isinstance(celery, dict), where
    missing = set(celery) - set(djq)
    assert not missing, f"{where}: djq lacks {sorted(missing)}"
    for key, value in celery.items():
        if value is not None and djq[key] is not None:
            kind = (int, float) if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value)
            assert isinstance(djq[key], kind), f"{where}[{key!r}]: {djq[key]!r} vs Celery's {value!r}"


def test_celery_inspect_reads_a_djq_worker_as_a_celery_one(pair: Pair) -> None:
    app = make_app(pair.url)
    cli = subprocess.run([celery_bin(), "-A", "tests.interop_control.celery_app", "inspect", "ping", "-t", "10",
                          "-d", ",".join(BOTH)],
                         env=celery_env(pair.url), capture_output=True, text=True, timeout=60)
    assert f"{DJQ_NODE}: OK" in cli.stdout and f"{CELERY_NODE}: OK" in cli.stdout, cli.stdout + cli.stderr
    assert _inspect(app, "ping") == {DJQ_NODE: {"ok": "pong"}, CELERY_NODE: {"ok": "pong"}}

    stats = _inspect(app, "stats")
    _same_shape(stats[DJQ_NODE], stats[CELERY_NODE], "stats")
    _same_shape(stats[DJQ_NODE]["pool"], stats[CELERY_NODE]["pool"], "stats.pool")
    _same_shape(stats[DJQ_NODE]["broker"], stats[CELERY_NODE]["broker"], "stats.broker")
    queues = _inspect(app, "active_queues")
    assert [q["name"] for q in queues[DJQ_NODE]] == ["default"]
    _same_shape(queues[DJQ_NODE][0], queues[CELERY_NODE][0], "active_queues")
    assert "tests.testapp.tasks.add" in _inspect(app, "registered")[DJQ_NODE]

    # a running task, and one waiting for its eta, on each worker (14 s: held in memory, not parked)
    running = [app.send_task("tests.testapp.tasks.sleep_then_add", (3, 1, 2), queue="default"),
               app.send_task("ic.sleep", (3,), queue="ic-celery")]
    later = [app.send_task("tests.testapp.tasks.add", (1, 1), queue="default", countdown=14),
             app.send_task("ic.add", (1, 1), queue="ic-celery", countdown=14)]

    def both(method: str, ids: Callable[[dict[str, Any]], str]) -> dict[str, Any] | None:
        replies = _inspect(app, method)
        return replies if all(any(ids(e) in (r.id for r in running + later) for e in replies[n]) for n in BOTH) else None

    active = wait_for(lambda: both("active", lambda entry: entry["id"]), timeout=30, what="active tasks")
    assert active[DJQ_NODE][0]["id"] == running[0].id and active[DJQ_NODE][0]["name"].endswith("sleep_then_add")
    _same_shape(active[DJQ_NODE][0], active[CELERY_NODE][0], "active")
    scheduled = wait_for(lambda: both("scheduled", lambda entry: entry["request"]["id"]), timeout=30, what="eta")
    assert scheduled[DJQ_NODE][0]["request"]["id"] == later[0].id
    _same_shape(scheduled[DJQ_NODE][0], scheduled[CELERY_NODE][0], "scheduled")
    _same_shape(scheduled[DJQ_NODE][0]["request"], scheduled[CELERY_NODE][0]["request"], "scheduled.request")

    assert _control(app, "revoke", DJQ_NODE, task_id=later[0].id) == {"ok": f"tasks {later[0].id} flagged as revoked"}
    _control(app, "revoke", CELERY_NODE, task_id=later[1].id)
    revoked = _inspect(app, "revoked")
    assert later[0].id in revoked[DJQ_NODE] and later[1].id in revoked[CELERY_NODE]
    assert all(_inspect(app, "reserved")[node] == [] for node in BOTH)


def test_celery_control_commands_act_on_a_djq_worker(pair: Pair) -> None:
    app = make_app(pair.url)
    same = {"rate_limit": {"rate_limit": "10/s"}, "time_limit": {"soft": 5, "hard": 10}}
    for command, arguments in same.items():
        djq = _control(app, command, DJQ_NODE, task_name="tests.testapp.tasks.add", **arguments)
        celery = _control(app, command, CELERY_NODE, task_name="ic.add", **arguments)
        assert djq == celery and "ok" in djq, (command, djq, celery)
        assert _control(app, command, DJQ_NODE, task_name="no.such.task", **arguments) == {"error": "unknown task"}
    assert _control(app, "rate_limit", DJQ_NODE, task_name="tests.testapp.tasks.add", rate_limit=0) == \
        _control(app, "rate_limit", CELERY_NODE, task_name="ic.add", rate_limit=0)
    unknown = {"task_id": "no-such-task", "signal": "SIGTERM"}
    assert _control(app, "terminate", DJQ_NODE, **unknown) == _control(app, "terminate", CELERY_NODE, **unknown)

    assert _control(app, "pool_grow", DJQ_NODE, n=1) == {"ok": "pool will grow"}
    assert _inspect(app, "stats", nodes=[DJQ_NODE])[DJQ_NODE]["pool"]["max-concurrency"] == 3
    assert _control(app, "pool_shrink", DJQ_NODE, n=1) == {"ok": "pool will shrink"}
    assert _inspect(app, "stats", nodes=[DJQ_NODE])[DJQ_NODE]["pool"]["max-concurrency"] == 2

    assert _control(app, "add_consumer", DJQ_NODE, queue="special") == {"ok": "add consumer special"}
    names = {q["name"] for q in _inspect(app, "active_queues", nodes=[DJQ_NODE])[DJQ_NODE]}
    assert names == {"default", "special"}
    assert _control(app, "cancel_consumer", DJQ_NODE, queue="special") == {"ok": "no longer consuming from special"}
    assert _control(app, "no_such_command", DJQ_NODE) == {"error": "No such command: no_such_command"}


def test_djq_inspect_and_control_reach_the_celery_worker(pair: Pair) -> None:
    out = StringIO()
    with override_settings(DJQ_BROKER_URL=pair.url):
        call_command("djq_inspect", "ping", "--json", "-t", "10", "-d", ",".join(BOTH), stdout=out)
        assert sorted(json.loads(out.getvalue()), key=str) == [{CELERY_NODE: {"ok": "pong"}}, {DJQ_NODE: {"ok": "pong"}}]
        out = StringIO()
        call_command("djq_control", "rate_limit", "ic.add", "7/m", "-d", CELERY_NODE, "--json", stdout=out)
        assert json.loads(out.getvalue()) == [{CELERY_NODE: {"ok": "new rate limit set successfully"}}]
        registered = control.broadcast("registered", destination=[CELERY_NODE], timeout=10)
        assert "ic.add [rate_limit=7/m]" in registered[0][CELERY_NODE]
        # a djq worker listens on both mailboxes: it runs a djq command once, and answers once
        assert control.broadcast("pool_grow", {"n": 1}, destination=[DJQ_NODE], timeout=10) == \
            [{DJQ_NODE: {"ok": "pool will grow to 3"}}]
        grown = _inspect(make_app(pair.url), "stats", nodes=[DJQ_NODE])[DJQ_NODE]["pool"]["max-concurrency"]
        control.broadcast("pool_shrink", {"n": 1}, destination=[DJQ_NODE], timeout=10)
        stats = control.broadcast("stats", destination=BOTH, timeout=10)
    assert grown == 3
    by_node = {node: reply for item in stats for node, reply in item.items()}
    assert len(stats) == 2 and by_node[DJQ_NODE]["hostname"] == DJQ_NODE and "pid" in by_node[CELERY_NODE]


@pytest.mark.django_db
def test_events_cross_both_ways(pair: Pair) -> None:
    app = make_app(pair.url)
    state = State()
    seen: list[dict[str, Any]] = []
    camera = Camera(retention_hours=None)

    def handle(event: dict[str, Any]) -> None:  # djq_events --camera's receiver, fed the same way
        seen.append(event)
        camera(event)

    with app.connection_for_read() as connection:
        celery_receiver = app.events.Receiver(connection, handlers={"*": state.event})
        djq_receiver = EventReceiver(handle, url=pair.url)
        djq_ready = threading.Event()
        threads = [threading.Thread(target=celery_receiver.capture, kwargs={"limit": None, "timeout": None}),
                   threading.Thread(target=djq_receiver.capture, kwargs={"on_ready": djq_ready.set})]
        for thread in threads:
            thread.start()
        try:
            assert djq_ready.wait(30)
            wait_for(lambda: DJQ_NODE in state.workers, timeout=30, what="a djq heartbeat in Celery's State")
            to_djq = app.send_task("tests.testapp.tasks.add", (2, 3), queue="default")
            to_celery = app.send_task("ic.add", (4, 5), queue="ic-celery")
            task = wait_for(lambda: (t := state.tasks.get(to_djq.id)) is not None and t.state == "SUCCESS" and t,
                            timeout=30, what="the djq task's success in Celery's State")
            assert task.worker.hostname == DJQ_NODE and task.name == "tests.testapp.tasks.add" and task.result == "5"
            assert state.workers[DJQ_NODE].alive and state.workers[DJQ_NODE].sw_ident == "djq"

            def succeeded(task_id: str) -> list[dict[str, Any]]:
                return [e for e in list(seen) if e["type"] == "task-succeeded" and e.get("uuid") == task_id]

            celery_event = wait_for(lambda: succeeded(to_celery.id), timeout=30,
                                    what=f"the Celery task in djq's receiver (seen: {_summary(seen)})")
            assert celery_event[0]["hostname"] == CELERY_NODE
            wait_for(lambda: any(e["type"] == "worker-heartbeat" and e["hostname"] == CELERY_NODE for e in list(seen)),
                     timeout=30, what="a Celery worker's heartbeat in djq's receiver")
            wait_for(lambda: succeeded(to_djq.id), timeout=30, what="the djq task in djq's receiver")
            beats = sum(1 for e in list(seen) if e["type"] == "worker-heartbeat" and e["hostname"] == DJQ_NODE)
            wait_for(lambda: sum(1 for e in list(seen) if e["type"] == "worker-heartbeat"
                                 and e["hostname"] == DJQ_NODE) >= beats + 2, timeout=30, what="two more beats")
            assert len(succeeded(to_djq.id)) == 1  # not again from its copy on celeryev
            camera.flush()
            stored = TaskEvent.objects.get(task_id=to_celery.id, event="task-succeeded")
            assert stored.hostname == CELERY_NODE and stored.fields["result"] == "9"
        finally:
            celery_receiver.should_stop = True
            djq_receiver.should_stop = True
            for thread in threads:
                thread.join(10)


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted({(e["hostname"], e["type"]) for e in list(events)})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_flower_lists_the_djq_worker_and_its_tasks(pair: Pair) -> None:
    port = _free_port()
    flower = Process([celery_bin(), "-A", "tests.interop_control.celery_app", "flower", f"--port={port}",
                      "--address=127.0.0.1"], pair.tmp / "flower.log", celery_env(pair.url))
    try:
        flower.wait_for("Connected to")
        base = f"http://127.0.0.1:{port}"
        app = make_app(pair.url)

        def listed() -> dict[str, Any] | None:  # Flower starts capturing events a moment after it starts
            result = app.send_task("tests.testapp.tasks.add", (20, 22), queue="default")
            time.sleep(1.0)
            task = _get(f"{base}/api/tasks").get(result.id)
            return task if task and task["state"] == "SUCCESS" else None

        task = wait_for(listed, timeout=40, interval=0.5, what="a djq task in Flower")
        assert task["worker"] == DJQ_NODE and task["result"] == "42"
        workers = _get(f"{base}/api/workers?refresh=1")
        assert DJQ_NODE in workers and CELERY_NODE in workers
        assert workers[DJQ_NODE]["stats"]["pid"] > 0 and "tests.testapp.tasks.add" in workers[DJQ_NODE]["registered"]
        assert [q["name"] for q in workers[DJQ_NODE]["active_queues"]] == ["default"]
    finally:
        flower.stop()


def test_celery_shutdown_stops_the_djq_worker(pair: Pair) -> None:
    """Last in the module: it ends the shared djq worker."""
    app = make_app(pair.url)
    assert _control(app, "shutdown", DJQ_NODE) == {"ok": "shutting down"}
    assert pair.djq.proc.wait(timeout=30) == 0
    assert "warm shutdown" in pair.djq.output
