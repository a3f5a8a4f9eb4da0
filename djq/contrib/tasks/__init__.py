"""djq as a backend of Django's task framework (``django.tasks``, or the ``django-tasks``
backport on Django 5.2)::

    TASKS = {
        "default": {"BACKEND": "djq.contrib.tasks.DjqTaskBackend"},
    }

See docs/django-tasks.md. Importing this package does not import the framework; the
backend class is loaded when ``TASKS`` asks for it.
"""
from __future__ import annotations

from typing import Any

BACKEND_PREFIX = "djq.contrib.tasks."


def configured_aliases() -> list[str]:
    """The ``TASKS`` aliases whose backend is djq's."""
    from django.conf import settings

    configured = getattr(settings, "TASKS", None)
    if not isinstance(configured, dict):
        return []
    return [alias for alias, params in configured.items()
            if isinstance(params, dict) and str(params.get("BACKEND", "")).startswith(BACKEND_PREFIX)]


def __getattr__(name: str) -> Any:
    if name in ("DjqTaskBackend", "DjqTask"):
        from . import backend

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
