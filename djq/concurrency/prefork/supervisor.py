"""The prefork pool's supervisor: one parent thread that watches every child.

It waits (one ``poll`` object, kept while the set of descriptors stays the same) on the
children's result pipes, their sentinels, the fork server's exit reports and a wake-up
pipe, and so it:
- reads "started" and "done" messages, frees the child and reports the outcome;
- sees a child die, reads what it wrote before dying, and reports the job it still held
  as lost (WorkerLostError, or TimeLimitExceeded when the parent killed it at its limit);
- times the limits from the child's "started": SIGUSR1 at the soft one, SIGKILL at the
  hard one;
- notices a pool that makes no progress, says so in one line and recovers: a job sent but
  not started within ``start_timeout``, a child not dead ``kill_grace`` after SIGKILL, a
  dead child whose exit is not reported within ``REAP_GRACE``, a child that exited while
  its sentinel stayed open (held by a process it started);
- keeps the pool at its size: it asks the fork server (spawner.py) for a new child at
  once when one leaves, and starts a new fork server if that one died.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from ...backends import store_row
from .deadlines import GIVE_UP, HARD, NOT_STARTED, deadlines, due
from .roster import Child, ChildProcess, Job, Report, exit_text
from .spawner import Spawner
from .wire import Channel, Inbox

if TYPE_CHECKING:
    from .pool import PreforkPool

logger = logging.getLogger(__name__)
#: the longest wait between two looks at every deadline
POLL_INTERVAL = 1.0
#: seconds a dead child's exit report may take before the child is settled without it
REAP_GRACE = 2.0


class Poller:
    """``select.poll`` over a set of descriptors, registered again only when the set changes
    (a new selector per wait, as ``multiprocessing.connection.wait`` builds, was a
    measurable share of the supervisor's time: two or three waits per task)."""

    def __init__(self) -> None:
        self._fds: tuple[int, ...] = ()
        self._poll = select.poll()

    def wait(self, fds: list[int], timeout: float) -> set[int]:
        """The descriptors readable (or at EOF, or in error) within ``timeout`` seconds."""
        key = tuple(fds)
        if key != self._fds:
            self._poll = select.poll()
            for fd in key:
                self._poll.register(fd, select.POLLIN)
            self._fds = key
        return {fd for fd, _ in self._poll.poll(max(timeout, 0.0) * 1000.0)}


class Supervisor(threading.Thread):
    def __init__(self, pool: PreforkPool) -> None:
        super().__init__(name="djq-prefork-supervisor", daemon=True)
        self.pool = pool
        self.roster = pool.roster
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.spawner = Spawner()
        self._exits: Inbox | None = None
        self._spawn_after = 0.0
        self._poller = Poller()
        self.spawned_once = threading.Event()

    def start(self) -> None:
        self._start_spawner()
        super().start()

    def _start_spawner(self) -> None:
        # the wake-up pipe is the worker's: the fork server and its children close it
        self.spawner.start([self._wake_r, self._wake_w])
        self._exits = Inbox(self.spawner.exits)

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:  # already awake
            pass

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            while self._turn():
                pass
        finally:
            self.spawner.close(kill=self.roster.silenced)
            self.spawner.join(5.0)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)

    def _turn(self) -> bool:
        try:
            return self._step()
        except Exception:  # this thread must outlive any one fault, or the pool freezes
            logger.exception("prefork supervisor: unexpected error; carrying on")
            time.sleep(0.1)
            return True

    def _step(self) -> bool:
        roster = self.roster
        with roster.lock:
            if roster.closing and not roster.children:
                return False
            watched: dict[Any, Child] = {}
            sentinels = set()
            for child in roster.children.values():
                if child.process.ended_at is None:
                    watched[child.process.sentinel] = child
                    sentinels.add(child.process.sentinel)
                if not child.channel.eof:
                    watched[child.channel.from_child] = child
            timeout = self._timeout(time.monotonic())
        extra = [self._wake_r]
        if self.spawner.process is not None:
            extra.append(self.spawner.process.sentinel)
        if self._exits is not None and not self._exits.eof:
            extra.append(self._exits.fd)
        ready = self._poller.wait([*extra, *watched], timeout)
        reports: list[Report] = []
        with roster.lock:
            if self._wake_r in ready:
                self._drain_wake()
            # results first: a child that reported and then died has its report read
            for key in sorted(ready, key=lambda k: k in sentinels):
                owner = watched.get(key)
                if owner is not None and owner.pid in roster.children:
                    if key in sentinels:
                        self._exited(owner, reports)
                    else:
                        self._read(owner, reports)
            if self._exits is not None and self._exits.fd in ready:
                self._exit_reports(reports)
            now = time.monotonic()
            self._unreaped(now, reports)
            self._deadlines(now, reports)
            for child in roster.children.values():
                if child.channel.outbox:
                    self._flush(child)
            deficit = 0 if roster.closing else roster.concurrency - len(roster.serving())
        self._report(reports)
        # the fork server's sentinel says when to look (a look is a waitpid)
        spawner_ended = self.spawner.process is not None and self.spawner.process.sentinel in ready
        if (spawner_ended or self.spawner.process is None) and not self.spawner.alive() \
                and not self.roster.closing and time.monotonic() >= self._spawn_after:
            self._replace_spawner()
        if deficit > 0 and time.monotonic() >= self._spawn_after:
            self._spawn(deficit)
        self.spawned_once.set()
        return True

    def _timeout(self, now: float) -> float:
        roster = self.roster
        soonest = now + POLL_INTERVAL
        for child in roster.children.values():
            if child.process.ended_at is not None:
                soonest = min(soonest, child.process.ended_at + REAP_GRACE)
        if any(child.channel.outbox for child in roster.children.values()):
            soonest = now + 0.01
        if not roster.closing and roster.concurrency > len(roster.serving()):
            soonest = min(soonest, self._spawn_after)
        for job in roster.jobs.values():
            for deadline in deadlines(job, self.pool.start_timeout, self.pool.kill_grace):
                soonest = min(soonest, deadline)
        return max(soonest - now, 0.0)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _report(self, reports: list[Report]) -> None:
        for report in reports:
            self.pool.deliver(report)

    # -- messages and deaths ----------------------------------------------------------
    def _read(self, child: Child, reports: list[Report]) -> None:
        try:
            messages = child.channel.receive()
        except Exception:  # a frame that does not unpickle: this child cannot be trusted
            logger.exception("prefork: unreadable message from child %d; killing it", child.pid)
            self._kill(child, "unreadable")
            return
        for message in messages:
            kind, job_id = message[0], message[1]
            job = child.job
            if job is None or job.id != job_id:
                continue  # a job this child no longer holds (already reported)
            if kind == "started":
                job.started_at = time.monotonic()
            elif kind == "row":  # the task's end, for this process's result writer
                store_row(message[2])
            elif kind == "done":
                self._done(child, job, message[2], message[3], reports)

    def _done(self, child: Child, job: Job, outcome: Any, rss_kib: int, reports: list[Report]) -> None:
        pool = self.pool
        reports.append(self.roster.finish(child, job, outcome, rss_kib, pool.max_tasks_per_child,
                                          pool.max_memory_per_child))

    def _exited(self, child: Child, reports: list[Report]) -> None:
        """The sentinel fired: read what the child wrote before it died, then settle its job
        once the fork server reports its exit status."""
        self._read(child, reports)
        if child.process.exitcode is not None:
            self._remove(child, child.process.exitcode, reports)
        else:
            child.process.ended_at = time.monotonic()

    def _exit_reports(self, reports: list[Report]) -> None:
        for pid, code in self._exits.receive() if self._exits is not None else []:
            child = self.roster.children.get(pid)
            if child is None:  # settled already (it left, or was given up on)
                continue
            child.process.exitcode = code
            if child.process.ended_at is None:
                logger.error("prefork: child %d %s but its sentinel stayed open (a process it started "
                             "holds it?); settling its task now", pid, exit_text(code))
            self._read(child, reports)
            self._remove(child, code, reports)

    def _unreaped(self, now: float, reports: list[Report]) -> None:
        for child in list(self.roster.children.values()):
            ended = child.process.ended_at
            if ended is not None and now >= ended + REAP_GRACE:
                logger.error("prefork: child %d died but its exit was not reported within %.0fs; "
                             "settling its task without it", child.pid, REAP_GRACE)
                self._remove(child, None, reports)

    def _remove(self, child: Child, code: int | None, reports: list[Report]) -> None:
        _close(child.process.sentinel)
        report = self.roster.settle(child, code)
        if report is not None:
            reports.append(report)

    # -- time limits and stuck children -------------------------------------------------
    def _deadlines(self, now: float, reports: list[Report]) -> None:
        for job in list(self.roster.jobs.values()):
            child = job.child
            action = due(job, now, self.pool.start_timeout, self.pool.kill_grace)
            if child is None or action is None:
                continue
            if action == GIVE_UP:
                logger.error("prefork: child %d is still there %.0fs after SIGKILL (%s of %s); "
                             "giving up on it, reporting its task and starting a new child",
                             child.pid, now - (job.killed_at or now), job.kill_reason, job.describe())
                self._remove(child, None, reports)
            elif action == NOT_STARTED:
                logger.error("prefork: child %d did not start %s within %.0fs of receiving it; "
                             "killing it and reporting the task as lost",
                             child.pid, job.describe(), self.pool.start_timeout)
                self._kill(child, NOT_STARTED)
            elif action == HARD:
                logger.warning("prefork: task %s ran past its hard time limit (%ss): killing child %d",
                               job.describe(), job.hard, child.pid)
                self._kill(child, HARD)
            else:
                job.soft_signalled = True
                self.roster.signal(child, signal.SIGUSR1)

    def _kill(self, child: Child, reason: str) -> None:
        child.retire = True
        if child.job is not None and child.job.killed_at is None:
            child.job.killed_at = time.monotonic()
            child.job.kill_reason = child.job.kill_reason or reason
        self.roster.signal(child, signal.SIGKILL)

    def _flush(self, child: Child) -> None:
        try:
            child.channel.flush()
        except OSError:  # it died with bytes unsent: its sentinel settles its job
            child.channel.outbox.clear()
            child.leaving = True

    # -- forking ------------------------------------------------------------------------
    def _spawn(self, n: int) -> None:
        for _ in range(n):
            try:
                child = self._fork()
            except OSError as exc:
                logger.error("prefork: cannot start a child process (%s); trying again in 1s", exc)
                self._spawn_after = time.monotonic() + 1.0
                return
            with self.roster.lock:
                if self.roster.silenced:  # terminate() began while it was forked
                    self.roster.signal(child, signal.SIGKILL)
                elif self.roster.closing:
                    self.roster.leave(child)
                self.roster.children[child.pid] = child
                self.roster.feed(child)

    def _fork(self) -> Child:
        if not self.spawner.alive():
            raise OSError("the fork server is not running")
        pid, jobs, results, sentinel = self.spawner.fork(bool(self.pool.max_memory_per_child))
        return Child(ChildProcess(pid, sentinel), Channel(jobs, results))

    def _replace_spawner(self) -> None:
        """The fork server died, and its children with it (they settle as their sentinels
        fire). Forked from this thread, the new one may inherit SQLite lock state (see
        spawner.py): that is the price of going on."""
        if self.spawner.process is not None:
            logger.error("prefork: the fork server (pid %s) died; starting a new one", self.spawner.process.pid)
        self.spawner.close()
        self.spawner = Spawner()
        try:
            self._start_spawner()
        except OSError as exc:
            logger.error("prefork: cannot start a fork server (%s); trying again in 1s", exc)
            self._spawn_after = time.monotonic() + 1.0


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
