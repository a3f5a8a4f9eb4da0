"""How an idle ``djq://`` consumer waits: a self-pipe, plus LISTEN/NOTIFY on PostgreSQL.

The consumer blocks in ``select()`` on two things: a pipe that the worker writes to when
it has work to hand back (a task finished), and, on PostgreSQL with psycopg 3, a
dedicated connection that LISTENs on the broker's channel. A publish sends NOTIFY in the
same statement as its INSERT, so the notification is delivered at commit. That matches
transactional enqueue: a rolled-back task wakes nobody. If the listening connection
breaks, waiting falls back to polling until it can be opened again.
"""
from __future__ import annotations

import logging
import os
import select
import sys
import time
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "djq_messages"
RETRY_LISTEN_AFTER = 5.0


def _unpatched_os() -> Any:
    """eventlet's green os.read/os.write wait on EAGAIN; a self-pipe needs the real ones."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("os"):
        return patcher.original("os")
    return os


class Waker:
    """A self-pipe: ``wake()`` from any thread makes ``wait()`` return."""

    def __init__(self) -> None:
        self._os = _unpatched_os()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        try:
            self._os.write(self._write, b"x")
        except BlockingIOError:  # the pipe is full: a wake-up is already pending
            pass

    def clear(self) -> None:
        try:
            while self._os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


class Listener:
    """A LISTENing psycopg 3 connection on the broker's database alias (PostgreSQL only)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.conn: Any = None
        self._failed_at = 0.0
        #: a notification came since the consumer last looked (``take_notified``)
        self.notified = False

    @staticmethod
    def supported(alias: str) -> bool:
        if connections[alias].vendor != "postgresql":
            return False
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return False
        return True

    def fileno(self) -> int | None:
        if self.conn is None and time.monotonic() - self._failed_at > RETRY_LISTEN_AFTER:
            self._open()
        return None if self.conn is None else int(self.conn.fileno())

    def _open(self) -> None:
        wrapper = connections[self.alias]
        try:
            conn = wrapper.get_new_connection(wrapper.get_connection_params())
            conn.autocommit = True
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.conn = conn
        except Exception as exc:
            self._failed_at = time.monotonic()
            logger.warning("djq broker: cannot LISTEN on %r (%s); polling instead", self.alias, exc)

    def drain(self, *, mark: bool = True) -> None:
        """Consume pending notifications (their content does not matter: we claim next);
        ``mark``: remember that some came (``take_notified``), else forget any that did."""
        if self.conn is None:
            return
        self.notified = mark  # readable: a notification, or the connection's end
        try:
            for _ in self.conn.notifies(timeout=0):
                pass
        except Exception as exc:
            logger.warning("djq broker: lost the LISTEN connection (%s); polling until it is back", exc)
            self.close()
            self._failed_at = time.monotonic()

    def take_notified(self) -> bool:
        """Whether a notification came since the last call."""
        notified, self.notified = self.notified, False
        return notified

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a broken connection is best effort
                pass
            self.conn = None


def wait(waker: Waker, listener: Listener | None, timeout: float) -> bool:
    """Block until woken (True), notified or timed out (False)."""
    fds: list[int] = [waker.fileno()]
    listen_fd = listener.fileno() if listener is not None else None
    if listen_fd is not None:
        fds.append(listen_fd)
    try:
        ready, _, _ = select.select(fds, [], [], max(timeout, 0.0))
    except (OSError, ValueError):
        time.sleep(min(timeout, 0.05))
        return False
    if listener is not None and listen_fd in ready:
        listener.drain()
    if waker.fileno() in ready:
        waker.clear()
        return True
    return False
