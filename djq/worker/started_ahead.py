"""The consumer's STARTED rows stored ahead: an early-ack task's STARTED stored beside its ack.

``StartedAhead`` is the part of ``Dispatch`` (djq/worker/dispatch.py) that stores the
STARTED rows of the early-ack requests about to start while the broker takes their acks
(on djq:// in the ack's own statement, elsewhere through the result writer), and says
who waits for them before the body runs: the consumer, a threads slot
(``TaskCall.started_wait``), or the prefork pool, which holds the job until they are
stored (``until_started``; the consumer's turn lets a late one go at its deadline).
Only the consumer thread calls its methods.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from django.utils import timezone

from .. import states
from ..backends import current_writer
from ..conf import djq_settings
from .link import BrokerLink
from .request import Request, TaskCall

logger = logging.getLogger(__name__)
#: seconds a task waits for the STARTED row the consumer stored ahead (in the consumer, a
#: threads slot, or held in the prefork pool); the trace stores one not stored by then
STARTED_AHEAD_WAIT = 5.0


class StartedAhead(BrokerLink):
    pool: Any
    #: (deadline, let go) of prefork jobs held until their STARTED is stored
    _held: deque[tuple[float, Callable[[], None]]]

    def _start_ahead(self, early: list[Request]) -> dict[int, Callable[[float], bool]]:
        """Store the STARTED of early-ack requests beside their acks, so that the pool's
        trace skips it: one round trip on the task's path instead of two.

        On djq:// with results on the broker's database, with the ack itself
        (``_start_with_acks``), on every pool. On Redis and AMQP, queued with the result
        writer before the acks go out, so the database stores them while the broker
        takes the acks (an AMQP ack has no answer: there the wait is the database's);
        only for pools that say they can, with a writer running. prefork: otherwise each
        child stores its task's STARTED on its own connection, one statement per task,
        where the writer stores the STARTED rows of a batch in one. threads: the STARTED
        round trip overlaps the ack's and the hand-over to the slot, which waits for it
        (``waits_started_in_slot``), so the consumer goes on at once."""
        writer = current_writer()
        if writer is None or not djq_settings.TASK_TRACK_STARTED:
            return {}
        if self._stores_with_acks(writer):
            return self._start_with_acks(early, writer)
        batched = hasattr(self.channel, "take_and_deliver") or getattr(self.channel, "batch_acks", False)
        if not (self.pool.stores_started_ahead and batched):
            return {}
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

    def _waits_elsewhere(self) -> bool:
        """Whether a threads slot or the prefork pool waits for the STARTED rows stored
        ahead (``_started_wait_for``), not the consumer; djq:// with the acks
        (``_start_with_acks``) knows at once: no wait to hand over."""
        return ((self.pool.waits_started_in_slot or self.pool.holds_jobs)
                and not self._stores_with_acks(current_writer()))

    def _started_wait_for(self, request: Request, call: TaskCall) -> dict[str, Any]:
        """The wait for ``request``'s STARTED, as it crosses into the pool: in ``call``
        for a threads slot, or the ``hold`` of a prefork job (with its deadline here)."""
        if request.started_wait is None:
            return {}
        if not self.pool.holds_jobs:
            call.started_wait = functools.partial(request.started_wait, STARTED_AHEAD_WAIT)
            return {}
        hold, let_go = until_started(call, request.started_wait)
        self._held.append((time.monotonic() + STARTED_AHEAD_WAIT, let_go))
        return {"hold": hold}

    def _release_overdue(self) -> None:
        """Held prefork jobs whose STARTED the writer has not stored in time go to a child
        anyway, which stores it itself (a job already let go is not sent twice)."""
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            self._held.popleft()[1]()


def until_started(call: TaskCall, wait: Callable[[float], bool]
                   ) -> tuple[Callable[[Callable[[Any], None]], None], Callable[[], None]]:
    """(``hold``, let go) of a job whose STARTED the writer is storing (prefork): the pool
    lets it go to a child once the writer has stored what it had, the consumer going on
    meanwhile, or when the consumer lets it go at its deadline, whichever comes first.
    One whose STARTED is not stored by then goes with ``started_stored`` off, so the
    child stores it."""
    call.started_stored = True
    once = threading.Lock()
    releases: list[Callable[[Any], None]] = []

    def let_go() -> None:
        if not releases or not once.acquire(blocking=False):
            return
        if wait(0.0):
            releases[0](None)
        else:
            call.started_stored = False
            releases[0](call)

    def hold(release: Callable[[Any], None]) -> None:
        releases.append(release)
        writer = current_writer()
        if writer is None:
            let_go()
        else:
            writer.after(let_go)

    return hold, let_go


def _stored_with_acks(channel: Any, task_id: str) -> Callable[[float], bool]:
    """Whether the last flush of ``channel``'s acks stored ``task_id``'s STARTED (the
    statement has returned by the time this is asked: no wait)."""
    def stored(timeout: float) -> bool:
        return task_id in channel.started

    return stored
