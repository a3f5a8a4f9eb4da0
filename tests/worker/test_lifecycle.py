"""Retries, eta/expiry, revoke, rate limits and progress against real workers on every broker."""
from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone

import pytest

from djq import AsyncResult, revoke, states
from djq.backends import get_backend
from djq.exceptions import TaskRevokedError
from djq.models import ParkedMessage, RevokedTask, TaskResult
from tests.conftest import wait_for
from tests.testapp.tasks import (
    add, always_retry, auto_flaky, flaky, marked, progress, rated, retry_later, sleep_then_add, slow_rated,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"DJQ_TEST_TMP": str(tmp_path)}


def test_retry_with_countdown_then_success(broker, start_worker, env, tmp_path) -> None:
    result = flaky.delay("f", 2)
    start_worker("-P", "threads", "-c", "2", env=env)
    assert result.get(timeout=30) == 3
    assert result.retries == 2
    assert (tmp_path / "flaky-f").read_text() == "xxx", "ran three times: two failures, one success"


def test_retry_is_recorded_with_its_reason(broker, start_worker, env) -> None:
    result = retry_later.delay()
    start_worker("-c", "1", env=env)
    wait_for(lambda: result.state == states.RETRY, what="the RETRY state")
    assert isinstance(result.info, ConnectionError)
    assert "database is down" in str(result.info)
    assert "retry in" in (result.traceback or "")
    assert result.retries == 1


def test_max_retries_exceeded_fails_with_the_last_error(broker, start_worker, env) -> None:
    result = always_retry.delay()
    start_worker("-c", "2", env=env)
    with pytest.raises(KeyError, match="still down"):
        result.get(timeout=30)
    assert result.retries == 2


def test_autoretry_for_with_backoff_and_its_exclusions(broker, start_worker, env) -> None:
    retried = auto_flaky.delay("connection")
    excluded = auto_flaky.delay("reset")
    start_worker("-P", "threads", "-c", "2", env=env)
    with pytest.raises(ConnectionError, match="retried"):
        retried.get(timeout=30)
    assert retried.retries == 2
    with pytest.raises(ConnectionResetError):
        excluded.get(timeout=30)
    assert excluded.retries == 0


def test_expired_task_never_runs(broker, start_worker, env, tmp_path) -> None:
    past = marked.apply_async(("past",), expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    before_eta = marked.apply_async(("eta",), countdown=1.5, expires=0.5)
    start_worker("-c", "2", env=env)
    for result in (past, before_eta):
        wait_for(lambda r=result: r.state == states.REVOKED, what="the expired task to be revoked")
        assert result.traceback == "expired"
        with pytest.raises(TaskRevokedError):
            result.get(timeout=1)
    assert not (tmp_path / "marked-past").exists()
    assert not (tmp_path / "marked-eta").exists()


def test_revoke_before_start(broker, start_worker, env, tmp_path) -> None:
    doomed = marked.delay("doomed")
    doomed.revoke()
    spared = marked.delay("spared")
    start_worker("-c", "2", env=env)
    assert spared.get(timeout=30) == "spared"
    wait_for(lambda: doomed.state == states.REVOKED, what="the revoked task's state")
    assert not (tmp_path / "marked-doomed").exists()


def test_revoke_of_an_eta_task_survives_a_worker_restart(broker, start_worker, env, tmp_path) -> None:
    waiting = marked.apply_async(("later",), countdown=3)
    first = start_worker("-c", "1", env=env)
    first.stop()
    revoke([waiting.id])
    assert RevokedTask.objects.using(broker).filter(task_id=waiting.id).exists()
    start_worker("-c", "1", env=env)
    wait_for(lambda: waiting.state == states.REVOKED, timeout=30, what="the eta task to be revoked")
    assert not (tmp_path / "marked-later").exists()


def test_revoke_reaches_a_running_worker(broker, start_worker, env, tmp_path) -> None:
    start_worker("-c", "1", env=env)
    waiting = marked.apply_async(("soon",), countdown=2)
    revoke(waiting.id)
    wait_for(lambda: waiting.state == states.REVOKED, timeout=30, what="the eta task to be revoked")
    assert not (tmp_path / "marked-soon").exists()


def test_terminate_stops_a_running_task_on_prefork(broker, start_worker) -> None:
    worker = start_worker("-P", "prefork", "-c", "1")
    running = sleep_then_add.delay(60, 1, 1)
    wait_for(lambda: running.state == states.STARTED, what="the task to start")
    running.revoke(terminate=True, signal="SIGKILL")
    wait_for(lambda: running.state == states.REVOKED, timeout=20, what="the terminated task")
    assert "terminated (SIGKILL)" in running.traceback
    assert add.delay(2, 2).get(timeout=30) == 4, "a new child replaced the killed one"
    assert "terminating it with SIGKILL" in worker.output


def test_terminate_on_threads_says_it_cannot_and_the_task_finishes(broker, start_worker) -> None:
    worker = start_worker("-P", "threads", "-c", "1")
    running = sleep_then_add.delay(1.5, 1, 1)
    wait_for(lambda: running.state == states.STARTED, what="the task to start")
    running.revoke(terminate=True)
    assert running.get(timeout=30) == 2
    assert "the threads pool cannot stop a running task" in worker.output


def test_rate_limit_spaces_tasks_without_blocking_others(broker, start_worker) -> None:
    limited = [rated.delay(i) for i in range(4)]
    start_worker("-P", "threads", "-c", "4")
    assert add.delay(1, 1).get(timeout=30) == 2
    for result in limited:
        result.get(timeout=30)
    starts = sorted(TaskResult.objects.using(broker).filter(task_id__in=[r.id for r in limited])
                    .values_list("date_started", flat=True))
    # 120/m is one task per 0.5 s: no window of 0.4 s may hold two of them.
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(starts, starts[1:])]
    assert all(gap >= 0.4 for gap in gaps), gaps


