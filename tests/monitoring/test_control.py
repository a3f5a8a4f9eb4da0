"""Remote control and worker state against real worker subprocesses, on every broker."""
from __future__ import annotations

import io
import json
import os
import signal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from djq import control, states
from djq.models import TaskResult, WorkerState
from tests.conftest import wait_for
from tests.testapp.tasks import add, interval, sleep_then_add

pytestmark = pytest.mark.integration


def _reply(replies: list[dict], hostname: str) -> object:
    merged = {k: v for item in replies for k, v in item.items()}
    assert hostname in merged, replies
    return merged[hostname]


def test_inspect_and_control_round_trip(broker, start_worker) -> None:
    worker = start_worker("-P", "threads", "-c", "2", "-n", "alpha@%h")
    hostname = WorkerState.objects.using(broker).get().hostname
    assert hostname.startswith("alpha@")
    assert _reply(control.broadcast("ping", destination=[hostname], timeout=10), hostname) == {"ok": "pong"}
    assert "tests.testapp.tasks.add" in _reply(control.broadcast("registered", destination=[hostname], timeout=10),
                                               hostname)

    running = sleep_then_add.delay(1.5, 1, 2)
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id=running.id, state=states.STARTED).exists(),
             what="task started")
    active = _reply(control.broadcast("active", destination=[hostname], timeout=10), hostname)
    assert [entry["id"] for entry in active] == [running.id]

    # revoke a task that is not yet due: the worker discards it when it comes up
    later = add.apply_async((5, 5), countdown=1)
    assert "revoked" in _reply(control.revoke(later.id, destination=[hostname], timeout=10, reply=True), hostname)["ok"]
    assert later.id in _reply(control.broadcast("revoked", destination=[hostname], timeout=10), hostname)
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id=later.id, state=states.REVOKED).exists(),
             what="revoked task recorded")
    assert running.get(timeout=30) == 3

    grow = _reply(control.broadcast("pool_grow", {"n": 2}, destination=[hostname], timeout=10), hostname)
    assert grow == {"ok": "pool will grow to 4"}
    # the result is stored before the consumer counts the task: wait for the count
    stats = wait_for(lambda: (s := _reply(control.broadcast("stats", destination=[hostname], timeout=10), hostname))
                     and s["total"]["succeeded"] >= 1 and s, what="stats counting the task")
    assert stats["pool"]["concurrency"] == 4 and stats["total"]["received"] >= 2

    assert "now consuming" in _reply(control.broadcast("add_consumer", {"queue": "special"},
                                                       destination=[hostname], timeout=10), hostname)["ok"]
    assert add.apply_async((20, 22), queue="special").get(timeout=30) == 42
    queues = _reply(control.broadcast("active_queues", destination=[hostname], timeout=10), hostname)
    assert {q["name"] for q in queues} == {"default", "special"}

    bad = _reply(control.broadcast("rate_limit", {"task_name": "no.such.task", "rate_limit": "1/s"},
                                   destination=[hostname], timeout=10), hostname)
    assert bad == {"error": "unknown task 'no.such.task'"}

    _reply(control.broadcast("shutdown", destination=[hostname], timeout=10), hostname)
    assert worker.wait(timeout=30) == 0
    state = WorkerState.objects.using(broker).get(hostname=hostname)
    assert state.stopped is not None and not state.online and state.processed >= 2


def test_destination_selects_workers_and_commands_print(broker, start_worker) -> None:
    start_worker("-P", "threads", "-n", "one@%h")
    start_worker("-P", "threads", "-n", "two@%h")
    names = sorted(WorkerState.objects.using(broker).values_list("hostname", flat=True))
    assert len(names) == 2
    replies = control.broadcast("ping", timeout=10, limit=2)
    assert sorted(next(iter(r)) for r in replies) == names
    only = control.broadcast("ping", destination=[names[1]], timeout=10)
    assert [next(iter(r)) for r in only] == [names[1]]

    out = io.StringIO()
    call_command("djq_inspect", "ping", "--destination", names[0], "--timeout", "10", "--json", stdout=out)
    assert json.loads(out.getvalue()) == [{names[0]: {"ok": "pong"}}]
    out = io.StringIO()
    call_command("djq_control", "rate_limit", "tests.testapp.tasks.add", "100/s", "-d", names[0], "-t", "10",
                 stdout=out)
    assert f"-> {names[0]}: rate limit of tests.testapp.tasks.add set to 100/s" in out.getvalue()
    with pytest.raises(CommandError, match="rate_limit 'fast' must look like"):
        call_command("djq_control", "rate_limit", "tests.testapp.tasks.add", "fast", "-d", names[0], "-t", "10",
                     stdout=io.StringIO())


