"""The consumer's STARTED rows stored ahead: an early-ack task's STARTED stored before its ack.

``StartedAhead`` is the part of ``Dispatch`` (djq/worker/dispatch.py) that stores the
STARTED rows of the early-ack requests about to start, so that no broker ever holds the
ack of a task whose row still says PENDING: a worker killed between the two would leave
a task that never runs and that nothing finds (the lost-worker sweep ends what is stored
as running). On djq:// with results on the broker's database the row goes in the ack's
own statement; elsewhere the result writer stores the rows first, and the requests wait
here (``_awaiting``, the consumer going on meanwhile) until it has answered; only then
are they acked, and they run as the acks are taken. Their traces skip STARTED.
Only the consumer thread calls its methods.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from django.utils import timezone

from .. import states
from ..backends import current_writer
from ..conf import djq_settings
from .link import BrokerLink
from .request import Request

logger = logging.getLogger(__name__)
#: seconds requests wait for the writer to store their STARTED rows before they are acked
#: anyway (the trace then stores STARTED itself)
STARTED_AHEAD_WAIT = 5.0


@dataclass(eq=False)
class Awaiting:
    """Early-ack requests whose STARTED rows the writer is storing, not yet acked."""
    requests: list[Request]
    waits: dict[int, Callable[[float], bool]]
    deadline: float
    #: set from the writer's thread once it has answered for every one of these rows
    answered: threading.Event = field(default_factory=threading.Event)


class StartedAhead(BrokerLink):
    pool: Any
    _awaiting: deque[Awaiting]
    _done_event: threading.Event

    def _start_ahead(self, early: list[Request]) -> dict[int, Callable[[float], bool]]:
        """Store the STARTED of early-ack requests ahead of their acks, so that the pool's
        trace skips it; returns each one's wait (keyed by ``id(request)``).

        On djq:// with results on the broker's database, with the ack itself
        (``_start_with_acks``): known at once. Elsewhere queued with the result writer;
        the caller acks those requests only once it has answered (``_await_started``)."""
        writer = current_writer()
        if writer is None or not djq_settings.TASK_TRACK_STARTED:
            return {}
        if self._stores_with_acks(writer):
            return self._start_with_acks(early, writer)
        started: dict[int, Callable[[float], bool]] = {}
        now = timezone.now()
        for request in early:
            if request.ignore_result:
                continue
            try:
                wait = writer.begin(request.info(), states.STARTED, date_started=now)
            except Exception:  # cannot be stored from here: the trace stores it as it would
                continue
            if wait is None:
                break
            started[id(request)] = wait
        return started

    def _await_started(self, requests: list[Request], waits: dict[int, Callable[[float], bool]]) -> None:
        """Keep ``requests`` unacked until the writer has answered for their STARTED rows;
        its answer wakes the consumer, whose turn acks them (``_stored_first``)."""
        awaiting = Awaiting(requests, waits, time.monotonic() + STARTED_AHEAD_WAIT)
        self._awaiting.append(awaiting)

        def answered() -> None:  # in the writer's thread
            awaiting.answered.set()
            self._done_event.set()
            self.wake()

        writer = current_writer()
        if writer is None:
            answered()
        else:
            writer.after(answered)

    def _awaiting_count(self) -> int:
        return sum(len(awaiting.requests) for awaiting in self._awaiting)

    def _stored_first(self) -> tuple[list[Request], dict[int, Callable[[float], bool]]]:
        """The awaiting requests the writer has answered for, or that waited
        ``STARTED_AHEAD_WAIT``, in the order they came, with their STARTED waits (each
        answers at once now: True when its row was stored)."""
        ready: list[Request] = []
        waits: dict[int, Callable[[float], bool]] = {}
        while self._awaiting:
            awaiting = self._awaiting[0]
            if not awaiting.answered.is_set() and time.monotonic() < awaiting.deadline:
                break
            self._awaiting.popleft()
            for request in awaiting.requests:
                if not awaiting.waits[id(request)](0.0):
                    logger.warning("task %s[%s]: its STARTED was not stored ahead; it runs and stores it itself",
                                   request.name, request.id)
            ready.extend(awaiting.requests)
            waits.update(awaiting.waits)
        return ready, waits

    def _stores_with_acks(self, writer: Any) -> bool:
        together = getattr(self.channel, "stores_results_with_acks", None)
        return writer is not None and together is not None and together(getattr(writer.backend, "alias", None))

    def _start_with_acks(self, early: list[Request], writer: Any) -> dict[int, Callable[[float], bool]]:
        """djq:// with results on the broker's database: the STARTED rows of early-ack
        requests are stored with the delete (ack) of their messages, in one statement on
        PostgreSQL and one transaction on SQLite, each only if its message was deleted:
        no round trip of its own, on any pool."""
        now = timezone.now()
        pairs: list[tuple[int, dict[str, Any]]] = []
        started: dict[int, Callable[[float], bool]] = {}
        channel = self.channel
        ids: set[str] = set()
        for request in early:
            # one row per task in a statement (two messages may share an id): the others'
            # traces store theirs
            if request.ignore_result or request.id in ids:
                continue
            try:
                row = writer.backend.build_row(request.info(), states.STARTED, date_started=now)
            except Exception:  # cannot be stored from here: the trace stores it as it would
                continue
            ids.add(request.id)
            pairs.append((request.message.delivery_tag, row))
            started[id(request)] = _stored_with_acks(channel, request.id)
        channel.start_with_acks(pairs)
        return started

    def _unstart(self, request: Request) -> None:
        """A request whose ack failed does not run here: its STARTED, stored ahead, goes
        back to PENDING (same delivery, so it supersedes it; the broker's redelivery is a
        later delivery and supersedes both)."""
        writer = current_writer()
        if writer is None:
            return
        try:
            writer.put(request.info(), states.PENDING)
        except Exception as exc:
            logger.warning("task %s[%s]: could not put its STARTED back to PENDING: %s", request.name, request.id, exc)


def _stored_with_acks(channel: Any, task_id: str) -> Callable[[float], bool]:
    """Whether the last flush of ``channel``'s acks stored ``task_id``'s STARTED (the
    statement has returned by the time this is asked: no wait)."""
    def stored(timeout: float) -> bool:
        return task_id in channel.started

    return stored