def test_held_tasks_do_not_starve_the_tasks_behind_them(broker, start_worker) -> None:
    # -c 1 reserves 4 messages. Six tasks over their rate limit and six not yet due are
    # held unacked; the worker must widen its prefetch window past them to reach `add`.
    limited = [slow_rated.delay(i) for i in range(6)]
    later = [add.apply_async((i, i), countdown=12) for i in range(6)]
    behind = add.delay(1, 1)
    start_worker("-P", "threads", "-c", "1")
    assert behind.get(timeout=30) == 2
    ran = TaskResult.objects.using(broker).filter(state=states.SUCCESS)
    assert ran.filter(task_id__in=[r.id for r in later]).count() == 0, "add ran only once the eta tasks were due"
    # 6/m: one runs at once, the next 10 s later; `add` must not wait for it
    assert ran.filter(task_id__in=[r.id for r in limited]).count() <= 1


def _state_and_info(result: AsyncResult) -> tuple[str, object] | None:
    meta = get_backend().get(result.id)
    return (meta.state, meta.result) if meta else None


def test_progress_is_stored_and_readable(broker, start_worker) -> None:
    result = progress.delay(3, 3)
    start_worker("-c", "1")
    # The task records three PROGRESS states in a row and then holds for 3 s: read state and
    # meta in one fetch, and wait for the last of the three (the first may be seen alone).
    wait_for(lambda: _state_and_info(result) == ("PROGRESS", {"current": 3, "total": 3}),
             what="the last PROGRESS state")
    assert result.get(timeout=30) == 3


def test_eta_tasks_beyond_the_held_limit_wait_in_the_database_and_run_once(broker, start_worker, env,
                                                                            tmp_path) -> None:
    env = {**env, "DJQ_TEST_ETA_MAX_HELD": "1", "DJQ_TEST_VISIBILITY_TIMEOUT": "2"}
    start_worker("-P", "threads", "-c", "2", env=env)
    start_worker("-P", "threads", "-c", "2", env=env)
    results = [marked.apply_async((f"eta{i}",), countdown=3) for i in range(3)]
    if not broker.embedded:
        wait_for(lambda: ParkedMessage.objects.using(broker).exists(), what="a parked eta task")
    assert [r.get(timeout=30) for r in results] == ["eta0", "eta1", "eta2"]
    for i in range(3):
        assert (tmp_path / f"marked-eta{i}").exists()
    assert not ParkedMessage.objects.using(broker).exists()
    ran = TaskResult.objects.using(broker).filter(task_id__in=[r.id for r in results], state=states.SUCCESS)
    assert ran.count() == 3


def test_countdown_does_not_hold_a_slot(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "1")
    later = add.apply_async((1, 1), countdown=2)
    assert add.delay(2, 2).get(timeout=10) == 4
    assert later.state == states.PENDING
    assert later.get(timeout=30) == 2


def test_sigterm_with_waiting_eta_tasks_loses_none(broker, start_worker) -> None:
    later = add.apply_async((5, 5), countdown=2)
    first = start_worker("-c", "1")
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    start_worker("-c", "1")
    assert AsyncResult(later.id).get(timeout=30) == 10
