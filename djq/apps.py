"""The djq Django app: finds ``tasks`` modules and registers checks and the broker transport."""
from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjqConfig(AppConfig):
    name = "djq"
    verbose_name = "Tasks (djq)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
        from .messaging.transport import register

        register()
        _resolve_django_tasks()
        from . import builtins  # noqa: F401 - registers djq.map, djq.starmap, djq.cleanup

        autodiscover_modules("tasks")


def _resolve_django_tasks() -> None:
    """With djq in TASKS, workers find Django tasks by module path (djq.contrib.tasks)."""
    from django.core.exceptions import ImproperlyConfigured

    from .contrib.tasks import configured_aliases
    from .registry import registry

    if not configured_aliases():
        return
    try:
        from .contrib.tasks.adapter import resolve
    except ImproperlyConfigured:  # no task framework installed: djq.E010 says so
        return
    registry.add_resolver(resolve)
