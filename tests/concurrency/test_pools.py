"""The pool contract, against a real worker subprocess for every pool, and what is
particular to prefork (dead children, recycling) and to autoscaling.

Expected behaviour comes from each pool's declared capabilities (docs/pools.md shows
the same table), so the table and the tests cannot drift apart.
"""
from __future__ import annotations

import os
import signal

import pytest

from djq import states
from djq.concurrency import get_pool_class
from djq.exceptions import TimeLimitExceeded, WorkerLostError
from djq.models import TaskResult
from tests.conftest import _skip_or_fail, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db_alias", ["default"], indirect=True)]

POOLS = ["prefork", "threads", "solo", "gevent", "eventlet"]


def _require(pool: str) -> None:
    if pool in ("gevent", "eventlet"):
        try:
            __import__(pool)
        except ImportError:
            _skip_or_fail(f"the {pool} pool needs {pool} installed (pip install djq[{pool}])")


def _overlapping(intervals: list[list[float]]) -> int:
    """Most intervals running at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("pool", POOLS)
def test_pool_contract(pool: str, broker: str, start_worker) -> None:
    _require(pool)
    cls = get_pool_class(pool)
    worker = start_worker("-P", pool, "-c", "4")
    added = [tasks.add.delay(i, i) for i in range(20)]
    assert [r.get(timeout=60) for r in added] == [2 * i for i in range(20)]

    overlapping = [tasks.interval.delay(0.6) for _ in range(4)]
    peak = _overlapping([r.get(timeout=60) for r in overlapping])
    assert peak == (4 if cls.parallel else 1), f"{pool}: {peak} tasks ran at once"

    failed = tasks.fail.delay("contract")
    with pytest.raises(ValueError, match="contract"):
        failed.get(timeout=30)
    assert "ValueError: contract" in failed.traceback

    soft = tasks.soft_limited.delay()
    expected_soft = "cleaned up" if cls.supports_soft_time_limit else "never interrupted"
    assert soft.get(timeout=60) == expected_soft

    hard = tasks.hard_limited.delay(2.5)
    if cls.supports_hard_time_limit:
        with pytest.raises(TimeLimitExceeded):
            hard.get(timeout=60)
        assert tasks.add.delay(1, 2).get(timeout=30) == 3, "the worker goes on after a hard limit"
    else:
        assert hard.get(timeout=60) == "finished"
        assert "cannot enforce" in worker.output


@pytest.mark.parametrize("pool", POOLS)
def test_warm_shutdown_finishes_running_tasks(pool: str, broker: str, start_worker) -> None:
    _require(pool)
    running = tasks.interval.delay(1.5)
    worker = start_worker("-P", pool, "-c", "2")
    wait_for(lambda: running.state == states.STARTED, what="the task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert running.state == states.SUCCESS


def test_unsupported_options_are_warned_about_at_start(broker: str, start_worker) -> None:
    worker = start_worker("-P", "threads", "-c", "2", "--time-limit", "5", "--max-tasks-per-child", "3")
    assert "does not support hard time limits" in worker.output
    assert "does not support child recycling" in worker.output


def test_prefork_child_killed_mid_task_is_accounted_for(broker: str, start_worker) -> None:
    worker = start_worker("-P", "prefork", "-c", "2")
    lost = tasks.die.delay()
    with pytest.raises(WorkerLostError):
        lost.get(timeout=60)
    assert tasks.add.delay(2, 2).get(timeout=60) == 4, "the worker survives and replaces the child"
    assert worker.proc.poll() is None


def test_prefork_reject_on_worker_lost_runs_the_task_again(broker: str, start_worker, tmp_path) -> None:
    start_worker("-P", "prefork", "-c", "1", env={"DJQ_TEST_TMP": str(tmp_path)})
    result = tasks.die_once.delay("again")
    assert isinstance(result.get(timeout=60), int)
    assert (tmp_path / "died-again").exists()


def test_prefork_recycles_children_after_max_tasks(broker: str, start_worker) -> None:
    start_worker("-P", "prefork", "-c", "1", "--max-tasks-per-child", "2")
    pids = [tasks.pid.delay().get(timeout=60) for _ in range(6)]
    assert len(set(pids)) >= 3, pids
    assert all(pids.count(p) <= 2 for p in set(pids)), pids


@pytest.mark.parametrize(("max_kib", "replaced"), [(1, True), (10_000_000, False)], ids=["1KiB", "10GiB"])
def test_prefork_recycles_children_above_max_memory(max_kib: int, replaced: bool, broker: str,
                                                    start_worker) -> None:
    """A child above --max-memory-per-child (resident KiB) is replaced after its task; one below stays."""
    start_worker("-P", "prefork", "-c", "1", "--max-memory-per-child", str(max_kib))
    pids = [tasks.pid.delay().get(timeout=60) for _ in range(4)]
    assert len(set(pids)) == (4 if replaced else 1), pids


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_autoscale_grows_under_backlog_then_shrinks(pool: str, broker: str, start_worker) -> None:
    worker = start_worker("-P", pool, "--autoscale", "4,1", env={"DJQ_TEST_AUTOSCALE_KEEPALIVE": "1"})
    results = [tasks.interval.delay(0.8) for _ in range(8)]
    peak = _overlapping([r.get(timeout=60) for r in results])
    assert peak > 1, "the pool grew"
    assert "growing the pool 1 ->" in worker.output
    wait_for(lambda: "shrinking the pool" in worker.output, timeout=20, what="the pool to shrink")


def test_solo_hard_limit_leaves_the_worker_usable(broker: str, start_worker) -> None:
    start_worker("-P", "solo")
    with pytest.raises(TimeLimitExceeded):
        tasks.hard_limited.delay(3).get(timeout=30)
    assert tasks.add.delay(5, 5).get(timeout=30) == 10
    assert TaskResult.objects.using(broker).filter(state=states.FAILURE).count() == 1


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_green_pool_overlaps_hundreds_of_sleeping_tasks(pool: str, broker: str, start_worker) -> None:
    """Monkey patching is in place: 200 tasks sleeping 0.5 s run side by side, not in turn."""
    _require(pool)
    start_worker("-P", pool, "-c", "500")
    results = [tasks.interval.delay(0.5) for _ in range(200)]
    intervals = [r.get(timeout=120) for r in results]
    assert _overlapping(intervals) >= 100
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    assert span < 50, f"200 x 0.5 s took {span:.1f}s: the tasks did not overlap"


def test_green_pool_from_settings_warns_and_still_patches(broker: str, start_worker) -> None:
    _require("gevent")
    worker = start_worker("-c", "10", env={"DJQ_TEST_WORKER_POOL": "gevent"})
    assert "DJQ_WORKER_POOL selects gevent" in worker.output
    intervals = [r.get(timeout=60) for r in [tasks.interval.delay(0.5) for _ in range(10)]]
    assert _overlapping(intervals) >= 5


def test_beat_inside_a_green_worker_is_refused(broker: str, start_worker) -> None:
    _require("gevent")
    worker = start_worker("-P", "gevent", "-B", ready=False)
    assert worker.wait(timeout=30) != 0
    assert "-B cannot run inside a gevent worker" in worker.output


def test_prefork_children_die_with_a_killed_worker(broker: str, start_worker) -> None:
    worker = start_worker("-P", "prefork", "-c", "2")
    tasks.add.delay(1, 1).get(timeout=60)
    children = _children(worker.proc.pid)
    assert tasks.pid.delay().get(timeout=60) in children
    worker.signal(signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in children),
             timeout=10, what="the children to die with their worker")


def _children(pid: int) -> list[int]:
    """Every process under ``pid``, forked from any of its threads (the pool's children are
    forked by its fork server)."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            for child in (int(p) for p in fh.read().split()):
                found += [child, *_children(child)]
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
