"""The Celery result bridge: djq's database rows, plus each state in Celery's format.

For a shop that runs Celery clients and workers beside djq during a migration::

    DJQ_RESULT_BACKEND = "celery://redis://localhost:6379/1"   # Celery's Redis backend
    DJQ_RESULT_BACKEND = "celery://rpc://"                      # Celery's rpc:// replies

The part after ``celery://`` is the Celery app's own ``result_backend`` value. Every
state djq stores goes to its database rows (the default alias) as with ``database``,
and also, once the row is stored:

- ``redis://``: to Celery's Redis backend, as ``celery-task-meta-<id>`` (kept for
  ``DJQ_RESULT_EXPIRES`` seconds, Celery's ``result_expires``) with the same value
  published on the channel of that name, so a Celery client's ``AsyncResult.get()``
  wakes. Reading works the other way too: a task djq has no row for is looked up
  there, so djq's ``AsyncResult`` sees what a Celery worker stored. Chords sent by
  either side count their header in Celery's Redis keys (backends/celery_chord.py).
- ``rpc://``: a final state of a task whose message named a ``reply_to`` queue (as a
  Celery client's does) is published there, with the task id as correlation id.

A write to Celery's store that fails is logged with the task id; the database row,
already stored, stays the record.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any

from kombu.utils.json import dumps as json_dumps
from kombu.utils.json import loads as json_loads

from .. import states
from ..exceptions import ConfigurationError
from .base import ResultMeta, TaskInfo, decode_value
from .database import DatabaseBackend

logger = logging.getLogger(__name__)

#: Celery's exceptions that djq has under the same name (read as djq's)
_CELERY_ERRORS = frozenset({"ChordError", "TaskRevokedError", "SoftTimeLimitExceeded", "TimeLimitExceeded",
                            "WorkerLostError", "MaxRetriesExceededError", "TimeoutError"})
TASK_KEY_PREFIX = "celery-task-meta-"
GROUP_KEY_PREFIX = "celery-taskset-meta-"


def celery_meta(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as Celery's result backends hold it (status, result, traceback, ...)."""
    done = row.get("date_done")
    value = decode_value(row.get("result"))
    if isinstance(value, dict) and "exc_type" in value and isinstance(value.get("exc_args"), list):
        # Celery keeps an exception's args as exc_message, and rebuilds it from them
        value = {"exc_type": value["exc_type"], "exc_module": value.get("exc_module"),
                 "exc_message": value["exc_args"]}
    meta: dict[str, Any] = {
        "status": row["state"],
        "result": value,
        "traceback": row.get("traceback"),
        "children": [],
        "date_done": done.isoformat() if done is not None and row["state"] in states.READY_STATES else None,
        "task_id": row["task_id"],
    }
    # what Celery's result_extended adds, but args and kwargs (djq keeps only their reprs)
    meta.update(name=row.get("task_name"), worker=row.get("worker"), retries=row.get("retries") or 0,
                queue=row.get("queue") or None)
    if row.get("parent_id"):
        meta["parent_id"] = row["parent_id"]
    if row.get("group_id"):
        meta["group_id"] = row["group_id"]
    return meta


#: SET (expiring after ARGV[1] seconds, unless 0) and PUBLISH each key's value, as
#: Celery's Redis backend does per result
_STORE = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    if ttl > 0 then redis.call('SET', key, ARGV[i + 1], 'EX', ttl) else redis.call('SET', key, ARGV[i + 1]) end
    redis.call('PUBLISH', key, ARGV[i + 1])
end
return #KEYS
"""


def _encode(meta: dict[str, Any]) -> str:
    """JSON of a meta: the stored result was JSON already, so plain ``json`` mostly does."""
    try:
        return json.dumps(meta)
    except (TypeError, ValueError):
        return str(json_dumps(meta))


def meta_from_celery(task_id: str, meta: dict[str, Any]) -> ResultMeta:
    """What a Celery worker stored, as djq's backends return it."""
    from datetime import datetime

    from .base import exception_path, meta_to_exception

    state = str(meta.get("status") or states.PENDING)
    value = meta.get("result")
    path = None
    if state in (states.FAILURE, states.REVOKED, states.RETRY) and isinstance(value, dict) and "exc_type" in value:
        # Celery stores the exception's args as exc_message (a list); djq reads exc_args
        if isinstance(value.get("exc_message"), list) and "exc_args" not in value:
            value = {**value, "exc_args": value["exc_message"],
                     "exc_message": " ".join(str(part) for part in value["exc_message"])}
        if value.get("exc_module") == "celery.exceptions" and value.get("exc_type") in _CELERY_ERRORS:
            value = {**value, "exc_module": "djq.exceptions"}  # djq's class of the same name and meaning
        path = exception_path(value)
        value = meta_to_exception(value)
    done = meta.get("date_done")
    try:
        date_done = datetime.fromisoformat(done) if isinstance(done, str) else None
    except ValueError:
        date_done = None
    return ResultMeta(task_id=task_id, state=state, result=value, traceback=meta.get("traceback"),
                      task_name=meta.get("name"), worker=meta.get("worker"), retries=int(meta.get("retries") or 0),
                      date_done=date_done, parent_id=meta.get("parent_id"), exception_path=path,
                      queue=str(meta.get("queue") or ""))


