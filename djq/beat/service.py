"""The beat service: sync code-declared schedules, then tick until stopped.

``manage.py djq_beat`` runs it in the main thread; ``djq_worker -B`` runs it in a thread
of the worker (djq.beat.step). Between ticks it sleeps until the next run is due, but
never longer than the max tick (DJQ_BEAT_MAX_TICK, 5 s), which bounds how long an admin
edit waits to take effect. A thread beside the ticks checks every stored next run at
start and every minute after (djq.beat.probe.revalidate), for edits made with
``QuerySet.update()``. A database outage is logged and retried every max tick; it never
stops the service.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from django.db import DatabaseError, connections

from .. import __version__, orphans, signals
from ..conf import djq_settings
from ..exceptions import ConfigurationError
from ..messaging.producer import describe_broker
from ..worker import dbhygiene
from . import timing
from .probe import revalidate
from .scheduler import FULL_READ_EVERY, Scheduler
from .sync import sync

logger = logging.getLogger(__name__)
#: Shortest sleep between ticks, so a clock read a hair early cannot spin the loop.
MIN_SLEEP = 0.005
#: Share of the time the revalidating thread computes while it checks (it sleeps the rest),
#: so a long check leaves the interpreter to the ticks most of the time.
REVALIDATE_DUTY = 0.3


def default_name() -> str:
    return f"beat@{socket.gethostname()}:{os.getpid()}"


def check_max_tick(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"the beat max tick must be a positive number of seconds, got {value!r}")
    return float(value)


class Beat:
    def __init__(self, *, max_tick: float | None = None, using: str | None = None, name: str | None = None,
                 revalidate_every: float = FULL_READ_EVERY) -> None:
        self.revalidate_every = revalidate_every
        self.max_tick = check_max_tick(djq_settings.BEAT_MAX_TICK if max_tick is None else max_tick)
        self.name = name or default_name()
        self.scheduler = Scheduler(using=using, beat_name=self.name, revalidated_elsewhere=True)
        self._stopping = threading.Event()
        self._next_sweep = 0.0

    @property
    def using(self) -> str:
        return self.scheduler.using

    def setup(self) -> dict[str, str]:
        """Write the periodic tasks declared in code into the database (see djq.beat.sync)."""
        return sync(self.using)

    def banner(self) -> str:
        from ..models import PeriodicTask

        engine = connections[self.using].vendor
        enabled = PeriodicTask.objects.using(self.using).filter(enabled=True).count()
        how = ("claim and message commit together" if self.scheduler.one_transaction
               else "message published after the claim commits")
        return "\n".join([
            f"djq {__version__} beat {self.name}",
            f"  database:   {self.using!r} ({engine})",
            f"  broker:     {describe_broker(djq_settings.BROKER_URL)}: {how}",
            f"  max tick:   {self.max_tick:g}s",
            f"  periodic tasks enabled: {enabled}",
        ])

    def run(self) -> None:
        """Tick until ``stop()``; closes this thread's database connections at the end."""
        logger.info("beat %s ready (max tick %gs)", self.name, self.max_tick)
        signals.send(signals.beat_init, self)
        checker = threading.Thread(target=self._revalidate, name="djq-beat-revalidate", daemon=True)
        checker.start()
        try:
            while not self._stopping.is_set():
                self._stopping.wait(self.run_once())
        finally:
            self._stopping.set()
            checker.join(timeout=5)
            dbhygiene.close_all()
            logger.info("beat %s stopped", self.name)

    def _revalidate(self) -> None:
        """Check every stored next run now and every ``revalidate_every`` seconds after (djq.beat.probe),
        beside the ticks: edits made by ``QuerySet.update()`` take effect within that time."""
        try:
            while not self._stopping.is_set():
                started = time.perf_counter()
                try:
                    fixed = revalidate(self.using, stop=self._stopping, duty=REVALIDATE_DUTY)
                except DatabaseError as exc:
                    logger.warning("beat: could not check the stored next runs (%s); trying again later", exc)
                    dbhygiene.close_all()
                else:
                    if fixed:
                        self.scheduler.fixed_elsewhere = True
                    logger.debug("beat: checked every stored next run in %.1f s, %d fixed",
                                 time.perf_counter() - started, fixed)
                finally:
                    dbhygiene.clean_connections()
                self._stopping.wait(self.revalidate_every)
        finally:
            dbhygiene.close_all()

    def run_once(self) -> float:
        """One tick; returns the seconds to sleep before the next."""
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            upcoming = self.scheduler.tick()
        except DatabaseError as exc:
            logger.error("beat: database error (%s: %s); trying again in %gs", type(exc).__name__, exc, self.max_tick)
            dbhygiene.close_all()
            return self.max_tick
        except Exception:
            logger.exception("beat: tick failed; trying again in %gs", self.max_tick)
            return self.max_tick
        finally:
            dbhygiene.clean_connections()
        self._sweep_orphans()
        # The benchmark (bench/beat_scenario.py) reads this line for the cost of a tick.
        logger.debug("beat: tick took %.1f ms (%.1f ms CPU)", 1000 * (time.perf_counter() - started),
                     1000 * (time.thread_time() - cpu))
        if upcoming is None:
            return self.max_tick
        return min(max((upcoming - timing.now()).total_seconds(), MIN_SLEEP), self.max_tick)

    def _sweep_orphans(self) -> None:
        """Beat also notices lost workers (djq/orphans.py), once per heartbeat interval."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + float(djq_settings.WORKER_HEARTBEAT_INTERVAL)
        try:
            orphans.sweep()
        except Exception as exc:  # the database is away: the next tick looks again
            logger.warning("beat: could not look for tasks of lost workers: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
