"""djq's Redis transport (djq/messaging/redis.py) against a real Redis.

A message taken by a consumer is recorded as unacked in the same step, so a consumer cut
off before it acks leaves the message to come back after the visibility timeout, for
djq and for kombu's (Celery's) own restore alike. Prefetch bounds every take, and
``wake()`` ends an idle wait.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.test import override_settings
from kombu import Connection, Consumer, Producer

from djq.messaging.producer import REDIS_PRIORITY_STEPS, broker_connection, task_queue
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.parametrize("db_alias", ["redis"], indirect=True)
VISIBILITY = 1.0


def _connect(url: str) -> Connection:
    with override_settings(DJQ_BROKER_TRANSPORT_OPTIONS={"visibility_timeout": VISIBILITY}):
        return broker_connection(url)


def _publish(connection: Connection, bodies: list[Any], queue: str = "q") -> None:
    producer = Producer(connection.channel())
    for body in bodies:
        producer.publish(body, exchange="", routing_key=queue, declare=[task_queue(queue, connection.as_uri())])


class Receiver:
    """A consumer on ``queue`` that keeps (does not ack) what it receives."""

    def __init__(self, connection: Connection, queue: str = "q", prefetch: int = 10) -> None:
        self.connection = connection
        self.messages: list[Any] = []
        self.channel = connection.channel()
        self.consumer = Consumer(self.channel, queues=[task_queue(queue)], on_message=self.messages.append,
                                 accept=["json"])
        self.consumer.qos(prefetch_count=prefetch)
        self.consumer.consume()

    def drain(self, seconds: float) -> list[Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.connection.drain_events(timeout=max(deadline - time.monotonic(), 0.01))
            except socket.timeout:
                pass
        return [m.payload for m in self.messages]


def _cut_off(url: str) -> None:
    """Close every client connection but this one, as a network cut or server restart would."""
    redis.Redis.from_url(url).client_kill_filter(_type="normal", skipme=True)


def test_a_message_taken_by_a_consumer_that_is_cut_off_comes_back_after_the_visibility_timeout(broker) -> None:
    first = _connect(broker.broker_url)
    _publish(first, [{"n": 1}])
    taker = Receiver(first)
    assert taker.drain(0.5) == [{"n": 1}]
    _cut_off(broker.broker_url)  # the taker never acks: its connection is gone

    second = _connect(broker.broker_url)
    other = Receiver(second)
    assert other.drain(0.3) == [], "not before the visibility timeout: the taker may still be working on it"
    time.sleep(VISIBILITY)
    other.channel.qos.restore_visible(num=None, interval=1)  # what djq's consumer runs on a timer
    assert other.drain(0.5) == [{"n": 1}]
    assert other.messages[0].delivery_info.get("redelivered") is True
    other.messages[0].ack()
    other.channel.flush_acks()
    second.release()
    first.release()


def test_a_message_queued_while_the_consumer_waits_survives_a_redis_restart_before_it_is_read(broker) -> None:
    """kombu #305 / celery #4354: kombu's BRPOP pops the message into its reply, then the
    reply is read while Redis is down, so recording it as unacked fails and it is gone.
    djq's idle wait leaves the message in its list, and the take records it in one step."""
    waiting = _connect(broker.broker_url)
    receiver = Receiver(waiting)
    assert receiver.drain(0.2) == []  # now idle: its wait on the queue is in flight
    _publish(_connect(broker.broker_url), [{"n": 1}])
    port = str(urlsplit(broker.broker_url).port or 6379)
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "shutdown", "save"], timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with pytest.raises(waiting.connection_errors):
            waiting.drain_events(timeout=1)  # reads what Redis answered before it went down
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "redis"], env={**os.environ, "DJQ_REDIS_PORT": port},
                       check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert receiver.messages == []
    waiting.release()

    after = _connect(broker.broker_url)
    other = Receiver(after)
    time.sleep(VISIBILITY)
    other.channel.qos.restore_visible(num=None, interval=1)
    assert other.drain(1.0) == [{"n": 1}]
    after.release()


def test_kombus_own_restore_brings_back_what_djq_took(broker) -> None:
    """A Celery worker (kombu's Redis transport) restores messages a dead djq consumer took."""
    djq_side = _connect(broker.broker_url)
    _publish(djq_side, [{"n": 1}, {"n": 2}])
    assert Receiver(djq_side).drain(0.5) == [{"n": 1}, {"n": 2}]
    _cut_off(broker.broker_url)

    kombu_side = Connection(broker.broker_url, transport_options={
        "visibility_timeout": VISIBILITY, "priority_steps": REDIS_PRIORITY_STEPS})
    assert not isinstance(kombu_side.transport, type(djq_side.transport))
    receiver = Receiver(kombu_side)
    time.sleep(VISIBILITY)
    receiver.channel.qos.restore_visible(num=None, interval=1)
    assert sorted(m["n"] for m in receiver.drain(1.0)) == [1, 2]
    kombu_side.release()
    djq_side.release()


