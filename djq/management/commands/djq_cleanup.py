"""``manage.py djq_cleanup``: delete finished results older than DJQ_RESULT_EXPIRES, and old revokes."""
from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djq.exceptions import DjqError
from djq.housekeeping import cleanup


def non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {value!r}")
    return number


class Command(BaseCommand):
    help = "Delete finished task results older than DJQ_RESULT_EXPIRES (running tasks are never touched)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=non_negative, metavar="SECONDS",
                            help="keep results younger than this (default DJQ_RESULT_EXPIRES)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            removed = cleanup(expires=opts["older_than"])
        except DjqError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("deleted " + ", ".join(f"{count} {kind}" for kind, count in removed.items()))
