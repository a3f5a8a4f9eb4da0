"""The database result backend: one ``TaskResult`` row per task, on a Django database alias.

Option: ``database://ALIAS`` stores on ALIAS (default ``default``). Each state change is a
single upsert (``INSERT ... ON CONFLICT DO UPDATE``).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import states
from ..models import SavedGroup, TaskResult
from .base import ResultBackend, ResultMeta, TaskInfo, decode_value, encode_value, exception_path

_INFO_FIELDS = ("task_name", "args_repr", "kwargs_repr", "worker", "queue", "retries", "root_id", "parent_id")
_COLUMNS = ("task_id", "state", "result", "traceback", "date_created", "date_started", "date_done", "runtime",
            *_INFO_FIELDS)
_TABLE = TaskResult._meta.db_table


class DatabaseBackend(ResultBackend):
    def __init__(self, option: str = "") -> None:
        super().__init__(option)
        self.alias = option or "default"

    def describe(self) -> str:
        settings = connections.settings[self.alias] if self.alias in connections.settings else {}
        return f"database ({self.alias}: {settings.get('ENGINE', '?').rsplit('.', 1)[-1]})"

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
    ) -> None:
        row = TaskResult(
            task_id=info.task_id,
            state=state,
            result=None if result is None else encode_value(result),
            traceback=traceback,
            date_started=date_started,
            date_done=date_done if date_done is not None or state not in states.READY_STATES else timezone.now(),
            runtime=runtime,
            **{name: getattr(info, name) for name in _INFO_FIELDS},
        )
        update = ["state", "result", "traceback", *_INFO_FIELDS]
        if date_started is not None:
            update.append("date_started")
        if row.date_done is not None:
            update += ["date_done", "runtime"]
        connection = connections[self.alias]
        if connection.vendor in ("sqlite", "postgresql"):
            self._upsert(connection, row, update)
            return
        TaskResult.objects.using(self.alias).bulk_create(
            [row], update_conflicts=True, unique_fields=["task_id"], update_fields=update
        )

    @staticmethod
    def _upsert(connection: Any, row: TaskResult, update: list[str]) -> None:
        """One ``INSERT ... ON CONFLICT DO UPDATE`` in autocommit: a third of the ORM's cost."""
        ops = connection.ops
        row.date_created = timezone.now()
        values = []
        for name in _COLUMNS:
            value = getattr(row, name)
            values.append(ops.adapt_datetimefield_value(value) if name.startswith("date_") else value)
        sql = (
            f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
            f"ON CONFLICT (task_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in update)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, values)

    def get(self, task_id: str) -> ResultMeta | None:
        row = (
            TaskResult.objects.using(self.alias)
            .filter(task_id=task_id)
            .values_list("state", "result", "traceback", "task_name", "worker", "retries", "date_done",
                         "date_created", "date_started", "queue", "args_repr", "kwargs_repr", "parent_id")
            .first()
        )
        if row is None:
            return None
        (state, raw, traceback, task_name, worker, retries, date_done,
         date_created, date_started, queue, args_repr, kwargs_repr, parent_id) = row
        value = decode_value(raw)
        return ResultMeta(
            task_id=task_id,
            state=state,
            result=self.decode_result(state, value),
            exception_path=exception_path(value) if state in (states.FAILURE, states.REVOKED) else None,
            date_created=date_created,
            date_started=date_started,
            queue=queue,
            args_repr=args_repr,
            kwargs_repr=kwargs_repr,
            traceback=traceback,
            task_name=task_name,
            worker=worker,
            retries=retries,
            date_done=date_done,
            parent_id=parent_id,
        )

    def states(self, task_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(task_ids), 500):
            rows = TaskResult.objects.using(self.alias).filter(task_id__in=task_ids[start:start + 500])
            found.update(rows.values_list("task_id", "state"))
        return found

    def save_group(self, group_id: str, task_ids: list[str]) -> None:
        SavedGroup.objects.using(self.alias).update_or_create(group_id=group_id, defaults={"result_ids": task_ids})

    def restore_group(self, group_id: str) -> list[str] | None:
        row = SavedGroup.objects.using(self.alias).filter(group_id=group_id).values_list("result_ids", flat=True).first()
        return None if row is None else list(row)

    def forget_group(self, group_id: str) -> None:
        SavedGroup.objects.using(self.alias).filter(group_id=group_id).delete()

    def forget(self, task_id: str) -> None:
        TaskResult.objects.using(self.alias).filter(task_id=task_id).delete()
