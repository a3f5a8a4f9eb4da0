"""djq's settings: every ``DJQ_*`` Django setting, read lazily, with its default.

Nothing is read at import time; each attribute looks at ``django.conf.settings`` when it
is used, so ``override_settings`` in tests and late configuration both work. The table in
README.md lists the same names and defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("BROKER_URL", "djq://", "Broker URL. djq:// is the Django database (djq://ALIAS for another alias); redis://, amqp:// also work."),
    Setting("BROKER_TRANSPORT_OPTIONS", {}, "Extra options for the broker transport (polling_interval, visibility_timeout, ...)."),
    Setting("BROKER_POOL_LIMIT", 10, "Connections kept per process for publishing."),
    Setting("RESULT_BACKEND", "database", "Where results go: 'database' (default alias), 'database://ALIAS', 'celery://<Celery result_backend>' (database rows plus Celery's format), or a dotted path."),
    Setting("DEFAULT_QUEUE", "default", "Queue used when a task and its call name none."),
    Setting("TASK_ROUTES", {}, "Task name or glob -> queue name, or {'queue': ..., 'priority': ...}."),
    Setting("TASK_SERIALIZER", "json", "Serializer for task messages."),
    Setting("ACCEPT_CONTENT", ("json",), "Content types a worker accepts; anything else is rejected."),
    Setting("ALLOW_PICKLE", False, "Must be True before 'pickle' may appear in ACCEPT_CONTENT or TASK_SERIALIZER."),
    Setting("TASK_TIME_LIMIT", None, "Default hard time limit in seconds (None = none)."),
    Setting("TASK_SOFT_TIME_LIMIT", None, "Default soft time limit in seconds (None = none)."),
    Setting("TASK_ACKS_LATE", False, "Default for acks_late: ack after the task ran instead of before."),
    Setting("TASK_TRACK_STARTED", True, "Record the STARTED state when a worker begins a task."),
    Setting("TASK_ALWAYS_EAGER", False, "Run tasks in-process on delay() (for tests); no broker involved."),
    Setting("STORE_ERRORS_EVEN_IF_IGNORED", True, "Record FAILURE for tasks with ignore_result (their successes are not stored)."),
    Setting("RESULT_EXPIRES", 86400, "Seconds finished results are kept; djq_cleanup and the built-in cleanup task delete older ones (None = forever)."),
    Setting("RESULT_CLEANUP_SCHEDULE", "0 4 * * *", "When beat runs the built-in cleanup task (a crontab string; None = never)."),
    Setting("REVOKES_EXPIRE", 86400 * 3, "Seconds a revoke is remembered (workers load revokes younger than this)."),
    Setting("WORKER_REVOKE_REFRESH", 1.0, "Seconds between a worker's looks at new revokes in the database."),
    Setting("WORKER_ETA_MAX_HELD", 1000, "Most eta/countdown tasks a worker holds in memory on Redis/RabbitMQ; more wait in the database."),
    Setting("WORKER_POOL", "prefork", "Pool used when djq_worker gets no -P (prefork, threads, solo, gevent, eventlet, asyncio)."),
    Setting("WORKER_ASYNCIO_SYNC_THREADS", None, "Threads that run plain (not async def) tasks on an asyncio worker (None = min(concurrency, 32))."),
    Setting("WORKER_ASYNCIO_LAG_THRESHOLD", 0.5, "Seconds the asyncio pool's event loop may lag before the task blocking it is logged."),
    Setting("WORKER_CONCURRENCY", None, "Tasks run at once per worker (None = number of CPUs)."),
    Setting("WORKER_PREFETCH_MULTIPLIER", 4, "Messages reserved per pool slot."),
    Setting("WORKER_QUEUES", None, "Queues served when djq_worker gets no -Q (None = DEFAULT_QUEUE)."),
    Setting("WORKER_AUTOSCALE_KEEPALIVE", 10.0, "Seconds an autoscaled pool idles before it shrinks."),
    Setting("WORKER_HEARTBEAT_INTERVAL", 5.0, "Seconds between a worker's heartbeats; two missed beats mark it offline."),
    Setting("WORKER_SEND_TASK_EVENTS", False, "Workers publish task and worker events (as djq_worker -E does)."),
    Setting("TASK_STORE_PENDING", True, "delay()/apply_async() store a PENDING result row with the message (same transaction on djq://), so waiting tasks show and can be revoked; not for ignore_result tasks."),
    Setting("DATABASE_PREPARED_STATEMENTS", True, "On PostgreSQL (psycopg 3) djq's own statements (result upserts, PENDING rows, the djq:// transport's) are prepared once per connection; off for a pooler that cannot keep them (also off where DISABLE_SERVER_SIDE_CURSORS is set, or OPTIONS set prepare_threshold)."),
    Setting("TASK_SEND_SENT_EVENT", False, "delay()/apply_async() publish a task-sent event."),
    Setting("EVENTS_RETENTION_HOURS", 24, "Hours djq_events --camera keeps stored events (None = forever)."),
    Setting("CONTROL_TIMEOUT", 1.0, "Seconds djq_inspect/djq_control wait for replies when given no --timeout."),
    Setting("CELERY_MAILBOX", True, "On Redis/RabbitMQ workers also answer Celery's pidbox ('celery inspect/control'), and djq_inspect/djq_control also ask Celery workers."),
    Setting("CELERY_EVENTS", True, "On Redis/RabbitMQ workers with events on also publish them on Celery's 'celeryev' exchange, and djq_events also reads it."),
    Setting("BEAT_SCHEDULE", {}, "Periodic tasks declared in code: name -> {'task': ..., 'schedule': ...}; see docs/beat.md."),
    Setting("BEAT_MAX_TICK", 5.0, "Longest beat sleeps between looks at the schedule (seconds): admin edits apply within it."),
    Setting("BEAT_RUN_HISTORY_DAYS", 7, "Days beat keeps its log of sent runs (None = forever)."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


class DjqSettings:
    """Typed, lazy view of the DJQ_* settings."""

    BROKER_URL: str
    BROKER_TRANSPORT_OPTIONS: dict[str, Any]
    BROKER_POOL_LIMIT: int
    RESULT_BACKEND: str
    DEFAULT_QUEUE: str
    TASK_ROUTES: dict[str, Any]
    TASK_SERIALIZER: str
    ACCEPT_CONTENT: tuple[str, ...]
    ALLOW_PICKLE: bool
    TASK_TIME_LIMIT: float | None
    TASK_SOFT_TIME_LIMIT: float | None
    TASK_ACKS_LATE: bool
    TASK_TRACK_STARTED: bool
    TASK_ALWAYS_EAGER: bool
    STORE_ERRORS_EVEN_IF_IGNORED: bool
    RESULT_EXPIRES: float | None
    RESULT_CLEANUP_SCHEDULE: str | None
    REVOKES_EXPIRE: float
    WORKER_REVOKE_REFRESH: float
    WORKER_ETA_MAX_HELD: int
    WORKER_POOL: str
    WORKER_ASYNCIO_SYNC_THREADS: int | None
    WORKER_ASYNCIO_LAG_THRESHOLD: float
    WORKER_CONCURRENCY: int | None
    WORKER_PREFETCH_MULTIPLIER: int
    WORKER_QUEUES: list[str] | None
    WORKER_AUTOSCALE_KEEPALIVE: float
    WORKER_HEARTBEAT_INTERVAL: float
    WORKER_SEND_TASK_EVENTS: bool
    TASK_SEND_SENT_EVENT: bool
    DATABASE_PREPARED_STATEMENTS: bool
    EVENTS_RETENTION_HOURS: float | None
    CONTROL_TIMEOUT: float
    CELERY_MAILBOX: bool
    CELERY_EVENTS: bool
    BEAT_SCHEDULE: dict[str, dict[str, Any]]
    BEAT_MAX_TICK: float
    BEAT_RUN_HISTORY_DAYS: int | None

    def __getattr__(self, name: str) -> Any:
        # Read on every task (acks_late, track_started, ...): a missing Django setting costs
        # an exception inside LazySettings each time, so values are kept until a DJQ_
        # setting changes (override_settings and pytest-django's ``settings`` say so).
        try:
            return _values[name]
        except KeyError:
            pass
        try:
            setting = _BY_NAME[name]
        except KeyError:
            raise AttributeError(f"djq has no setting {name!r}") from None
        value = _values[name] = getattr(django_settings, f"DJQ_{name}", setting.default)
        return value

    @property
    def accept_content(self) -> frozenset[str]:
        """ACCEPT_CONTENT normalised to kombu content-type names."""
        names = self.ACCEPT_CONTENT
        if isinstance(names, str):
            names = (names,)
        return frozenset(_CONTENT_ALIASES.get(n, n) for n in names)


_CONTENT_ALIASES = {
    "json": "application/json",
    "pickle": "application/x-python-serialize",
    "yaml": "application/x-yaml",
    "msgpack": "application/x-msgpack",
}

_values: dict[str, Any] = {}


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("DJQ_"):
        _values.clear()


setting_changed.connect(_forget)
djq_settings = DjqSettings()
