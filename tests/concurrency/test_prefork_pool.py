"""The prefork pool itself, in this process: small picklable jobs, children killed,
stopped or stuck at chosen moments, and what the callback is told each time."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from djq import states
from djq.concurrency.prefork import PreforkPool
from djq.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from tests.conftest import wait_for


def marked_sleep(arg: tuple[Any, ...], limiter: Any) -> int:
    """Writes its pid to the file ``arg[0]``, then sleeps ``arg[1]`` seconds."""
    path, seconds = arg[:2]
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def leave_a_grandchild_then_die(path: str, limiter: Any) -> None:
    """Forks a process that keeps this child's pipes open for 5 s, then dies under its task."""
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(5)
        os._exit(0)
    Path(path).write_text(str(grandchild))
    os.kill(os.getpid(), signal.SIGKILL)


def own_pid(arg: Any, limiter: Any) -> int:
    return os.getpid()


def soft_aware(seconds: float, limiter: Any) -> str:
    try:
        with limiter(0.2, None):
            time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "not interrupted"


class Outcomes:
    """The callback: what the pool reported for each argument, and in which thread."""

    def __init__(self) -> None:
        self.got: dict[Any, Any] = {}
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, arg: Any, outcome: Any) -> None:
        with self._cond:
            self.got[arg[0] if isinstance(arg, tuple) else arg] = outcome
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait(self, key: Any, timeout: float = 20) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: key in self.got, timeout):
                raise AssertionError(f"no outcome for {key!r} after {timeout}s")
            return self.got[key]


@pytest.fixture
def make_pool() -> Iterator[Callable[..., PreforkPool]]:
    pools: list[PreforkPool] = []

    def make(concurrency: int = 2, **options: Any) -> PreforkPool:
        pool = PreforkPool(concurrency, **options)
        pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()


def _pid_in(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text(), timeout=20, what=f"{path.name} to start"))


def _lost(outcome: Any) -> WorkerLostError:
    assert outcome.state == states.FAILURE and outcome.recorded is False
    assert isinstance(outcome.value, WorkerLostError), outcome
    return outcome.value


