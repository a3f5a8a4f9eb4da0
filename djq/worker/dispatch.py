"""The consumer's dispatching: reserved requests to free pool slots, and revokes.

``Dispatch`` is the part of ``Consumer`` (djq/worker/consumer.py) that decides what
runs now: it promotes due eta requests, skips revoked and expired ones, holds those over
their rate limit, acks early-ack requests before they start (only those the broker took
the ack of run), keeps the prefetch window wide enough for held messages, and stops
running tasks revoked with terminate. Only the consumer thread calls it.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time
from typing import Any, Callable

from ..conf import djq_settings
from ..control import signal_number
from ..messaging.events import EventDispatcher
from ..messaging.producer import publish_now
from .modes import RunLimits
from .outcomes import Outcomes
from .ratelimit import TokenBucket
from .request import Request, TaskCall, run_call
from ..backends import current_writer
from .started_ahead import StartedAhead
from .trace import Outcome

logger = logging.getLogger(__name__)
#: AMQP's prefetch count is a 16-bit field
MAX_PREFETCH = 65535
#: a task whose recent runs here averaged under this many seconds may wait in the pool
#: for a slot (``Dispatch._ahead_room``)
BRIEF_RUNTIME = 0.02


class Dispatch(StartedAhead):
    pool: Any
    events: EventDispatcher | None
    outcomes: Outcomes
    limits: RunLimits
    active: dict[int, Request]
    handles: dict[int, Any]
    buckets: dict[str, TokenBucket]
    task_limits: dict[str, tuple[float | None, float | None]]
    soft_time_limit: float | None
    time_limit: float | None
    _warned_limits: set[str]
    _terminated: dict[str, float]
    _rate_held: int
    #: task name -> recent average runtime here, in seconds
    _runtimes: dict[str, float]
    #: (ack receipt, requests, their STARTED waits) of ack round trips that failed (Redis, djq://)
    _unsure_acks: list[tuple[Any, list[Request], dict[int, Callable[[float], bool]]]]
    _seq: itertools.count[int]

    def _on_done(self, call: TaskCall, outcome: Outcome) -> None:
        raise NotImplementedError

    # -- dispatching --------------------------------------------------------------
    def _promote_scheduled(self) -> None:
        now = time.monotonic()
        while self.scheduled and self.scheduled[0][0] <= now:
            self.reserved.append(heapq.heappop(self.scheduled)[2])

    def _room(self) -> int:
        """How many requests the pool may take now: its free slots, and those ahead."""
        free = self.limits.room(self.pool.free_slots())
        return free + self._ahead_room(free)

    def _dispatch(self) -> None:
        free = self.limits.room(self.pool.free_slots())
        ahead = self._ahead_room(free)
        awaiting = self._awaiting_count()  # their slots are taken: they run once acked
        if awaiting:
            kept = min(awaiting, free)
            free, ahead = free - kept, max(ahead - (awaiting - kept), 0)
        if free + ahead <= 0 or not self.reserved:
            return
        held: list[Request] = []
        batch: list[Request] = []
        while free + ahead > 0 and self.reserved:
            request = self.reserved.popleft()
            if request.id in self.revokes:
                self.outcomes.not_run(request)
                continue
            if request.expired():
                self.outcomes.not_run(request, "expired", expired=True)
                continue
            if free <= 0 and not self._brief(request.name):
                self.reserved.appendleft(request)  # waits for a slot of its own
                break
            rate = request.task.rate_per_second
            if rate is not None and not request.ack_taken:  # acked already: its token was spent
                bucket = self.buckets.get(request.name)
                if bucket is None:
                    bucket = self.buckets[request.name] = TokenBucket(rate)
                if not bucket.take():
                    held.append(request)
                    continue
            if free > 0:
                free -= 1
                if not self._brief(request.name):
                    ahead = 0  # what waited behind it would wait for a long task
            else:
                ahead -= 1
            batch.append(request)
        self.reserved.extendleft(reversed(held))
        self._rate_held = len(held)
        for request in self._acked_for_start(batch):
            self.limits.started += 1
            self._submit(request)

    def _ahead_room(self, free: int) -> int:
        """Requests the pool may take beyond its free slots (``ahead_slots``), to start
        as running ones end: only while every running task is brief, and only for brief
        ones. Such a request is acked, and stored STARTED, up to one brief task's time
        before its body begins, so a worker killed meanwhile reports it lost too: the
        bound keeps both to a few milliseconds, and a long task never waits behind one."""
        ahead = self.pool.ahead_slots() if self.reserved else 0
        if ahead <= 0 or not all(self._brief(request.name) for request in self.active.values()):
            return 0
        return self.limits.room(free + ahead) - free

    def _brief(self, name: str) -> bool:
        """Whether task ``name``'s recent runs here took under BRIEF_RUNTIME (none yet: no)."""
        runtime = self._runtimes.get(name)
        return runtime is not None and runtime < BRIEF_RUNTIME

    def _note_runtime(self, name: str, runtime: float) -> None:
        """A run of ``name`` took ``runtime`` s: the recent average moves an eighth of the way."""
        previous = self._runtimes.get(name)
        self._runtimes[name] = runtime if previous is None else previous + (runtime - previous) / 8

    def _acked_for_start(self, batch: list[Request]) -> list[Request]:
        """The requests that may start now: late-ack ones, and early-ack ones the broker
        took the ack of. Early-ack ones whose STARTED the writer stores first wait for it
        unacked (``_await_started``); ``_start_stored_first`` acks them later.

        A message whose ack failed is delivered again, so running it here as well would run
        an early-ack task twice (a broker restart at the wrong moment did just that). On
        Redis a failed round trip may still have taken the acks (the reply is what was
        lost; on djq:// the commit may have gone through): those requests wait until the
        consumer has asked (``_settle_acks``).
        """
        early = [request for request in batch if not request.acks_late and not request.ack_taken]
        if not early:
            return batch
        started = self._start_ahead(early)
        if started and not self._stores_with_acks(current_writer()):
            first = [request for request in early if id(request) in started]
            self._await_started(first, started)
            waiting = {id(request) for request in first}
            batch = [request for request in batch if id(request) not in waiting]
            early = [request for request in early if id(request) not in waiting]
            started = {}
            if not early:
                return batch
        failed = self._ack_early(early, started)
        return [request for request in batch if id(request) not in failed]

    def _start_stored_first(self) -> None:
        """Ack the awaiting requests whose STARTED the writer has answered for; those the
        broker took the ack of go first in ``reserved``, for this turn's ``_dispatch``
        (``ack_taken``: no second ack, no second token of their rate limit)."""
        ready, waits = self._stored_first()
        if not ready:
            return
        failed = self._ack_early(ready, waits)
        acked = [request for request in ready if id(request) not in failed]
        for request in acked:
            request.ack_taken = True
        self.reserved.extendleft(reversed(acked))

    def _ack_early(self, early: list[Request], started: dict[int, Callable[[float], bool]]) -> set[int]:
        """Ack ``early`` in one batch; returns the ``id`` of each whose ack the broker did
        not take (or may not have: ``_settle_acks`` asks), which does not run now.
        ``started``: whether each one's STARTED is stored ahead (answered at once)."""
        failed = {id(request) for request in early if not self._ack(request)}
        try:
            # batched acks reach the broker before the tasks start; on Redis the next
            # take shares their round trip
            self._flush_acks(take=True)
        except Exception as exc:
            receipt = getattr(self.channel, "ack_receipt", None)
            if receipt is not None:
                unsure = [request for request in early if id(request) not in failed]
                logger.warning("could not learn whether the broker took the acks of %d task(s) (%s): "
                               "asking again", len(unsure), exc)
                asked = {id(request) for request in unsure}
                self._unsure_acks.append((receipt, unsure, {k: w for k, w in started.items() if k in asked}))
                failed = {id(request) for request in early}
                started = {k: w for k, w in started.items() if k not in asked}
                early = [request for request in early if id(request) not in asked]
            else:
                logger.warning("could not ack %d task(s): %s", len(early), exc)
                failed = {id(request) for request in early}
        for request in early:
            wait = started.get(id(request))
            if wait is not None:
                request.started_stored = wait(0.0)
            if id(request) in failed:
                self._not_run_unacked(request, wait is not None)
        return failed

    def _settle_acks(self) -> None:
        """Early-ack requests whose ack round trip failed (Redis, djq://): those whose acks
        the broker took are gone from it, so they run here; the others are delivered
        again. Asked on the consumer's current connection; a connection error reconnects
        and the next turn asks again."""
        while self._unsure_acks:
            receipt, requests, started = self._unsure_acks[0]
            taken = self.channel.acks_taken(receipt)
            self._unsure_acks.pop(0)
            if taken is None:
                logger.error("could not learn in time whether the broker took the acks of %d task(s), not run: %s "
                             "(each is lost if it did)", len(requests), ", ".join(r.id for r in requests))
            for request in requests:
                wait = started.get(id(request))
                if wait is not None:
                    request.started_stored = wait(0.0)
                if not taken:
                    self._not_run_unacked(request, wait is not None)
            if taken:
                logger.info("the broker took the acks of %d task(s) whose reply was lost: running them",
                            len(requests))
                for request in requests:
                    request.ack_taken = True
                self.reserved.extendleft(reversed(requests))  # the next _dispatch, this turn, runs them

    def _not_run_unacked(self, request: Request, started_ahead: bool) -> None:
        logger.warning("task %s[%s] not run: its ack failed, so the broker delivers it again",
                       request.name, request.id)
        if started_ahead:
            self._unstart(request)

    def _widen_prefetch(self) -> None:
        """Keep held messages from taking the prefetch window from runnable ones.

        An eta task not yet due and a task over its rate limit stay unacked in this worker,
        and the broker counts them against the prefetch window; a few of them would stop
        every task queued behind from arriving. So the window grows by the number held
        (at most DJQ_WORKER_ETA_MAX_HELD) and shrinks back as they are let go. One QoS call
        per loop turn at most, and none while nothing is held.
        """
        if not self.prefetch_count or self.kombu_consumer is None:
            return  # 0 is no limit
        held = min(len(self.scheduled) + self._rate_held, int(djq_settings.WORKER_ETA_MAX_HELD))
        wanted = min(self.prefetch_count + held, MAX_PREFETCH)
        if wanted != self._applied_prefetch:
            self.kombu_consumer.qos(prefetch_count=wanted, apply_global=self._qos_global)
            self._applied_prefetch = wanted

    def _submit(self, request: Request) -> None:
        default_soft, default_hard = self.task_limits.get(request.name) or (self.soft_time_limit, self.time_limit)
        soft, hard = request.time_limits(default_soft, default_hard)
        self._warn_unenforced(request.name, soft, hard)
        seq = next(self._seq)
        self.active[seq] = request
        call = request.call_arg = request.call(seq, soft, hard, self.events is not None)
        request.time_start = time.time()
        if self.events is not None:
            self.events.send("task-started", uuid=request.id)
        handle = self.pool.apply_async(run_call, call, self._on_done, soft_time_limit=soft, time_limit=hard)
        if handle is not None:
            self.handles[seq] = handle

    def _warn_unenforced(self, name: str, soft: float | None, hard: float | None) -> None:
        missing = self.pool.unsupported(soft=bool(soft), hard=bool(hard))
        if missing and name not in self._warned_limits:
            self._warned_limits.add(name)
            logger.warning("task %s has %s, which the %s pool cannot enforce (see docs/pools.md)",
                           name, " and ".join(missing), self.pool.name)

    def _release_parked(self) -> None:
        try:
            self.parking.release_due(lambda message: publish_now(message, self.broker_url))
        except Exception as exc:
            logger.warning("could not send waiting eta tasks back to the broker: %s", exc)

    def _check_revokes(self) -> None:
        """New revokes from the database; running tasks asked to terminate are stopped."""
        for task_id in self.revokes.refresh():
            signal = self.revokes.terminate.get(task_id)
            if signal is None:
                continue
            for seq, request in list(self.active.items()):
                if request.id == task_id:
                    self._terminate(seq, request, signal)

    def _terminate(self, seq: int, request: Request, signal: str) -> bool:
        handle = self.handles.get(seq)
        if handle is not None and self.pool.terminate_job(handle, signal_number(signal)):
            logger.warning("task %s[%s] revoked: terminating it with %s", request.name, request.id, signal)
            now = time.monotonic()
            self._terminated = {i: t for i, t in self._terminated.items() if now - t < 60}
            self._terminated[request.id] = now
            return True
        logger.warning("task %s[%s] revoked with terminate, but the %s pool cannot stop a running task: "
                       "it runs to its end", request.name, request.id, self.pool.name)
        return False

    def revoke_now(self, task_ids: list[str], *, terminate: bool = False,
                   signal: str = "SIGTERM") -> tuple[list[str], list[str]]:
        """A revoke pushed by remote control, in the consumer thread: mark the ids now
        (the database row, written by the sender, covers workers started later); with
        ``terminate``, stop their running tasks. Returns (stopped, could not stop); a
        plain revoke stops nothing, so its running tasks are all "could not stop"."""
        stopped: list[str] = []
        unstoppable: list[str] = []
        for task_id in task_ids:
            self.revokes.add(task_id, terminate, signal)
        if not terminate:
            how = ("revoke with terminate to stop it" if self.pool.supports_terminate_job
                   else f"the {self.pool.name} pool cannot stop a running task")
            for request in list(self.active.values()):
                if request.id in task_ids:
                    logger.warning("task %s[%s] revoked while it runs: it runs to its end (%s)",
                                   request.name, request.id, how)
                    unstoppable.append(request.id)
        if terminate:
            for seq, request in list(self.active.items()):
                if request.id in task_ids:
                    (stopped if self._terminate(seq, request, signal) else unstoppable).append(request.id)
            # the revoke's database row can reach this worker first (_check_revokes): a
            # task it already stopped is stopped, not "none running here"
            stopped += [i for i in task_ids if i in self._terminated and i not in stopped]
        return stopped, unstoppable
