"""Django tasks as first-class djq tasks: queues, priorities, routes, admin, checks, eager mode.

These run in-process on the embedded broker (SQLite) and look at what was queued or
stored; the conformance suite next door runs the tasks on real workers.
"""
from __future__ import annotations

import json

import django
import pytest
from django.core import checks
from django.test import override_settings
from django.urls import reverse

from djq.contrib.tasks.results import priority_for
from djq.models import QueueMessage, TaskResult
from djq.registry import registry
from tests.testapp import dtasks

try:
    from django.tasks import TaskResultStatus
except ImportError:  # Django 5.2 with the backport
    from django_tasks import TaskResultStatus  # type: ignore[no-redef]

DJQ = "djq.contrib.tasks.DjqTaskBackend"


def queued() -> list[tuple[str, int, dict]]:
    """(queue, priority, headers) of every message waiting on the embedded broker."""
    rows = []
    for message in QueueMessage.objects.order_by("id"):
        payload = json.loads(message.payload)
        rows.append((message.queue, message.priority, payload["headers"]))
    return rows


@pytest.mark.parametrize(("priority", "embedded", "levels"), [
    (-100, 0, 0), (-81, 19, 0), (-80, 20, 1), (0, 100, 5), (79, 179, 8), (80, 180, 9), (100, 200, 9),
])
def test_django_priorities_keep_their_order_on_every_broker(priority: int, embedded: int, levels: int) -> None:
    assert priority_for(priority, "djq://") == embedded
    assert priority_for(priority, "redis://localhost") == levels
    assert priority_for(priority, "amqp://localhost") == levels


def test_decorated_django_tasks_are_registered_under_their_module_path() -> None:
    for name in ("tests.testapp.dtasks.add", "tests.testapp.dtasks.async_multiply"):
        assert name in registry.names()
    assert registry.get("tests.testapp.dtasks.add").func is dtasks.add.func


def test_workers_find_django_tasks_by_module_path_in_installed_apps_only() -> None:
    from djq.contrib.tasks.adapter import resolve

    registry.unregister("tests.testapp.dtasks.fail")
    assert resolve("tests.testapp.dtasks.fail").func is dtasks.fail.func
    assert "tests.testapp.dtasks.fail" in registry, "found once, then registered"
    assert resolve("tests.testapp.dtasks.signal_log") is None, "a plain function is not a task"
    assert resolve("tests.testapp.dtasks.missing") is None
    assert resolve("os.path.join") is None, "modules outside INSTALLED_APPS are never imported"
    assert resolve("json") is None


@pytest.mark.django_db
def test_queue_and_priority_of_a_django_task_reach_the_broker() -> None:
    dtasks.add.enqueue(1, 2)
    dtasks.special_echo.enqueue("x")
    dtasks.add.using(queue_name="special", priority=-100).enqueue(3, 4)
    (q1, p1, h1), (q2, p2, h2), (q3, p3, h3) = queued()
    assert (q1, p1) == ("default", 100)
    assert (q2, p2) == ("special", 110)
    assert (q3, p3) == ("special", 0)
    assert h1["task"] == "tests.testapp.dtasks.add"
    assert json.loads(h3["argsrepr"]) == [3, 4], "arguments are kept as JSON for get_result"


@pytest.mark.django_db
@override_settings(DJQ_DEFAULT_QUEUE="main", DJQ_TASK_ROUTES={"tests.testapp.dtasks.add": {"queue": "maths", "priority": 7},
                                                              "tests.testapp.dtasks.*": "others"})
def test_routes_apply_to_django_defaults_and_chosen_values_win() -> None:
    dtasks.add.enqueue(1, 1)  # default queue and priority: the route decides
    dtasks.add.using(priority=50, queue_name="chosen").enqueue(1, 1)
    dtasks.fail.enqueue("x")  # glob route, queue only
    dtasks.special_echo.enqueue("x")  # the task chose its queue
    assert [(q, p) for q, p, _ in queued()] == [("maths", 7), ("chosen", 150), ("others", 100), ("special", 110)]


