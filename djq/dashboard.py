"""The admin dashboard's numbers, and its charts drawn on the server as inline SVG.

Every figure comes from an aggregate over an index: finished tasks per minute over the
last hour and runtimes read the ``djq_result_done`` index (date_done, state, task_name,
runtime) over one hour of rows, so a table of millions costs what one hour costs.
Runtime percentiles use at most ``RUNTIME_SAMPLE`` of the hour's newest tasks. Queue
depths are asked of the broker; nothing is fetched from a CDN.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Iterator

from django.db import connections
from django.db.models import CharField, Count
from django.db.models.functions import Cast, Substr, TruncMinute
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from . import states
from .conf import djq_settings

RUNTIME_SAMPLE = 20_000
MINUTES = 60


def plumbing_queue(name: str) -> bool:
    """djq's (or Celery's) own control, reply and event queues: not task queues."""
    return name.startswith(("djq.", "celeryev")) or name.endswith(".pidbox") or ".reply.celery" in name


@dataclass
class QueueRow:
    """A queue as the dashboard lists it: broker-side depth, the oldest waiting task's
    age (from its PENDING row), and the online workers consuming it."""

    name: str
    depth: int | None
    oldest_seconds: float | None
    consumers: list[str]

    @property
    def unconsumed(self) -> bool:
        """Messages wait and no online worker consumes the queue: flagged red."""
        return bool(self.depth) and not self.consumers


@dataclass
class Dashboard:
    now: datetime
    #: minute start -> (succeeded, failed), oldest first, MINUTES entries
    per_minute: list[tuple[datetime, int, int]]
    #: task name -> (count in sample, p50, p95) seconds
    runtimes: list[tuple[str, int, float, float]]
    queues: list[tuple[str, int | None]]
    workers: list[Any]
    sampled: bool
    queue_rows: list[QueueRow] = field(default_factory=list)
    queries: int = 0
    milliseconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return sum(s for _, s, _ in self.per_minute)

    @property
    def failed(self) -> int:
        return sum(f for _, _, f in self.per_minute)


def collect(using: str = "default", now: datetime | None = None) -> Dashboard:
    """Gather the dashboard's figures, counting the queries it took and their time."""
    counter = _QueryCounter()
    started = time.perf_counter()
    with connections[using].execute_wrapper(counter):
        board = _collect(using, now or timezone.now())
    board.queries = counter.count
    board.milliseconds = (time.perf_counter() - started) * 1000
    return board


def _collect(using: str, now: datetime) -> Dashboard:
    from .models import TaskResult, WorkerState

    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    finished = TaskResult.objects.using(using).filter(date_done__gte=start, date_done__lte=now)
    counts: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    rows = (finished.filter(state__in=(states.SUCCESS, states.FAILURE)).order_by()
            .annotate(minute=_minute(using)).values("minute", "state").annotate(n=Count("pk")))
    for row in rows:
        counts[_as_minute(row["minute"])][0 if row["state"] == states.SUCCESS else 1] += row["n"]
    per_minute = [(minute, counts[minute][0], counts[minute][1]) for minute in _minutes(start)]

    sample = list(finished.filter(runtime__isnull=False).order_by("-date_done")
                  .values_list("task_name", "runtime")[:RUNTIME_SAMPLE])
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, runtime in sample:
        by_name[name].append(float(runtime or 0.0))
    runtimes = sorted(((name, len(values), percentile(values, 50), percentile(values, 95))
                       for name, values in by_name.items()), key=lambda row: -row[3])

    workers = list(WorkerState.objects.filter(WorkerState.online_q()))  # where the heartbeats write
    oldest = _oldest_pending(using, now)
    names = {djq_settings.DEFAULT_QUEUE, *(q for w in workers for q in (w.queues or [])), *oldest,
             *known_queues()}
    errors: list[str] = []
    queues = queue_depths(sorted(name for name in names if not plumbing_queue(name)), errors)
    listed = [QueueRow(name, depth, oldest.get(name),
                       sorted(w.hostname for w in workers if name in (w.queues or [])))
              for name, depth in queues]
    listed = [row for row in listed if row.depth or row.consumers or row.name == djq_settings.DEFAULT_QUEUE]
    return Dashboard(now, per_minute, runtimes, queues, workers, len(sample) >= RUNTIME_SAMPLE, errors=errors,
                     queue_rows=listed)


