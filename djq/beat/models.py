"""Beat's tables: the schedules (interval, crontab, solar, clocked), the periodic tasks
that use them, and the run log. Part of the djq app (djq/models.py imports them)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from . import timing
from .cron import Crontab, default_timezone
from .cron_fields import CronFieldError
from .schedules import PERIODS, Clocked, Interval, Schedule, ScheduleError
from .sun import EVENTS, Solar

class IntervalSchedule(models.Model):
    """Every N seconds, minutes, hours or days of elapsed time."""

    PERIOD_CHOICES = [(name, name) for name in PERIODS]

    every = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    period = models.CharField(max_length=10, choices=PERIOD_CHOICES, default="seconds")
    date_changed = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["period", "every"]
        indexes = [models.Index(fields=["date_changed"], name="djq_interval_changed")]
        verbose_name = "interval schedule"
        constraints = [models.UniqueConstraint(fields=["every", "period"], name="djq_interval_unique")]

    def __str__(self) -> str:
        return self.describe()

    def as_schedule(self) -> Interval:
        return Interval(self.every, self.period)

    def describe(self) -> str:
        return self.as_schedule().describe() if self.every else "(incomplete interval)"


class CrontabSchedule(models.Model):
    """A cron schedule, evaluated in its own timezone (DST handled as cron(8) does)."""

    minute = models.CharField(max_length=240, default="*", help_text="0-59, e.g. 0, */15, 0,30")
    hour = models.CharField(max_length=96, default="*", help_text="0-23, e.g. 2, 9-17, */4")
    day_of_month = models.CharField(max_length=124, default="*", help_text="1-31, e.g. 1, 1,15")
    month_of_year = models.CharField(max_length=64, default="*", help_text="1-12 or jan-dec")
    day_of_week = models.CharField(max_length=64, default="*", help_text="0-6 (0 = Sunday) or sun-sat, e.g. mon-fri")
    timezone = models.CharField(max_length=63, default=default_timezone, help_text="IANA name, e.g. Europe/Paris")
    date_changed = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["month_of_year", "day_of_month", "day_of_week", "hour", "minute", "timezone"]
        indexes = [models.Index(fields=["date_changed"], name="djq_crontab_changed")]
        verbose_name = "crontab schedule"
        constraints = [models.UniqueConstraint(
            fields=["minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone"],
            name="djq_crontab_unique",
        )]

    def __str__(self) -> str:
        return f"{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week} ({self.timezone})"

    def as_schedule(self) -> Crontab:
        return Crontab(self.minute, self.hour, self.day_of_month, self.month_of_year,  # may raise ScheduleError
                       self.day_of_week, self.timezone)

    def describe(self) -> str:
        try:
            return self.as_schedule().describe()
        except ScheduleError as exc:
            return f"invalid: {exc}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        fields = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone")
        for name in fields:
            values = {field: "*" for field in fields[:5]} | {"timezone": "UTC", name: getattr(self, name)}
            try:
                Crontab(**values)
            except CronFieldError as exc:
                errors[name] = exc.reason  # the form shows it under the field: do not name it twice
            except ScheduleError as exc:
                errors[name] = str(exc)
        if not errors:
            try:
                self.as_schedule()
            except ScheduleError as exc:
                raise ValidationError(str(exc)) from exc
        if errors:
            raise ValidationError(errors)


class SolarSchedule(models.Model):
    """At a solar event (sunrise, sunset, ...) seen from a place. Needs ``pip install 'djq[solar]'``."""

    EVENT_CHOICES = [(name, name.replace("_", " ")) for name in EVENTS]

    event = models.CharField(max_length=24, choices=EVENT_CHOICES)
    latitude = models.DecimalField(max_digits=9, decimal_places=6,
                                   validators=[MinValueValidator(-90), MaxValueValidator(90)])
    longitude = models.DecimalField(max_digits=9, decimal_places=6,
                                    validators=[MinValueValidator(-180), MaxValueValidator(180)])
    date_changed = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["event", "latitude", "longitude"]
        indexes = [models.Index(fields=["date_changed"], name="djq_solar_changed")]
        verbose_name = "solar schedule"
        constraints = [models.UniqueConstraint(fields=["event", "latitude", "longitude"], name="djq_solar_unique")]

    def __str__(self) -> str:
        return self.describe()

    def as_schedule(self) -> Solar:
        return Solar(self.event, float(self.latitude), float(self.longitude))

    def describe(self) -> str:
        return f"{self.event.replace('_', ' ')} at {self.latitude}, {self.longitude}"

    def clean(self) -> None:
        if self.event and self.latitude is not None and self.longitude is not None:
            try:
                self.as_schedule().check_available()
            except ScheduleError as exc:
                raise ValidationError(str(exc)) from exc


class ClockedSchedule(models.Model):
    """One moment."""

    clocked_time = models.DateTimeField(unique=True)
    date_changed = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["clocked_time"]
        indexes = [models.Index(fields=["date_changed"], name="djq_clocked_changed")]
        verbose_name = "clocked schedule"

    def __str__(self) -> str:
        return self.describe()

    def as_schedule(self) -> Clocked:
        at = timing.from_db(self.clocked_time)
        if at is None:
            raise ScheduleError("a clocked schedule needs a time")
        return Clocked(at)

    def describe(self) -> str:
        return self.as_schedule().describe() if self.clocked_time else "(no time)"


# -- beat: periodic tasks -------------------------------------------------------------------
SCHEDULE_FIELDS = ("interval", "crontab", "solar", "clocked")


def _exactly_one_schedule() -> models.Q:
    either = models.Q()
    for chosen in SCHEDULE_FIELDS:
        either |= models.Q(**{f"{name}__isnull": name != chosen for name in SCHEDULE_FIELDS})
    return either


class PeriodicTask(models.Model):
    """A task that beat sends on a schedule. Exactly one of the four schedules is set."""

    name = models.CharField(max_length=200, unique=True, help_text="A unique name for this schedule entry.")
    task = models.CharField("task name", max_length=200, db_index=True, help_text="A registered task, e.g. myapp.tasks.report")
    interval = models.ForeignKey(IntervalSchedule, on_delete=models.PROTECT, null=True, blank=True)
    crontab = models.ForeignKey(CrontabSchedule, on_delete=models.PROTECT, null=True, blank=True)
    solar = models.ForeignKey(SolarSchedule, on_delete=models.PROTECT, null=True, blank=True)
    clocked = models.ForeignKey(ClockedSchedule, on_delete=models.PROTECT, null=True, blank=True)
    args = models.JSONField(default=list, blank=True, help_text='A JSON list, e.g. [1, "two"]')
    kwargs = models.JSONField(default=dict, blank=True, help_text='A JSON object, e.g. {"verbose": true}')
    queue = models.CharField(max_length=200, blank=True, default="", help_text="Empty: the task's own queue.")
    priority = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(255)],
                                                help_text="0-255, higher first. Empty: the task's own.")
    expires = models.DateTimeField(null=True, blank=True, help_text="No run is sent after this moment.")
    expire_seconds = models.PositiveIntegerField(null=True, blank=True,
                                                 help_text="A run not started this many seconds after it was sent is dropped.")
    one_off = models.BooleanField(default=False, help_text="Run once, then disable.")
    start_time = models.DateTimeField(null=True, blank=True, help_text="Nothing runs before this moment.")
    enabled = models.BooleanField(default=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True, default=timezone.now,
                                       help_text="Scheduled time of the last run sent (at creation: the creation time).")
    total_run_count = models.PositiveIntegerField(default=0, help_text="Runs sent on schedule (Run now is not counted).")
    due_at = models.DateTimeField("next run", null=True, blank=True, db_index=True, editable=False,
                                  help_text="When beat sends this task next (empty: disabled, or never again).")
    description = models.TextField(blank=True, default="")
    declared_in_code = models.BooleanField(default=False, editable=False,
                                           help_text="Comes from DJQ_BEAT_SCHEDULE or @periodic.")
    date_created = models.DateTimeField(auto_now_add=True)
    date_changed = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "periodic task"
        indexes = [  # what a tick's probe (djq.beat.probe) reads instead of the whole table
            models.Index(fields=["date_changed"], name="djq_periodic_changed"),
            models.Index(fields=["enabled"], condition=models.Q(last_run_at__isnull=True), name="djq_periodic_never_ran"),
        ]
        constraints = [models.CheckConstraint(
            condition=_exactly_one_schedule(), name="djq_periodic_one_schedule",
            violation_error_message="Choose exactly one schedule: interval, crontab, solar or clocked.",
        )]

    def __str__(self) -> str:
        return self.name

    @property
    def schedule_model(self) -> IntervalSchedule | CrontabSchedule | SolarSchedule | ClockedSchedule | None:
        for name in SCHEDULE_FIELDS:
            if getattr(self, f"{name}_id") is not None:
                return getattr(self, name)  # type: ignore[no-any-return]
        return None

    @property
    def schedule(self) -> Schedule:
        """The schedule as a value (raises ScheduleError when it is invalid or incomplete)."""
        model = self.schedule_model
        if model is None:
            raise ScheduleError(f"periodic task {self.name!r} has no schedule")
        return model.as_schedule()

    def describe_schedule(self) -> str:
        try:
            text = self.schedule.describe()
        except ScheduleError as exc:
            return f"invalid: {exc}"
        return text[0].upper() + text[1:]

    def changed_at(self) -> datetime | None:
        """The later of this task's and its schedule's last edit."""
        model = self.schedule_model
        moments = [m for m in (self.date_changed, model.date_changed if model else None) if m is not None]
        return timing.from_db(max(moments)) if moments else None

    def next_run_at(self, now: datetime | None = None) -> datetime | None:
        """When beat will next send this task (None: never, or disabled)."""
        if not self.enabled:
            return None
        return timing.next_run(
            self.schedule, last_run_at=timing.from_db(self.last_run_at), changed_at=self.changed_at(),
            start_time=timing.from_db(self.start_time), run_count=self.total_run_count, now=now or timing.now(),
        )

    def computed_due_at(self, now: datetime | None = None, using: str | None = None) -> datetime | None:
        """``next_run_at`` as an edit saved now sees it (None when it cannot run), for the database."""
        now = now or timing.now()
        if not self.enabled:
            return None
        if using is not None and self._state.db is None:
            self._state.db = using  # a new row: read its schedule where the row is being written
        try:
            model = self.schedule_model
        except models.ObjectDoesNotExist:
            return None  # the database refuses the row anyway
        if model is None:
            return None
        # Saving stamps date_changed with now: runs missed before this edit are not made up.
        changed = max(m for m in (now, timing.from_db(model.date_changed)) if m is not None)
        try:
            due = timing.next_run(
                self.schedule, last_run_at=timing.from_db(self.last_run_at), changed_at=changed,
                start_time=timing.from_db(self.start_time), run_count=self.total_run_count, now=now,
            )
        except ScheduleError:
            return None  # beat reports it (its full read retries such rows)
        return timing.to_db(due)

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The stored next run is what a tick's "due now" query reads; beat also recomputes it
        # for every row whose date_changed moved, so this only has to be a good first value.
        self.due_at = self.computed_due_at(using=kwargs.get("using"))
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "due_at"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from ..registry import registry

        # "Exactly one schedule" is the check constraint's, which full_clean() validates too.
        errors: dict[str, list[str]] = {}
        if self.task and self.task not in registry:
            errors["task"] = [f"no task named {self.task!r} is registered in this process "
                              "(is its app in INSTALLED_APPS, with the task in its tasks.py?)"]
        if not isinstance(self.args, list):
            errors["args"] = [f'args must be a JSON list such as [1, "two"], not {type(self.args).__name__}']
        if not isinstance(self.kwargs, dict):
            errors["kwargs"] = [f'kwargs must be a JSON object such as {{"key": 1}}, not {type(self.kwargs).__name__}']
        if self.expires is not None and self.expire_seconds is not None:
            errors["expire_seconds"] = ["give expires or expire_seconds, not both"]
        if errors:
            raise ValidationError(errors)


class PeriodicRun(models.Model):
    """One run beat sent: the claim that makes each scheduled time go out once.

    The unique (periodic task, scheduled time) pair is the run key: a second beat that
    tries to send the same run cannot commit it.
    """

    periodic_task = models.ForeignKey(PeriodicTask, on_delete=models.CASCADE, related_name="runs")
    scheduled_at = models.DateTimeField("scheduled for")
    sent_at = models.DateTimeField(db_index=True)
    task_id = models.CharField("task id", max_length=255)
    beat = models.CharField(max_length=255, blank=True, default="", help_text="The beat process that sent it.")
    manual = models.BooleanField(default=False, help_text="Sent with Run now, outside the schedule.")
    published_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the broker took the message. Empty for a moment on Redis/RabbitMQ; "
                  "a run left empty by a beat that died is sent by another beat.")

    class Meta:
        ordering = ["-scheduled_at"]
        verbose_name = "periodic run"
        constraints = [models.UniqueConstraint(fields=["periodic_task", "scheduled_at"], condition=models.Q(manual=False),
                                               name="djq_run_once")]

    def __str__(self) -> str:
        return f"{self.periodic_task_id} at {self.scheduled_at}"


# -- task lifecycle: revokes, groups, chords ---------------------------------------------
