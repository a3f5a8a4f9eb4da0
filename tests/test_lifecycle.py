"""Lifecycle pieces in one process: option checks, backoff, signatures, revokes, progress in the
admin, result cleanup. The behaviour on real workers is in tests/worker/test_lifecycle.py and
tests/worker/test_canvas.py."""
from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from djq import chain, chord, group, revoke, signature, states, task
from djq.backends.base import TaskInfo
from djq.beat.declare import CLEANUP_NAME, declarations
from djq.context import RequestContext
from djq.exceptions import DjqError, TaskOptionError
from djq.models import RevokedTask, SavedGroup, TaskResult
from djq.retries import backoff_countdown
from djq.worker.trace import execute, record
from tests.testapp.tasks import add, fail_quietly, flaky, mul


# -- options -------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"autoretry_for": (ValueError, "nope")}, "autoretry_for must be exception classes"),
    ({"dont_autoretry_for": int}, "dont_autoretry_for must be exception classes"),
    ({"retry_backoff": -1}, "retry_backoff must be True, False or a positive number"),
    ({"retry_backoff_max": 0}, "retry_backoff_max must be a positive number"),
    ({"retry_kwargs": {"max_retry": 3}}, "retry_kwargs must be a dict with keys"),
])
def test_bad_retry_options_fail_at_decoration(options, message) -> None:
    with pytest.raises(TaskOptionError, match=message):
        task(**options)(lambda: None)


def test_retry_outside_a_running_task_is_a_clear_error() -> None:
    with pytest.raises(DjqError, match="can only be called while the task runs"):
        flaky.retry()


def test_retry_while_running_eagerly_raises_the_error() -> None:
    result = flaky.apply((f"eager-{uuid.uuid4().hex}", 5))
    assert result.state == states.FAILURE
    assert isinstance(result.result, ConnectionError)


# -- backoff ---------------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_maximum_without_jitter() -> None:
    assert [backoff_countdown(n, 2, 30, jitter=False) for n in range(6)] == [2, 4, 8, 16, 30, 30]


def test_backoff_jitter_stays_within_the_capped_delay() -> None:
    rng = random.Random(7)
    drawn = [backoff_countdown(n, 1, 10, jitter=True, rng=rng) for n in range(8)]
    caps = [min(2 ** n, 10) for n in range(8)]
    assert all(0 <= value <= cap for value, cap in zip(drawn, caps))
    replay = random.Random(7)
    assert drawn == [backoff_countdown(n, 1, 10, jitter=True, rng=replay) for n in range(8)], "same seed, same delays"
    assert len(set(drawn)) == len(drawn), "jitter spreads the retries"


# -- signatures ------------------------------------------------------------------------------
def test_signatures_travel_as_json_and_come_back() -> None:
    original = chord([add.s(1, 1), add.s(2, 2)], chain(add.s(1), mul.si(2, 3)))
    again = signature(json.loads(json.dumps(original)))
    assert type(again) is chord
    assert again == original
    assert repr(add.s(1, y=2)) == "tests.testapp.tasks.add(1, y=2)"
    assert repr(mul.si(2, 3)) == "tests.testapp.tasks.mul(2, 3)!"


@pytest.mark.parametrize("build, message", [
    (lambda: add.s(1).set(bogus=1), "unknown option"),
    (lambda: signature("x.y", args="not a list"), "args must be a list"),
    (lambda: chain(), "at least one task"),
    (lambda: chord([chain(add.s(1, 1), add.s(2))], add.s()), "plain task signatures"),
    (lambda: add.chunks([(1, 2)], 0), "positive chunk size"),
    (lambda: chord([add.s(1, 1)]).apply_async(), "a chord needs a body"),
])
def test_bad_canvas_input_is_a_clear_error(build, message) -> None:
    with pytest.raises(TaskOptionError, match=message):
        build()


def test_group_inside_a_chain_after_its_start_is_refused() -> None:
    with pytest.raises(TaskOptionError, match="first element of a chain"):
        chain(add.s(1, 1), group(add.s(1), add.s(2))).apply_async()


# -- revoke ----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_revoke_is_stored_once_and_can_be_upgraded_to_terminate() -> None:
    revoke(["a", "b"])
    revoke("a")
    revoke("a", terminate=True, signal="KILL")
    rows = dict(RevokedTask.objects.values_list("task_id", "signal"))
    assert rows == {"a": "SIGKILL", "b": "SIGTERM"}
    assert RevokedTask.objects.get(task_id="a").terminate


@pytest.mark.parametrize("ids, options, message", [
    ([""], {}, "needs task ids"),
    ([3], {}, "needs task ids"),
    (["x"], {"signal": "SIGNOPE"}, "unknown signal"),
])
@pytest.mark.django_db
def test_bad_revoke_input_is_refused_and_stores_nothing(ids, options, message) -> None:
    with pytest.raises(TaskOptionError, match=message):
        revoke(ids, **options)
    assert not RevokedTask.objects.exists()