def known_queues() -> set[str]:
    """Queues this project sends to: DJQ_TASK_ROUTES, ``@task(queue=...)`` and, on the
    embedded broker, every queue with a message row."""
    from .messaging.producer import broker_alias
    from .messaging.routing import route_queues
    from .models import QueueMessage
    from .registry import registry

    names = set(route_queues())
    names.update(queue for queue in (registry.get(name).queue for name in registry.names()) if queue)
    alias = broker_alias()
    if alias is not None:
        names.update(QueueMessage.objects.using(alias).order_by().values_list("queue", flat=True).distinct())
    return names


def unconsumed_queues(own: list[str], using: str = "default") -> list[tuple[str, int]]:
    """Queues this project sends to (or with PENDING tasks) that neither ``own`` nor an
    online worker consumes, with their PENDING task counts: for the worker's banner."""
    from .models import TaskResult, WorkerState

    consumed = set(own)
    for queues in WorkerState.objects.filter(WorkerState.online_q()).values_list("queues", flat=True):
        consumed.update(queues or [])
    pending = dict(TaskResult.objects.using(using).filter(state=states.PENDING).order_by().values("queue")
                   .annotate(n=Count("pk")).values_list("queue", "n"))
    names = (known_queues() | set(pending)) - consumed
    return [(name, pending.get(name, 0)) for name in sorted(names) if name and not plumbing_queue(name)]


def _oldest_pending(using: str, now: datetime) -> dict[str, float | None]:
    """Per queue with PENDING tasks, seconds since the oldest of them was due (sent, or
    its eta); None when all of them are due later."""
    from django.db.models import Min, Q
    from django.db.models.functions import Coalesce

    from .models import TaskResult

    rows = (TaskResult.objects.using(using).filter(state=states.PENDING).order_by()
            .annotate(due=Coalesce("eta", "date_created")).values("queue")
            .annotate(oldest=Min("due", filter=Q(due__lte=now))))
    return {row["queue"]: None if row["oldest"] is None else max(0.0, (now - row["oldest"]).total_seconds())
            for row in rows}


def _minute(using: str) -> Any:
    """The minute of date_done, in SQL. SQLite's TruncMinute is a Python function called
    per row; its stored text ('YYYY-MM-DD HH:MM:SS...', UTC) is cut in SQL instead."""
    if connections[using].vendor == "sqlite":
        return Substr(Cast("date_done", CharField()), 1, 16)
    return TruncMinute("date_done")


