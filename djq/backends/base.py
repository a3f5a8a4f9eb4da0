"""The result backend contract, and how results and exceptions are encoded for storage."""
from __future__ import annotations

import builtins
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kombu.utils.json import dumps as json_dumps
from kombu.utils.json import loads as json_loads

from .. import states
from ..exceptions import EncodeError, TaskError


@dataclass
class TaskInfo:
    """What a backend records about the task a state belongs to."""

    task_id: str
    task_name: str
    args_repr: str = ""
    kwargs_repr: str = ""
    worker: str | None = None
    queue: str = ""
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    #: which delivery wrote it (see ``supersedes``); 0 for writes from outside a worker
    attempt: int = 0
    #: the running task is acked late, so a lost worker's broker delivers it again
    acks_late: bool = False
    #: when the task was sent, for a new row's ``date_created`` (None: the time of the
    #: write); the sender passes its own clock's reading so both sides hold one value
    created: datetime | None = None
    #: Celery's result bridge (backends/celery_bridge.py): where a Celery client waits
    #: for the reply (rpc://), its correlation id, and the group the task belongs to
    reply_to: str | None = None
    correlation_id: str | None = None
    group_id: str | None = None


def supersedes(new_state: str, new_retries: int, new_attempt: int,
               old_state: str, old_retries: int, old_attempt: int) -> bool:
    """Whether a write may replace the stored state: states never move backwards.

    A write of a later retry always wins; an earlier retry's never does. Within one
    retry, a newer delivery (a larger ``attempt``) wins. A final state (SUCCESS, FAILURE,
    REVOKED) is otherwise kept: a late or wrong write of the same delivery (a pool
    blaming a task that had finished, an orphan sweep racing the real end) cannot
    replace it. A state that is not final yields to any final state, to a write of the
    same delivery (STARTED -> PROGRESS), and to a write from outside a worker
    (``attempt`` 0, e.g. ``update_state(task_id=...)``), except PENDING, which only ever
    creates a row. Each backend enforces this where it writes (one conditional upsert in
    the database backend); the database backend's SQL says the same as this function.
    """
    if new_retries != old_retries:
        return new_retries > old_retries
    if new_attempt > old_attempt:
        return True
    if old_state in states.READY_STATES:
        return False
    return (new_state in states.READY_STATES or new_attempt == old_attempt
            or (new_attempt == 0 and new_state != states.PENDING))


@dataclass
class ResultMeta:
    """A stored task state as read back from a backend."""

    task_id: str
    state: str
    result: Any = None
    traceback: str | None = None
    task_name: str | None = None
    worker: str | None = None
    retries: int = 0
    date_done: datetime | None = None
    parent_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    date_created: datetime | None = None
    date_started: datetime | None = None
    queue: str = ""
    args_repr: str = ""
    kwargs_repr: str = ""
    #: ``module.QualName`` of a stored exception (FAILURE, REVOKED), even when the
    #: reading process cannot import it.
    exception_path: str | None = None


def encode_value(value: Any) -> str:
    try:
        return json_dumps(value)
    except Exception as exc:
        raise EncodeError(f"value of type {type(value).__name__} cannot be encoded as JSON: {exc}") from exc


def decode_value(text: str | None) -> Any:
    return None if text is None else json_loads(text)


def exception_to_meta(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    try:
        args: list[Any] | None = list(exc.args)
        json_dumps(args)
    except Exception:
        args = None
    return {"exc_type": cls.__qualname__, "exc_module": cls.__module__, "exc_message": str(exc), "exc_args": args}


def exception_path(meta: Any) -> str | None:
    """``module.QualName`` of an exception stored by ``exception_to_meta``."""
    if not isinstance(meta, dict) or "exc_type" not in meta:
        return None
    return f"{meta.get('exc_module') or 'builtins'}.{meta['exc_type']}"


def meta_to_exception(meta: Any) -> BaseException:
    """Rebuild a stored exception; classes not already imported here become TaskError."""
    if not isinstance(meta, dict) or "exc_type" not in meta:
        return TaskError("Exception", str(meta))
    module = sys.modules.get(meta.get("exc_module") or "builtins", builtins)
    cls: Any = module
    for part in str(meta["exc_type"]).split("."):
        cls = getattr(cls, part, None)
    message = meta.get("exc_message") or ""
    if isinstance(cls, type) and issubclass(cls, Exception):
        args = meta.get("exc_args")
        try:
            return cls(*args) if isinstance(args, list) else cls(message)
        except Exception:
            pass
    return TaskError(str(meta["exc_type"]), message)


class ResultBackend:
    """Stores task states and outcomes. Subclasses implement store, get and forget."""

    def __init__(self, option: str = "") -> None:
        self.option = option

    def store(
        self,
        info: TaskInfo,
        state: str,
        *,
        result: Any = None,
        traceback: str | None = None,
        date_started: datetime | None = None,
        date_done: datetime | None = None,
        runtime: float | None = None,
    ) -> bool:
        """Store ``state`` for ``info.task_id`` unless ``supersedes`` forbids it; True if stored."""
        raise NotImplementedError

    def get(self, task_id: str) -> ResultMeta | None:
        raise NotImplementedError

    # -- tasks a lost worker left running (djq/orphans.py) ---------------------------
    def running_on(self, worker: str, started_before: datetime) -> list[tuple[str, str, bool]]:
        """(task id, task name, acks late) of tasks stored as running on ``worker``
        (STARTED, RECEIVED or a custom state such as PROGRESS) that started before
        ``started_before``."""
        raise NotImplementedError(f"{type(self).__name__} cannot find a lost worker's tasks")

    def mark_lost(self, task_id: str, worker: str, started_before: datetime, *, result: Any,
                  traceback: str) -> bool:
        """FAILURE for a task still stored as running on ``worker``; False if it has moved on."""
        raise NotImplementedError(f"{type(self).__name__} cannot find a lost worker's tasks")

    def note_lost(self, task_id: str, worker: str, started_before: datetime, note: str) -> bool:
        """Say on a running row that its worker is lost and the broker delivers it again."""
        raise NotImplementedError(f"{type(self).__name__} cannot find a lost worker's tasks")

    def forget(self, task_id: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def states(self, task_ids: list[str]) -> dict[str, str]:
        """task id -> state, for the ids that have one."""
        found = {}
        for task_id in task_ids:
            meta = self.get(task_id)
            if meta is not None:
                found[task_id] = meta.state
        return found

    def save_group(self, group_id: str, task_ids: list[str]) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot store groups")

    def restore_group(self, group_id: str) -> list[str] | None:
        raise NotImplementedError(f"{type(self).__name__} cannot store groups")

    def forget_group(self, group_id: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot store groups")

    def decode_result(self, state: str, raw: Any) -> Any:
        if state in (states.FAILURE, states.REVOKED, states.RETRY):
            return meta_to_exception(raw) if isinstance(raw, dict) else raw
        return raw
