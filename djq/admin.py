"""The Django admin for djq: task results, rejected messages and the embedded broker's queue.

Everything here is for looking, not editing: rows are written by workers, and an edit made
by hand would only disagree with what really happened. Staff with the model's view
permission can read every page; nobody can add or change a row. Results and rejected
messages may be deleted (with the delete permission) to clear noise; queue messages may
not, because deleting one a worker holds would lose that task without a trace.
"""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from . import states
from .admin_display import (WORKER_CHARS, breakable, format_runtime, pre, pretty_json, progress_bar, state_badge,
                            to_the_second, two_lines)
from .models import QueueMessage, RejectedMessage, RevokedTask, TaskResult

class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: with no change permission Django renders every field read-only and
    answers a POST to the change page with 403, so a hand-made form cannot edit a row."""

    # Counting a big results table on every changelist page is the slow part of the admin.
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    # Seven narrow columns fit 1280 px beside the admin's sidebar and filters: progress and
    # retries sit under the state, names break at their dots, times between date and time.
    list_display = ("short_id", "name_display", "state_and_progress", "worker_display", "runtime_display",
                    "created", "done")
    # A date_hierarchy would scan every row for its distinct dates; the date filter does not.
    list_filter = ("state", "task_name", "worker", "date_done")
    search_fields = ("task_id", "task_name")
    readonly_fields = ("state_badge", "progress_bar", "runtime_display", "args_pretty", "kwargs_pretty", "result_pretty",
                       "traceback_pretty", "events_timeline", "created_at", "started_at", "done_at")
    fieldsets = (
        (None, {"fields": ("task_id", "task_name", "state_badge", "progress_bar", "worker", "queue", "retries")}),
        ("Call", {"fields": ("args_pretty", "kwargs_pretty", "root_id", "parent_id")}),
        ("Outcome", {"fields": ("result_pretty", "traceback_pretty")}),
        ("Timing", {"fields": ("created_at", "eta", "started_at", "done_at", "runtime_display")}),
        ("Events", {"fields": ("events_timeline",)}),
    )
    actions = ("retry", "revoke")
    #: the change page's buttons: (action, label)
    RESULT_ACTIONS = (("retry", "Retry"), ("revoke", "Revoke"))

    def has_control_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("djq.change_taskresult")

    def get_urls(self) -> list[Any]:
        act = path("<path:object_id>/act/<str:action>/", self.admin_site.admin_view(self.act_view),
                   name="djq_taskresult_act")
        return [act, *super().get_urls()]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"has_control_permission": self.has_control_permission(request),
                   "result_actions": self.RESULT_ACTIONS, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    def act_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """The change page's Retry and Revoke buttons: the list action on this one row."""
        if request.method != "POST" or action not in dict(self.RESULT_ACTIONS) or not self.has_control_permission(request):
            raise PermissionDenied
        queryset = self.get_queryset(request).filter(pk=object_id)
        if not queryset.exists():
            raise Http404(f"no task result {object_id!r}")
        getattr(self, action)(request, queryset)
        return HttpResponseRedirect(reverse("admin:djq_taskresult_change", args=[object_id]))

    @admin.action(description="Retry: send the selected tasks again", permissions=["control"])
    def retry(self, request: HttpRequest, queryset: Any) -> None:
        from .monitor_admin import retry_results

        retry_results(self, request, queryset)

    @admin.action(description="Revoke the selected tasks", permissions=["control"])
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        from .monitor_admin import revoke_results

        revoke_results(self, request, queryset)

    @admin.display(description="id", ordering="task_id")
    def short_id(self, obj: TaskResult) -> SafeString:
        """The first 8 characters (enough to tell tasks apart); the full id on hover and on its page."""
        return format_html('<span class="djq-task-id" title="{}" style="font-family: monospace;">{}</span>',
                           obj.task_id, obj.task_id[:8])

    @admin.display(description="task name", ordering="task_name")
    def name_display(self, obj: TaskResult) -> SafeString:
        return breakable(obj.task_name, "._")

    @admin.display(description="state", ordering="state")
    def state_and_progress(self, obj: TaskResult) -> SafeString:
        parts = [state_badge(obj.state), self.progress_bar(obj)]
        if obj.retries:
            parts.append(format_html('<span class="djq-retries">{} {}</span>', obj.retries,
                                     "retry" if obj.retries == 1 else "retries"))
        return format_html_join(mark_safe("<br>"), "{}", ((part,) for part in parts if part))

    @admin.display(description="worker", ordering="worker")
    def worker_display(self, obj: TaskResult) -> SafeString | str:
        """Up to WORKER_CHARS characters (the whole name on hover and on the task's page)."""
        if not obj.worker:
            return "-"
        shown = obj.worker if len(obj.worker) <= WORKER_CHARS else obj.worker[:WORKER_CHARS - 1] + "\u2026"
        return format_html('<span title="{}">{}</span>', obj.worker, breakable(shown, "@."))

    @admin.display(description="created", ordering="date_created")
    def created(self, obj: TaskResult) -> SafeString | str:
        return two_lines(to_the_second(obj.date_created))

    @admin.display(description="done", ordering="date_done")
    def done(self, obj: TaskResult) -> SafeString | str:
        return two_lines(to_the_second(obj.date_done))

    @admin.display(description="created")
    def created_at(self, obj: TaskResult) -> str | None:
        return to_the_second(obj.date_created, ms=True)

    @admin.display(description="started")
    def started_at(self, obj: TaskResult) -> str | None:
        return to_the_second(obj.date_started, ms=True)

    @admin.display(description="done")
    def done_at(self, obj: TaskResult) -> str | None:
        return to_the_second(obj.date_done, ms=True)

    @admin.display(description="timeline")
    def events_timeline(self, obj: TaskResult) -> SafeString:
        from .monitor_admin import event_timeline

        return event_timeline(obj.task_id)

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: TaskResult) -> SafeString:
        return state_badge(obj.state)

    @admin.display(description="progress")
    def progress_bar(self, obj: TaskResult) -> SafeString | str:
        """A bar for a running task that reports ``{"current": n, "total": m}`` with update_state."""
        if obj.state in states.READY_STATES:
            return ""
        return progress_bar(obj.result)

    @admin.display(description="runtime", ordering="runtime")
    def runtime_display(self, obj: TaskResult) -> str | None:
        return format_runtime(obj.runtime)

    @admin.display(description="args")
    def args_pretty(self, obj: TaskResult) -> SafeString:
        return pre(obj.args_repr)

    @admin.display(description="kwargs")
    def kwargs_pretty(self, obj: TaskResult) -> SafeString:
        return pre(obj.kwargs_repr)

    @admin.display(description="result")
    def result_pretty(self, obj: TaskResult) -> SafeString:
        return pre(pretty_json(obj.result))

    @admin.display(description="traceback")
    def traceback_pretty(self, obj: TaskResult) -> SafeString:
        return pre(obj.traceback)


