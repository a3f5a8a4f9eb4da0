"""System checks for the DJQ_* settings (``manage.py check``).

djq.E001 broker URL      djq.E002 result backend    djq.E003 pickle not allowed
djq.E004 default queue   djq.E005 worker numbers    djq.E006 time limits
djq.E007 worker pool     djq.E008 task routes       djq.E009 beat schedule
djq.E010 Django TASKS backend                       djq.W010 Django task queue no worker serves
djq.E011 task lifecycle (result expiry, revokes, eta holding)
djq.E012 monitoring (heartbeat, control timeout, events retention)
djq.E013 a package the broker needs is not installed (names the extra: pip install 'djq[redis]')
djq.W014 a queue routes or task options send to that no configured worker consumes
djq.W001 SQLite without WAL                         djq.W011 django_tasks app missing (Django 5.2)
"""
from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import connections

from .conf import djq_settings
from .messaging.producer import KNOWN_SCHEMES  # one list for the check and for delay()


@checks.register("djq")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    errors += _check_broker()
    errors += _check_backend()
    errors += _check_serialization()
    errors += _check_numbers()
    errors += _check_routes()
    errors += _check_beat()
    errors += _check_django_tasks()
    errors += _check_lifecycle()
    errors += _check_monitoring()
    return errors


def _check_django_tasks() -> list[checks.CheckMessage]:
    """TASKS entries naming djq's backend: the framework is there, and the backend is sound.

    Django 6 runs each backend's ``check()`` itself, and so does the backport when its app
    is installed; otherwise djq runs them here.
    """
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    from .contrib.tasks import configured_aliases

    aliases = configured_aliases()
    if not aliases:
        return []
    try:
        from .contrib.tasks import compat
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="djq.E010")]
    if compat.FRAMEWORK_APP is None or apps.is_installed(compat.FRAMEWORK_APP):
        return []
    errors: list[checks.CheckMessage] = [checks.Warning(
        f"TASKS uses djq's backend through the {compat.FRAMEWORK_APP} backport, which is not in INSTALLED_APPS",
        hint=f"add {compat.FRAMEWORK_APP!r} to INSTALLED_APPS so its checks and task logging run", id="djq.W011")]
    for alias in aliases:
        try:
            errors += list(compat.task_backends()[alias].check())
        except Exception as exc:  # the backend cannot even be built: that is the message
            errors.append(checks.Error(f"TASKS[{alias!r}]: {exc}", id="djq.E010"))
    return errors


def _positive_numbers(names: tuple[tuple[str, bool], ...], what: str, check_id: str) -> list[checks.CheckMessage]:
    """An error for each setting (name, None allowed) that is not a positive number."""
    errors: list[checks.CheckMessage] = []
    for name, allow_none in names:
        value = getattr(djq_settings, name)
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append(checks.Error(f"DJQ_{name} must be {what}{' or None' if allow_none else ''}, "
                                       f"got {value!r}", id=check_id))
    return errors


def _check_lifecycle() -> list[checks.CheckMessage]:
    errors = _positive_numbers((("RESULT_EXPIRES", True), ("REVOKES_EXPIRE", False), ("WORKER_REVOKE_REFRESH", False)),
                               "a positive number of seconds", "djq.E011")
    held = djq_settings.WORKER_ETA_MAX_HELD
    if isinstance(held, bool) or not isinstance(held, int) or held < 0:
        errors.append(checks.Error(f"DJQ_WORKER_ETA_MAX_HELD must be a whole number >= 0, got {held!r}", id="djq.E011"))
    if not isinstance(djq_settings.STORE_ERRORS_EVEN_IF_IGNORED, bool):
        errors.append(checks.Error("DJQ_STORE_ERRORS_EVEN_IF_IGNORED must be True or False", id="djq.E011"))
    return errors


def _check_monitoring() -> list[checks.CheckMessage]:
    errors = _positive_numbers((("WORKER_HEARTBEAT_INTERVAL", False), ("CONTROL_TIMEOUT", False),
                                ("EVENTS_RETENTION_HOURS", True)), "a positive number", "djq.E012")
    for name in ("WORKER_SEND_TASK_EVENTS", "TASK_SEND_SENT_EVENT"):
        if not isinstance(getattr(djq_settings, name), bool):
            errors.append(checks.Error(f"DJQ_{name} must be True or False", id="djq.E012"))
    return errors


