"""djq's own PostgreSQL statements are prepared once per connection (``pg_prepares``),
unless the setting, Django's pooler mark or the alias's own psycopg options say no."""
from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

from djq import states
from djq.backends.base import TaskInfo
from djq.backends.database import DatabaseBackend
from tests.conftest import _skip_or_fail

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def postgres() -> Any:
    if "postgres" not in connections.settings:
        _skip_or_fail("needs DJQ_TEST_POSTGRES_URL")
    connection = connections["postgres"]
    saved = {key: connection.settings_dict.get(key) for key in ("DISABLE_SERVER_SIDE_CURSORS", "OPTIONS")}
    saved["OPTIONS"] = dict(saved["OPTIONS"] or {})
    connection.close()  # a session of its own: prepared statements live as long as it
    yield connection
    connection.close()
    connection.settings_dict.update(saved)


def _store_twice(connection: Any) -> str:
    backend = DatabaseBackend("postgres")
    task_id = str(uuid.uuid4())
    info = TaskInfo(task_id=task_id, task_name="tests.prepared", worker="w@h", queue="default", attempt=1)
    assert backend.store_rows([backend.build_row(info, states.STARTED)]) == {task_id}
    assert backend.store_rows([backend.build_row(info, states.SUCCESS, result=5)]) == {task_id}
    return task_id


def _prepared(connection: Any) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_result_writes_are_prepared_by_default(postgres: Any) -> None:
    task_id = _store_twice(postgres)
    prepared = _prepared(postgres)
    assert any("INSERT INTO djq_taskresult" in statement for statement in prepared), prepared
    assert len([s for s in prepared if "pg_notify" in s]) == 1, "the final state's upsert, once"
    assert postgres.connection.prepare_threshold is not None
    row = DatabaseBackend("postgres").get(task_id)
    assert (row.state, row.result) == (states.SUCCESS, 5)


def test_the_setting_turns_preparing_off(postgres: Any) -> None:
    with override_settings(DJQ_DATABASE_PREPARED_STATEMENTS=False):
        _store_twice(postgres)
        assert _prepared(postgres) == []
        assert postgres.connection.prepare_threshold is None  # Django's own default kept


@pytest.mark.parametrize("mark", ["DISABLE_SERVER_SIDE_CURSORS", "prepare_threshold"])
def test_a_pooler_alias_is_left_as_configured(postgres: Any, mark: str) -> None:
    if mark == "DISABLE_SERVER_SIDE_CURSORS":
        postgres.settings_dict[mark] = True
    else:
        postgres.settings_dict["OPTIONS"] = {**postgres.settings_dict["OPTIONS"], mark: None}
    _store_twice(postgres)
    _store_twice(postgres)
    assert _prepared(postgres) == []