def test_a_dead_child_names_exactly_the_job_it_held(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(2), Outcomes()
    victim, survivor = tmp_path / "victim", tmp_path / "survivor"
    pool.apply_async(marked_sleep, (str(victim), 30), outcomes)
    pool.apply_async(marked_sleep, (str(survivor), 0.5), outcomes)
    killed = _pid_in(victim)
    os.kill(killed, signal.SIGKILL)
    error = _lost(outcomes.wait(str(victim)))
    assert f"worker process {killed} was killed by signal 9 (SIGKILL) while running" in str(error)
    assert str(victim) in str(error)
    assert outcomes.wait(str(survivor)) == _pid_in(survivor) != killed
    assert outcomes.threads == {"djq-prefork-supervisor"}
    pids = wait_for(lambda: len(p := pool.info()["pids"]) == 2 and p, what="a replacement child")
    assert killed not in pids
    assert pool.free_slots() == 2 and pool.active() == 0


def test_a_child_killed_after_it_was_sent_a_job_but_before_it_started_it(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(1), Outcomes()
    (child,) = pool.info()["pids"]
    os.kill(child, signal.SIGSTOP)  # it cannot read the job it is sent
    never = tmp_path / "never"
    pool.apply_async(marked_sleep, (str(never), 0), outcomes)
    os.kill(child, signal.SIGKILL)
    error = _lost(outcomes.wait(str(never)))
    assert f"worker process {child} was killed by signal 9 (SIGKILL) while starting" in str(error)
    assert not never.exists(), "the job never ran"
    assert pool.apply_async(own_pid, "next", outcomes) and outcomes.wait("next") != child


def test_a_stuck_child_is_detected_killed_and_replaced(make_pool, tmp_path: Path, caplog) -> None:
    pool, outcomes = make_pool(1, start_timeout=0.5), Outcomes()
    (child,) = pool.info()["pids"]
    os.kill(child, signal.SIGSTOP)
    stuck = tmp_path / "stuck"
    big = "x" * 1_000_000  # more than a pipe holds: the write must not wait for the child
    sender = threading.Thread(target=pool.apply_async, args=(marked_sleep, (str(stuck), 0, big), outcomes))
    with caplog.at_level(logging.ERROR, logger="djq.concurrency.prefork"):
        sender.start()
        sender.join(timeout=5)
        assert not sender.is_alive(), "apply_async waited on a stopped child"
        error = _lost(outcomes.wait(str(stuck)))
    assert "while starting" in str(error)
    lines = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
    assert len(lines) == 1 and str(child) in lines[0], lines
    assert not stuck.exists()
    pool.apply_async(own_pid, "after", outcomes)
    assert outcomes.wait("after") != child


def test_the_hard_time_limit_kills_the_child_and_a_new_one_goes_on(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(1), Outcomes()
    slow = tmp_path / "slow"
    pool.apply_async(marked_sleep, (str(slow), 30), outcomes, time_limit=0.5)
    child = _pid_in(slow)
    outcome = outcomes.wait(str(slow))
    assert outcome.state == states.FAILURE and outcome.recorded is False
    assert isinstance(outcome.value, TimeLimitExceeded) and "hard time limit (0.5s)" in str(outcome.value)
    pool.apply_async(own_pid, "next", outcomes)
    assert outcomes.wait("next") != child


def test_the_soft_time_limit_is_raised_inside_the_task(make_pool) -> None:
    pool, outcomes = make_pool(1), Outcomes()
    pool.apply_async(soft_aware, 5.0, outcomes, soft_time_limit=0.3)
    assert outcomes.wait(5.0) == "cleaned up"


def test_terminate_job_signals_only_the_child_running_that_job(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(2), Outcomes()
    target, bystander = tmp_path / "target", tmp_path / "bystander"
    handle = pool.apply_async(marked_sleep, (str(target), 30), outcomes)
    pool.apply_async(marked_sleep, (str(bystander), 1), outcomes)
    child = _pid_in(target)
    _pid_in(bystander)
    assert pool.terminate_job(handle, signal.SIGTERM) is True
    assert "signal 15 (SIGTERM)" in str(_lost(outcomes.wait(str(target)))) and str(child) in str(outcomes.got[str(target)].value)
    assert isinstance(outcomes.wait(str(bystander)), int)


def test_children_are_replaced_after_max_tasks(make_pool) -> None:
    pool, outcomes = make_pool(1, max_tasks_per_child=2), Outcomes()
    pids = []
    for i in range(6):
        pool.apply_async(own_pid, i, outcomes)
        pids.append(outcomes.wait(i))
    assert all(pids.count(p) == 2 for p in pids) and len(set(pids)) == 3, pids


def test_shrink_stops_idle_children_only_and_grow_adds_them(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(3), Outcomes()
    busy = tmp_path / "busy"
    pool.apply_async(marked_sleep, (str(busy), 1.5), outcomes)
    child = _pid_in(busy)
    pool.shrink(5)
    assert pool.concurrency == 1
    assert wait_for(lambda: pool.info()["pids"] == [child], what="the idle children to stop")
    assert outcomes.wait(str(busy)) == child
    pool.grow(2)
    assert wait_for(lambda: len(pool.info()["pids"]) == 3, what="two new children")
    assert pool.free_slots() == 3


def test_restart_replaces_every_child(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(2), Outcomes()
    before = set(pool.info()["pids"])
    pool.restart()
    def replaced() -> set[int] | None:
        pids = set(pool.info()["pids"])
        return pids if len(pids) == 2 and not pids & before else None

    after = wait_for(replaced, what="two new children")
    assert not after & before
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in before), timeout=10,
             what="the old children to exit")
    job = tmp_path / "job"
    pool.apply_async(marked_sleep, (str(job), 0.01), outcomes)
    assert _pid_in(job) in after, "a job after the restart runs in a new child"
    outcomes.wait(str(job))


def test_warm_stop_waits_for_the_running_job_then_children_exit(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(2), Outcomes()
    job = tmp_path / "job"
    pool.apply_async(marked_sleep, (str(job), 0.5), outcomes)
    child = _pid_in(job)
    pids = pool.info()["pids"]
    assert pool.stop(timeout=10) is True
    assert outcomes.got[str(job)] == child
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), timeout=10, what="children to exit")


def test_terminate_kills_children_and_reports_nothing_afterwards(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(2), Outcomes()
    for name in ("a", "b"):
        pool.apply_async(marked_sleep, (str(tmp_path / name), 30), outcomes)
    pids = [_pid_in(tmp_path / "a"), _pid_in(tmp_path / "b")]
    started = time.monotonic()
    pool.terminate()
    assert time.monotonic() - started < 3, "terminate() must not wait for running jobs"
    time.sleep(0.5)
    assert outcomes.got == {}
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), timeout=10, what="children to die")


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def test_a_child_that_dies_while_a_process_it_started_holds_its_pipes_is_settled(make_pool, tmp_path: Path) -> None:
    pool, outcomes = make_pool(1), Outcomes()
    marker = tmp_path / "grandchild"
    pool.apply_async(leave_a_grandchild_then_die, str(marker), outcomes)
    _lost(outcomes.wait(str(marker), timeout=4))
    grandchild = int(marker.read_text())
    assert os.path.exists(f"/proc/{grandchild}"), "settled from the exit report, not from the pipes closing"
    pool.apply_async(own_pid, "next", outcomes)
    assert isinstance(outcomes.wait("next"), int)


def test_a_dead_child_whose_exit_is_not_reported_is_settled_after_a_grace(make_pool, tmp_path: Path,
                                                                          caplog) -> None:
    pool, outcomes = make_pool(1), Outcomes()
    job = tmp_path / "job"
    pool.apply_async(marked_sleep, (str(job), 30), outcomes)
    child = _pid_in(job)
    fork_server = _parent_of(child)
    os.kill(fork_server, signal.SIGSTOP)  # it cannot reap the child nor report its exit
    try:
        with caplog.at_level(logging.ERROR, logger="djq.concurrency.prefork"):
            os.kill(child, signal.SIGKILL)
            error = _lost(outcomes.wait(str(job)))
        assert f"worker process {child} could not be reaped while running" in str(error)
        assert [r for r in caplog.records if "exit was not reported" in r.getMessage()]
    finally:
        os.kill(fork_server, signal.SIGCONT)
    pool.apply_async(own_pid, "next", outcomes)
    assert isinstance(outcomes.wait("next"), int)


def test_a_job_waiting_ahead_goes_to_the_child_as_its_job_ends(make_pool, tmp_path: Path) -> None:
    """``ahead_slots``: one job per child may wait beyond the free slots; it starts in the
    child that ends its job first, after that job, and never in a second process."""
    pool, outcomes = make_pool(1), Outcomes()
    assert (pool.free_slots(), pool.ahead_slots()) == (1, 1)
    running, waiting = tmp_path / "running", tmp_path / "waiting"
    pool.apply_async(marked_sleep, (str(running), 0.5), outcomes)
    assert (pool.free_slots(), pool.ahead_slots()) == (0, 1)
    pool.apply_async(marked_sleep, (str(waiting), 0), outcomes)
    assert (pool.free_slots(), pool.ahead_slots()) == (0, 0)
    _pid_in(running)
    assert not waiting.exists()  # behind the running job, not beside it
    first = outcomes.wait(str(running))
    assert outcomes.wait(str(waiting)) == first == _pid_in(waiting)
    assert (pool.free_slots(), pool.ahead_slots()) == (1, 1) and pool.active() == 0