def _check_routes() -> list[checks.CheckMessage]:
    from .exceptions import ConfigurationError
    from .messaging.routing import check_routes

    try:
        check_routes()
    except ConfigurationError as exc:
        return [checks.Error(str(exc), id="djq.E008")]
    return _check_unconsumed()


def _check_unconsumed() -> list[checks.CheckMessage]:
    """Queues DJQ_TASK_ROUTES or ``@task(queue=...)`` send to that a worker started
    without -Q does not consume: their tasks wait until someone starts one with -Q."""
    from .messaging.routing import route_for, route_queues
    from .registry import registry

    consumed = djq_settings.WORKER_QUEUES or [djq_settings.DEFAULT_QUEUE]
    if not isinstance(consumed, (list, tuple)) or "*" in consumed:
        return []
    named: dict[str, str] = {queue: "DJQ_TASK_ROUTES" for queue in route_queues()}
    for name in registry.names():
        queue = registry.get(name).queue
        if queue and "queue" not in route_for(name):  # a route wins over the task's own option
            named.setdefault(queue, f"@task(queue=...) of {name}")
    return [checks.Warning(
        f"queue {queue!r} ({origin}) is consumed by no worker started without -Q "
        f"(they consume {', '.join(map(repr, consumed))}, DJQ_WORKER_QUEUES): its tasks would wait forever",
        hint=f"start a worker for it (manage.py djq_worker -Q {','.join([*consumed, queue])}) or add it to "
             "DJQ_WORKER_QUEUES", id="djq.W014")
        for queue, origin in sorted(named.items()) if queue not in consumed]


def _check_beat() -> list[checks.CheckMessage]:
    """DJQ_BEAT_SCHEDULE and @periodic entries parse, and name registered tasks."""
    from .beat.declare import declarations
    from .beat.service import check_max_tick
    from .exceptions import ConfigurationError
    from .registry import registry

    errors: list[checks.CheckMessage] = []
    try:
        check_max_tick(djq_settings.BEAT_MAX_TICK)
    except ConfigurationError as exc:
        errors.append(checks.Error(f"DJQ_BEAT_MAX_TICK: {exc}", id="djq.E009"))
    days = djq_settings.BEAT_RUN_HISTORY_DAYS
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        errors.append(checks.Error(f"DJQ_BEAT_RUN_HISTORY_DAYS must be a whole number of days >= 1 or None, got {days!r}",
                                   id="djq.E009"))
    try:
        found = declarations()
    except ConfigurationError as exc:  # ScheduleError is one too
        return errors + [checks.Error(str(exc), id="djq.E009")]
    for declared in found:
        if declared.task not in registry:
            errors.append(checks.Error(f"{declared.origin}: task {declared.task!r} is not registered",
                                       hint="check the name, and that its app has a tasks module", id="djq.E009"))
    return errors


def _check_broker() -> list[checks.CheckMessage]:
    url = djq_settings.BROKER_URL
    if not isinstance(url, str) or "://" not in url:
        return [checks.Error(f"DJQ_BROKER_URL {url!r} is not a URL", hint="e.g. 'djq://' or 'redis://localhost:6379/0'", id="djq.E001")]
    scheme, rest = url.split("://", 1)
    if scheme not in KNOWN_SCHEMES:
        return [checks.Error(f"DJQ_BROKER_URL uses unknown scheme {scheme!r}", hint=f"known: {', '.join(KNOWN_SCHEMES)}", id="djq.E001")]
    alias = rest.split("/", 1)[0] or "default"
    if scheme == "djq" and alias not in connections.settings:
        return [checks.Error(f"DJQ_BROKER_URL {url!r} names database alias {alias!r}, which is not in DATABASES", id="djq.E001")]
    from .extras import missing_for_broker

    missing = missing_for_broker(url)
    if missing:
        return [checks.Error(missing, id="djq.E013")]
    if scheme != "djq":
        return []
    engine = connections.settings[alias].get("ENGINE", "")
    if engine.endswith("sqlite3"):
        init = str((connections.settings[alias].get("OPTIONS") or {}).get("init_command", "")).lower()
        if "journal_mode=wal" not in init.replace(" ", ""):
            return [checks.Warning(
                f"the djq:// broker is on SQLite database {alias!r} without WAL journal mode; "
                "workers and the web process will block each other",
                hint='add "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}',
                id="djq.W001",
            )]
    elif not (engine.endswith("postgresql") or engine.endswith("postgis")):
        return [checks.Error(f"the djq:// broker supports SQLite and PostgreSQL, not {engine}", id="djq.E001")]
    return []


