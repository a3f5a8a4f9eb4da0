"""A worker's name: claimed in the database at start, never shared with a live worker.

Remote control addresses a worker by name (its queue is ``djq.control.<name>``) and the
``WorkerState`` row is keyed by it, so two live processes of one name would answer
control for each other, and the first to stop would delete the queue the other still
listens on. The name is therefore claimed before anything else starts:

- no row of that name: this worker inserts it (the unique hostname makes a race lose);
- a row whose worker is proven gone (stopped warm, offline past its heartbeats, or on
  this machine with its pid no longer running): this worker takes it over with a
  conditional update on the old pid and start time, and the previous run's tasks are
  resolved (djq/orphans.py);
- a row whose worker is alive: without ``-n`` the next default name is tried
  (``djq@host``, ``djq-2@host``, ...), so every worker started on a host without a name
  gets its own; with ``-n`` the worker refuses to start with one line naming the holder.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..exceptions import ConfigurationError
from ..orphans import pid_alive, machine

#: Default names tried on one host before giving up (djq@host, djq-2@host, ...).
MAX_DEFAULT_NAMES = 64


class WorkerNameTaken(ConfigurationError):
    """A live worker already holds the name this worker was given with ``-n``."""


def default_names() -> list[str]:
    host = socket.gethostname()
    return [f"djq@{host}"] + [f"djq-{n}@{host}" for n in range(2, MAX_DEFAULT_NAMES + 1)]


@dataclass(frozen=True)
class Holder:
    """The previous holder of a name, as its ``WorkerState`` row records it."""

    pid: int
    machine: str
    started: datetime
    last_heartbeat: datetime
    offline_after: datetime
    stopped: datetime | None

    @property
    def online(self) -> bool:
        return self.stopped is None and self.offline_after > timezone.now()

    def alive(self) -> bool:
        """Online, and not proven dead: on another machine its pid cannot be checked."""
        return self.online and (self.machine != machine() or pid_alive(self.pid))

    def describe(self) -> str:
        seen = max(0.0, (timezone.now() - self.last_heartbeat).total_seconds())
        return f"pid {self.pid} on {self.machine or '?'}, last heartbeat {seen:.0f} s ago"


FIELDS = ("pid", "machine", "started", "last_heartbeat", "offline_after", "stopped")


def claim(hostname: str, started: datetime, interval: float) -> tuple[bool, Holder | None]:
    """Try to take ``hostname`` for this process: (taken, previous holder). Not taken
    means a live worker holds it (returned as the holder)."""
    from ..models import WorkerState

    now = timezone.now()
    mine = {"pid": os.getpid(), "machine": machine(), "started": started, "last_heartbeat": now,
            "offline_after": now + timedelta(seconds=2 * interval), "stopped": None}
    for _ in range(5):  # a race lost to another starting worker reads the row again
        row = WorkerState.objects.filter(hostname=hostname).values(*FIELDS).first()
        if row is None:
            try:
                with transaction.atomic(using=WorkerState.objects.db):
                    WorkerState.objects.create(hostname=hostname, **mine)
            except IntegrityError:
                continue
            return True, None
        holder = Holder(**row)
        if holder.alive():
            return False, holder
        if WorkerState.objects.filter(hostname=hostname, pid=holder.pid, started=holder.started).update(**mine):
            return True, holder
    raise WorkerNameTaken(f"worker name {hostname} is contended by several starting workers; "
                          "give each its own with -n NAME@%h")


def claim_name(given: str | None, expanded: str, started: datetime, interval: float) -> tuple[str, Holder | None]:
    """The name this worker runs under, claimed, and the previous (dead) holder if any.

    ``given`` is what ``-n`` said (None: the default names are tried in turn)."""
    candidates = [expanded] if given else default_names()
    for name in candidates:
        taken, holder = claim(name, started, interval)
        if taken:
            return name, holder
        if given:
            raise WorkerNameTaken(
                f"worker name {name} is held by a live worker ({holder.describe() if holder else '?'}); "
                "stop that worker, "
                f"or give this one its own name, e.g. -n worker2@%h"
            )
    raise WorkerNameTaken(f"the {len(candidates)} default worker names on this host are all held by live "
                          "workers; name this one with -n NAME@%h")