@admin.register(RejectedMessage)
class RejectedMessageAdmin(ReadOnlyAdmin):
    list_display = ("date_rejected", "task_name", "task_id", "queue", "short_reason", "worker")
    list_filter = ("queue", "task_name")
    search_fields = ("task_id", "reason")
    readonly_fields = ("reason_pretty", "headers_pretty", "body_pretty")
    fieldsets = (
        (None, {"fields": ("date_rejected", "task_name", "task_id", "queue", "worker", "content_type")}),
        ("Why", {"fields": ("reason_pretty",)}),
        ("Message", {"fields": ("headers_pretty", "body_pretty")}),
    )

    @admin.display(description="reason")
    def short_reason(self, obj: RejectedMessage) -> str:
        return Truncator(obj.reason).chars(80)

    @admin.display(description="reason")
    def reason_pretty(self, obj: RejectedMessage) -> SafeString:
        return pre(obj.reason)

    @admin.display(description="headers")
    def headers_pretty(self, obj: RejectedMessage) -> SafeString:
        return pre(pretty_json(obj.headers))

    @admin.display(description="body")
    def body_pretty(self, obj: RejectedMessage) -> SafeString:
        return pre(pretty_json(obj.body))


def _headers(payload: str) -> dict[str, Any]:
    try:
        headers = json.loads(payload).get("headers")
    except (ValueError, AttributeError):
        return {}
    return headers if isinstance(headers, dict) else {}


