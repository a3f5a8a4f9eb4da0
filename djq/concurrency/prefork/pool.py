"""``PreforkPool``: the BasePool API over the roster (who holds what) and the supervisor.

``apply_async`` runs in the consumer thread: it pickles the job, records it as a free
child's and writes it to that child's pipe (never waiting on the child). Outcomes come
back through ``callback(arg, outcome)`` from the supervisor thread. The returned handle
(the job's id) is what ``terminate_job`` takes.
"""
from __future__ import annotations

import itertools
import logging
import signal
import threading
import time
from typing import Any

from ..base import BasePool, Callback, Job as JobFunction
from .roster import TERMINATED, Job, Report, Roster, withdrawn
from .supervisor import Supervisor
from .wire import frame

logger = logging.getLogger(__name__)


class PreforkPool(BasePool):
    name = "prefork"
    supports_soft_time_limit = True
    supports_hard_time_limit = True
    supports_autoscale = True
    supports_recycling = True
    supports_terminate_job = True
    platforms = "Unix"

    #: seconds a child may take between receiving a job and saying it started it
    start_timeout = 10.0
    #: seconds a child may take to die after SIGKILL before the pool gives up on it
    kill_grace = 5.0

    def __init__(self, concurrency: int, *, start_timeout: float | None = None, kill_grace: float | None = None,
                 **options: Any) -> None:
        super().__init__(concurrency, **options)
        if start_timeout is not None:
            self.start_timeout = start_timeout
        if kill_grace is not None:
            self.kill_grace = kill_grace
        self.roster = Roster(concurrency)
        self._lock = self.roster.lock  # BasePool's accounting shares the roster's lock
        self._idle = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._reporting = threading.Lock()
        self._supervisor = Supervisor(self)

    # -- running jobs -------------------------------------------------------------------
    def start(self) -> None:
        self._supervisor.start()
        self._supervisor.spawned_once.wait(30)

    def apply_async(self, job: JobFunction, arg: Any, callback: Callback, *,
                    soft_time_limit: float | None = None, time_limit: float | None = None) -> int:
        record = Job(next(self._ids), job, arg, callback, soft_time_limit, time_limit)
        record.payload = frame(("job", record.id, job, arg))  # pickled outside the lock
        roster = self.roster
        with roster.lock:
            roster.jobs[record.id] = record
            self._active += 1  # BasePool's count: jobs accepted and not yet reported
            roster.place(record)
            stalled = record.child is None or bool(record.child.channel.outbox)
        if stalled:  # waiting for a child, or not all written: the supervisor takes over
            self._supervisor.wake()
        return record.id

    def deliver(self, report: Report) -> None:
        """Called by the supervisor, outside the roster's lock, for each finished job."""
        with self._reporting:
            if not self.roster.silenced:
                try:
                    report.callback(report.arg, report.outcome)
                except Exception:
                    logger.exception("prefork: the callback of a finished job failed")
        self._finished()

    def terminate_job(self, handle: Any, signum: int) -> bool:
        """Signal the child running job ``handle``; that child is replaced after it.

        True also when the job has already ended (then nothing is signalled)."""
        roster = self.roster
        with roster.lock:
            job = roster.jobs.get(handle)
            if job is None:
                return True
            if job.child is not None:
                job.child.retire = True
                job.kill_reason = TERMINATED
                if signum == signal.SIGKILL:
                    job.killed_at = time.monotonic()
                roster.signal(job.child, signum)
                return True
            roster.pending.remove(job)  # no child has it yet: it never starts
            roster.jobs.pop(job.id)
        self.deliver(Report(job.callback, job.arg, withdrawn(job, signum)))
        return True

    # -- accounting ---------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(self.roster.concurrency - len(self.roster.jobs), 0)

    def ahead_slots(self) -> int:
        """One job waiting per child, at most (``roster.pending``)."""
        return max(2 * self.roster.concurrency - len(self.roster.jobs), 0) - self.free_slots()

    # -- stopping -----------------------------------------------------------------------
    def stop(self, timeout: float | None = None) -> bool:
        """Warm: wait for running jobs, then children exit once idle. True if all jobs ended in time."""
        finished = self._wait_idle(timeout)
        if not finished:
            self.terminate()
            return False
        with self.roster.lock:
            self.roster.closing = True
            for child in self.roster.children.values():
                if child.job is None and not child.leaving:
                    self.roster.leave(child)
        self._supervisor.wake()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=10)
        if self._supervisor.is_alive():
            logger.warning("prefork: children did not exit within 10s of the warm stop; killing them")
            self.terminate()
        return True

    def terminate(self) -> None:
        """Cold: kill every child now; no outcome is reported after this returns."""
        roster = self.roster
        with roster.lock:
            roster.closing = roster.silenced = True
            children = list(roster.children.values())
        for child in children:
            roster.signal(child, signal.SIGKILL)
        if self._supervisor.is_alive():
            self._supervisor.wake()
            self._supervisor.join(timeout=1.0)
        # a callback under way when this began has returned before this does
        if self._reporting.acquire(timeout=0.5):
            self._reporting.release()

    # -- control hooks ------------------------------------------------------------------
    def grow(self, n: int = 1) -> None:
        with self.roster.lock:
            self.roster.concurrency += n
            self.concurrency = self.roster.concurrency
        self._supervisor.wake()

    def shrink(self, n: int = 1) -> None:
        """Stop up to ``n`` idle children; a busy child is not stopped under its task."""
        roster = self.roster
        with roster.lock:
            n = min(n, roster.concurrency - 1)
            idle = [child for child in roster.children.values() if child.free][:max(n, 0)]
            for child in idle:
                roster.leave(child)
            roster.concurrency -= len(idle)
            self.concurrency = roster.concurrency
        if 0 < len(idle) < n or (n > 0 and not idle):
            logger.info("prefork pool: stopped %d of %d child(ren); the others are busy", len(idle), n)

    def restart(self) -> None:
        """Replace every child: an idle one at once, a busy one after its task."""
        roster = self.roster
        with roster.lock:
            for child in roster.serving():
                if child.job is None:
                    roster.leave(child)
                else:
                    child.retire = True
        self._supervisor.wake()

    def pids(self) -> list[int]:
        with self.roster.lock:
            return [child.pid for child in self.roster.serving()]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "pids": self.pids()}
