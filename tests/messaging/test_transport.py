"""The embedded djq:// transport, on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connections, transaction
from kombu import Connection, Consumer, Producer, Queue

from djq.messaging.transport import register
from djq.models import QueueMessage
from tests.conftest import EMBEDDED

register()
pytestmark = pytest.mark.parametrize("db_alias", EMBEDDED, indirect=True)


def _connection(alias: str, **options) -> Connection:
    return Connection(f"djq://{alias}", transport_options={"polling_interval": 0.01, **options})


def _publish(conn: Connection, body, queue: str = "q", **kwargs) -> None:
    with conn.channel() as channel:
        Producer(channel).publish(body, routing_key=queue, exchange="", serializer="json", **kwargs)


def _drain(conn: Connection, queue: str = "q", limit: int = 100, timeout: float = 1.0, ack: bool = True):
    got = []

    def on_message(message):
        got.append(message)
        if ack:
            message.ack()

    channel = conn.channel()
    with Consumer(channel, [Queue(queue)], on_message=on_message, accept=["json"]):
        deadline = time.monotonic() + timeout
        while len(got) < limit and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.05)
            except TimeoutError:
                pass
    return got, channel


def test_publish_and_consume_then_ack_deletes(broker: str) -> None:
    with _connection(broker) as conn:
        _publish(conn, {"n": 1})
        assert QueueMessage.objects.using(broker).count() == 1
        got, channel = _drain(conn, limit=1)
        channel.flush_acks()
        assert [m.payload for m in got] == [{"n": 1}]
        assert QueueMessage.objects.using(broker).count() == 0


def test_priority_then_fifo_order(broker: str) -> None:
    with _connection(broker) as conn:
        for n, priority in enumerate([0, 9, 5, 9, 0]):
            _publish(conn, {"n": n}, priority=priority)
        got, _ = _drain(conn, limit=5)
        assert [m.payload["n"] for m in got] == [1, 3, 2, 0, 4]


@pytest.mark.parametrize("claim_batch", [1, 100], ids=["claimed-one-by-one", "claimed-at-once"])
def test_equal_priority_runs_the_longest_due_first(broker: str, claim_batch: int) -> None:
    now = datetime.now(timezone.utc)
    with _connection(broker, claim_batch=claim_batch) as conn:
        _publish(conn, {"n": "due a minute ago"}, headers={"eta": (now - timedelta(minutes=1)).isoformat()})
        _publish(conn, {"n": "due an hour ago"}, headers={"eta": (now - timedelta(hours=1)).isoformat()})
        _publish(conn, {"n": "sent now"})
        _publish(conn, {"n": "urgent"}, priority=5)
        got, _ = _drain(conn, limit=4)
        assert [m.payload["n"] for m in got] == ["urgent", "due an hour ago", "due a minute ago", "sent now"]


def test_eta_waits_in_the_database(broker: str) -> None:
    eta = (datetime.now(timezone.utc) + timedelta(seconds=0.6)).isoformat()
    with _connection(broker) as conn:
        _publish(conn, {"n": "later"}, headers={"eta": eta})
        _publish(conn, {"n": "now"})
        got, _ = _drain(conn, limit=2, timeout=0.3)
        assert [m.payload["n"] for m in got] == ["now"]
        got, _ = _drain(conn, limit=1, timeout=2)
        assert [m.payload["n"] for m in got] == ["later"]


def test_rollback_drops_the_message(broker: str) -> None:
    with _connection(broker) as conn:
        with pytest.raises(RuntimeError):
            with transaction.atomic(using=broker):
                _publish(conn, {"n": 1})
                assert QueueMessage.objects.using(broker).count() == 1
                raise RuntimeError("roll back")
        assert QueueMessage.objects.using(broker).count() == 0
        with transaction.atomic(using=broker):
            _publish(conn, {"n": 2})
        assert QueueMessage.objects.using(broker).count() == 1


def test_reject_requeue_and_reject_drop(broker: str) -> None:
    with _connection(broker) as conn:
        _publish(conn, {"n": 1})
        got, _ = _drain(conn, limit=1, ack=False)
        got[0].reject(requeue=True)
        again, _ = _drain(conn, limit=1, ack=False)
        assert again[0].payload == {"n": 1} and again[0].delivery_info.get("redelivered", True)
        again[0].reject(requeue=False)
        assert QueueMessage.objects.using(broker).count() == 0


def test_closing_a_channel_returns_unacked_messages(broker: str) -> None:
    with _connection(broker) as conn:
        _publish(conn, {"n": 1})
        got, channel = _drain(conn, limit=1, ack=False)
        assert got
        channel.close()
    with _connection(broker) as conn:
        again, _ = _drain(conn, limit=1, timeout=1)
        assert [m.payload for m in again] == [{"n": 1}]


def test_visibility_timeout_redelivers_after_a_crash(broker: str) -> None:
    crashed = _connection(broker, visibility_timeout=0.5)
    _publish(crashed, {"n": 1})
    got, channel = _drain(crashed, limit=1, ack=False)
    assert got
    # A crash: the lease keeper dies with the process and nothing is restored.
    crashed.transport.lease_keeper().stop()
    channel.qos.restore_at_shutdown = False
    with _connection(broker) as other:
        early, _ = _drain(other, limit=1, timeout=0.2)
        assert early == []
        late, _ = _drain(other, limit=1, timeout=2)
        assert [m.payload for m in late] == [{"n": 1}]
        assert late[0].headers is not None


def test_lease_keeper_prevents_redelivery_while_alive(broker: str) -> None:
    holder = _connection(broker, visibility_timeout=0.4)
    _publish(holder, {"n": 1})
    got, _ = _drain(holder, limit=1, ack=False)
    assert got
    with _connection(broker) as other:
        stolen, _ = _drain(other, limit=1, timeout=1.2)  # three timeouts long
        assert stolen == []
    got[0].ack()
    holder.release()


def test_two_concurrent_consumers_never_share_a_message(broker: str) -> None:
    total = 400
    with _connection(broker) as conn:
        with conn.channel() as channel:
            producer = Producer(channel)
            for n in range(total):
                producer.publish({"n": n}, routing_key="q", exchange="", serializer="json")
    seen: list[list[int]] = [[], []]
    second_took_one = threading.Event()

    def consume(index: int) -> None:
        try:
            with _connection(broker) as conn:
                channel = conn.channel()
                channel.basic_qos(0, 7, False)

                def on_message(message):
                    seen[index].append(message.payload["n"])
                    message.ack()
                    if index == 1:
                        second_took_one.set()
                    elif len(seen[0]) == 1:
                        # The first consumer holds after its first message until
                        # the second has one too, however late that thread
                        # starts: both must be able to take from the queue.
                        second_took_one.wait(timeout=10)

                with Consumer(channel, [Queue("q")], on_message=on_message, accept=["json"]):
                    deadline = time.monotonic() + 20
                    while sum(map(len, seen)) < total and time.monotonic() < deadline:
                        try:
                            conn.drain_events(timeout=0.05)
                        except TimeoutError:
                            pass
                channel.flush_acks()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    everything = seen[0] + seen[1]
    assert len(everything) == len(set(everything)) == total
    assert seen[0] and seen[1], "both consumers should have taken part"


def test_size_and_purge(broker: str) -> None:
    with _connection(broker) as conn:
        for n in range(5):
            _publish(conn, {"n": n}, queue="sized")
        with conn.channel() as channel:
            assert channel._size("sized") == 5
            assert Queue("sized", channel=channel).purge() == 5
            assert channel._size("sized") == 0


def test_bindings_are_shared_across_connections(broker: str) -> None:
    from kombu import Exchange

    exchange = Exchange("fan", type="fanout")
    with _connection(broker) as first, _connection(broker) as second:
        for conn, name in ((first, "fan-a"), (second, "fan-b")):
            with conn.channel() as channel:
                Queue(name, exchange, channel=channel).declare()
        with second.channel() as channel:
            Producer(channel).publish({"hello": 1}, exchange=exchange, routing_key="", serializer="json")
        queues = sorted(QueueMessage.objects.using(broker).values_list("queue", flat=True))
        assert queues == ["fan-a", "fan-b"]



def test_after_a_claim_that_took_all_there_was_turns_wait_and_miss_nothing(broker: str) -> None:
    """A claim that got fewer messages than it asked for emptied the queue: the turns
    after it wait for a notification (PostgreSQL) or a data_version change (SQLite)
    instead of claiming again, and what is sent later still arrives."""
    with _connection(broker) as conn, _connection(broker) as sender:
        got = []
        channel = conn.channel()
        claims: list[int] = []
        claim = channel._claim

        def counted(queues, limit):
            rows = claim(queues, limit)
            claims.append(len(rows))
            return rows

        channel._claim = counted
        with Consumer(channel, [Queue("q")], on_message=got.append, accept=["json"]):
            for _ in range(2):  # idle turns first: SQLite's data_version watch takes its first reading
                with pytest.raises(TimeoutError):
                    conn.drain_events(timeout=0.05)
            _publish(sender, {"n": 1})
            time.sleep(0.05)  # its NOTIFY reaches the listener before the claim (which drops it)
            conn.drain_events(timeout=5)
            assert [m.payload for m in got] == [{"n": 1}] and claims[-1] == 1
            seen = len(claims)
            for _ in range(5):  # five turns, as a worker makes while its task runs
                with pytest.raises(TimeoutError):
                    conn.drain_events(timeout=0.02)
            # a NOTIFY still in flight when the claim ran may cost one claim more; turns that
            # claim on their own would cost five
            assert len(claims) - seen <= 1, f"the claim that took the one message emptied the queue: {claims}"
            _publish(sender, {"n": 2})
            deadline = time.monotonic() + 5
            while len(got) < 2 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.05)
                except TimeoutError:
                    pass
            assert [m.payload for m in got] == [{"n": 1}, {"n": 2}]
            # a message this process puts (SQLite's data_version does not show a connection
            # its own commits), with the waker set as a task finishing would: claimed on the
            # next turns, not at the planned claim a second later
            _publish(sender, {"n": 3})
            conn.transport.wake()
            started = time.monotonic()
            while len(got) < 3 and time.monotonic() - started < 5:
                try:
                    conn.drain_events(timeout=0.02)
                except TimeoutError:
                    pass
            assert [m.payload for m in got][2:] == [{"n": 3}]
            assert time.monotonic() - started < 0.5, "waited for the planned claim"

