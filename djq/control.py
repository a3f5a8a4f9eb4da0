"""Revoking tasks: ``djq.revoke(ids)`` and ``AsyncResult.revoke()``.

A revoke is a row in the database (``RevokedTask``), so every worker, including one
started later, honours it: a worker loads the revokes when it starts and looks for new
ones every DJQ_WORKER_REVOKE_REFRESH seconds (one small query, never one per task). A
revoked task that has not started never runs and ends REVOKED; with ``terminate=True``
a running task is stopped with ``signal`` on the prefork pool (other pools cannot stop a
running thread or greenlet: the task runs to its end and its outcome is kept).
"""
from __future__ import annotations

import signal as signals
from typing import Iterable

from django.db import IntegrityError, transaction

from .exceptions import TaskOptionError


def signal_number(name: str | int) -> int:
    """``"SIGTERM"``/``"TERM"``/15 -> 15; anything else is a TaskOptionError."""
    if isinstance(name, int) and not isinstance(name, bool):
        return int(signals.Signals(name))
    text = str(name).upper()
    try:
        return int(signals.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise TaskOptionError(f"unknown signal {name!r} (use a name such as 'SIGTERM' or 'SIGKILL')") from None


def revoke(task_ids: str | Iterable[str], *, terminate: bool = False, signal: str | int = "SIGTERM") -> None:
    """Revoke tasks by id: they will not start; ``terminate`` also stops them if running (prefork)."""
    from .backends import database_alias
    from .models import RevokedTask

    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    if not all(isinstance(task_id, str) and task_id for task_id in ids):
        raise TaskOptionError(f"revoke() needs task ids (strings), got {ids!r}")
    name = signals.Signals(signal_number(signal)).name
    alias = database_alias()
    for task_id in ids:
        try:
            with transaction.atomic(using=alias):
                RevokedTask.objects.using(alias).create(task_id=task_id, terminate=terminate, signal=name)
        except IntegrityError:  # revoked before: a later terminate request still counts, as a new row
            if terminate:  # (new, so workers looking for recent revokes see it)
                with transaction.atomic(using=alias):
                    RevokedTask.objects.using(alias).filter(task_id=task_id).delete()
                    RevokedTask.objects.using(alias).create(task_id=task_id, terminate=True, signal=name)
