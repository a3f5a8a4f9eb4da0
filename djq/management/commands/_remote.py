"""Shared by djq_inspect and djq_control: common options and printing the replies."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from djq import control


def add_common(parser: CommandParser) -> None:
    parser.add_argument("-d", "--destination", help="comma-separated worker hostnames (default: all workers)")
    parser.add_argument("-t", "--timeout", type=float, help="seconds to wait for replies (default DJQ_CONTROL_TIMEOUT)")
    parser.add_argument("--json", action="store_true", help="print the replies as JSON")


def run(command: Any, method: str, arguments: dict[str, Any], opts: dict[str, Any]) -> None:
    destination = [d.strip() for d in opts["destination"].split(",") if d.strip()] if opts["destination"] else None
    if opts["timeout"] is not None and opts["timeout"] <= 0:
        raise CommandError("--timeout must be a positive number of seconds")
    try:
        replies = control.broadcast(method, arguments, destination=destination, timeout=opts["timeout"])
    except control.ControlError as exc:
        raise CommandError(str(exc)) from exc
    if opts["json"]:
        command.stdout.write(json.dumps(replies, indent=2, sort_keys=True, default=str))
    else:
        command.stdout.write(readable(replies))
    if not replies:
        raise CommandError("no worker replied" + (f" (asked: {', '.join(destination)})" if destination else ""))
    errors = [f"{hostname}: {reply['error']}" for item in replies for hostname, reply in item.items()
              if isinstance(reply, dict) and "error" in reply]
    if errors:
        raise CommandError("; ".join(errors))


def readable(replies: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for item in sorted(replies, key=lambda r: next(iter(r), "")):
        for hostname, reply in item.items():
            if isinstance(reply, dict) and set(reply) <= {"ok", "error"}:
                lines.append(f"-> {hostname}: {'ERROR ' + reply['error'] if 'error' in reply else reply['ok']}")
            elif isinstance(reply, list):
                lines.append(f"-> {hostname}: {len(reply)} item(s)")
                lines.extend(f"    * {_item(entry)}" for entry in reply)
            else:
                lines.append(f"-> {hostname}:")
                lines.extend("    " + line for line in json.dumps(reply, indent=2, default=str).splitlines())
    lines.append(f"{len(replies)} worker(s) replied.")
    return "\n".join(lines)


def _item(entry: Any) -> str:
    if isinstance(entry, dict) and "request" in entry:
        return f"eta {entry.get('eta')}: {_item(entry['request'])}"
    if isinstance(entry, dict) and "id" in entry:
        return f"{entry.get('name')}[{entry['id']}] args={entry.get('args')} kwargs={entry.get('kwargs')}"
    if isinstance(entry, dict) and "name" in entry:
        return str(entry["name"])
    return str(entry)
