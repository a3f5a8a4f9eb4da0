"""Which implementation of Django's task API this process uses.

Django 6.0+ ships it as ``django.tasks``; on Django 5.2 the ``django-tasks`` backport
provides the same API as ``django_tasks`` (``pip install djq[django-tasks]``). Both expose
the same classes and signals; a few names differ, and this module hides that. When both
are installed, Django's own wins.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def _load() -> tuple[str, ModuleType]:
    for name in ("django.tasks", "django_tasks"):
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    raise ImproperlyConfigured(
        "djq.contrib.tasks needs Django's task framework: Django 6.0 or later, or on "
        "Django 5.2 the backport (pip install 'djq[django-tasks]')"
    )


FRAMEWORK, _api = _load()
_base: Any = importlib.import_module(f"{FRAMEWORK}.base")
_backends: Any = importlib.import_module(f"{FRAMEWORK}.backends.base")
_signals: Any = importlib.import_module(f"{FRAMEWORK}.signals")
_exceptions: Any = importlib.import_module(f"{FRAMEWORK}.exceptions")
_json: Any = importlib.import_module("django.utils.json" if FRAMEWORK == "django.tasks" else "django_tasks.utils")

#: The app to list in INSTALLED_APPS for the framework's checks and signal logging
#: (``django.tasks`` needs none).
FRAMEWORK_APP: str | None = None if FRAMEWORK == "django.tasks" else "django_tasks"

Task: Any = _base.Task
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
BaseTaskBackend: Any = _backends.BaseTaskBackend
DEFAULT_TASK_PRIORITY: int = _base.DEFAULT_TASK_PRIORITY
DEFAULT_TASK_QUEUE_NAME: str = _base.DEFAULT_TASK_QUEUE_NAME
TASK_MIN_PRIORITY: int = _base.TASK_MIN_PRIORITY
TASK_MAX_PRIORITY: int = _base.TASK_MAX_PRIORITY
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
InvalidTask: type[Exception] = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: type[Exception] = _exceptions.TaskResultDoesNotExist
normalize_json: Any = _json.normalize_json


def task_backends() -> Any:
    """The framework's ``task_backends`` handler (``TASKS`` aliases -> backend objects)."""
    return _api.task_backends
