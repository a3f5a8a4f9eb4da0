"""djq's AMQP channel (djq/messaging/amqp.py) against a real RabbitMQ.

In batch mode the acks of a turn go out in ``flush_acks()``: one ``basic.ack`` with
``multiple`` for the run of oldest deliveries all acked, one frame each for the rest. A
delivery still held (not acked) is never under a ``multiple`` ack, and a tag is never
acked twice: RabbitMQ closes the channel on an unknown delivery tag (PRECONDITION_FAILED),
so either mistake shows up here as a channel error or a lost message.
"""
from __future__ import annotations

import json
import socket
import time
from typing import Any, Iterator

import amqp
import pytest
from kombu import Connection, Consumer, Producer

from djq.messaging import amqp as djq_amqp
from djq.messaging.producer import broker_connection, task_queue

pytestmark = pytest.mark.parametrize("db_alias", ["amqp"], indirect=True)
QUEUE = "djq-ack-batching"


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """The ``basic.ack`` frames djq's channel writes, as (delivery tag, multiple)."""
    sent: list[tuple[int, bool]] = []
    write = amqp.Channel.basic_ack

    def counting(channel: amqp.Channel, delivery_tag: int, multiple: bool = False, argsig: str = "Lb") -> Any:
        sent.append((delivery_tag, multiple))
        return write(channel, delivery_tag, multiple, argsig)

    monkeypatch.setattr(amqp.Channel, "basic_ack", counting)
    return sent


@pytest.fixture
def connection(broker) -> Iterator[Connection]:
    conn = broker_connection(broker.broker_url)
    conn.djq_url = broker.broker_url  # as_uri() names the transport class, not the scheme
    task_queue(QUEUE)(conn.channel()).declare()
    task_queue(QUEUE)(conn.channel()).purge()  # what an earlier, failed run left
    yield conn
    conn.release()


class Receiver:
    def __init__(self, connection: Connection, batch: bool, prefetch: int = 20) -> None:
        self.connection = connection
        self.channel = connection.channel()
        assert isinstance(self.channel, djq_amqp.Channel)
        self.channel.batch_acks = batch
        self.messages: list[Any] = []
        self.consumer = Consumer(self.channel, queues=[task_queue(QUEUE)], on_message=self.messages.append,
                                 accept=["json"])
        self.consumer.qos(prefetch_count=prefetch)
        self.consumer.consume()

    def receive(self, count: int, seconds: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + seconds
        while len(self.messages) < count and time.monotonic() < deadline:
            try:
                self.connection.drain_events(timeout=0.1)
            except socket.timeout:
                pass
        assert len(self.messages) >= count, f"received {len(self.messages)} of {count}"
        return self.messages


def _publish(connection: Connection, count: int) -> None:
    producer = Producer(connection.channel())
    for n in range(count):
        producer.publish({"n": n}, exchange="", routing_key=QUEUE, declare=[task_queue(QUEUE)])


def _left_in_queue(connection: Connection) -> list[int]:
    """Take what the broker still holds once the acks are settled (no ack needed)."""
    other = broker_connection(connection.djq_url)
    try:
        channel = other.channel()
        found = []
        while (message := channel.basic_get(QUEUE, no_ack=True)) is not None:
            found.append(json.loads(message.body)["n"])
        return sorted(found)
    finally:
        other.release()


def _settle(receiver: Receiver) -> None:
    """Close the receiver's channel: acks it kept go out first; what it held goes back."""
    receiver.channel.close()
    time.sleep(0.2)


def test_acks_of_a_turn_go_as_one_multiple_ack_and_every_message_is_settled_once(connection, frames) -> None:
    _publish(connection, 10)
    receiver = Receiver(connection, batch=True)
    messages = receiver.receive(10)
    for message in messages:
        message.ack()
    assert frames == [], "nothing is written before the flush"
    receiver.channel.flush_acks()
    tags = [m.delivery_tag for m in messages]
    assert frames == [(max(tags), True)]
    _settle(receiver)
    assert _left_in_queue(connection) == []


def test_a_held_delivery_is_never_under_a_multiple_ack(connection, frames) -> None:
    _publish(connection, 8)
    receiver = Receiver(connection, batch=True)
    messages = receiver.receive(8)
    held = messages[3]  # a late-ack task still running, an eta task waiting
    for message in messages:
        if message is not held:
            message.ack()
    receiver.channel.flush_acks()
    tags = [m.delivery_tag for m in messages]
    assert frames[0] == (tags[2], True), "the run before the held delivery, in one frame"
    assert sorted(tag for tag, multiple in frames[1:] if not multiple) == tags[4:]
    assert all(not multiple for _, multiple in frames[1:])

    # the held one is acked in a later turn, alone, and the channel stays open
    held.ack()
    receiver.channel.flush_acks()
    assert frames[-1] == (held.delivery_tag, True), "it is the oldest unsettled: a multiple ack of one"
    assert receiver.channel.is_open
    _settle(receiver)
    assert _left_in_queue(connection) == []


def test_a_held_delivery_goes_back_when_the_channel_closes_and_kept_acks_do_not(connection, frames) -> None:
    _publish(connection, 5)
    receiver = Receiver(connection, batch=True)
    messages = receiver.receive(5)
    for message in messages[1:]:
        message.ack()
    assert frames == []
    _settle(receiver)  # no flush_acks(): close() sends the kept acks
    assert len(frames) == 4
    assert _left_in_queue(connection) == [0]


def test_rejects_and_requeues_mixed_with_batched_acks(connection, frames) -> None:
    _publish(connection, 6)
    receiver = Receiver(connection, batch=True)
    messages = receiver.receive(6)
    messages[0].reject(requeue=False)  # dropped
    messages[1].ack()
    messages[2].requeue()  # back in the queue
    messages[3].ack()
    messages[4].ack()
    messages[5].ack()
    receiver.channel.flush_acks()
    tags = [m.delivery_tag for m in messages]
    assert frames == [(tags[5], True)], "rejected and requeued deliveries are settled: the acked run covers all"
    assert receiver.channel.is_open
    _settle(receiver)
    assert _left_in_queue(connection) == [2]


def test_a_channel_not_in_batch_mode_acks_at_once(connection, frames) -> None:
    _publish(connection, 3)
    receiver = Receiver(connection, batch=False)
    messages = receiver.receive(3)
    for message in messages:
        message.ack()
    assert frames == [(m.delivery_tag, False) for m in messages]
    receiver.channel.flush_acks()
    assert len(frames) == 3
    _settle(receiver)
    assert _left_in_queue(connection) == []


def test_an_ack_after_a_multiple_ack_by_hand_is_not_sent_twice(connection, frames) -> None:
    _publish(connection, 4)
    receiver = Receiver(connection, batch=True)
    messages = receiver.receive(4)
    messages[0].ack()
    messages[2].ack()
    receiver.channel.basic_ack(messages[1].delivery_tag, multiple=True)  # kombu's multiple ack
    messages[3].ack()
    receiver.channel.flush_acks()
    tags = [m.delivery_tag for m in messages]
    assert frames == [(tags[0], True), (tags[2], False), (tags[1], True), (tags[3], True)], frames
    assert receiver.channel.is_open
    _settle(receiver)
    assert _left_in_queue(connection) == []
