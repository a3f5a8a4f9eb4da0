"""``LeaseKeeper``: the ``djq://`` messages a process holds stay invisible to others while it lives."""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

from django.db import InterfaceError, OperationalError

from .store import Store

logger = logging.getLogger(__name__)


class LeaseKeeper(threading.Thread):
    """Keeps extending the visibility of messages this process holds, from its own thread.

    A message held by a live consumer (reserved, or running with acks_late) is never
    redelivered however long its task runs, even when the pool blocks the consumer
    thread (solo). Uses its own Django connection, as every thread does.
    """

    def __init__(self, alias: str, visibility_timeout: float) -> None:
        super().__init__(name="djq-lease-keeper", daemon=True)
        self.alias = alias
        self.visibility_timeout = visibility_timeout
        self.interval = max(visibility_timeout / 4.0, 0.05)
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def hold(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._held.update(ids)

    def release(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._held.difference_update(ids)

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        store = Store(self.alias)
        try:
            while not self._stop_event.wait(self.interval):
                with self._lock:
                    held = list(self._held)
                if not held:
                    continue
                try:
                    for start in range(0, len(held), 500):
                        store.set_visible(held[start:start + 500], time.time() + self.visibility_timeout)
                except (OperationalError, InterfaceError) as exc:
                    logger.warning("djq broker: could not extend message leases: %s", exc)
                    store.connection.close()
        finally:
            store.connection.close()
