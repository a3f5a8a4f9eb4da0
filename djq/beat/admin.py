"""The Django admin for beat: periodic tasks, their schedules and the log of sent runs.

Periodic tasks and schedules are edited here and take effect at beat's next tick. Beat's
bookkeeping (last run, run count) is shown, never written by the admin: saving a task
writes only the fields the page edits, so it cannot undo a run beat just recorded.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value
from django.db.models import QuerySet
from django.forms import ModelForm
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..exceptions import DjqError
from ..models import (SCHEDULE_FIELDS, ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicRun, PeriodicTask,
                      SolarSchedule)
from . import timing
from .forms import PeriodicTaskForm
from .runs import run_now
from .schedules import ScheduleError

#: Written by beat, not by the admin form.
BOOKKEEPING = frozenset({"last_run_at", "total_run_count", "date_created", "id", "due_at"})


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(admin.ModelAdmin):
    form = PeriodicTaskForm
    list_display = ("name", "task", "schedule_text", "enabled", "next_run", "last_run_at", "total_run_count")
    list_filter = ("enabled", "one_off", "declared_in_code", "task")
    search_fields = ("name", "task", "description")
    list_select_related = SCHEDULE_FIELDS
    readonly_fields = ("schedule_text", "schedule_words", "next_run", "last_run_at", "total_run_count", "declared_in_code",
                       "date_created", "date_changed")
    actions = ("enable_tasks", "disable_tasks", "run_tasks_now")
    fieldsets = (
        (None, {"fields": ("name", "task", "enabled", "description")}),
        ("Schedule", {"fields": ("schedule", "schedule_words", "start_time", "one_off")}),
        ("Arguments", {"fields": ("args", "kwargs")}),
        ("Delivery", {"fields": ("queue", "priority", "expires", "expire_seconds")}),
        ("Runs", {"fields": ("next_run", "last_run_at", "total_run_count", "declared_in_code", "date_created",
                             "date_changed")}),
    )

    @admin.display(description="schedule")
    def schedule_text(self, obj: PeriodicTask) -> str:
        return obj.describe_schedule() if obj.pk else "-"

    @admin.display(description="in words")
    def schedule_words(self, obj: PeriodicTask) -> str:
        return self.schedule_text(obj)

    @admin.display(description="next run")
    def next_run(self, obj: PeriodicTask) -> str:
        """The stored next run (what beat's "due now" query reads), in words when there is none."""
        if not obj.pk:
            return "-"
        if not obj.enabled:
            return "disabled"
        try:
            obj.schedule
        except ScheduleError as exc:
            return f"never: {exc}"
        upcoming = timing.from_db(obj.due_at)
        if upcoming is None:
            return "never"
        # Formatted here: on the change page Django would show a returned datetime with str().
        return "due now" if upcoming <= timing.now() else str(display_for_value(obj.due_at, "-"))

    def get_fieldsets(self, request: HttpRequest, obj: PeriodicTask | None = None) -> Any:
        # A task being added has no runs yet: no "last run at <now>" before it exists.
        fieldsets = super().get_fieldsets(request, obj)
        return fieldsets if obj is not None else [entry for entry in fieldsets if entry[0] != "Runs"]

    def get_urls(self) -> list[Any]:
        run = path("<path:object_id>/run-now/", self.admin_site.admin_view(self.run_now_view),
                   name="djq_periodictask_run_now")
        return [run, *super().get_urls()]

    def run_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's Run now button: send the task once, outside its schedule."""
        row = self.get_object(request, object_id)
        if row is None or request.method != "POST" or not self.has_change_permission(request, row):
            raise PermissionDenied
        try:
            sent = run_now(row, sent_by=f"admin:{request.user}")
        except DjqError as exc:
            self.message_user(request, f"{row.name} was not sent: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"Sent {row.name} now as task {sent}. Its schedule is unchanged.")
        return HttpResponseRedirect(reverse("admin:djq_periodictask_change", args=[row.pk]))

    def save_model(self, request: HttpRequest, obj: PeriodicTask, form: ModelForm, change: bool) -> None:
        if not change:
            obj.save()
            return
        # Beat may have written last_run_at, the run count or (for a one-off) enabled while
        # this page was open; write only what the page changes, and enabled only if edited.
        fields = [f.name for f in obj._meta.concrete_fields if f.name not in BOOKKEEPING]
        obj.save(update_fields=[name for name in fields if name != "enabled" or "enabled" in form.changed_data])

    @admin.action(description="Enable selected periodic tasks", permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        count = queryset.update(enabled=True, date_changed=timing.to_db(timing.now()))
        self.message_user(request, f"{count} periodic task(s) enabled; they run at their next scheduled time.")

    @admin.action(description="Disable selected periodic tasks", permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        count = queryset.update(enabled=False, date_changed=timing.to_db(timing.now()))
        self.message_user(request, f"{count} periodic task(s) disabled.")

    @admin.action(description="Run selected periodic tasks now", permissions=["change"])
    def run_tasks_now(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        sent = []
        for row in queryset:
            try:
                sent.append(f"{row.name} ({run_now(row, sent_by=f'admin:{request.user}')})")
            except DjqError as exc:
                self.message_user(request, f"{row.name} was not sent: {exc}", messages.ERROR)
        if sent:
            self.message_user(request, f"Sent now: {', '.join(sent)}. Their schedules are unchanged.")


class ScheduleAdmin(admin.ModelAdmin):
    def get_list_display(self, request: HttpRequest) -> Any:
        return ("describe_text", *self.columns, "used_by")

    columns: tuple[str, ...] = ()

    @admin.display(description="schedule")
    def describe_text(self, obj: Any) -> str:
        text: str = obj.describe()
        return text[0].upper() + text[1:] if text else text

    @admin.display(description="periodic tasks")
    def used_by(self, obj: Any) -> int:
        return int(obj.periodictask_set.count())


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(ScheduleAdmin):
    columns = ("every", "period")
    list_filter = ("period",)


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(ScheduleAdmin):
    columns = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone")
    list_filter = ("timezone",)
    readonly_fields = ("describe_text",)
    fields = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone", "describe_text")


@admin.register(SolarSchedule)
class SolarScheduleAdmin(ScheduleAdmin):
    columns = ("event", "latitude", "longitude")
    list_filter = ("event",)


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(ScheduleAdmin):
    columns = ("clocked_time",)


@admin.register(PeriodicRun)
class PeriodicRunAdmin(admin.ModelAdmin):
    """The log of runs beat sent: read-only (it is beat's claim record)."""

    list_display = ("periodic_task", "scheduled_at", "sent_at", "task_link", "beat", "manual")
    list_filter = ("manual", "periodic_task")
    search_fields = ("task_id", "periodic_task__name")
    list_select_related = ("periodic_task",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="task id", ordering="task_id")
    def task_link(self, obj: PeriodicRun) -> SafeString | str:
        try:
            url = reverse("admin:djq_taskresult_change", args=[obj.task_id])
        except NoReverseMatch:
            return obj.task_id
        return format_html('<a href="{}">{}</a>', url, obj.task_id)
