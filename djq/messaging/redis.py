"""djq's Redis transport: kombu's, with a take that cannot lose a message.

kombu's Redis transport takes a message with ``BRPOP`` and records it as unacked in a
later round trip, so a message whose ``BRPOP`` reply dies with the connection (a Redis
restart, a network cut, a worker shutting down mid-read) is gone: kombu #305, celery
#4354. Here a consumer takes messages with one Lua script that pops them and records
them as unacked in the same step (djq/messaging/redis_take.py), so every message that
leaves a queue list is either delivered or comes back after the visibility timeout.

Features
- Same keys and message format as kombu and Celery: the queue's list and its
  priority-suffixed lists (``priority_steps``; djq uses 0..9), kombu's JSON envelope, and
  unacked entries in kombu's ``unacked`` hash and ``unacked_index`` zset with kombu's
  layout, so kombu's ``restore_visible`` and Celery workers restore them, and Celery
  producers and workers share queues with djq.
- Batched take: up to the consumer's free prefetch (``QoS.can_consume_max_estimate``,
  or ``take_batch`` without a limit) in one round trip, highest priority first, queues
  in kombu's round-robin order.
- Idle wait without polling: one blocked ``BLMOVE list list RIGHT RIGHT`` per queue list
  (a non-destructive wait); the worker wakes as soon as a message is queued. A queue
  therefore costs ``len(priority_steps)`` idle connections per consumer (10 in djq).
  After a take that emptied the queues, the next turn waits on the watches (which answer
  at once if a message came meanwhile) rather than taking again.
- Batched acks: the acks since the last call travel in the take script's arguments and
  are removed before it takes (one round trip for both; ``Channel.flush_acks(take=True)``
  is that round trip for the consumer's early acks); ``Channel.flush_acks()`` alone
  sends them through the same script with nothing to take, before a restore and at
  close, so an ack never outlives its channel unsent. Each batch of acks is numbered in
  the channel's receipt: ``Channel.acks_taken`` tells a consumer whose round trip failed
  whether Redis took them (the reply may be all that was lost).
- ``Transport.wake()``: another thread (a finished task) makes a blocked
  ``drain_events`` return at once.
- Publishing, fanout (pub/sub: remote control, events), bindings and restore are kombu's;
  ``Channel.put_many`` publishes a batch in one MULTI/EXEC (``Task.delay_many``).
- Needs Redis 6.2 or later (``BLMOVE``, ``RPOP`` with a count). Not for kombu's event
  loop (``asynchronous`` is off); djq's consumer drives ``drain_events``.

URLs: ``redis://[USER:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://…`` (TLS).

Transport options (``DJQ_BROKER_TRANSPORT_OPTIONS``): kombu's (``visibility_timeout``,
``priority_steps``, ``global_keyprefix``, ``unacked_*``, ``socket_*``, ...), plus
``take_batch`` (most messages per take when the consumer sets no prefetch limit,
default 100) and ``watch_timeout`` (seconds an idle watch blocks in Redis before it is
sent again, default 10).
"""
from __future__ import annotations

import json
import logging
import socket
from uuid import uuid4
from contextlib import contextmanager
from queue import Empty
from time import monotonic, time
from typing import Any, Iterator

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.eventio import ERR, READ, poll
from kombu.utils.json import dumps