def _as_minute(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _minutes(start: datetime) -> Iterator[datetime]:
    for i in range(MINUTES):
        yield start + timedelta(minutes=i)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def queue_depths(names: list[str], errors: list[str]) -> list[tuple[str, int | None]]:
    """Messages waiting per queue, asked of the broker (None when it cannot say); on
    Redis also every queue bound there (kombu's binding sets), whoever declared it."""
    from .messaging.producer import broker_connection, describe_broker

    depths: list[tuple[str, int | None]] = []
    try:
        with broker_connection() as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            names = sorted(set(names) | {name for name in _redis_bound(channel) if not plumbing_queue(name)})
            for name in names:
                try:
                    depths.append((name, int(channel.queue_declare(name, passive=True).message_count)))
                except Exception:  # not declared yet on this broker: nothing waits there
                    depths.append((name, 0))
                    channel = connection.channel()  # AMQP closes a channel on a failed passive declare
    except Exception as exc:
        errors.append(f"broker {describe_broker(djq_settings.BROKER_URL)}: {exc}")
        depths = [(name, None) for name in names]
    return depths


def _redis_bound(channel: Any) -> set[str]:
    """Queue names in kombu's Redis binding sets (``_kombu.binding.<exchange>``)."""
    client = getattr(channel, "client", None)
    prefix = getattr(channel, "keyprefix_queue", None)
    if client is None or not isinstance(prefix, str) or "%s" not in prefix:
        return set()
    separator = getattr(channel, "sep", "\x06\x16")
    found = set()
    for key in client.scan_iter(match=prefix.replace("%s", "*"), count=500):
        for member in client.smembers(key):
            text = member.decode() if isinstance(member, bytes) else str(member)
            found.add(text.split(separator)[-1])
    return found


class _QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


# -- charts ----------------------------------------------------------------------------------------
SUCCESS_COLOUR, FAILURE_COLOUR, BAR_COLOUR = "#2e7d32", "#c62828", "#1565c0"


def throughput_chart(per_minute: list[tuple[datetime, int, int]], width: int = 720, height: int = 180) -> SafeString:
    """Stacked bars: succeeded (green) under failed (red), one per minute."""
    top = max([s + f for _, s, f in per_minute] + [1])
    plot_h, step = height - 30, width / max(len(per_minute), 1)
    bars = []
    for i, (minute, ok, bad) in enumerate(per_minute):
        x = i * step + 1
        ok_h, bad_h = ok / top * plot_h, bad / top * plot_h
        title = f"{minute:%H:%M} UTC: {ok} succeeded, {bad} failed"
        bars.append(format_html(
            '<g><title>{}</title><rect class="bar-succeeded" x="{}" y="{}" width="{}" height="{}" '
            'fill="{}"/><rect class="bar-failed" x="{}" y="{}" width="{}" height="{}" fill="{}"/></g>',
            title, _f(x), _f(10 + plot_h - ok_h), _f(step - 2), _f(ok_h), SUCCESS_COLOUR,
            _f(x), _f(10 + plot_h - ok_h - bad_h), _f(step - 2), _f(bad_h), FAILURE_COLOUR))
    labels = format_html(
        '<text x="0" y="{}" font-size="11">-60 min</text><text x="{}" y="{}" font-size="11" text-anchor="end">now'
        '</text><text x="{}" y="10" font-size="11" text-anchor="end">{} / min</text>',
        height - 4, width, height - 4, width, top)
    return format_html('<svg class="djq-chart" id="chart-throughput" width="{}" height="{}" role="img" '
                       'aria-label="succeeded and failed tasks per minute">{}{}'
                       '<line x1="0" y1="{}" x2="{}" y2="{}" stroke="#999"/></svg>',
                       width, height, mark_safe("".join(bars)), labels, 10 + plot_h, width, 10 + plot_h)


def bar_chart(rows: list[tuple[str, float]], element_id: str, unit: str = "", width: int = 520) -> SafeString:
    """Horizontal bars, one per (label, value)."""
    if not rows:
        return format_html('<p class="djq-empty" id="{}">Nothing yet.</p>', element_id)
    top = max([value for _, value in rows] + [1e-9])
    row_h, label_w = 22, 200
    scale = (width - label_w - 80) / top
    bars = format_html_join("", (
        '<g><title>{0}: {1}{2}</title><text x="0" y="{3}" font-size="12">{4}</text>'
        '<rect class="bar" x="{5}" y="{6}" width="{7}" height="14" fill="{8}"/>'
        '<text x="{9}" y="{3}" font-size="11">{1}{2}</text></g>'), (
        (label, _number(value), unit, i * row_h + 14, label[:32], label_w, i * row_h + 3,
         _f(max(value * scale, 1)), BAR_COLOUR, _f(label_w + max(value * scale, 1) + 4))
        for i, (label, value) in enumerate(rows)))
    return format_html('<svg class="djq-chart" id="{}" width="{}" height="{}">{}</svg>',
                       element_id, width, len(rows) * row_h + 4, bars)


def _f(value: float) -> str:
    return f"{value:.1f}"


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"
