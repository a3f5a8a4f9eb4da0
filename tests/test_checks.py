"""Misconfiguration shows up in ``manage.py check`` with djq ids."""
from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings


def _ids(**overrides) -> set[str]:
    with override_settings(**overrides):
        return {m.id for m in checks.run_checks(tags=["djq"])}


def test_test_settings_are_clean() -> None:
    assert _ids() == set()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"DJQ_BROKER_URL": "localhost"}, "djq.E001"),
        ({"DJQ_BROKER_URL": "kafka://x"}, "djq.E001"),
        ({"DJQ_BROKER_URL": "djq://nosuchalias"}, "djq.E001"),
        ({"DJQ_BROKER_TRANSPORT_OPTIONS": [1]}, "djq.E001"),
        ({"DJQ_RESULT_BACKEND": "memcache"}, "djq.E002"),
        ({"DJQ_RESULT_BACKEND": "database://nosuchalias"}, "djq.E002"),
        ({"DJQ_ACCEPT_CONTENT": ["json", "pickle"]}, "djq.E003"),
        ({"DJQ_TASK_SERIALIZER": "pickle"}, "djq.E003"),
        ({"DJQ_ACCEPT_CONTENT": "json"}, "djq.E003"),
        ({"DJQ_DEFAULT_QUEUE": ""}, "djq.E004"),
        ({"DJQ_WORKER_CONCURRENCY": 0}, "djq.E005"),
        ({"DJQ_WORKER_PREFETCH_MULTIPLIER": "4"}, "djq.E005"),
        ({"DJQ_TASK_TIME_LIMIT": -5}, "djq.E006"),
        ({"DJQ_TASK_TIME_LIMIT": 10, "DJQ_TASK_SOFT_TIME_LIMIT": 20}, "djq.E006"),
        ({"DJQ_WORKER_POOL": "fibers"}, "djq.E007"),
        ({"DJQ_BEAT_MAX_TICK": 0}, "djq.E009"),
        ({"DJQ_WORKER_HEARTBEAT_INTERVAL": 0}, "djq.E012"),
        ({"DJQ_CONTROL_TIMEOUT": "1"}, "djq.E012"),
        ({"DJQ_EVENTS_RETENTION_HOURS": -1}, "djq.E012"),
        ({"DJQ_WORKER_SEND_TASK_EVENTS": "yes"}, "djq.E012"),
        ({"DJQ_BEAT_RUN_HISTORY_DAYS": "7"}, "djq.E009"),
        ({"DJQ_BEAT_SCHEDULE": []}, "djq.E009"),
        ({"DJQ_BEAT_SCHEDULE": {"x": {"task": "tests.testapp.tasks.add", "schedule": "61 * * * *"}}}, "djq.E009"),
        ({"DJQ_BEAT_SCHEDULE": {"x": {"task": "no.such.task", "schedule": 60}}}, "djq.E009"),
        ({"DJQ_BEAT_SCHEDULE": {"x": {"task": "tests.testapp.tasks.add", "schedule": 60, "colour": "red"}}}, "djq.E009"),
    ],
)
def test_misconfiguration_is_reported(overrides, expected) -> None:
    assert expected in _ids(**overrides)


def test_pickle_is_allowed_only_when_asked_for() -> None:
    assert "djq.E003" not in _ids(DJQ_ACCEPT_CONTENT=["json", "pickle"], DJQ_ALLOW_PICKLE=True)


def test_sqlite_without_wal_is_warned_about() -> None:
    from django.db import connections

    original = connections.settings["default"].get("OPTIONS")
    connections.settings["default"]["OPTIONS"] = {}
    try:
        ids = {m.id for m in checks.run_checks(tags=["djq"])}
    finally:
        connections.settings["default"]["OPTIONS"] = original
    assert "djq.W001" in ids


def test_a_valid_beat_schedule_is_clean() -> None:
    assert _ids(DJQ_BEAT_SCHEDULE={"x": {"task": "tests.testapp.tasks.add", "schedule": "*/5 * * * *", "args": [1, 2]}}) == set()


def test_queues_that_no_configured_worker_consumes_are_warned_about() -> None:
    from djq import task
    from djq.registry import registry

    def send_mail() -> None: ...

    task(name="tests.checks.send_mail", queue="emails")(send_mail)
    try:
        with override_settings(DJQ_TASK_ROUTES={"tests.testapp.tasks.add": "low", "tests.checks.*": "default"}):
            found = [m for m in checks.run_checks(tags=["djq"]) if m.id == "djq.W014"]
            assert [m.msg.split(" (")[0] for m in found] == ["queue 'low'"]  # the route beats queue="emails"
            assert "DJQ_TASK_ROUTES" in found[0].msg and "djq_worker -Q default,low" in found[0].hint
        found = [m for m in checks.run_checks(tags=["djq"]) if m.id == "djq.W014"]
        assert len(found) == 1 and "@task(queue=...) of tests.checks.send_mail" in found[0].msg
        with override_settings(DJQ_WORKER_QUEUES=["default", "emails"]):
            assert _ids() == set()
    finally:
        registry.unregister("tests.checks.send_mail")
