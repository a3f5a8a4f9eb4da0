"""Who holds what: the prefork pool's children, its jobs, and the one lock over both.

Each child holds at most one job, and each job is in at most one child; the job is
recorded as the child's before its bytes are written, so whatever happens to the child
afterwards, the parent knows exactly which job it took with it. The transitions live
here: a job given (``place``/``feed``), finished (``finish``: free the child or replace a
worn one) or lost with its child (``settle``). Nothing here waits on a child: writes go
through non-blocking pipes (wire.py).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ... import states
from ...exceptions import TimeLimitExceeded, WorkerLostError
from ...worker.trace import Outcome
from ..base import Callback, Job as JobFunction
from .wire import Channel, frame

logger = logging.getLogger(__name__)
#: why the parent signalled a job's child (``Job.kill_reason``)
TIME_LIMIT = "time limit"
TERMINATED = "terminated"


@dataclass(eq=False)
class Job:
    id: int
    function: JobFunction
    arg: Any
    callback: Callback
    soft: float | None
    hard: float | None
    payload: bytes = b""
    child: Child | None = None
    #: monotonic times: written to a child; the child said it started
    sent_at: float | None = None
    started_at: float | None = None
    soft_signalled: bool = False
    #: why the parent signalled its child (TIME_LIMIT, TERMINATED, deadlines.NOT_STARTED), and when
    kill_reason: str | None = None
    killed_at: float | None = None

    def describe(self) -> str:
        """``task.name[task-id]`` for a TaskCall; the argument's repr for other jobs."""
        name, info = getattr(self.arg, "task_name", None), getattr(self.arg, "info", None)
        if name is not None and info is not None:
            return f"{name}[{getattr(info, 'task_id', '?')}]"
        return repr(self.arg)[:200]


@dataclass(eq=False)
class ChildProcess:
    """A child as the parent sees it (the fork server is its real parent)."""

    pid: int
    #: readable (EOF) once the child has exited
    sentinel: int
    #: from the fork server's exit report: negative for a signal, as Process.exitcode
    exitcode: int | None = None
    #: when its sentinel fired (monotonic), while its exit report is awaited
    ended_at: float | None = None


@dataclass(eq=False)
class Child:
    process: ChildProcess
    channel: Channel
    job: Job | None = None
    tasks: int = 0
    #: replace this child once its job is done (restart, recycling, a signal was sent)
    retire: bool = False
    #: told to exit, or gone: takes no more work and is no longer one of the pool's slots
    leaving: bool = False

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def free(self) -> bool:
        return self.job is None and not self.retire and not self.leaving


@dataclass(eq=False)
class Report:
    callback: Callback
    arg: Any
    outcome: Outcome


@dataclass(eq=False)
class Roster:
    concurrency: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    children: dict[int, Child] = field(default_factory=dict)
    #: every job not yet finished: in a child, or waiting in ``pending`` for a free one
    jobs: dict[int, Job] = field(default_factory=dict)
    pending: deque[Job] = field(default_factory=deque)
    #: stop() or terminate() began: no new children
    closing: bool = False
    #: terminate() began: report nothing more
    silenced: bool = False

    def serving(self) -> list[Child]:
        return [child for child in self.children.values() if not child.leaving]

    def free_child(self) -> Child | None:
        for child in self.children.values():
            if child.free:
                return child
        return None

    def give(self, child: Child, job: Job) -> bool:
        """Hand ``job`` to ``child``; False if the child was already gone (the job is not sent)."""
        child.job, job.child, job.sent_at = job, child, time.monotonic()
        untouched = not child.channel.outbox
        try:
            child.channel.post(job.payload)
        except OSError:
            child.leaving = True  # its sentinel will confirm the death
            if untouched and len(child.channel.outbox) == len(job.payload):
                # Not one byte reached it: the job can go to another child.
                child.channel.outbox.clear()
                child.job, job.child, job.sent_at = None, None, None
                return False
        return True

    def place(self, job: Job) -> None:
        """Give ``job`` to a free child, or keep it until one is free."""
        while True:
            child = self.free_child()
            if child is None:
                self.pending.append(job)
                return
            if self.give(child, job):
                return

    def feed(self, child: Child) -> None:
        """A child just became free: give it the oldest waiting job."""
        while self.pending and child.free:
            job = self.pending.popleft()
            if not self.give(child, job):
                self.pending.appendleft(job)

    def leave(self, child: Child) -> None:
        """Ask an idle child to exit."""
        child.leaving = True
        try:
            child.channel.post(frame(("exit",)))
        except OSError:  # already gone: its sentinel says so
            pass

    def finish(self, child: Child, job: Job, outcome: Outcome, rss_kib: int, max_tasks: int | None,
               max_memory_kib: int | None) -> Report:
        """``child`` reported ``job`` done: free it for the next job, or replace it when it is worn."""
        child.job, job.child = None, None
        self.jobs.pop(job.id, None)
        child.tasks += 1
        worn = None
        if max_tasks and child.tasks >= max_tasks:
            worn = f"ran {child.tasks} task(s)"
        elif max_memory_kib and rss_kib > max_memory_kib:
            worn = f"uses {rss_kib} KiB, above --max-memory-per-child {max_memory_kib}"
        if worn:
            logger.info("prefork: replacing child %d: it %s", child.pid, worn)
        if worn or child.retire or child.leaving:
            self.leave(child)
        else:
            self.feed(child)
        return Report(job.callback, job.arg, outcome)

    def settle(self, child: Child, code: int | None) -> Report | None:
        """``child`` is gone (``code`` None: its exit was never confirmed): drop it, and
        report the job it still held as lost."""
        expected = child.leaving or child.retire
        self.children.pop(child.pid, None)
        child.leaving = True
        child.channel.close()
        job, how = child.job, exit_text(code)
        if job is None:
            if not expected and not self.closing:
                logger.warning("prefork: child %d %s while idle; starting a new one", child.pid, how)
            return None
        child.job, job.child = None, None
        self.jobs.pop(job.id, None)
        outcome = lost(job, child.pid, how)
        if job.kill_reason not in (TIME_LIMIT, TERMINATED) and not self.silenced:
            logger.error("prefork: child %d %s while running %s: the task is lost (%s)",
                         child.pid, how, job.describe(), type(outcome.value).__name__)
        return Report(job.callback, job.arg, outcome)

    def signal(self, child: Child, signum: int) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:  # already dead: its sentinel says so
            pass


def lost(job: Job, pid: int, how: str) -> Outcome:
    """The outcome of a job whose process ended before it reported."""
    if job.kill_reason == TIME_LIMIT:
        error: BaseException = TimeLimitExceeded(
            f"task {job.describe()} ran past its hard time limit ({job.hard}s); its process {pid} was killed")
    else:
        doing = "running" if job.started_at is not None else "starting"
        error = WorkerLostError(f"worker process {pid} {how} while {doing} {job.describe()}")
    return Outcome(states.FAILURE, error, f"{type(error).__name__}: {error}", 0.0, recorded=False)


def withdrawn(job: Job, signum: int) -> Outcome:
    """The outcome of a job terminated while it still waited for a child: it never ran."""
    error = WorkerLostError(f"{job.describe()} was terminated (signal {signum}) before a child took it; it never ran")
    return Outcome(states.FAILURE, error, f"{type(error).__name__}: {error}", 0.0, recorded=False)


def exit_text(code: int | None) -> str:
    if code is None:
        return "could not be reaped"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"