def test_bad_command_input_is_refused(broker) -> None:
    with pytest.raises(control.ControlError, match="unknown command"):
        control.broadcast("explode")
    with pytest.raises(CommandError, match="usage: djq_control time_limit"):
        call_command("djq_control", "time_limit", stdout=io.StringIO())
    with pytest.raises(CommandError, match="n must be a number"):
        call_command("djq_control", "pool_grow", "lots", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no worker replied"):
        call_command("djq_inspect", "ping", "-d", "nobody@nowhere", "-t", "0.3", stdout=io.StringIO())


def test_killed_worker_goes_offline_after_two_missed_heartbeats(broker, start_worker) -> None:
    worker = start_worker("-P", "threads", "-n", "doomed@%h")
    state = wait_for(lambda: WorkerState.objects.using(broker).first(), what="worker state")
    assert state.online and state.pid == worker.proc.pid and state.queues == ["default"]
    first = state.last_heartbeat
    wait_for(lambda: WorkerState.objects.using(broker).get().last_heartbeat > first, what="a second heartbeat")
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    killed_at = timezone.now()
    state = wait_for(lambda: (s := WorkerState.objects.using(broker).get()) and not s.online and s,
                     timeout=10, what="worker offline")
    assert state.stopped is None  # no warm shutdown: offline because its heartbeats stopped
    assert state.offline_after <= timezone.now()
    assert state.offline_after - killed_at <= timezone.timedelta(seconds=2 * state.heartbeat_interval + 1)


def test_terminate_stops_a_running_prefork_task(broker, start_worker) -> None:
    start_worker("-P", "prefork", "-c", "1", "-n", "stopper@%h")
    hostname = WorkerState.objects.using(broker).get().hostname
    stuck = sleep_then_add.delay(60, 1, 1)
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id=stuck.id, state=states.STARTED).exists(),
             what="task started")
    out = io.StringIO()
    call_command("djq_control", "terminate", stuck.id, "--signal", "SIGKILL", "-d", hostname, "-t", "10", stdout=out)
    assert f"terminated: {stuck.id}" in out.getvalue()
    wait_for(lambda: TaskResult.objects.using(broker).get(task_id=stuck.id).state == states.REVOKED,
             what="terminated task recorded as revoked")
    assert add.delay(1, 1).get(timeout=30) == 2  # the pool replaced its child and goes on


def test_terminate_on_a_thread_pool_says_it_cannot(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "1", "-n", "threads@%h")
    hostname = WorkerState.objects.using(broker).get().hostname
    running = sleep_then_add.delay(1.0, 2, 2)
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_id=running.id, state=states.STARTED).exists(),
             what="task started")
    reply = _reply(control.revoke(running.id, terminate=True, destination=[hostname], timeout=10, reply=True), hostname)
    assert reply == {"error": f"the threads pool cannot stop a running task: {running.id} is revoked but runs to its end"}
    assert running.get(timeout=30) == 4


def test_scheduled_limits_queues_and_autoscale_commands(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "1", "-n", "misc@%h")
    hostname = WorkerState.objects.using(broker).get().hostname

    def ask(command: str, arguments: dict | None = None) -> object:
        return _reply(control.broadcast(command, arguments, destination=[hostname], timeout=10), hostname)

    # due within the worker's eta horizon (half the test visibility timeout of 30 s), so
    # Redis' worker holds it in memory rather than parking it in the database
    later = add.apply_async((1, 1), countdown=10)
    if broker.embedded:  # eta waits in the broker's table, not in the worker
        assert ask("scheduled") == []
    else:
        scheduled = wait_for(lambda: ask("scheduled"), what="the eta task held by the worker")
        assert [entry["request"]["id"] for entry in scheduled] == [later.id] and scheduled[0]["eta"]
    assert ask("reserved") == []
    assert ask("time_limit", {"task_name": "tests.testapp.tasks.add", "soft": 5, "hard": 2}) == {
        "error": "the soft limit must be below the hard limit"}
    assert ask("time_limit", {"task_name": "tests.testapp.tasks.add", "soft": 1, "hard": 2}) == {
        "ok": "time limits of tests.testapp.tasks.add set to soft=1 hard=2"}
    assert ask("autoscale", {"max": 3, "min": 1}) == {"error": "this worker was not started with --autoscale"}
    assert ask("cancel_consumer", {"queue": "nope"}) == {"error": "not consuming from 'nope'"}
    assert ask("cancel_consumer", {"queue": "default"}) == {"ok": "no longer consuming from 'default'"}
    assert ask("active_queues") == []