@pytest.mark.django_db
@override_settings(DJQ_DEFAULT_QUEUE="main")
def test_djangos_default_queue_is_djqs_default_queue() -> None:
    dtasks.add.enqueue(1, 1)
    assert queued()[0][0] == "main"


@pytest.mark.django_db
def test_django_task_results_show_in_the_admin(admin_client) -> None:
    result = dtasks.add.enqueue(40, 2)
    row = TaskResult.objects.get(task_id=result.id)
    assert (row.task_name, row.state, json.loads(row.args_repr)) == ("tests.testapp.dtasks.add", "PENDING", [40, 2])
    html = admin_client.get(reverse("admin:djq_taskresult_changelist")).content.decode()
    assert "tests.testapp.dtasks.add" in html and result.id in html


@pytest.mark.django_db
@override_settings(DJQ_TASK_ALWAYS_EAGER=True)
def test_eager_mode_runs_at_enqueue_and_stores_nothing() -> None:
    ok = dtasks.with_context.enqueue("now")
    assert ok.status == TaskResultStatus.SUCCESSFUL and ok.return_value["attempt"] == 1
    assert ok.return_value["id"] == ok.id and ok.attempts == 1
    failed = dtasks.fail.enqueue("eager boom")
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.ValueError"
    assert "eager boom" in failed.errors[0].traceback
    not_json = dtasks.unserializable.enqueue()
    assert not_json.errors[0].exception_class is TypeError and "Unsupported type" in not_json.errors[0].traceback
    # As Django's ImmediateBackend: Ctrl-C reaches the caller; SystemExit is a failed run.
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C in the task"):
        dtasks.interrupted.enqueue()
    exited = dtasks.interrupted.enqueue(True)
    assert exited.status == TaskResultStatus.FAILED and exited.errors[0].exception_class is SystemExit
    assert not TaskResult.objects.exists() and not QueueMessage.objects.exists()


def _check_ids(tasks: dict) -> set[str]:
    with override_settings(TASKS=tasks):
        return {m.id for m in checks.run_checks() if m.id and m.id.startswith("djq.")}


@pytest.mark.django_db  # run_checks() includes checks that look at the database
@pytest.mark.parametrize(("params", "expected"), [
    ({"QUEUES": "default"}, "djq.E010"),
    ({"QUEUES": ["default", ""]}, "djq.E010"),
    ({"OPTIONS": {"retries": 3}}, "djq.E010"),
    ({"QUEUES": ["default", "nobody-serves-this"]}, "djq.W010"),
])
def test_backend_misconfiguration_is_reported_by_system_checks(params: dict, expected: str) -> None:
    assert expected in _check_ids({"default": {"BACKEND": DJQ, **params}})


@pytest.mark.django_db
def test_queues_workers_serve_or_routes_name_are_clean() -> None:
    with override_settings(DJQ_WORKER_QUEUES=["default", "emails"], DJQ_TASK_ROUTES={"x.*": {"queue": "reports"}}):
        # W010 counts a routed queue as served; W014 (djq's own check) still says no worker
        # started without -Q consumes 'reports'
        assert _check_ids({"default": {"BACKEND": DJQ, "QUEUES": ["default", "emails", "reports"]}}) == {"djq.W014"}


@pytest.mark.django_db
def test_the_backport_app_missing_is_reported_on_django_5() -> None:
    from django.conf import settings

    apps = [app for app in settings.INSTALLED_APPS if app != "django_tasks"]
    with override_settings(INSTALLED_APPS=apps):
        ids = {m.id for m in checks.run_checks(tags=["djq"])}
        bad = _check_ids({"default": {"BACKEND": DJQ, "OPTIONS": {"x": 1}}})
    # Django 6 has the framework built in: no app to add, and Django runs backend checks.
    assert ("djq.W011" in ids) is (django.VERSION < (6, 0))
    assert "djq.E010" in bad, "the backend's own checks run either way"