@admin.register(QueueMessage)
class QueueMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "queue", "task_name", "task_id", "priority", "status", "visible_at_display", "deliveries")
    list_filter = ("queue",)
    readonly_fields = ("task_name", "task_id", "status", "visible_at_display", "payload_pretty")
    fieldsets = (
        (None, {"fields": ("id", "queue", "task_name", "task_id", "priority")}),
        ("Delivery", {"fields": ("status", "visible_at_display", "deliveries")}),
        ("Message", {"fields": ("payload_pretty",)}),
    )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="task name")
    def task_name(self, obj: QueueMessage) -> str:
        return str(_headers(obj.payload).get("task") or "")

    @admin.display(description="task id")
    def task_id(self, obj: QueueMessage) -> str:
        return str(_headers(obj.payload).get("id") or "")

    @admin.display(description="visible at", ordering="visible_at")
    def visible_at_display(self, obj: QueueMessage) -> datetime:
        return datetime.fromtimestamp(obj.visible_at, tz=UTC)

    @admin.display(description="status")
    def status(self, obj: QueueMessage) -> str:
        # visible_at means "eta" for a message never delivered, and "lease expiry" for one a
        # consumer claimed: the same column, read two ways.
        due = obj.visible_at <= time.time()
        if obj.deliveries == 0:
            return "waiting" if due else "scheduled (eta)"
        return "redelivery due" if due else "held by a worker"

    @admin.display(description="payload")
    def payload_pretty(self, obj: QueueMessage) -> SafeString:
        try:
            message = json.loads(obj.payload)
        except ValueError:
            return pre(obj.payload)
        # The body is itself serialized text (protocol v2 JSON); show it decoded too.
        if isinstance(message, dict) and isinstance(message.get("body"), str):
            try:
                message["body"] = json.loads(message["body"])
            except ValueError:
                pass
        return pre(json.dumps(message, indent=2, ensure_ascii=False))


# Beat's admin classes (periodic tasks, schedules, the run log) live beside beat itself;
# importing them here registers them with the admin site Django autodiscovers.
from .beat import admin as beat_admin  # noqa: E402,F401


@admin.register(RevokedTask)
class RevokedTaskAdmin(ReadOnlyAdmin):
    """Revokes, for looking. Not deletable: running workers keep the ids they have loaded,
    so deleting a row would not un-revoke a task, only make the page disagree with them."""

    list_display = ("task_id", "task_name", "outcome", "terminate", "signal", "date_revoked")
    list_filter = ("terminate", "date_revoked")
    search_fields = ("task_id",)

    def get_queryset(self, request: HttpRequest) -> Any:
        result = TaskResult.objects.filter(task_id=OuterRef("task_id"))
        return super().get_queryset(request).annotate(
            result_name=Subquery(result.values("task_name")[:1]), result_state=Subquery(result.values("state")[:1]))

    @admin.display(description="task name")
    def task_name(self, obj: RevokedTask) -> str:
        return getattr(obj, "result_name", None) or ""

    @admin.display(description="outcome")
    def outcome(self, obj: RevokedTask) -> str:
        """What the revoke did: a task already running when revoked (and not stopped) ran on."""
        state = getattr(obj, "result_state", None)
        if state == states.REVOKED:
            return "revoked"
        if state in states.READY_STATES:
            return f"ran to the end ({state})"
        return f"not run yet ({state})" if state == states.PENDING else (f"running ({state})" if state else "-")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
from . import events_admin, monitor_admin  # noqa: E402,F401  (events; workers and the dashboard)
