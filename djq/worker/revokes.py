"""The worker's view of revoked tasks: a set of ids kept fresh from the ``RevokedTask`` table.

Checking a task is a set lookup. The table is read in full (within DJQ_REVOKES_EXPIRE)
at start-up, then every DJQ_WORKER_REVOKE_REFRESH seconds only the rows revoked since
the last look (with a few seconds of overlap, for rows committed late). ``add()`` is the
seam for a pushed revoke (remote control): it marks an id without waiting for the table.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.utils import timezone

from ..backends import database_alias
from ..conf import djq_settings

logger = logging.getLogger(__name__)
OVERLAP = timedelta(seconds=10)


class Revokes:
    def __init__(self) -> None:
        self.ids: set[str] = set()
        #: task id -> signal name, for revokes that ask to stop a running task
        self.terminate: dict[str, str] = {}
        self._since: datetime | None = None
        self._next = 0.0

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.ids

    def add(self, task_id: str, terminate: bool = False, signal: str = "SIGTERM") -> bool:
        """Mark ``task_id`` revoked; True when this is news (a terminate request counts as news)."""
        new = task_id not in self.ids or (terminate and task_id not in self.terminate)
        self.ids.add(task_id)
        if terminate:
            self.terminate[task_id] = signal
        return new

    def refresh(self, force: bool = False) -> list[str]:
        """Read new revokes when due; the ids that became revoked (or to terminate) now."""
        now = time.monotonic()
        if not force and now < self._next:
            return []
        from ..models import RevokedTask

        self._next = now + float(djq_settings.WORKER_REVOKE_REFRESH)
        started = timezone.now()
        since = self._since or started - timedelta(seconds=float(djq_settings.REVOKES_EXPIRE))
        try:
            rows = list(RevokedTask.objects.using(database_alias()).filter(date_revoked__gte=since)
                        .values_list("task_id", "terminate", "signal"))
        except Exception as exc:  # the database is away: keep the revokes known so far
            logger.warning("could not read revoked tasks: %s", exc)
            return []
        self._since = started - OVERLAP
        return [task_id for task_id, terminate, signal in rows if self.add(task_id, terminate, signal)]
