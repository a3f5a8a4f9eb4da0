"""Result backends, by name: ``database`` (default) or a dotted path to a ResultBackend class.

``DJQ_RESULT_BACKEND = "database"`` stores results on the default database alias,
``"database://ALIAS"`` on another alias. ``"celery://<Celery result_backend>"`` stores
as ``database`` does and also in Celery's format (backends/celery_bridge.py).
"""
from __future__ import annotations

import threading
from typing import Any

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..conf import djq_settings
from ..exceptions import ConfigurationError
from .base import ResultBackend, ResultMeta

BACKENDS = {
    "database": "djq.backends.database.DatabaseBackend",
    "celery": "djq.backends.celery_bridge.CeleryBridgeBackend",
}

_backend: ResultBackend | None = None
_lock = threading.Lock()


def parse_backend_setting(value: str) -> tuple[str, str]:
    """Split ``name://option`` into (dotted class path, option)."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"DJQ_RESULT_BACKEND must be a non-empty string, got {value!r}")
    name, _, option = value.partition("://")
    path = BACKENDS.get(name, name)
    if "." not in path:
        raise ConfigurationError(
            f"DJQ_RESULT_BACKEND {value!r}: unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))}, or a dotted path)"
        )
    return path, option


def load_backend(value: str) -> ResultBackend:
    path, option = parse_backend_setting(value)
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"DJQ_RESULT_BACKEND {value!r}: cannot import {path}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, ResultBackend)):
        raise ConfigurationError(f"DJQ_RESULT_BACKEND {value!r}: {path} is not a ResultBackend")
    return cls(option)


def get_backend() -> ResultBackend:
    global _backend
    backend = _backend
    if backend is None:
        with _lock:
            if _backend is None:
                _backend = load_backend(djq_settings.RESULT_BACKEND)
            backend = _backend
    return backend


def install_writer(*, direct_stores: bool = False) -> Any:
    """In a worker process: start a ResultWriter and make it the way this process stores
    states (backends/writer.py). Returns the writer, or None for a backend that cannot
    store rows in batches (then every store goes straight to it)."""
    global _backend
    from .writer import ResultWriter, WriterBackend

    backend = get_backend()
    if isinstance(backend, WriterBackend):
        backend = backend.inner
    if not hasattr(backend, "store_rows"):
        return None
    writer = ResultWriter(backend, direct_stores=direct_stores)
    writer.start()
    with _lock:
        _backend = WriterBackend(backend, writer)
    return writer


def remove_writer(writer: Any) -> None:
    """Store what the writer holds, stop it, and store straight to the backend again."""
    global _backend
    from .writer import WriterBackend

    writer.stop()
    with _lock:
        if isinstance(_backend, WriterBackend) and _backend.writer is writer:
            _backend = _backend.inner


def store_row(row: dict[str, Any]) -> None:
    """Store a row built elsewhere (a prefork child's task end): through this process's
    writer, or at once. Never raises: a row that cannot be stored is logged with its id."""
    import logging

    writer = current_writer()
    try:
        if writer is not None:
            writer.put_row(row)
        else:
            get_backend().store_rows([row])  # type: ignore[attr-defined]
    except Exception:
        logging.getLogger(__name__).exception("could not store the %s state of task %s", row.get("state"),
                                              row.get("task_id"))


def current_writer() -> Any:
    """The running ResultWriter of this process, if any."""
    from .writer import WriterBackend

    backend = _backend
    return backend.writer if isinstance(backend, WriterBackend) else None


def database_alias() -> str:
    """The database alias djq's own rows (revokes, chord counters) live on: the result backend's."""
    return str(getattr(get_backend(), "alias", "default"))


def _reset(*, setting: str, **kwargs: object) -> None:
    global _backend
    if setting == "DJQ_RESULT_BACKEND":
        _backend = None


setting_changed.connect(_reset)

__all__ = ["ResultBackend", "ResultMeta", "database_alias", "get_backend", "load_backend", "BACKENDS"]
