"""Idle wake-ups of the embedded broker: LISTEN/NOTIFY on PostgreSQL, planned claims for eta."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connections
from kombu import Consumer, Queue

from tests.conftest import EMBEDDED
from tests.messaging.test_transport import _connection, _drain, _publish

@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_postgres_idle_consumer_is_woken_by_notify(broker: str) -> None:
    received = []
    with _connection(broker, claim_interval=60) as conn:
        channel = conn.channel()
        with Consumer(channel, [Queue("woken")], on_message=lambda m: (received.append(m.payload), m.ack()),
                      accept=["json"]):
            assert conn.transport.listener() is not None
            timer = threading.Timer(0.3, lambda: (_publish(_connection(broker), {"n": 1}, queue="woken"),
                                                  connections.close_all()))
            timer.start()
            try:
                conn.drain_events(timeout=20)  # without NOTIFY this would sleep for 60 s
            finally:
                timer.join()
    assert received == [{"n": 1}]


@pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)
def test_eta_message_wakes_an_idle_consumer(broker: str) -> None:
    eta = (datetime.now(timezone.utc) + timedelta(seconds=0.5)).isoformat()
    with _connection(broker, claim_interval=0.2) as conn:
        _publish(conn, {"n": "eta"}, queue="later", headers={"eta": eta})
        got, _ = _drain(conn, queue="later", limit=1, timeout=5)
    assert [m.payload["n"] for m in got] == ["eta"]
