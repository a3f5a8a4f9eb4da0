"""The admin's control room: workers (with shutdown / grow / shrink), stored events, and the
dashboard page. Actions need the model's change permission; pages need its view permission.
"""
from __future__ import annotations

import ast
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from . import control, dashboard
from .models import Dashboard, TaskEvent, WorkerState

ONLINE, OFFLINE = ("#2e7d32", "#ffffff"), ("#9e9e9e", "#ffffff")
REFRESH_SECONDS = 10


def online_badge(worker: WorkerState) -> SafeString:
    background, colour = ONLINE if worker.online else OFFLINE
    return format_html('<span class="djq-worker-{}" style="background: {}; color: {}; padding: 2px 8px; '
                       'border-radius: 10px; font-weight: bold; font-size: 11px;">{}</span>',
                       "online" if worker.online else "offline", background, colour,
                       "online" if worker.online else "offline")


def age(when: Any) -> str:
    seconds = max(0.0, (timezone.now() - when).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def run_command(modeladmin: admin.ModelAdmin, request: HttpRequest, hostnames: list[str], command: str,
                arguments: dict[str, Any] | None = None) -> None:
    """Send a command to the chosen workers and tell the user what each answered."""
    try:
        replies = control.broadcast(command, arguments or {}, destination=hostnames, timeout=3.0)
    except control.ControlError as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    answered = {host: reply for item in replies for host, reply in item.items()}
    for host in hostnames:
        reply = answered.get(host)
        if reply is None:
            modeladmin.message_user(request, f"Worker {host}: no reply (offline?)", messages.WARNING)
        elif isinstance(reply, dict) and "error" in reply:
            modeladmin.message_user(request, f"Worker {host}: {reply['error']}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"Worker {host}: {reply.get('ok', reply) if isinstance(reply, dict) else reply}")


def event_timeline(task_id: str) -> SafeString:
    """The stored events of one task, oldest first, as a table (everything escaped)."""
    events = list(TaskEvent.objects.filter(task_id=task_id).order_by("timestamp", "id")[:200])
    if not events:
        return mark_safe('<p class="djq-empty">No stored events (run <code>djq_events --camera</code> '
                         'and start workers with <code>-E</code>).</p>')
    rows = format_html_join("", '<tr class="djq-event"><td>{}</td><td><b>{}</b></td><td>{}</td><td><code>{}</code></td></tr>',
                            ((f"{e.timestamp:%Y-%m-%d %H:%M:%S.%f}"[:-3], e.event, e.hostname, _summary(e.fields))
                             for e in events))
    return format_html('<table class="djq-timeline"><thead><tr><th>When (UTC)</th><th>Event</th><th>Host</th>'
                       '<th>Details</th></tr></thead><tbody>{}</tbody></table>', rows)


def _summary(fields: dict[str, Any]) -> str:
    keep = ("args", "kwargs", "result", "runtime", "exception", "queue", "eta", "retries", "reason", "expired",
            "terminated")
    return "; ".join(f"{key}={fields[key]}" for key in keep if fields.get(key) not in (None, ""))[:500]


def retry_results(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    """Send each selected task again (a new task id) with the arguments it was called with."""
    from .registry import registry

    sent, refused = [], []
    for result in queryset:
        try:
            task = registry.get(result.task_name)
            args = ast.literal_eval(result.args_repr or "()")
            kwargs = ast.literal_eval(result.kwargs_repr or "{}")
            if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
                raise ValueError("arguments are not a tuple and a dict")
        except Exception as exc:
            refused.append(f"{result.task_id}: {exc}")
            continue
        sent.append(task.apply_async(tuple(args), kwargs).id)
    if sent:
        modeladmin.message_user(request, f"Sent {len(sent)} task(s) again: {', '.join(sent)}")
    for reason in refused:
        modeladmin.message_user(request, f"Not retried {reason} (only tasks whose arguments are literals "
                                "and whose code this site has can be sent again)", messages.ERROR)


def revoke_results(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    ids = list(queryset.values_list("task_id", flat=True))
    try:
        replies = control.revoke(ids, timeout=2.0, reply=True)
    except control.ControlError as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    workers = sorted(host for item in replies for host in item)
    modeladmin.message_user(request, f"Revoked {len(ids)} task(s); {len(workers)} worker(s) confirmed"
                            + (f": {', '.join(workers)}" if workers else " (none online: nothing was running them)"),
                            messages.SUCCESS if workers else messages.WARNING)
    for item in replies:
        for host, reply in item.items():
            running = reply.get("running") if isinstance(reply, dict) else None
            if running:
                how = ("djq_control terminate stops it" if reply.get("can_terminate")
                       else f"the {reply.get('pool', '?')} pool cannot stop a running task")
                modeladmin.message_user(request, f"{', '.join(running)} already running on {host}: not stopped, "
                                        f"it runs to its end ({how})", messages.WARNING)


@admin.register(WorkerState)
class WorkerStateAdmin(admin.ModelAdmin):
    list_display = ("hostname", "status", "heartbeat_age", "active", "processed", "failed", "pool", "concurrency",
                    "queue_list", "started")
    list_filter = ("pool",)
    search_fields = ("hostname",)
    actions = ("shutdown", "grow", "shrink")
    readonly_fields = [f.name for f in WorkerState._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # rows are the workers' own; actions act on the workers instead

    def has_control_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("djq.change_workerstate")

    @admin.display(description="status", ordering="offline_after")
    def status(self, obj: WorkerState) -> SafeString:
        return online_badge(obj)

    @admin.display(description="last heartbeat", ordering="last_heartbeat")
    def heartbeat_age(self, obj: WorkerState) -> str:
        return age(obj.last_heartbeat)

    @admin.display(description="queues")
    def queue_list(self, obj: WorkerState) -> str:
        return ", ".join(obj.queues or [])

    @admin.action(description="Shut down (warm) the selected workers", permissions=["control"])
    def shutdown(self, request: HttpRequest, queryset: QuerySet[WorkerState]) -> None:
        run_command(self, request, list(queryset.values_list("hostname", flat=True)), "shutdown")

    @admin.action(description="Grow the pool of the selected workers by one", permissions=["control"])
    def grow(self, request: HttpRequest, queryset: QuerySet[WorkerState]) -> None:
        run_command(self, request, list(queryset.values_list("hostname", flat=True)), "pool_grow", {"n": 1})

    @admin.action(description="Shrink the pool of the selected workers by one", permissions=["control"])
    def shrink(self, request: HttpRequest, queryset: QuerySet[WorkerState]) -> None:
        run_command(self, request, list(queryset.values_list("hostname", flat=True)), "pool_shrink", {"n": 1})


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """The dashboard page, at the proxy model's changelist URL."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("djq.view_taskresult")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        from .backends import get_backend

        board = dashboard.collect(using=getattr(get_backend(), "alias", "default"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Task dashboard",
            "opts": self.model._meta,
            "board": board,
            "refresh": refresh_seconds(request),
            "refreshed": _count(request.GET.get("refreshed")),
            "throughput": dashboard.throughput_chart(board.per_minute),
            "queue_chart": dashboard.bar_chart([(n, d) for n, d in board.queues if d is not None], "chart-queues"),
            "p95_chart": dashboard.bar_chart([(name, p95) for name, _, _, p95 in board.runtimes[:15]],
                                             "chart-runtime", " s"),
            "workers": [(w, online_badge(w), age(w.last_heartbeat)) for w in board.workers],
        }
        if request.GET.get("fragment"):  # the page's script refreshing the figures in place
            return TemplateResponse(request, "admin/djq/dashboard_figures.html", context)
        return TemplateResponse(request, "admin/djq/dashboard.html", context)


def refresh_seconds(request: HttpRequest) -> int:
    """Seconds between refreshes: ``?refresh=N`` (1 to 3600), else REFRESH_SECONDS."""
    asked = _count(request.GET.get("refresh"))
    return min(max(asked, 1), 3600) if asked else REFRESH_SECONDS


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) < 8 else 0