def _check_backend() -> list[checks.CheckMessage]:
    from .backends import parse_backend_setting
    from .exceptions import ConfigurationError

    value = djq_settings.RESULT_BACKEND
    try:
        path, option = parse_backend_setting(value)
    except ConfigurationError as exc:
        return [checks.Error(str(exc), id="djq.E002")]
    if path.endswith("DatabaseBackend") and option and option not in connections.settings:
        return [checks.Error(f"DJQ_RESULT_BACKEND {value!r} names database alias {option!r}, which is not in DATABASES", id="djq.E002")]
    if path.endswith("CeleryBridgeBackend"):  # its URL is checked when it is built (no connection yet)
        from .backends import load_backend

        try:
            load_backend(value)
        except ConfigurationError as exc:
            return [checks.Error(str(exc), id="djq.E002")]
    return []


def _check_serialization() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    accept = djq_settings.ACCEPT_CONTENT
    if isinstance(accept, str) or not all(isinstance(a, str) for a in accept or ()):
        errors.append(checks.Error("DJQ_ACCEPT_CONTENT must be a list of content type names", id="djq.E003"))
        return errors
    wants_pickle = "pickle" in accept or "application/x-python-serialize" in accept or djq_settings.TASK_SERIALIZER == "pickle"
    if wants_pickle and djq_settings.ALLOW_PICKLE is not True:
        errors.append(checks.Error(
            "pickle is in DJQ_ACCEPT_CONTENT or DJQ_TASK_SERIALIZER, but DJQ_ALLOW_PICKLE is not True",
            hint="pickle lets anyone who can publish a message run code on your workers; set DJQ_ALLOW_PICKLE = True only if you accept that",
            id="djq.E003",
        ))
    if djq_settings.TASK_SERIALIZER not in ("json", "pickle", "yaml", "msgpack"):
        errors.append(checks.Error(f"DJQ_TASK_SERIALIZER {djq_settings.TASK_SERIALIZER!r} is unknown", id="djq.E003"))
    queue = djq_settings.DEFAULT_QUEUE
    if not isinstance(queue, str) or not queue.strip():
        errors.append(checks.Error(f"DJQ_DEFAULT_QUEUE must be a non-empty string, got {queue!r}", id="djq.E004"))
    return errors


def _positive_int(name: str, value: Any, allow_none: bool) -> list[checks.CheckMessage]:
    if value is None and allow_none:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [checks.Error(f"DJQ_{name} must be a positive integer, got {value!r}", id="djq.E005")]
    return []


def _check_numbers() -> list[checks.CheckMessage]:
    from .concurrency import POOLS

    errors = _positive_int("WORKER_CONCURRENCY", djq_settings.WORKER_CONCURRENCY, True)
    errors += _positive_int("WORKER_PREFETCH_MULTIPLIER", djq_settings.WORKER_PREFETCH_MULTIPLIER, False)
    errors += _positive_int("BROKER_POOL_LIMIT", djq_settings.BROKER_POOL_LIMIT, False)
    limits = {}
    for name in ("TASK_TIME_LIMIT", "TASK_SOFT_TIME_LIMIT"):
        value = getattr(djq_settings, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            errors.append(checks.Error(f"DJQ_{name} must be a positive number of seconds or None, got {value!r}", id="djq.E006"))
        else:
            limits[name] = value
    hard, soft = limits.get("TASK_TIME_LIMIT"), limits.get("TASK_SOFT_TIME_LIMIT")
    if hard and soft and soft >= hard:
        errors.append(checks.Error("DJQ_TASK_SOFT_TIME_LIMIT must be below DJQ_TASK_TIME_LIMIT", id="djq.E006"))
    if djq_settings.WORKER_POOL not in POOLS:
        errors.append(checks.Error(f"DJQ_WORKER_POOL {djq_settings.WORKER_POOL!r} is unknown", hint=f"choose one of {', '.join(sorted(POOLS))}", id="djq.E007"))
    if not isinstance(djq_settings.BROKER_TRANSPORT_OPTIONS, dict):
        errors.append(checks.Error("DJQ_BROKER_TRANSPORT_OPTIONS must be a dict", id="djq.E001"))
    return errors
