"""Messages a worker cannot run (undecodable, unknown task, bad arguments): kept, not lost.

Each is stored as a ``RejectedMessage`` row (the body as text, binary as base64) for the
admin, and when it names a task id, that task's result is a FAILURE saying why. The
consumer then drops the message from the queue for good.
"""
from __future__ import annotations

import base64
import json
import logging
from typing import Any

from .. import states
from ..backends import get_backend
from ..backends.base import TaskInfo, exception_to_meta
from ..exceptions import MessageError

logger = logging.getLogger(__name__)


def record_rejected(message: Any, queue: str, reason: str, headers: dict[str, Any], *,
                    task_id: str, task_name: str, worker: str) -> None:
    """Store the rejected message, and a FAILURE for its task; never raises."""
    try:
        from ..models import RejectedMessage

        RejectedMessage.objects.create(
            queue=queue, task_name=task_name[:255], task_id=task_id[:255], reason=reason,
            content_type=(message.content_type or "")[:100], headers=_safe_json(headers),
            body=_printable_body(message.body), worker=worker,
        )
        if task_id:
            info = TaskInfo(task_id=task_id, task_name=task_name or "?", worker=worker, queue=queue)
            error = MessageError(reason)
            get_backend().store(info, states.FAILURE, result=exception_to_meta(error), traceback=reason)
    except Exception as exc:
        logger.exception("could not record rejected message %s: %s", task_id or "-", exc)


def _printable_body(body: Any) -> str:
    """The body as text a database accepts (no NUL bytes); binary bodies as base64."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(body[:75_000]).decode("ascii")
    text = str(body)
    if "\x00" in text:
        return "base64:" + base64.b64encode(text.encode("utf-8")[:75_000]).decode("ascii")
    return text[:100_000]


def _safe_json(value: Any) -> str:
    try:
        return json.dumps(value, default=repr)[:100_000]  # json.dumps escapes NUL bytes
    except Exception:
        return repr(value)[:100_000]
