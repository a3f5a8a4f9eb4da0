"""Deleting what has outlived its use: finished results past DJQ_RESULT_EXPIRES, their groups
and chords, and revokes past DJQ_REVOKES_EXPIRE.

Only finished rows go (SUCCESS, FAILURE, REVOKED, dated ``date_done``): a task that is
running, retrying or waiting keeps its row however old it is. Used by ``manage.py
djq_cleanup`` and by the built-in ``djq.cleanup`` task that beat runs.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from . import states
from .backends import database_alias
from .conf import djq_settings
from .exceptions import ConfigurationError

BATCH = 1000


def _seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(f"DJQ_{name} must be seconds (a number or timedelta) or None, got {value!r}")
    return float(value)


def _delete_in_batches(queryset: Any, key: str) -> int:
    """Delete in small batches so no long lock blocks workers storing results."""
    total = 0
    while True:
        ids = list(queryset.values_list(key, flat=True)[:BATCH])
        if not ids:
            return total
        total += queryset.model.objects.using(queryset.db).filter(**{f"{key}__in": ids}).delete()[0]


def cleanup(now: datetime | None = None, expires: float | None = None) -> dict[str, int]:
    """Delete expired rows; returns how many of each kind went."""
    from .models import ChordCounter, RevokedTask, SavedGroup, TaskResult

    now = now or timezone.now()
    alias = database_alias()
    removed = {"results": 0, "groups": 0, "chords": 0, "revokes": 0}
    keep = expires if expires is not None else _seconds("RESULT_EXPIRES", djq_settings.RESULT_EXPIRES)
    if keep is not None:
        cutoff = now - timedelta(seconds=keep)
        finished = TaskResult.objects.using(alias).filter(state__in=states.READY_STATES, date_done__lt=cutoff)
        removed["results"] = _delete_in_batches(finished, "task_id")
        removed["groups"] = _delete_in_batches(SavedGroup.objects.using(alias).filter(date_created__lt=cutoff),
                                               "group_id")
        removed["chords"] = _delete_in_batches(
            ChordCounter.objects.using(alias).filter(fired=True, date_created__lt=cutoff), "group_id")
    revokes = _seconds("REVOKES_EXPIRE", djq_settings.REVOKES_EXPIRE)
    if revokes is not None:
        old = RevokedTask.objects.using(alias).filter(date_revoked__lt=now - timedelta(seconds=revokes))
        removed["revokes"] = _delete_in_batches(old, "id")
    return removed
