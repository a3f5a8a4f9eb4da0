"""Beat keeps each periodic task's next run in an indexed column, so a tick reads only what is due."""
from __future__ import annotations

from typing import Any

from django.db import migrations, models


def fill_due_at(apps: Any, schema_editor: Any) -> None:
    """Work out the next run of every enabled task, as beat would (historical models have no methods)."""
    from djq.beat import timing
    from djq.beat.cron import Crontab
    from djq.beat.schedules import Clocked, Interval, ScheduleError
    from djq.beat.sun import Solar

    def schedule_of(row: Any) -> Any:
        if row.interval_id is not None:
            return Interval(row.interval.every, row.interval.period), row.interval.date_changed
        if row.crontab_id is not None:
            c = row.crontab
            return Crontab(c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, c.timezone), c.date_changed
        if row.solar_id is not None:
            s = row.solar
            return Solar(s.event, float(s.latitude), float(s.longitude)), s.date_changed
        return Clocked(timing.from_db(row.clocked.clocked_time)), row.clocked.date_changed

    PeriodicTask = apps.get_model("djq", "PeriodicTask")
    alias = schema_editor.connection.alias
    now = timing.now()
    rows = PeriodicTask.objects.using(alias).filter(enabled=True).select_related("interval", "crontab", "solar", "clocked")
    for row in rows.iterator(chunk_size=2000):
        try:
            schedule, schedule_changed = schedule_of(row)
            changed = [m for m in (timing.from_db(row.date_changed), timing.from_db(schedule_changed)) if m]
            due = timing.next_run(schedule, last_run_at=timing.from_db(row.last_run_at),
                                  changed_at=max(changed) if changed else None,
                                  start_time=timing.from_db(row.start_time), run_count=row.total_run_count, now=now)
        except ScheduleError:
            continue  # beat's first full read reports it
        PeriodicTask.objects.using(alias).filter(pk=row.pk).update(due_at=timing.to_db(due))


class Migration(migrations.Migration):

    dependencies = [
        ('djq', '0005_faults'),
    ]

    operations = [
        migrations.AddField(
            model_name='periodictask',
            name='due_at',
            field=models.DateTimeField(blank=True, db_index=True, editable=False, help_text='When beat sends this task next (empty: disabled, or never again).', null=True, verbose_name='next run'),
        ),
        migrations.RunPython(fill_due_at, migrations.RunPython.noop),
    ]
