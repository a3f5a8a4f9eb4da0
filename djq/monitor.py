"""What ``djq_events`` does with the events it receives: a live view, or the camera.

``LiveView`` keeps a small picture of the cluster (workers, task rates over the last
minute, recent failures) and renders it as text. ``Camera`` stores every event as a
``TaskEvent`` row in batches and deletes rows older than ``DJQ_EVENTS_RETENTION_HOURS``.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict, deque
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from .conf import djq_settings

logger = logging.getLogger(__name__)

RATE_WINDOW = 60.0
NAME_CACHE = 10_000  # task ids whose names the camera remembers


class LiveView:
    def __init__(self, failures: int = 10) -> None:
        self.workers: dict[str, dict[str, Any]] = {}
        self.recent: deque[tuple[float, str]] = deque()
        self.failures: deque[dict[str, Any]] = deque(maxlen=failures)
        self.names: dict[str, str] = {}
        self.total = 0

    def __call__(self, event: dict[str, Any]) -> None:
        self.total += 1
        kind = event["type"]
        now = time.time()
        if kind.startswith("worker-"):
            worker = self.workers.setdefault(event.get("hostname", "?"), {})
            worker.update(online=kind != "worker-offline", seen=now, active=event.get("active", 0),
                          processed=event.get("processed", 0), freq=event.get("freq", 5.0))
            return
        self.recent.append((now, kind))
        if event.get("name") and event.get("uuid"):
            self.names[event["uuid"]] = event["name"]
            if len(self.names) > 10_000:
                self.names.pop(next(iter(self.names)))
        if kind == "task-failed":
            self.failures.append({"uuid": event.get("uuid"), "name": self.names.get(event.get("uuid", ""), "?"),
                                  "exception": event.get("exception", ""), "hostname": event.get("hostname", ""),
                                  "timestamp": event.get("timestamp", now)})

    def rates(self) -> Counter[str]:
        cutoff = time.time() - RATE_WINDOW
        while self.recent and self.recent[0][0] < cutoff:
            self.recent.popleft()
        return Counter(kind for _, kind in self.recent)

    def render(self) -> str:
        now = time.time()
        lines = [f"djq events at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC ({self.total} received)", "", "Workers:"]
        if not self.workers:
            lines.append("  (none seen yet: workers send events with -E)")
        for hostname, worker in sorted(self.workers.items()):
            alive = worker["online"] and now - worker["seen"] < 2 * worker["freq"] + 1
            lines.append(f"  {'ONLINE ' if alive else 'OFFLINE'} {hostname}  active {worker['active']}  "
                         f"processed {worker['processed']}  last seen {now - worker['seen']:.0f}s ago")
        lines += ["", f"Tasks in the last {RATE_WINDOW:.0f}s (per minute):"]
        rates = self.rates()
        lines += [f"  {kind:<16} {rates.get(kind, 0)}" for kind in
                  ("task-received", "task-started", "task-succeeded", "task-failed", "task-retried", "task-revoked")]
        lines += ["", "Recent failures:"]
        if not self.failures:
            lines.append("  (none)")
        for failure in reversed(self.failures):
            stamp = datetime.fromtimestamp(failure["timestamp"], UTC)
            lines.append(f"  {stamp:%H:%M:%S} {failure['name']}[{failure['uuid']}] on {failure['hostname']}: "
                         f"{str(failure['exception'])[:120]}")
        return "\n".join(lines)


class Camera:
    """Stores events as TaskEvent rows: one bulk insert per ``flush``."""

    def __init__(self, retention_hours: float | None = None, prune_every: float = 60.0) -> None:
        self.buffer: list[dict[str, Any]] = []
        self.retention_hours = retention_hours if retention_hours is not None else djq_settings.EVENTS_RETENTION_HOURS
        self.prune_every = prune_every
        self._next_prune = 0.0
        self.stored = 0
        self.names: OrderedDict[str, str] = OrderedDict()  # task id -> name, newest last

    def __call__(self, event: dict[str, Any]) -> None:
        self.buffer.append(event)

    def flush(self) -> None:
        from .models import TaskEvent

        events, self.buffer = self.buffer, []
        if events:
            self._name_tasks(events)
            TaskEvent.objects.bulk_create([_row(TaskEvent, event) for event in events])
            self.stored += len(events)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_every
            self.prune()

    def _name_tasks(self, events: list[dict[str, Any]]) -> None:
        """Give every task event its task's name. Only task-received (and task-sent) carry
        it on the wire; later events are named from those seen before, else from the
        stored events and results (one query each per batch that needs it)."""
        from .models import TaskEvent, TaskResult

        for event in events:
            if event.get("uuid") and event.get("name"):
                self._remember(str(event["uuid"]), str(event["name"]))
        missing = {str(e["uuid"]) for e in events
                   if e.get("uuid") and not e.get("name") and str(e["uuid"]) not in self.names}
        if missing:
            for model in (TaskEvent, TaskResult):
                unknown = [task_id for task_id in missing if task_id not in self.names]
                if unknown:
                    rows = (model.objects.filter(task_id__in=unknown).exclude(task_name="")
                            .values_list("task_id", "task_name"))
                    for task_id, name in rows:
                        self._remember(task_id, name)
        for event in events:
            if event.get("uuid") and not event.get("name"):
                event["name"] = self.names.get(str(event["uuid"]), "")

    def _remember(self, task_id: str, name: str) -> None:
        self.names[task_id] = name
        self.names.move_to_end(task_id)
        while len(self.names) > NAME_CACHE:
            self.names.popitem(last=False)

    def prune(self) -> int:
        from .models import TaskEvent

        if self.retention_hours is None:
            return 0
        cutoff = timezone.now() - timedelta(hours=float(self.retention_hours))
        deleted, _ = TaskEvent.objects.filter(timestamp__lt=cutoff).delete()
        if deleted:
            logger.info("camera: deleted %d event(s) older than %s hours", deleted, self.retention_hours)
        return deleted


def _row(model: Any, event: dict[str, Any]) -> Any:
    stamp = event.get("timestamp")
    when = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, (int, float)) else timezone.now()
    fields = {k: v for k, v in event.items() if k not in ("type", "hostname", "timestamp", "uuid", "name")}
    return model(event=str(event["type"])[:40], task_id=str(event.get("uuid") or "")[:255],
                 task_name=str(event.get("name") or "")[:255], hostname=str(event.get("hostname") or "")[:255],
                 timestamp=when, fields=fields)
