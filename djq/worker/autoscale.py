"""Autoscaling: grow the pool while messages wait for a slot, shrink it after it idles."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..conf import djq_settings

logger = logging.getLogger(__name__)


class Autoscaler(threading.Thread):
    interval = 0.5

    def __init__(self, pool: Any, consumer: Any, maximum: int, minimum: int) -> None:
        super().__init__(name="djq-autoscale", daemon=True)
        self.pool = pool
        self.consumer = consumer
        self.maximum = maximum
        self.minimum = minimum
        self._stop_event = threading.Event()
        self._idle_since: float | None = None
        #: seconds without backlog and with idle slots before shrinking
        self.keepalive = float(djq_settings.WORKER_AUTOSCALE_KEEPALIVE)

    def stop(self) -> None:
        self._stop_event.set()

    def update(self, maximum: int, minimum: int) -> None:
        """New bounds (remote control's autoscale); the next step applies them."""
        self.maximum, self.minimum = maximum, minimum

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.step()
            except Exception:
                logger.exception("autoscale step failed")

    def step(self) -> None:
        size = self.pool.concurrency
        backlog = len(self.consumer.reserved)
        if backlog and size < self.maximum:
            grow = min(backlog, self.maximum - size)
            logger.info("autoscale: %d message(s) waiting, growing the pool %d -> %d", backlog, size, size + grow)
            self.pool.grow(grow)
            self._idle_since = None
            return
        spare = size - max(self.pool.active(), self.minimum)
        if backlog or spare <= 0:
            self._idle_since = None
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.keepalive:
            logger.info("autoscale: idle, shrinking the pool %d -> %d", size, size - spare)
            self.pool.shrink(spare)
            self._idle_since = None
