"""``manage.py djq_inspect ping|active|...``: ask running workers about themselves."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from djq.control import INSPECT_COMMANDS

from ._remote import add_common, run


class Command(BaseCommand):
    help = "Ask running djq workers: " + ", ".join(INSPECT_COMMANDS) + "."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("method", choices=INSPECT_COMMANDS)
        add_common(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        run(self, opts["method"], {}, opts)
