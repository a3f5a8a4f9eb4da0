"""Beat: periodic tasks kept in the database, sent exactly once however many beats run.

    from djq.beat import crontab, every, periodic

    @periodic(crontab("30 2 * * *", timezone="Europe/Paris"))
    @task
    def nightly_report() -> None: ...

Run ``manage.py djq_beat`` (any number of them) or ``djq_worker -B``; edit schedules in
the admin. The design (run claims, the missed-run policy, DST) is in docs/beat.md.

Importing this package loads no models, so a settings module may use ``crontab``,
``every``, ``solar`` and ``clocked`` in DJQ_BEAT_SCHEDULE.
"""
from __future__ import annotations

from .cron import crontab
from .declare import periodic
from .schedules import ScheduleError, clocked, every
from .sun import solar

__all__ = ["ScheduleError", "clocked", "crontab", "every", "periodic", "solar"]
