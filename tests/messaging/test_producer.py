"""Publishing when the broker is down: retries per the policy, then a clear PublishError."""
from __future__ import annotations

import socket

import pytest
from django.db import transaction
from django.test import override_settings

from djq.exceptions import PublishError
from djq.messaging.producer import reset_publishers
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


def test_delay_to_an_unreachable_broker_raises_publish_error(dead_broker: str) -> None:
    with pytest.raises(PublishError) as caught:
        add.delay(1, 2)
    message = str(caught.value)
    assert "could not send task tests.testapp.tasks.add[" in message
    assert "127.0.0.1" in message


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_error_comes_from_the_commit(dead_broker: str) -> None:
    with pytest.raises(PublishError):
        with transaction.atomic():
            result = add.delay(1, 2)
            assert result.id  # the id is there at once; publishing waits for the commit
