"""The demo app: sample tasks, a home page that sends them, and the ``demo`` command."""
from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "djq demo"
