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
        from . import builtins  # noqa: F401 - registers djq.map, djq.starmap, djq.cleanup

        autodiscover_modules("tasks")
