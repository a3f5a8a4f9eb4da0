"""The task API: options checked at decoration, sending, inline and eager runs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from django.test import override_settings

from djq import EagerResult, Task, task
from djq.exceptions import EncodeError, TaskOptionError
from djq.models import QueueMessage
from djq.registry import registry
from tests.testapp.tasks import add, fail, whoami


def test_task_is_registered_under_its_dotted_name() -> None:
    assert isinstance(add, Task)
    assert add.name == "tests.testapp.tasks.add"
    assert registry.get("tests.testapp.tasks.add") is add
    assert registry.get("tests.echo").name == "tests.echo"


def test_unknown_option_fails_at_decoration_time() -> None:
    with pytest.raises(TaskOptionError, match="unknown option.*max_retry"):
        task(max_retry=3)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"priority": 300}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"time_limit": -1}, "time_limit"),
        ({"time_limit": 10, "soft_time_limit": 10}, "soft_time_limit"),
        ({"rate_limit": "ten per minute"}, "rate_limit"),
        ({"max_retries": -1}, "max_retries"),
        ({"queue": ""}, "queue"),
    ],
)
def test_bad_option_values_fail_at_decoration_time(options, error) -> None:
    with pytest.raises(TaskOptionError, match=error):
        @task(**options)
        def bad() -> None: ...


def test_calling_a_task_runs_it_inline() -> None:
    assert add(2, 3) == 5


def test_apply_runs_like_a_worker_and_returns_eager_result() -> None:
    result = add.apply((2, 3))
    assert isinstance(result, EagerResult)
    assert result.state == "SUCCESS" and result.get() == 5 and result.successful()
    failed = fail.apply(("nope",))
    assert failed.state == "FAILURE" and failed.failed()
    assert isinstance(failed.result, ValueError)
    assert "ValueError: nope" in failed.traceback
    with pytest.raises(ValueError, match="nope"):
        failed.get()
    assert isinstance(failed.get(propagate=False), ValueError)


def test_bound_task_sees_its_request() -> None:
    result = whoami.apply(task_id="fixed-id")
    assert result.get()["id"] == "fixed-id"


@pytest.mark.django_db
def test_delay_writes_one_message_and_returns_the_id() -> None:
    result = add.delay(2, 3)
    row = QueueMessage.objects.get()
    payload = json.loads(row.payload)
    assert payload["headers"]["id"] == result.id
    assert payload["headers"]["task"] == "tests.testapp.tasks.add"
    assert json.loads(payload["body"])[0] == [2, 3]
    assert row.queue == "default"


@pytest.mark.django_db
def test_apply_async_options_reach_the_message() -> None:
    eta = datetime.now(timezone.utc) + timedelta(hours=1)
    result = add.apply_async((1, 1), queue="special", priority=7, eta=eta, expires=60, task_id="my-id")
    row = QueueMessage.objects.get()
    headers = json.loads(row.payload)["headers"]
    assert result.id == "my-id" and headers["id"] == "my-id"
    assert row.queue == "special" and row.priority == 7
    assert abs(row.visible_at - eta.timestamp()) < 0.01
    assert datetime.fromisoformat(headers["expires"]) > datetime.now(timezone.utc)


@pytest.mark.django_db
def test_countdown_sets_visibility_in_the_future() -> None:
    add.apply_async((1, 1), countdown=30)
    row = QueueMessage.objects.get()
    assert row.visible_at > datetime.now(timezone.utc).timestamp() + 25


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"countdown": 1, "eta": datetime.now(timezone.utc)}, "countdown or eta"),
        ({"countdown": "soon"}, "countdown"),
        ({"eta": "tomorrow"}, "eta must be a datetime"),
        ({"expires": "later"}, "expires"),
        ({"priority": 1000}, "priority"),
        ({"args": "12"}, "args must be a list"),
        ({"kwargs": [1]}, "kwargs must be a dict"),
    ],
)
def test_apply_async_rejects_bad_options(kwargs, error) -> None:
    args = kwargs.pop("args", (1, 2))
    kw = kwargs.pop("kwargs", None)
    with pytest.raises(TaskOptionError, match=error):
        add.apply_async(args, kw, **kwargs)


@pytest.mark.django_db
def test_unencodable_argument_fails_at_delay_and_sends_nothing() -> None:
    with pytest.raises(EncodeError, match="argument 'value'"):
        registry.get("tests.echo").delay(value=object())
    assert QueueMessage.objects.count() == 0


def test_always_eager_runs_in_process() -> None:
    with override_settings(DJQ_TASK_ALWAYS_EAGER=True):
        result = add.delay(4, 5)
    assert isinstance(result, EagerResult) and result.get() == 9


def test_eager_calls_let_ctrl_c_reach_the_caller() -> None:
    @task(name="tests.interrupted")
    def interrupted(exit_instead: bool) -> None:
        raise SystemExit(3) if exit_instead else KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            interrupted.apply((False,))
        assert interrupted.apply((True,)).state == "FAILURE"  # a task's SystemExit is its failure
    finally:
        registry.unregister("tests.interrupted")


def test_two_functions_cannot_share_a_name() -> None:
    from djq.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="two functions"):
        @task(name="tests.testapp.tasks.add")
        def impostor(x: int, y: int) -> int:
            return x - y


@pytest.mark.django_db
def test_calls_are_checked_against_the_signature_at_the_caller() -> None:
    from djq import group

    with pytest.raises(TypeError, match=r"tests.testapp.tasks.add\(\) called with the wrong arguments: .*'y'"):
        add.delay(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        add.apply_async((1, 2), {"z": 3})
    with pytest.raises(TypeError, match="element 1 of tests.testapp.tasks.add.delay_many"):
        add.delay_many([(1, 2), (1,)])
    with pytest.raises(TypeError, match="wrong arguments"):
        group(add.s(1, 2), add.s(1, 2, 3)).apply_async()
    with pytest.raises(TypeError, match="too many positional"):
        whoami.delay(1)  # bound: self is not the caller's to give
    assert QueueMessage.objects.count() == 0
    whoami.delay()
    add.delay(1, y=2)

    def takes_two(a: int, b: int) -> None: ...

    loose = task(name="tests.loose_signature", typing=False)(takes_two)
    try:
        loose.delay(1)  # typing=False: sent as given, the worker's call decides
    finally:
        registry.unregister("tests.loose_signature")
    assert QueueMessage.objects.count() == 3
