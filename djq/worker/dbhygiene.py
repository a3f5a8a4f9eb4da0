"""Django database connection hygiene for long-lived worker threads.

Around every task: connections that broke, outlived their age, or were left inside a
transaction by the task are closed, so the next task starts clean. Connections are
per thread (Django's own rule), so no two tasks ever share one.
"""
from __future__ import annotations

import logging

from django.db import connections

logger = logging.getLogger(__name__)


def keep_connections_for(seconds: float) -> None:
    """In a worker, a database with CONN_MAX_AGE = 0 keeps its connection this long.

    Reconnecting for every task would cost more than most tasks; stale ones are still
    closed by ``clean_connections``.
    """
    for alias in connections.settings:
        settings_dict = connections.settings[alias]
        if not settings_dict.get("CONN_MAX_AGE"):
            settings_dict["CONN_MAX_AGE"] = seconds


def clean_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.in_atomic_block:
            logger.warning("a task left a transaction open on database %r: rolled back", conn.alias)
            conn.close()
            continue
        conn.close_if_unusable_or_obsolete()


def close_all() -> None:
    for conn in connections.all(initialized_only=True):
        conn.close()
