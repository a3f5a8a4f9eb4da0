"""``manage.py djq_control revoke|terminate|...``: give running workers a command.

    djq_control revoke TASK_ID [TASK_ID ...]
    djq_control terminate TASK_ID [...] [--signal SIGKILL]
    djq_control rate_limit TASK_NAME 10/s        (0 or "" removes the limit)
    djq_control time_limit TASK_NAME SOFT HARD   (seconds; "none" for no limit)
    djq_control pool_grow [N] / pool_shrink [N] / pool_restart
    djq_control autoscale MAX [MIN]
    djq_control add_consumer QUEUE / cancel_consumer QUEUE
    djq_control shutdown
"""
from __future__ import annotations

import signal as signals
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djq import control
from djq.control import CONTROL_COMMANDS
from djq.exceptions import TaskOptionError

from ._remote import add_common, run

#: command -> names of its positional arguments ("*" suffix: one or more; "?" suffix: optional)
ARGUMENTS: dict[str, tuple[str, ...]] = {
    "revoke": ("task_id*",), "terminate": ("task_id*",), "rate_limit": ("task_name", "rate_limit"),
    "time_limit": ("task_name", "soft", "hard?"), "pool_grow": ("n?",), "pool_shrink": ("n?",),
    "pool_restart": (),
    "autoscale": ("max", "min?"), "add_consumer": ("queue",), "cancel_consumer": ("queue",), "shutdown": (),
}
NUMBERS = {"n": int, "max": int, "min": int, "soft": float, "hard": float}


class Command(BaseCommand):
    help = "Give running djq workers a command: " + ", ".join(CONTROL_COMMANDS) + "."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("method", choices=CONTROL_COMMANDS)
        parser.add_argument("values", nargs="*", metavar="ARG", help="the command's arguments (see the module docstring)")
        parser.add_argument("--signal", default="SIGTERM", help="terminate: the signal for the task's process")
        add_common(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        arguments = parse(opts["method"], opts["values"])
        if opts["method"] in ("revoke", "terminate"):
            # Stored first, so workers started later (or offline now) honour it too.
            try:
                signal = signals.Signals(control.signal_number(opts["signal"])).name
            except TaskOptionError as exc:
                raise CommandError(str(exc)) from exc
            terminate = opts["method"] == "terminate"
            control.store_revokes(arguments["task_id"], terminate=terminate, signal=signal)
            if terminate:
                arguments["signal"] = signal
        run(self, opts["method"], arguments, opts)


def parse(method: str, values: list[str]) -> dict[str, Any]:
    names = ARGUMENTS[method]
    usage = f"usage: djq_control {method} " + " ".join(
        f"[{n[:-1].upper()}]" if n.endswith("?") else f"{n.rstrip('*').upper()}..." if n.endswith("*")
        else n.upper() for n in names)
    required = [n for n in names if not n.endswith("?")]
    many = bool(names) and names[-1].endswith("*")
    if len(values) < len(required) or (not many and len(values) > len(names)):
        raise CommandError(usage)
    if many:
        return {names[0].rstrip("*"): values}
    arguments: dict[str, Any] = {}
    for name, value in zip((n.rstrip("?") for n in names), values):
        if name in NUMBERS:
            if value.lower() in ("none", "null", ""):
                arguments[name] = None
                continue
            try:
                arguments[name] = NUMBERS[name](value)
            except ValueError:
                raise CommandError(f"{name} must be a number, got {value!r}; {usage}") from None
        else:
            arguments[name] = value
    return arguments