class CeleryBridgeBackend(DatabaseBackend):
    """``database`` on the default alias, mirrored into Celery's result store."""

    def __init__(self, option: str = "") -> None:
        super().__init__("")
        self.option = option
        self.celery_url = option
        scheme = option.partition("://")[0]
        if scheme not in ("redis", "rediss", "rpc"):
            raise ConfigurationError(
                f"DJQ_RESULT_BACKEND 'celery://{option}': give the Celery app's result_backend after celery://, "
                "a redis://HOST:PORT/DB URL or rpc://"
            )
        self.rpc = scheme == "rpc"
        self._redis: Any = None
        self._store_script: Any = None
        self._redis_lock = threading.Lock()

    def describe(self) -> str:
        from kombu.utils.url import maybe_sanitize_url

        return f"{super().describe()} + Celery results ({maybe_sanitize_url(self.celery_url)})"

    # -- Celery's Redis -----------------------------------------------------------------
    @property
    def redis(self) -> Any:
        """The redis-py client of Celery's Redis backend (None for rpc://)."""
        if self.rpc:
            return None
        if self._redis is None:
            with self._redis_lock:
                if self._redis is None:
                    try:
                        import redis
                    except ImportError as exc:
                        raise ConfigurationError("the Celery Redis result bridge needs redis: "
                                                 "pip install djq[redis]") from exc
                    self._redis = redis.Redis.from_url(self.celery_url)
        return self._redis

    # -- writing ----------------------------------------------------------------------
    @staticmethod
    def build_row(info: TaskInfo, state: str, **fields: Any) -> dict[str, Any]:
        row = DatabaseBackend.build_row(info, state, **fields)
        # not columns: what Celery's formats need beside the row (dropped before the SQL)
        row["reply_to"] = info.reply_to
        row["correlation_id"] = info.correlation_id
        row["group_id"] = info.group_id
        return row

    def store_rows(self, rows: list[dict[str, Any]]) -> set[str]:
        extras = [{key: row.pop(key, None) for key in ("reply_to", "correlation_id", "group_id")} for row in rows]
        try:
            stored = super().store_rows(rows)
        finally:
            for row, extra in zip(rows, extras):
                row.update(extra)
        mirrored = [row for row in rows if row["task_id"] in stored and row["state"] != states.PENDING]
        if mirrored:
            try:
                self._mirror(mirrored)
            except Exception:
                logger.exception("could not write %d result(s) to Celery's result store %s (tasks %s)",
                                 len(mirrored), self.describe(), ", ".join(r["task_id"] for r in mirrored[:20]))
        return stored

    def _mirror(self, rows: list[dict[str, Any]]) -> None:
        if self.rpc:
            from ..messaging.producer import send_reply

            for row in rows:
                if row.get("reply_to") and row["state"] in states.READY_STATES:
                    send_reply(row["reply_to"], celery_meta(row), row.get("correlation_id") or row["task_id"])
            return
        from ..conf import djq_settings

        if self._store_script is None:
            self._store_script = self.redis.register_script(_STORE)
        keys = [TASK_KEY_PREFIX + row["task_id"] for row in rows]
        # one command for the batch: redis-py packs each command in Python, and that
        # (not the round trip) is most of what a SET + PUBLISH per row costs
        self._store_script(keys=keys, args=[int(djq_settings.RESULT_EXPIRES or 0),
                                            *(_encode(celery_meta(row)) for row in rows)])

    # -- reading ----------------------------------------------------------------------
    def celery_get(self, task_id: str) -> ResultMeta | None:
        """What Celery's Redis backend holds for ``task_id`` (None: nothing, or rpc://)."""
        if self.rpc:
            return None
        raw = self.redis.get(TASK_KEY_PREFIX + task_id)
        if raw is None:
            return None
        try:
            meta = json_loads(raw)
        except ValueError:
            logger.error("task %s: Celery's result store holds a value that is not JSON", task_id)
            return None
        return meta_from_celery(task_id, meta) if isinstance(meta, dict) else None

    def get(self, task_id: str) -> ResultMeta | None:
        meta = super().get(task_id)
        if meta is None or (meta.state not in states.READY_STATES and not self.rpc):
            other = self.celery_get(task_id)
            if other is not None and (meta is None or other.state in states.READY_STATES):
                return other
        return meta

    def states(self, task_ids: list[str]) -> dict[str, str]:
        found = super().states(task_ids)
        missing = [task_id for task_id in task_ids if found.get(task_id) not in states.READY_STATES]
        if missing and not self.rpc:
            for task_id, raw in zip(missing, self.redis.mget([TASK_KEY_PREFIX + t for t in missing])):
                meta = json_loads(raw) if raw is not None else None
                if isinstance(meta, dict):
                    state = meta.get("status")
                    if state and (task_id not in found or state in states.READY_STATES):
                        found[task_id] = state
        return found
