"""Tasks a lost worker left running: resolved once, by whoever notices first.

A worker is lost when its heartbeats stopped for two intervals (its ``WorkerState`` row's
``offline_after`` has passed), when a worker of the same name starts again on the same
machine and finds the old process gone, or when it stops with a cold shutdown. Its tasks
still stored as running (STARTED, RECEIVED or a custom state such as PROGRESS):

- acked early: the broker will not deliver them again, so they become FAILURE with a
  ``WorkerLostError`` naming the worker and when it was last seen;
- acked late: the broker delivers them again, so they are left to that delivery, and
  the row says so in its traceback field.

Every worker's heartbeat and every beat tick call ``sweep`` (one indexed query when no
worker is newly lost). Each lost worker is claimed with a conditional update of its row,
and each task with a conditional update of its result, so two processes that notice the
same loss at once resolve it once. A task that finished meanwhile keeps its state.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timezone as dt_timezone
from typing import TYPE_CHECKING

from django.db.models import F, Q
from django.utils import timezone

from . import states
from .backends import get_backend
from .backends.base import TaskInfo, exception_to_meta
from .exceptions import WorkerLostError

if TYPE_CHECKING:
    from .messaging.events import EventDispatcher
    from .worker.naming import Holder

logger = logging.getLogger(__name__)


def machine() -> str:
    """This machine's name, as the heartbeat records it beside the worker's pid."""
    return socket.gethostname()


def lost_error(hostname: str, last_seen: datetime | None, how: str = "was lost") -> WorkerLostError:
    seen = f" (last seen {last_seen.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M:%S} UTC)" if last_seen else ""
    return WorkerLostError(f"worker {hostname} {how}{seen} while it ran this task")


def redelivery_note(hostname: str, last_seen: datetime | None, how: str = "was lost") -> str:
    return f"{lost_error(hostname, last_seen, how)}; it is acked late, so the broker delivers it again"


def resolve(hostname: str, last_seen: datetime | None, started_before: datetime, *,
            events: EventDispatcher | None = None, how: str = "was lost") -> int:
    """Resolve the running tasks of ``hostname`` that started before ``started_before``.

    Returns how many became FAILURE here."""
    backend = get_backend()
    try:
        running = backend.running_on(hostname, started_before)
    except NotImplementedError as exc:
        logger.debug("%s", exc)
        return 0
    failed = 0
    for task_id, task_name, acks_late in running:
        if acks_late:
            backend.note_lost(task_id, hostname, started_before, redelivery_note(hostname, last_seen, how))
            continue
        error = lost_error(hostname, last_seen, how)
        text = f"WorkerLostError: {error}"
        if backend.mark_lost(task_id, hostname, started_before, result=exception_to_meta(error), traceback=text):
            failed += 1
            logger.error("task %s[%s] failed: %s", task_name, task_id, error)
            if events is not None:
                events.send("task-failed", uuid=task_id, exception=str(error), traceback=text, runtime=0.0)
    return failed


def _unchecked() -> Q:
    return Q(orphans_checked__isnull=True) | Q(orphans_checked__lt=F("offline_after"))


def sweep(events: EventDispatcher | None = None, *, alive: str | None = None) -> int:
    """Resolve the tasks of every worker that went offline since anyone last looked.

    ``alive``: the name of the worker that sweeps, never lost to itself. Its heartbeat
    computes ``offline_after`` before its write, and a write that waited on the database
    longer than two intervals stores a moment already past (the sweep that followed
    ended the worker's own running tasks FAILURE while they ran)."""
    from .models import WorkerState

    now = timezone.now()
    lost = WorkerState.objects.filter(_unchecked(), offline_after__lt=now)
    if alive is not None:
        lost = lost.exclude(hostname=alive)
    failed = 0
    for pk, hostname, last_seen, offline_after in lost.values_list("pk", "hostname", "last_heartbeat",
                                                                  "offline_after"):
        mine = WorkerState.objects.filter(_unchecked(), pk=pk, offline_after=offline_after).update(orphans_checked=now)
        if mine:
            failed += resolve(hostname, last_seen, offline_after, events=events)
    return failed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def before_start(hostname: str, started: datetime, previous: Holder | None,
                 events: EventDispatcher | None = None) -> None:
    """A worker that took ``hostname`` over from a previous run proven gone
    (djq/worker/naming.py): resolve what that run left running. A warm-stopped run
    left nothing; one killed a moment ago, before its heartbeats lapsed, may have."""
    from .models import WorkerState

    if previous is None or previous.stopped is not None:
        return
    WorkerState.objects.filter(hostname=hostname).update(orphans_checked=timezone.now())
    resolve(hostname, previous.last_heartbeat, started, events=events)


def abandon(infos: list[TaskInfo], hostname: str, *, events: EventDispatcher | None = None) -> None:
    """Cold shutdown: record the tasks this worker stops in the middle."""
    backend = get_backend()
    now = timezone.now()
    how = "stopped with a cold shutdown"
    for info in infos:
        if info.acks_late:
            backend.note_lost(info.task_id, hostname, now, redelivery_note(hostname, now, how))
            continue
        error = lost_error(hostname, now, how)
        text = f"WorkerLostError: {error}"
        if backend.store(info, states.FAILURE, result=exception_to_meta(error), traceback=text):
            logger.error("task %s[%s] failed: %s", info.task_name, info.task_id, error)
            if events is not None:
                events.send("task-failed", uuid=info.task_id, exception=str(error), traceback=text, runtime=0.0)