def _pool(hostname: str) -> dict:
    return _reply(control.broadcast("stats", destination=[hostname], timeout=10), hostname)["pool"]


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_pool_shrink_on_threads_leaves_fewer_threads(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "3", "-n", "shrinking@%h")
    hostname = WorkerState.objects.using(broker).get().hostname
    assert len(_pool(hostname)["threads"]) == 3
    out = io.StringIO()
    call_command("djq_control", "pool_shrink", "2", "-d", hostname, "-t", "10", stdout=out)
    assert f"-> {hostname}: pool will shrink to 1" in out.getvalue()
    pool = wait_for(lambda: len((p := _pool(hostname))["threads"]) == 1 and p, what="two threads to stop")
    assert pool["concurrency"] == 1
    started, ended = zip(*[r.get(timeout=30) for r in [interval.delay(0.3) for _ in range(2)]])
    assert max(started) >= min(ended), "the two tasks ran one after the other"


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_pool_shrink_on_prefork_stops_idle_children_and_says_how_many_remain(broker, start_worker) -> None:
    start_worker("-P", "prefork", "-c", "3", "-n", "shrinking@%h")
    hostname = WorkerState.objects.using(broker).get().hostname
    busy = [sleep_then_add.delay(3, i, i) for i in range(2)]
    wait_for(lambda: TaskResult.objects.using(broker).filter(state=states.STARTED).count() == 2,
             what="two children busy")
    # one child is idle: it stops now; busy children are not stopped under their tasks
    shrink = _reply(control.broadcast("pool_shrink", {"n": 2}, destination=[hostname], timeout=10), hostname)
    assert shrink == {"ok": "pool will shrink to 2"}
    pool = wait_for(lambda: len((p := _pool(hostname))["pids"]) == 2 and p, what="the idle child to stop")
    assert pool["concurrency"] == 2
    assert [r.get(timeout=30) for r in busy] == [0, 2]
    assert _reply(control.broadcast("pool_shrink", destination=[hostname], timeout=10), hostname) == {
        "ok": "pool will shrink to 1"}
    wait_for(lambda: len(_pool(hostname)["pids"]) == 1, what="a second child to stop")


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_pool_restart_replaces_every_prefork_child_and_threads_say_they_cannot(broker, start_worker) -> None:
    start_worker("-P", "prefork", "-c", "2", "-n", "restarting@%h")
    start_worker("-P", "threads", "-c", "1", "-n", "threaded@%h")
    hosts = {h.split("@")[0]: h for h in WorkerState.objects.using(broker).values_list("hostname", flat=True)}
    prefork, threads = hosts["restarting"], hosts["threaded"]
    before = set(_pool(prefork)["pids"])
    assert len(before) == 2
    out = io.StringIO()
    call_command("djq_control", "pool_restart", "-d", prefork, "-t", "10", stdout=out)
    assert f"-> {prefork}: each child is replaced once it has run its next task" in out.getvalue()
    # two at a time, so both children take work; each leaves after its first one
    ran = [sleep_then_add.delay(0.3, i, 0) for i in range(6)]
    assert [r.get(timeout=30) for r in ran] == list(range(6))
    after = wait_for(lambda: (pids := set(_pool(prefork)["pids"])) and len(pids) == 2 and not pids & before and pids,
                     what="both children replaced")
    assert len(after) == 2
    assert _reply(control.broadcast("pool_restart", destination=[threads], timeout=10), threads) == {
        "error": "the threads pool cannot restart"}
    assert add.delay(2, 3).get(timeout=30) == 5