from .protocol import json_loads
from .redis_take import TAKE_SCRIPT, Watchers
from .wakeup import Waker

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, for messages the take script has already recorded; acks batched."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: list[str] = []

    def append(self, message: Any, delivery_tag: str) -> None:
        # The take script recorded it in Redis; only the local prefetch count is left.
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        self._acks.append(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def flush_acks(self, take: bool = False) -> None:
        """Remove every ack since the last flush from Redis, in one round trip; with
        ``take``, the same round trip also takes what the free prefetch allows.

        A flush that fails is not tried again: those messages stay recorded as unacked,
        and the restore brings them back after the visibility timeout. The consumer
        relies on that: an early-ack task whose ack failed is not run, because its
        message will be delivered again (an ack sent later would lose it for good)."""
        if take:
            self.channel.take_and_deliver()  # sends self._acks with the take
            return
        tags, self._acks = self._acks, []
        if tags:
            self.channel._take([], 0, acks=tags)  # the script: one step, with a receipt

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        # An ack still waiting here must not be taken for an abandoned message.
        self.flush_acks()
        super().restore_visible(*args, **kwargs)


class Channel(kombu_redis.Channel):
    QoS = QoS
    take_batch = 100
    watch_timeout = 10.0
    from_transport_options = (*kombu_redis.Channel.from_transport_options, "take_batch", "watch_timeout")  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._shared_client: Any = None
        super().__init__(*args, **kwargs)
        #: queues consumed with no_ack: their messages are never recorded as unacked
        self._no_ack_queues: set[str] = set()
        #: the last take emptied the queues (took fewer than it could): until a watch
        #: fires, a turn waits instead of taking again (a round trip that would find
        #: nothing, beside every task's own)
        self.found_empty = False
        self._take_script = self._plain_client().register_script(TAKE_SCRIPT)
        #: the key the take script marks with the number of each batch of acks it removed
        self._receipt_key = self._key(f"djq.acks.{uuid4().hex}")
        self._ack_batches = 0
        self.watchers = Watchers(self._connparams(), float(self.watch_timeout))

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """kombu builds a new client (and its table of reply callbacks) on every call: 11 %
        of a solo worker's GIL time went to that for the acks alone. One client per channel
        serves every call; it takes a pooled connection per command, as kombu's does."""
        if client is None:
            client = self._shared_client
            if client is None:
                client = self._shared_client = self._create_client()
        yield client

    def _plain_client(self) -> Any:
        # The script names many keys; kombu's prefixing client would prefix only the
        # first, so keys are prefixed here (_key) and sent through an unprefixed client.
        return kombu_redis.redis.Redis(connection_pool=self.pool)

    def _key(self, name: str) -> str:
        return self.global_keyprefix + name

    def flush_acks(self, take: bool = False) -> None:
        """Send the acks collected since the last call (djq's consumer calls this once per
        turn); with ``take``, take more messages in the same round trip."""
        if self._qos is not None:
            self.qos.flush_acks(take=take)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        taken = self._take([queue], 1, no_ack=no_ack)
        if not taken:
            return None
        message = self.Message(taken[0][1], channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def put_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish ``(queue, message)`` pairs from ``prepare_message`` to the default
        exchange in one MULTI/EXEC round trip (the producer's ``send_many``): one LPUSH per
        list, in order, so a chunk is queued whole or not at all."""
        lists: dict[str, list[str]] = {}
        for queue, message in messages:
            self._inplace_augment_message(message, "", queue)
            key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
            try:  # kombu's text for plain types, without its encoder class
                payload = json.dumps(message)
            except (TypeError, ValueError):  # a header only kombu's encoder converts
                payload = dumps(message)
            lists.setdefault(key, []).append(payload)
        expiring = {queue for queue, _ in messages if queue in self._expires}
        with self.conn_or_acquire() as client, client.pipeline(transaction=True) as pipe:
            for key, payloads in lists.items():
                pipe.lpush(key, *payloads)
            for queue in expiring:
                for pri in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, pri), self._expires[queue])
            pipe.execute()

    def watched_lists(self) -> list[str]:
        """The (prefixed) lists an idle consumer on this channel waits on."""
        return [self._key(self._q_for_pri(queue, pri)) for pri in self.priority_steps
                for queue in self.active_queues]

    def _take(self, queues: list[str], limit: int, *, no_ack: bool | None = None,
              acks: list[str] | None = None) -> list[tuple[str, Any]]:
        """Remove ``acks`` from the unacked records, then pop up to ``limit`` messages from
        ``queues`` and record them as unacked, in one step."""
        lists = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        record = ["0" if (q in self._no_ack_queues if no_ack is None else no_ack) else "1"
                  for _ in self.priority_steps for q in queues]
        keys = [self._key(name) for name in lists] + [self._key(self.unacked_key), self._key(self.unacked_index_key),
                                                       self._receipt_key]
        if acks:
            self._ack_batches += 1
        reply = self._take_script(keys=keys, args=[limit, time(), self._ack_batches, *record, *(acks or ())])
        taken = []
        for i in range(0, len(reply), 2):
            queue = queues[(int(reply[i]) - 1) % len(queues)]
            try:
                taken.append((queue, json_loads(reply[i + 1])))
            except ValueError:
                logger.error("dropped a message from Redis queue %r that is not JSON: %.200r", queue, reply[i + 1])
        return taken

    @property
    def ack_receipt(self) -> tuple[str, int]:
        """What identifies the last batch of acks sent, for ``acks_taken`` to ask about
        when its round trip failed."""
        return self._receipt_key, self._ack_batches

    def acks_taken(self, receipt: tuple[str, int]) -> bool:
        """Whether Redis removed the batch of acks ``receipt`` names (its round trip
        failed: the script may have run with its reply lost). Asked on any channel, as a
        rule a later connection's."""
        key, batch = receipt
        return self._plain_client().zscore(key, batch) is not None

    def take_and_deliver(self) -> int:
        """Send the acks waiting in QoS, take what the free prefetch allows from the consumed
        queues and deliver it: one round trip."""
        qos = self.qos
        limit = qos.can_consume_max_estimate()
        limit = int(self.take_batch) if limit is None else min(limit, int(self.take_batch))
        queues = list(self._queue_cycle.consume(len(self.active_queues))) if limit > 0 else []
        acks, qos._acks = qos._acks, []
        if not queues:
            if acks:
                qos._acks = acks
                qos.flush_acks()
            return 0
        taken = self._take(queues, limit, acks=acks)
        self.found_empty = len(taken) < limit  # it took all there was
        for queue, payload in taken:
            self.connection._deliver(payload, queue)
        if taken:
            self._queue_cycle.rotate(taken[-1][0])
        return len(taken)

    def close(self) -> None:
        try:
            self.flush_acks()
        except self.connection_errors as exc:
            logger.warning("could not send acks before closing the Redis channel: %s", exc)
        self.watchers.close()
        super().close()


class Poller(kombu_redis.MultiChannelPoller):
    """One turn of ``drain_events``: acks out, take, else wait on watches, pub/sub and wake-ups."""

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self.transport = transport

    def get(self, callback: Any, timeout: float | None = None) -> None:
        self._in_protected_read = True
        try:
            self.maybe_refresh_binding_expiry()
            channels = [c for c in self._channels if not c.closed]
            taking = [c for c in channels if c.active_queues and c.qos.can_consume()]
            for channel in channels:
                if channel not in taking:
                    channel.flush_acks()
            for channel in taking:
                if channel.found_empty and not channel.qos._acks:
                    continue  # its watch answers at once if a message has come since
                if channel.take_and_deliver():  # the channel's acks go with its take
                    return
            self._wait(channels, timeout)
        finally:
            self._in_protected_read = False
            while self.after_read:
                self.after_read.pop()()

    def _wait(self, channels: list[Channel], timeout: float | None) -> None:
        waker = self.transport.waker()
        watches: dict[int, tuple[Channel, str]] = {}
        listens: dict[int, Channel] = {}
        for channel in channels:
            if channel.active_queues and channel.qos.can_consume():
                # only with prefetch room: a watch answers at once while its list has messages
                channel.watchers.arm(channel.watched_lists())
            watches.update((fd, (channel, key)) for fd, key in channel.watchers.sockets().items())
            if channel.active_fanout_queues:
                self._register_LISTEN(channel)
                sock = channel.subclient.connection._sock
                if sock is not None:
                    listens[sock.fileno()] = channel
        poller = poll()
        try:
            for fd in (waker.fileno(), *watches, *listens):
                poller.register(fd, READ | ERR)
            events = poller.poll(timeout) or []
        finally:
            poller.close()
        woken, delivered, watched = False, False, set()
        for fd, _ in events:
            if fd == waker.fileno():
                waker.clear()
                woken = True
            elif fd in watches:
                channel, key = watches[fd]
                channel.watchers.read(key)
                watched.add(channel)
            elif fd in listens:
                delivered = listens[fd]._receive() or delivered
        for channel in watched:
            if channel.qos.can_consume() and channel.take_and_deliver():
                delivered = True
        if delivered:
            return
        if woken:
            raise socket.timeout()
        self.maybe_restore_messages()
        raise Empty()


class Transport(kombu_redis.Transport):
    Channel = Channel
    implements = kombu_redis.Transport.implements.extend(asynchronous=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle: Any = Poller(self)
        self._waker: Waker | None = None

    def waker(self) -> Waker:
        if self._waker is None:
            self._waker = Waker()
        return self._waker

    def wake(self) -> None:
        """Make a blocked ``drain_events`` return now (another thread has work for the consumer)."""
        waker = self._waker
        if waker is not None:
            waker.wake()

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - monotonic(), 0.0)
            try:
                self.cycle.get(self._deliver, timeout=remaining)
                return
            except Empty:
                if deadline is not None and monotonic() >= deadline:
                    raise socket.timeout() from None

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        waker, self._waker = self._waker, None
        if waker is not None:
            waker.close()
