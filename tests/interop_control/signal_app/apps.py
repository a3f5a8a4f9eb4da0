from __future__ import annotations

import json
import os
from typing import Any

from django.apps import AppConfig


def _record(name: str):  # type: ignore[no-untyped-def]
    def receiver(sender: Any, signal: Any, **arguments: Any) -> None:
        request = arguments.get("request")
        entry = {"signal": name, "sender": getattr(sender, "name", None) if not isinstance(sender, str) else sender,
                 "sender_type": type(sender).__name__, "arguments": sorted(arguments), "pid": os.getpid(),
                 "task_id": arguments.get("task_id") or getattr(request, "id", None) or arguments.get("id")
                 or (arguments.get("headers") or {}).get("id"),
                 "state": arguments.get("state"), "result": repr(arguments.get("result", arguments.get("retval"))),
                 "exception": repr(arguments.get("exception") or arguments.get("reason") or arguments.get("exc")),
                 "einfo": str(arguments["einfo"])[-200:] if arguments.get("einfo") is not None else None,
                 "trace": (getattr(getattr(request, "msg", None), "headers", None) or {}).get("x-trace")}
        with open(os.environ["DJQ_TEST_SIGNAL_LOG"], "a") as fh:
            fh.write(json.dumps(entry) + "\n")
    return receiver


class SignalAppConfig(AppConfig):
    name = "tests.interop_control.signal_app"

    def ready(self) -> None:
        from djq import signals

        for name in signals.ALL:
            getattr(signals, name).connect(_record(name), weak=False, dispatch_uid=f"test-{name}")