# -- progress in the admin --------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_shows_a_progress_bar_and_the_retry_count(admin_client: Client) -> None:
    TaskResult.objects.create(task_id="p", task_name="app.report", state="PROGRESS",
                              result=json.dumps({"current": 3, "total": 10}), retries=2)
    TaskResult.objects.create(task_id="d", task_name="app.report", state=states.SUCCESS,
                              result=json.dumps({"current": 10, "total": 10}), date_done=timezone.now())
    page = admin_client.get(reverse("admin:djq_taskresult_changelist")).content.decode()
    assert page.count('class="djq-progress"') == 1, "a finished task shows no bar"
    assert 'title="3 of 10"' in page and "30%" in page
    # the retry count sits under the state (the list fits 1280 px)
    assert '<span class="djq-retries">2 retries</span>' in page


# -- ignore_result and stored errors ------------------------------------------------------------
def _run_fail_quietly() -> None:
    """What a worker does with the task's outcome (execute, then record)."""
    from djq.backends import get_backend

    outcome = execute(fail_quietly, RequestContext(id="quiet", task=fail_quietly.name))
    assert outcome.state == states.FAILURE
    record(get_backend(), TaskInfo(task_id="quiet", task_name=fail_quietly.name), outcome, True, None)


@pytest.mark.django_db
def test_errors_of_ignored_results_are_stored_unless_turned_off() -> None:
    _run_fail_quietly()
    assert TaskResult.objects.get(task_id="quiet").state == states.FAILURE
    TaskResult.objects.all().delete()
    with override_settings(DJQ_STORE_ERRORS_EVEN_IF_IGNORED=False):
        _run_fail_quietly()
    assert not TaskResult.objects.exists()


# -- cleanup -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_cleanup_deletes_old_finished_results_and_never_running_ones() -> None:
    old = timezone.now() - timedelta(days=3)
    for task_id, state, done in [("old-ok", states.SUCCESS, old), ("old-bad", states.FAILURE, old),
                                 ("new-ok", states.SUCCESS, timezone.now()), ("running", states.STARTED, None),
                                 ("retrying", states.RETRY, None)]:
        TaskResult.objects.create(task_id=task_id, task_name="t", state=state, date_done=done)
    TaskResult.objects.filter(task_id__in=["running", "retrying"]).update(date_created=old)
    SavedGroup.objects.create(group_id="g", result_ids=["old-ok"])
    SavedGroup.objects.filter(group_id="g").update(date_created=old)
    RevokedTask.objects.create(task_id="ancient", date_revoked=timezone.now() - timedelta(days=30))
    RevokedTask.objects.create(task_id="recent")
    with override_settings(DJQ_RESULT_EXPIRES=86400):
        call_command("djq_cleanup", stdout=open("/dev/null", "w"))
    assert set(TaskResult.objects.values_list("task_id", flat=True)) == {"new-ok", "running", "retrying"}
    assert not SavedGroup.objects.exists()
    assert list(RevokedTask.objects.values_list("task_id", flat=True)) == ["recent"]


@pytest.mark.django_db
def test_cleanup_command_rejects_a_bad_setting() -> None:
    from django.core.management.base import CommandError

    TaskResult.objects.create(task_id="x", task_name="t", state=states.SUCCESS, date_done=timezone.now())
    with override_settings(DJQ_RESULT_EXPIRES="a week"), pytest.raises(CommandError, match="DJQ_RESULT_EXPIRES"):
        call_command("djq_cleanup")
    assert TaskResult.objects.count() == 1


def test_the_built_in_cleanup_is_a_periodic_task_unless_turned_off() -> None:
    entries = {d.name: d for d in declarations()}
    assert entries[CLEANUP_NAME].task == "djq.cleanup"
    with override_settings(DJQ_RESULT_CLEANUP_SCHEDULE=None):
        assert CLEANUP_NAME not in {d.name for d in declarations()}
    with override_settings(DJQ_RESULT_EXPIRES=None):
        assert CLEANUP_NAME not in {d.name for d in declarations()}


@pytest.mark.django_db
def test_admin_lists_revokes_and_cannot_delete_them(admin_client: Client) -> None:
    TaskResult.objects.create(task_id="r1", task_name="app.report", state=states.REVOKED)
    revoke("r1", terminate=True)
    page = admin_client.get(reverse("admin:djq_revokedtask_changelist")).content.decode()
    assert "r1" in page and "app.report" in page
    pk = RevokedTask.objects.get().pk
    assert admin_client.post(reverse("admin:djq_revokedtask_delete", args=[pk]), {"post": "yes"}).status_code == 403
    assert RevokedTask.objects.count() == 1


@pytest.mark.parametrize("setting, value", [
    ("DJQ_RESULT_EXPIRES", "a day"), ("DJQ_REVOKES_EXPIRE", None), ("DJQ_WORKER_REVOKE_REFRESH", 0),
    ("DJQ_WORKER_ETA_MAX_HELD", -1), ("DJQ_STORE_ERRORS_EVEN_IF_IGNORED", "yes"),
])
def test_bad_lifecycle_settings_fail_the_system_check(setting, value) -> None:
    from djq.checks import check_settings

    assert not [e for e in check_settings() if e.id == "djq.E011"]
    with override_settings(**{setting: value}):
        errors = [e for e in check_settings() if e.id == "djq.E011"]
    assert len(errors) == 1 and setting in errors[0].msg
