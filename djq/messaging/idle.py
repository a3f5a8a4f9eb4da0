"""How a ``djq://`` consumer waits between claims (``Transport``'s half that decides when).

A claim is a round trip, so an idle consumer claims only when something says it may
find a message: a NOTIFY on PostgreSQL, a changed ``PRAGMA data_version`` on SQLite,
the next eta or the fallback ``claim_interval`` (the planned claim), our own connection
making messages visible (``claim_soon``), or the caller having freed capacity, unless
the last claim took all there was (``Channel.drained``). Meanwhile it blocks on the
waker (a finished task) and the LISTEN connection (djq/messaging/wakeup.py).
"""
from __future__ import annotations

import socket
import time
from queue import Empty
from typing import Any

from .store import PUT_COUNTS, SqliteWatch, Store
from .wakeup import Listener, Waker, wait


class IdleWaits:
    """Mixed into the djq:// ``Transport``."""

    alias: str
    channels: list[Any]
    cycle: Any
    polling_interval: float
    claim_interval: float
    use_notify: bool
    _waker: Waker | None
    _listener: Listener | None
    _listener_checked: bool
    _next_claim_at: float
    _sqlite_watch: SqliteWatch | None
    #: ``PUT_COUNTS`` for this alias at the last claim
    _puts_seen: int = 0
    _deliver: Any  # kombu's virtual.Transport's

    def wake(self) -> None:
        """Make a blocked ``drain_events`` return now (the worker has work to hand back)."""
        self.waker().wake()

    def waker(self) -> Waker:
        if self._waker is None:
            self._waker = Waker()
        return self._waker

    def listener(self) -> Listener | None:
        if not self._listener_checked:
            self._listener_checked = True
            if self.use_notify and Listener.supported(self.alias):
                self._listener = Listener(self.alias)
        return self._listener

    def claim_soon(self) -> None:
        """Our own connection made messages visible; no notification or data_version says so."""
        self._next_claim_at = 0.0
        self._undrain()

    def _undrain(self) -> None:
        for channel in self.channels:
            channel.drained = False

    def _drained(self) -> bool:
        """Every consuming channel's last claim took all there was, and this process put
        no message since (which SQLite's data_version would not show its own connection)."""
        consuming = [channel for channel in self.channels if getattr(channel, "_consumers", None)]
        if PUT_COUNTS.get(self.alias, 0) != self._puts_seen:
            return False
        return bool(consuming) and all(channel.drained for channel in consuming)

    def _active_queues(self) -> list[str]:
        queues = [q for channel in self.channels for q in getattr(channel, "_active_queues", [])]
        return list(dict.fromkeys(queues))

    def _after_empty_claim(self) -> None:
        """Plan the next claim that no notification will prompt: the next eta, or a fallback."""
        now = time.time()
        queues = self._active_queues()
        next_visible = Store(self.alias).next_visible(queues) if queues else None
        self._next_claim_at = now + self.claim_interval
        if next_visible is not None:
            self._next_claim_at = min(self._next_claim_at, next_visible)

    def _idle_wait(self) -> float:
        """How long to block before looking again."""
        listener = self.listener()
        if listener is not None and listener.fileno() is not None:
            return max(self._next_claim_at - time.time(), 0.0)
        return self.polling_interval

    def _worth_claiming(self) -> bool:
        listener = self._listener
        if listener is not None and listener.conn is not None:
            # woken by NOTIFY, or the planned claim is due (not a caller's deadline)
            return listener.take_notified() or time.time() >= self._next_claim_at
        if time.time() >= self._next_claim_at:
            return True
        if self._sqlite_watch is not None:
            return self._sqlite_watch.changed()
        return True

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        cycle: Any = self.cycle
        # the caller may have freed capacity: look once, unless the last claim took all
        # there was (then a notification, the data_version or the planned claim says
        # when; a notification read during a wait the waker ended counts now)
        listener = self._listener
        claim = not self._drained() or (listener is not None and listener.take_notified())
        while True:
            if claim:
                self._puts_seen = PUT_COUNTS.get(self.alias, 0)
                if listener is not None:  # what they announce was committed: this claim sees it
                    listener.drain(mark=False)
                try:
                    cycle.get(self._deliver, timeout=timeout)
                    return
                except Empty:
                    self._after_empty_claim()
                if deadline is not None and time.monotonic() >= deadline:
                    raise socket.timeout()
            pause = self._idle_wait()
            if deadline is not None:
                pause = min(pause, max(deadline - time.monotonic(), 0.0))
            if wait(self.waker(), self._listener, pause):
                raise socket.timeout()
            claim = self._worth_claiming()
            # at the deadline, one last claim if one is worth it: a caller whose timeout is
            # shorter than the polling interval (a side channel) must still get its messages
            if deadline is not None and time.monotonic() >= deadline and not claim:
                raise socket.timeout()
