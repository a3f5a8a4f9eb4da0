"""Publishing when the broker is down: retries per the policy, then a clear PublishError."""
from __future__ import annotations

import socket

import pytest
from django.db import transaction
from django.test import override_settings

from djq.exceptions import BrokerUnreachable, BrokerURLError, PublishError
from djq.messaging.producer import reset_publishers
from djq.models import TaskResult
from tests.testapp.tasks import add


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["redis", "amqp"])
def dead_broker(request: pytest.FixtureRequest):
    url = f"{request.param}://127.0.0.1:{_closed_port()}/"
    with override_settings(DJQ_BROKER_URL=url):
        reset_publishers()
        try:
            yield url
        finally:
            reset_publishers()


@pytest.mark.django_db(transaction=True)
def test_delay_to_an_unreachable_broker_raises_publish_error(dead_broker: str) -> None:
    with pytest.raises(BrokerUnreachable) as caught:
        add.delay(1, 2)
    message = str(caught.value)
    assert "could not send task tests.testapp.tasks.add[" in message
    assert "127.0.0.1" in message and "unreachable" in message and "DJQ_BROKER_URL" in message
    assert "\n" not in message
    assert not TaskResult.objects.exists(), "no PENDING row outlives a task that was not sent"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("url", "expected"), [
    ("reddis://localhost:6379/0", "unknown scheme 'reddis'"),
    ("localhost:6379", "is not a URL"),
    ("djq://nosuchdb", "alias 'nosuchdb'"),
])
def test_a_bad_broker_url_is_one_djq_error_naming_the_setting(url: str, expected: str) -> None:
    with override_settings(DJQ_BROKER_URL=url):
        reset_publishers()
        try:
            with pytest.raises(BrokerURLError, match=expected) as caught:
                add.delay(1, 2)
        finally:
            reset_publishers()
    assert str(caught.value).startswith("DJQ_BROKER_URL") and "\n" not in str(caught.value)
    assert isinstance(caught.value, PublishError)  # callers catching PublishError still catch it
    assert not TaskResult.objects.exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["-c", "0"], "-c/--concurrency: must be a whole number of at least 1, got '0'"),
    (["--autoscale", "2,5"], "--autoscale: expects MAX,MIN (the most and the fewest pool slots"),
    (["--autoscale", "ten"], "e.g. 10,2; got 'ten'"),
    (["--prefetch-multiplier", "x"], "--prefetch-multiplier: must be a whole number of at least 1, got 'x'"),
])
def test_worker_arguments_say_what_is_expected(argv: list[str], expected: str) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError) as caught:
        call_command("djq_worker", *argv)
    assert expected in str(caught.value)


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_error_comes_from_the_commit(dead_broker: str) -> None:
    with pytest.raises(PublishError):
        with transaction.atomic():
            result = add.delay(1, 2)
            assert result.id  # the id is there at once; publishing waits for the commit
            assert TaskResult.objects.get(task_id=result.id).state == "PENDING"
    assert not TaskResult.objects.exists(), "the failed publish took its PENDING row away"
