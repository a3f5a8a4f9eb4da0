"""The consumer's choice of what waits in the pool ahead of a free slot
(``Dispatch._ahead_room``): only brief tasks, only while every running task is brief,
and within ``--max-tasks``. The pool's side (prefork's ``ahead_slots``, its waiting
jobs given to a child as one ends) runs in the prefork suites with real children."""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import Any

from djq.worker.dispatch import BRIEF_RUNTIME, Dispatch
from djq.worker.modes import RunLimits


class Pool:
    """What the dispatch asks of a pool: how many slots are free, and how many may wait."""

    def __init__(self, free: int, ahead: int) -> None:
        self.free, self.ahead = free, ahead

    def free_slots(self) -> int:
        return self.free

    def ahead_slots(self) -> int:
        return self.ahead


class Harness(Dispatch):
    """The dispatch alone: what it submits is recorded, not run; every ack is taken."""

    def __init__(self, pool: Pool, *, max_tasks: int | None = None) -> None:
        self.pool = pool
        self.limits = RunLimits(max_tasks=max_tasks)
        self.reserved: deque[Any] = deque()
        self.active: dict[int, Any] = {}
        self.revokes: set[str] = set()
        self.buckets = {}
        self._runtimes = {}
        self._rate_held = 0
        self._awaiting: deque[Any] = deque()
        self.submitted: list[str] = []

    def _acked_for_start(self, batch: list[Any]) -> list[Any]:
        return batch

    def _submit(self, request: Any) -> None:
        self.submitted.append(request.id)
        self.active[len(self.active)] = request
        if self.pool.free > 0:  # as a pool counts the jobs it took
            self.pool.free -= 1
        else:
            self.pool.ahead -= 1

    def queue(self, *names: str) -> None:
        for number, name in enumerate(names):
            self.reserved.append(SimpleNamespace(id=f"{name}-{number}", name=name, task=SimpleNamespace(
                rate_per_second=None), expired=lambda: False, ack_taken=False))


def _harness(free: int, ahead: int, **kwargs: Any) -> Harness:
    harness = Harness(Pool(free, ahead), **kwargs)
    harness._note_runtime("brief", 0.001)
    harness._note_runtime("long", 2.0)
    return harness


def test_brief_tasks_wait_in_the_pool_beyond_its_free_slots() -> None:
    harness = _harness(free=1, ahead=2)
    harness.queue("brief", "brief", "brief", "brief")
    harness._dispatch()
    assert harness.submitted == ["brief-0", "brief-1", "brief-2"]
    assert [r.id for r in harness.reserved] == ["brief-3"]


def test_a_task_not_known_to_be_brief_waits_for_a_slot_of_its_own() -> None:
    harness = _harness(free=1, ahead=2)
    harness.queue("brief", "unknown", "brief")
    harness._dispatch()
    # the first takes the free slot; the unknown one is not sent ahead, nor passed over
    assert harness.submitted == ["brief-0"]
    assert [r.id for r in harness.reserved] == ["unknown-1", "brief-2"]


def test_nothing_waits_ahead_while_a_long_task_runs() -> None:
    harness = _harness(free=0, ahead=2)
    harness.active[0] = SimpleNamespace(id="long-x", name="long")
    harness.queue("brief", "brief")
    harness._dispatch()
    assert harness.submitted == []
    assert len(harness.reserved) == 2


def test_a_long_task_takes_a_free_slot_as_before() -> None:
    harness = _harness(free=1, ahead=2)
    harness.queue("long", "brief")
    harness._dispatch()
    # the long one runs now; the brief one would wait behind it, so it is not sent
    assert harness.submitted == ["long-0"]
    harness._dispatch()
    assert harness.submitted == ["long-0"]


def test_max_tasks_bounds_the_tasks_sent_ahead_too() -> None:
    harness = _harness(free=1, ahead=2, max_tasks=2)
    harness.queue("brief", "brief", "brief")
    harness._dispatch()
    assert harness.submitted == ["brief-0", "brief-1"]


def test_a_task_whose_runs_grow_long_stops_being_brief() -> None:
    harness = _harness(free=0, ahead=1)
    assert harness._brief("brief")
    for _ in range(40):
        harness._note_runtime("brief", 1.0)
    assert not harness._brief("brief")
    assert harness._runtimes["brief"] > BRIEF_RUNTIME


def test_tasks_awaiting_their_started_rows_keep_their_slots() -> None:
    """Requests acked only once their STARTED rows are stored (started_ahead.py) are in
    neither ``reserved`` nor the pool meanwhile: the dispatch counts them, first against
    the free slots, then against those ahead, so the pool is never handed more."""
    harness = _harness(free=1, ahead=2)
    harness._awaiting.append(SimpleNamespace(requests=[object(), object()]))
    harness.queue("brief", "brief", "brief")
    harness._dispatch()
    assert harness.submitted == ["brief-0"]
    assert [r.id for r in harness.reserved] == ["brief-1", "brief-2"]
    harness._awaiting.clear()
    harness._dispatch()
    assert harness.submitted == ["brief-0", "brief-1", "brief-2"]
