"""kill -9 of prefork children during a drain, on every broker: the worker never hangs,
every task ends, and every stored state agrees with a ledger of executions that the
tasks keep outside djq (tests.testapp.tasks.ledgered).

Which task a kill hit is read from the ledger: the test kills the child whose latest
"start" line has no "end" yet, so the killed child's last started task is the one it
took with it (its victim).
"""
from __future__ import annotations

import os
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from djq import states
from djq.exceptions import WorkerLostError
from djq.models import TaskResult
from tests.conftest import wait_for
from tests.testapp import tasks

pytestmark = pytest.mark.integration

KILLS = 20
TASKS = 300
SECONDS = 0.03
#: between two kills: replacement children take work in between
SPACING = 0.05


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[list[tuple[str, int]], Counter[str]]:
        """(task id, pid) of every start in order, and how many times each task ended."""
        starts: list[tuple[str, int]] = []
        ends: Counter[str] = Counter()
        if not self.path.exists():
            return starts, ends
        for line in self.path.read_text().splitlines():
            kind, task_id, *rest = line.split()
            if kind == "start":
                starts.append((task_id, int(rest[0])))
            else:
                ends[task_id] += 1
        return starts, ends

    def running_pid(self, exclude: set[int]) -> int | None:
        """The child of the latest start that has not ended, if it is still alive."""
        starts, ends = self.read()
        for task_id, pid in reversed(starts):
            if pid not in exclude and not ends[task_id] and _alive(pid):
                return pid
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _victims(starts: list[tuple[str, int]], killed: set[int]) -> set[tuple[str, int]]:
    """The (task, pid) runs the kills cut short: each killed pid's last start."""
    last: dict[int, str] = {}
    for task_id, pid in starts:
        last[pid] = task_id
    return {(last[pid], pid) for pid in killed if pid in last}


@pytest.mark.parametrize("requeue", [False, True], ids=["lost", "requeued"])
def test_kill_9_of_children_during_a_drain_never_hangs_and_states_match_the_ledger(
        requeue: bool, broker, start_worker, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    task = tasks.ledgered_requeued if requeue else tasks.ledgered
    sent = [task.delay(str(ledger.path), SECONDS) for _ in range(TASKS)]
    ids = {result.id for result in sent}
    worker = start_worker("-P", "prefork", "-c", "2")

    killed: set[int] = set()
    for _ in range(KILLS):
        try:
            pid = wait_for(lambda: ledger.running_pid(killed), timeout=30, interval=0.002,
                           what=f"a task running in a child (after {len(killed)} kills)")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log tail:\n{worker.output[-4000:]}") from None
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
        time.sleep(SPACING)

    final = [states.SUCCESS, states.FAILURE]
    try:
        wait_for(lambda: TaskResult.objects.using(broker).filter(task_id__in=ids, state__in=final).count() == TASKS,
                 timeout=120, interval=0.2, what="every task to end")
    except AssertionError as exc:
        counts = Counter(TaskResult.objects.using(broker).filter(task_id__in=ids).values_list("state", flat=True))
        raise AssertionError(f"{exc}: {dict(counts)}; worker log tail:\n{worker.output[-4000:]}") from None
    assert worker.proc.poll() is None

    starts, ends = ledger.read()
    runs: dict[str, list[int]] = defaultdict(list)
    for task_id, pid in starts:
        runs[task_id].append(pid)
    victims = _victims(starts, killed)
    stored = dict(TaskResult.objects.using(broker).filter(task_id__in=ids).values_list("task_id", "state"))
    lost = 0
    for result in sent:
        task_id, state, pids = result.id, stored[result.id], runs[result.id]
        cut_short = [(task_id, pid) in victims for pid in pids]
        if requeue:
            assert state == states.SUCCESS, (task_id, state, pids)
            assert ends[task_id] >= 1, f"{task_id} is SUCCESS but never ran to its end: {pids}"
            assert all(cut_short[:-1]), f"{task_id} ran again without being killed under it: {pids}"
            continue
        assert len(pids) <= 1, f"{task_id} ran {len(pids)} times: {pids}"
        if state == states.FAILURE:
            lost += 1
            assert isinstance(result.result, WorkerLostError), (task_id, result.result)
            # a task killed before its first line, or mid-run, or between its end and its report
            assert not pids or cut_short[0], f"{task_id} reported lost, but its child {pids} was not killed under it"
        else:
            assert pids and ends[task_id] == 1, f"{task_id} is SUCCESS without one complete run: {pids}"
    assert lost <= len(killed)
    if not requeue:
        assert lost >= len(killed) // 2, "most kills hit a running task, and each is reported lost"
    assert "supervisor: unexpected error" not in worker.output

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
