"""delay() on Redis with results in PostgreSQL: the PENDING row's INSERT goes on the wire
before the publish and is answered after it (djq/backends/pg_overlap.py); what the
database or the broker refuses still ends as the module says (djq/pending.py)."""
from __future__ import annotations

import logging
import os

import pytest
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from djq.exceptions import BrokerUnreachable
from djq.messaging.producer import reset_publishers
from djq.models import TaskResult
from tests.conftest import _skip_or_fail, purge_broker
from tests.messaging.test_producer import _closed_port
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def redis_url():
    if "postgres" not in connections.settings:
        _skip_or_fail("needs DJQ_TEST_POSTGRES_URL")
    url = os.environ.get("DJQ_TEST_REDIS_URL")
    if not url:
        _skip_or_fail("needs DJQ_TEST_REDIS_URL")
    with override_settings(DJQ_BROKER_URL=url, DJQ_RESULT_BACKEND="database://postgres"):
        reset_publishers()
        purge_broker(url)
        try:
            yield url
        finally:
            purge_broker(url)
            reset_publishers()


def _queued(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    return sum(client.llen(key) for key in client.keys("default*") if client.type(key) == b"list")


def test_the_pending_row_goes_out_before_the_publish_and_is_stored(redis_url: str) -> None:
    with CaptureQueriesContext(connections["postgres"]) as queries:
        sent = add.delay(2, 3)
    inserts = [query["sql"] for query in queries if query["sql"].startswith("INSERT")]
    assert len(inserts) == 1 and "$1" in inserts[0], inserts  # libpq's numbered form: sent ahead
    row = TaskResult.objects.using("postgres").get(task_id=sent.id)
    assert (row.state, row.args_repr) == ("PENDING", "(2, 3)")
    assert _queued(redis_url) == 1
    # the connection was left idle: the next statements on it run as usual
    assert TaskResult.objects.using("postgres").filter(state="PENDING").count() == 1


def test_a_row_the_database_refuses_is_logged_and_the_task_is_still_sent(redis_url: str, caplog) -> None:
    with connections["postgres"].cursor() as cursor:
        cursor.execute("CREATE FUNCTION djq_test_refuse() RETURNS trigger AS $$ BEGIN "
                       "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql")
        cursor.execute("CREATE TRIGGER djq_test_refuse BEFORE INSERT ON djq_taskresult "
                       "FOR EACH ROW EXECUTE FUNCTION djq_test_refuse()")
    try:
        with caplog.at_level(logging.WARNING, logger="djq.pending"):
            sent = add.delay(1, 1)
        assert "was sent, but its PENDING row could not be stored" in caplog.text
        assert "refused by the test" in caplog.text and sent.id in caplog.text
        assert _queued(redis_url) == 1, "the task is sent: a worker stores its row with its STARTED"
    finally:
        with connections["postgres"].cursor() as cursor:
            cursor.execute("DROP TRIGGER djq_test_refuse ON djq_taskresult")
            cursor.execute("DROP FUNCTION djq_test_refuse()")
    assert not TaskResult.objects.using("postgres").filter(task_id=sent.id).exists()


def test_a_failed_publish_takes_back_the_row_sent_ahead(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{_closed_port()}/"
    with override_settings(DJQ_BROKER_URL=dead):
        reset_publishers()
        with pytest.raises(BrokerUnreachable):
            add.delay(4, 4)
    reset_publishers()
    assert not TaskResult.objects.using("postgres").exists(), "no PENDING row outlives a task that was not sent"
