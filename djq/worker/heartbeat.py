"""The worker's heartbeat: its ``WorkerState`` row, refreshed every few seconds.

Each beat writes the counts the admin shows (processed, failed, active) and moves
``offline_after`` two intervals ahead; a worker killed without warning therefore shows
offline once two beats are missed. A warm shutdown marks the row stopped at once. With
events on, each beat is also a ``worker-heartbeat`` event.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.utils import timezone

from .. import __version__, orphans

if TYPE_CHECKING:
    from ..messaging.events import EventDispatcher
    from .consumer import Consumer
    from .naming import Holder

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, consumer: Consumer, interval: float, events: EventDispatcher | None = None, *,
                 started: datetime | None = None, previous: Holder | None = None) -> None:
        super().__init__(name="djq-heartbeat", daemon=True)
        self.consumer = consumer
        self.interval = interval
        self.events = events
        self.started = started or timezone.now()
        self.previous = previous  # the dead run this worker took its name over from
        self._stop_event = threading.Event()

    def counts(self) -> dict[str, int]:
        stats = self.consumer.stats
        return {"processed": stats["succeeded"] + stats["failed"], "failed": stats["failed"],
                "active": len(self.consumer.active)}

    def beat(self) -> None:
        from ..models import WorkerState

        now = timezone.now()
        pool = self.consumer.pool
        fields: dict[str, Any] = {
            "pid": os.getpid(), "pool": pool.name, "concurrency": pool.concurrency,
            "queues": list(self.consumer.queue_names), "version": __version__,
            "last_heartbeat": now, "heartbeat_interval": self.interval,
            "offline_after": now + timedelta(seconds=2 * self.interval), "stopped": None,
            "machine": orphans.machine(), **self.counts(),
        }
        updated = WorkerState.objects.filter(hostname=self.consumer.hostname, started=self.started).update(**fields)
        if not updated:  # first beat of this run (or the row was deleted in the admin)
            WorkerState.objects.update_or_create(hostname=self.consumer.hostname,
                                                 defaults={**fields, "started": self.started})
        if self.events is not None:
            self._send("worker-heartbeat")

    def _send(self, type_: str) -> None:
        events = self.events
        if events is None:
            return
        counts = self.counts()
        loadavg = list(os.getloadavg()) if hasattr(os, "getloadavg") else []
        events.send(type_, freq=self.interval, sw_ident="djq", sw_ver=__version__, sw_sys=os.uname().sysname,
                           active=counts["active"], processed=counts["processed"], loadavg=loadavg)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._safe_beat()
            self._safe_sweep()
        connections.close_all()

    def _safe_sweep(self) -> None:
        """Resolve what lost workers left running (any worker may be the first to notice)."""
        try:
            orphans.sweep(self.events, alive=self.consumer.hostname)
        except Exception as exc:  # the database is away: the next beat looks again
            logger.warning("could not look for tasks of lost workers: %s", exc)

    def _safe_beat(self) -> None:
        try:
            self.beat()
        except Exception as exc:  # the database is away: the next beat tries again
            logger.warning("heartbeat of %s failed: %s", self.consumer.hostname, exc)

    def start(self) -> None:
        try:
            orphans.before_start(self.consumer.hostname, self.started, self.previous, self.events)
        except Exception as exc:
            logger.warning("could not look for tasks a previous %s left running: %s", self.consumer.hostname, exc)
        self._safe_beat()  # the row exists as soon as the worker is up
        if self.events is not None:
            self._send("worker-online")
        super().start()

    def stop(self, *, wait: bool = True) -> None:
        """Stop beating and mark the worker offline now (``wait=False``: cold shutdown)."""
        from ..models import WorkerState

        self._stop_event.set()
        if wait:
            self.join(timeout=self.interval + 5)
        try:
            WorkerState.objects.filter(hostname=self.consumer.hostname, pid=os.getpid()).update(
                stopped=timezone.now(), offline_after=timezone.now(), **self.counts())
        except Exception as exc:
            logger.warning("could not mark %s offline: %s", self.consumer.hostname, exc)
        if self.events is not None:
            self._send("worker-offline")
