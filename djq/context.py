"""The request context of the task running in this thread or greenlet (``task.request``)."""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestContext:
    id: str | None = None
    task: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    hostname: str | None = None
    queue: str | None = None
    eta: Any = None
    expires: Any = None
    timelimit: tuple[float | None, float | None] = (None, None)
    is_eager: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    #: protocol v2 embed: callbacks, errbacks, chain, chord (kept across retries)
    embed: dict[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    priority: int | None = None
    #: which delivery this is (backends/base.py ``supersedes``); 0 outside a worker
    attempt: int = 0


EMPTY = RequestContext()
current_request: ContextVar[RequestContext | None] = ContextVar("djq_current_request", default=None)