def test_a_take_never_exceeds_the_free_prefetch(broker) -> None:
    connection = _connect(broker.broker_url)
    _publish(connection, [{"n": n} for n in range(10)])
    receiver = Receiver(connection, prefetch=3)
    assert receiver.drain(0.5) == [{"n": 0}, {"n": 1}, {"n": 2}], "prefetch 3: three of ten, oldest first"
    receiver.messages[0].ack()
    assert receiver.drain(0.5)[3:] == [{"n": 3}], "one ack frees one slot"
    assert receiver.channel.client.llen("q") == 6
    connection.release()


def test_acks_are_sent_and_an_acked_message_never_comes_back(broker) -> None:
    connection = _connect(broker.broker_url)
    _publish(connection, [{"n": n} for n in range(5)])
    receiver = Receiver(connection)
    assert len(receiver.drain(0.5)) == 5
    for message in receiver.messages:
        message.ack()
    receiver.channel.flush_acks()
    _cut_off(broker.broker_url)
    time.sleep(VISIBILITY)

    other_connection = _connect(broker.broker_url)
    other = Receiver(other_connection)
    other.channel.qos.restore_visible(num=None, interval=1)
    assert other.drain(0.5) == []
    other_connection.release()
    connection.release()


def test_acks_and_the_next_take_share_one_script_call(broker) -> None:
    connection = _connect(broker.broker_url)
    _publish(connection, [{"n": n} for n in range(6)])
    receiver = Receiver(connection, prefetch=3)
    assert receiver.drain(0.5) == [{"n": 0}, {"n": 1}, {"n": 2}]
    unacked = receiver.channel.unacked_key
    first = {m.delivery_tag for m in receiver.messages}
    assert set(map(bytes.decode, receiver.channel.client.hkeys(unacked))) == first
    for message in receiver.messages[:2]:
        message.ack()
    receiver.channel.flush_acks(take=True)  # the consumer's early acks: acks out, two more in
    assert [m.payload["n"] for m in receiver.messages] == [0, 1, 2, 3, 4], "delivered by the flush itself"
    kept = {m.delivery_tag for m in receiver.messages[2:]}
    assert set(map(bytes.decode, receiver.channel.client.hkeys(unacked))) == kept, "acked ones are gone"
    assert {t.decode() for t in receiver.channel.client.zrange(receiver.channel.unacked_index_key, 0, -1)} == kept
    receiver.messages[2].ack()
    receiver.channel.flush_acks()  # acks alone (no take): the pipeline
    assert len(receiver.messages) == 5
    assert len(receiver.channel.client.hkeys(unacked)) == 2
    connection.release()


def test_an_idle_consumer_wakes_for_a_new_message_and_for_wake(broker) -> None:
    connection = _connect(broker.broker_url)
    receiver = Receiver(connection)
    publisher = _connect(broker.broker_url)
    timer = threading.Timer(0.2, _publish, (publisher, [{"n": 1}]))
    timer.start()
    started = time.monotonic()
    connection.drain_events(timeout=30)  # returns with the message, not at the timeout
    assert [m.payload for m in receiver.messages] == [{"n": 1}]
    assert time.monotonic() - started < 10, "the idle watch answers when the message is queued"

    threading.Timer(0.2, connection.transport.wake).start()
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=30)
    assert time.monotonic() - started < 10
    wait_for(lambda: not timer.is_alive(), what="the publishing thread")
    publisher.release()
    connection.release()


def test_after_a_take_that_found_nothing_turns_wait_on_the_watches_and_miss_nothing(broker) -> None:
    connection = _connect(broker.broker_url)
    receiver = Receiver(connection)
    takes: list[int] = []
    take = receiver.channel._take

    def counted(*args: Any, **kwargs: Any) -> Any:
        taken = take(*args, **kwargs)
        takes.append(len(taken))
        return taken

    receiver.channel._take = counted  # type: ignore[method-assign]
    for _ in range(5):  # five turns, as the consumer makes while its tasks run
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.02)
    assert takes == [0], "one take found the queue empty; the turns after it waited on the watches"
    publisher = _connect(broker.broker_url)
    _publish(publisher, [{"n": 1}])  # queued between two turns: the next watch answers at once
    assert receiver.drain(0.5) == [{"n": 1}]
    for _ in range(5):  # it took one where it could take ten: the queue is empty, no take
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.02)
    assert takes == [0, 1]
    _publish(publisher, [{"n": 2}, {"n": 3}])
    assert receiver.drain(0.5) == [{"n": 1}, {"n": 2}, {"n": 3}]
    publisher.release()
    connection.release()
