"""The admin's page of stored task events (written by ``djq_events --camera``).

Newest first; filters by event type, task name, worker and time. Worker heartbeats (one
per worker every few seconds) would bury everything else, so they are hidden unless the
type filter asks for them. Times show to the second in the list and to the millisecond
on an event's page, whose fields are laid out one per row with tracebacks as text.
"""
from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .models import TaskEvent

HEARTBEAT = "worker-heartbeat"
WITH_HEARTBEATS = "__all__"
_PRE_STYLE = "white-space: pre-wrap; word-break: break-word; margin: 0;"


class EventTypeFilter(admin.SimpleListFilter):
    """Filter by event type; by default every type but worker heartbeats."""

    title = "event type"
    parameter_name = "event"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        kinds = TaskEvent.objects.order_by("event").values_list("event", flat=True).distinct()
        return [(WITH_HEARTBEATS, "everything, with heartbeats"), *((kind, kind) for kind in kinds)]

    def choices(self, changelist: Any) -> Any:
        for choice in super().choices(changelist):
            if choice["display"] == "All":
                choice["display"] = "All but heartbeats"
            yield choice

    def queryset(self, request: HttpRequest, queryset: QuerySet[TaskEvent]) -> QuerySet[TaskEvent]:
        value = self.value()
        if value is None:
            return queryset.exclude(event=HEARTBEAT)
        if value == WITH_HEARTBEATS:
            return queryset
        return queryset.filter(event=value)


def field_rows(fields: dict[str, Any]) -> SafeString:
    """An event's fields as a table: text as it is (real line breaks), anything else as
    indented JSON. Everything is escaped."""
    def shown(value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)

    if not fields:
        return format_html("<p>{}</p>", "(none)")
    rows = format_html_join("", '<tr><th style="width: 10em;">{}</th><td><pre style="{}">{}</pre></td></tr>',
                            ((key, _PRE_STYLE, shown(value)) for key, value in sorted(fields.items())))
    return format_html('<table class="djq-event-fields">{}</table>', rows)


@admin.register(TaskEvent)
class TaskEventAdmin(admin.ModelAdmin):
    list_display = ("when", "event", "task_name", "short_task_id", "hostname")
    list_display_links = ("when",)
    list_filter = (EventTypeFilter, "task_name", "hostname", "timestamp")
    search_fields = ("task_id", "task_name", "hostname")
    ordering = ("-timestamp", "-id")
    fields = ("event", "task_name", "task_id", "hostname", "when_precise", "fields_table")
    readonly_fields = fields
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="when (UTC)", ordering="timestamp")
    def when(self, obj: TaskEvent) -> str:
        return f"{obj.timestamp:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="when (UTC)")
    def when_precise(self, obj: TaskEvent) -> str:
        return f"{obj.timestamp:%Y-%m-%d %H:%M:%S.%f}"[:-3]

    @admin.display(description="task id", ordering="task_id")
    def short_task_id(self, obj: TaskEvent) -> SafeString | str:
        if not obj.task_id:
            return ""
        return format_html('<span title="{}">{}</span>', obj.task_id, obj.task_id[:8])

    @admin.display(description="fields")
    def fields_table(self, obj: TaskEvent) -> SafeString:
        return field_rows(obj.fields or {})
