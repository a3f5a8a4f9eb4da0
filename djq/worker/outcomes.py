"""What a worker records when a task ends, or ends without running.

The consumer hands every request that leaves it to ``Outcomes``: a task the pool
finished (its own trace stored the state; a process that died or a hard limit leaves
the failure to record here), a task revoked or expired before it started, and at a cold
shutdown the tasks stopped in the middle. Stores go through the result backend's
conditional write, so a failure reported for a task that had already stored its own end
loses to that end (backends/base.py ``supersedes``), and the worker's counts and events
follow what was stored, not what was reported.
"""
from __future__ import annotations

import logging
from typing import Callable

from .. import orphans, signals, states
from ..backends import get_backend
from ..backends.base import exception_to_meta
from ..control import signal_number
from ..exceptions import TaskRevokedError, WorkerLostError
from ..messaging.events import EventDispatcher
from .request import Request
from .trace import Outcome

logger = logging.getLogger(__name__)


class Outcomes:
    def __init__(self, hostname: str, stats: dict[str, int], events: EventDispatcher | None,
                 ack: Callable[[Request], bool], current: Callable[[Request], bool]) -> None:
        self.hostname = hostname
        self.stats = stats
        self.events = events
        #: ack a request's message (False when the broker did not take it)
        self._ack = ack
        #: whether a request came on the live broker channel (a requeue needs it)
        self._current = current
        #: called as (task name, "succeeded"|"failed"|"retried", state, runtime) per finished
        #: task, in the consumer thread (the metrics exporter); keep them quick
        self.listeners: list[Callable[[str, str, str, float | None], None]] = []

    # -- tasks that ran -----------------------------------------------------------
    def finished(self, request: Request, outcome: Outcome, terminated_by: str | None = None) -> None:
        """The pool is done with ``request``; ``terminated_by`` names the revoke signal
        when it was stopped on purpose."""
        if not outcome.recorded and terminated_by is not None:
            self._terminated(request, terminated_by)
            return
        if not outcome.recorded:
            if self._requeue_lost(request, outcome):
                self.stats["failed"] += 1
                return
            outcome = self._record_failure(request, outcome)
        kind = {states.SUCCESS: "succeeded", states.RETRY: "retried"}.get(outcome.state, "failed")
        self.stats[kind] += 1
        for listener in self.listeners:
            listener(request.name, kind, outcome.state, outcome.runtime)
        if self.events is not None:
            self._send(self.events, request, outcome)
        if request.acks_late:
            self._ack(request)

    def _terminated(self, request: Request, signal: str) -> None:
        self.stats["revoked"] += 1
        reason = f"terminated ({signal})"
        logger.warning("task %s[%s] %s", request.name, request.id, reason)
        try:
            self._store_revoked(request, reason)
        finally:
            self._ack(request)
        if signals.task_revoked.receivers:
            signals.send(signals.task_revoked, request.task, request=request, terminated=True,
                         signum=signal_number(signal), expired=False)
        if self.events is not None:
            self.events.send("task-revoked", uuid=request.id, terminated=True, signum=signal_number(signal),
                             expired=False)

    def _requeue_lost(self, request: Request, outcome: Outcome) -> bool:
        """acks_late + reject_on_worker_lost: a task whose process died runs again."""
        if not (isinstance(outcome.value, WorkerLostError) and request.acks_late and request.reject_on_worker_lost):
            return False
        logger.warning("task %s[%s]: its process died; requeued (reject_on_worker_lost)", request.name, request.id)
        if self._current(request):
            try:
                request.message.reject(requeue=True)
            except Exception as exc:
                logger.warning("could not requeue %s[%s]: %s", request.name, request.id, exc)
        return True

    def _record_failure(self, request: Request, outcome: Outcome) -> Outcome:
        """Store the failure the pool reported (its process died, a hard limit).

        Returns the outcome that stands: the stored one when the task had already recorded
        its own end (a child that stored SUCCESS and died before it could say so)."""
        backend = get_backend()
        try:
            stored = backend.store(request.info(), states.FAILURE, result=exception_to_meta(outcome.value),
                                   traceback=outcome.traceback)
        except Exception:
            logger.exception("could not record the failure of %s[%s]", request.name, request.id)
            return outcome
        if stored:
            logger.error("task %s[%s] failed: %s", request.name, request.id, outcome.traceback)
            return outcome
        meta = backend.get(request.id)
        state = meta.state if meta is not None else states.SUCCESS
        logger.warning("task %s[%s]: %s after the task had ended; its stored %s stands", request.name,
                       request.id, last_line(outcome.traceback) or "its process was lost", state)
        return Outcome(state, None, meta.traceback if meta is not None else None, outcome.runtime)

    @staticmethod
    def _send(events: EventDispatcher, request: Request, outcome: Outcome) -> None:
        if outcome.follow_up_error is not None:
            events.send("task-follow-up-failed", uuid=request.id, exception=outcome.follow_up_error[:1000])
        if outcome.state == states.SUCCESS:
            events.send("task-succeeded", uuid=request.id, result=outcome.value, runtime=outcome.runtime)
        elif outcome.state == states.RETRY:
            reason = outcome.value if outcome.value is not None else last_line(outcome.traceback)
            events.send("task-retried", uuid=request.id, exception=str(reason)[:1000], traceback=outcome.traceback)
        else:
            value = outcome.value if outcome.value is not None else last_line(outcome.traceback)
            events.send("task-failed", uuid=request.id, exception=str(value)[:1000],
                        traceback=outcome.traceback, runtime=outcome.runtime)

    # -- tasks that will not run ----------------------------------------------------
    def not_run(self, request: Request, reason: str = "revoked", *, expired: bool = False) -> None:
        """A task revoked (or expired) before it started: record REVOKED, drop its message."""
        self.stats["expired" if expired else "revoked"] += 1
        if expired:
            logger.info("task %s[%s] expired before it could run", request.name, request.id)
        else:
            logger.info("task %s[%s] %s: not run", request.name, request.id, reason)
        try:
            self._store_revoked(request, reason)
        except Exception:
            logger.exception("could not record the revoke of %s[%s]", request.name, request.id)
        finally:
            self._ack(request)
        if signals.task_revoked.receivers:
            signals.send(signals.task_revoked, request.task, request=request, terminated=False, signum=None,
                         expired=expired)
        if self.events is not None:
            self.events.send("task-revoked", uuid=request.id, terminated=False, signum=None, expired=expired)

    @staticmethod
    def _store_revoked(request: Request, reason: str) -> None:
        get_backend().store(request.info(), states.REVOKED, result=exception_to_meta(TaskRevokedError(reason)),
                            traceback=reason)

    def abandon(self, requests: list[Request]) -> None:
        """Cold shutdown: the tasks the stopped pool was running (acks_late ones return)."""
        if requests:
            logger.warning("cold shutdown: %d task(s) stopped while running", len(requests))
        orphans.abandon([request.info() for request in requests], self.hostname, events=self.events)


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""
