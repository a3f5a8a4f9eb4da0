"""Events: what happens to tasks and workers, published for monitors (``djq_events``).

Events go out on the fanout exchange ``djq.events`` with Celery's event names and field
names (``task-succeeded`` with ``uuid``, ``result``, ``runtime``; ``worker-heartbeat``
with ``freq``, ``active``, ``processed`` ...), as JSON. They are published only when
events are on (``djq_worker -E`` or ``DJQ_WORKER_SEND_TASK_EVENTS``; ``task-sent`` with
``DJQ_TASK_SEND_SENT_EVENT``); when they are off no dispatcher exists and nothing is
done per task. A monitor that is not listening misses the events sent meanwhile: each
listener has its own queue, deleted when it stops.

On Redis and RabbitMQ (``DJQ_CELERY_EVENTS``, on by default) each event also goes to
Celery's exchange ``celeryev`` with Celery's routing key (``task.succeeded``), so
``celery events`` and Flower see djq workers; ``EventReceiver`` also listens there, so
``djq_events`` and the camera see Celery workers (djq's own copies there carry the
``djq-event`` header and are skipped: they came on ``djq.events``).
"""
from __future__ import annotations

import logging
import os
import socket
import itertools
import threading
import time
import uuid
from queue import Full
from queue import Queue as Queue_
from typing import Any, Callable, Iterator

from kombu import Connection, Exchange, Queue
from kombu import Consumer as KombuConsumer
from kombu import Producer

from ..conf import djq_settings
from .producer import broker_connection, is_embedded

logger = logging.getLogger(__name__)

EXCHANGE_NAME = "djq.events"
CELERY_EXCHANGE_NAME = "celeryev"
#: header on the copies djq publishes on ``celeryev``: djq's receiver has them from djq.events
DJQ_HEADER = "djq-event"
#: header of a receiver's probe of its own subscription: every receiver skips such messages
PROBE_HEADER = "djq-probe"
TASK_EVENTS = ("task-sent", "task-received", "task-started", "task-succeeded", "task-failed",
               "task-retried", "task-revoked", "task-rejected", "task-follow-up-failed")
WORKER_EVENTS = ("worker-online", "worker-heartbeat", "worker-offline")
EVENT_TYPES = TASK_EVENTS + WORKER_EVENTS


def events_exchange() -> Exchange:
    return Exchange(EXCHANGE_NAME, type="fanout", durable=False, auto_delete=False, delivery_mode=1)


def celery_exchange(url: str) -> Exchange:
    """Celery's ``celeryev``: a topic exchange, declared as Celery does (fanout on Redis)."""
    return Exchange(CELERY_EXCHANGE_NAME, type="fanout" if url.startswith(("redis", "rediss")) else "topic")


def celery_events_enabled(url: str) -> bool:
    """Celery's exchange too: on by default where Celery can listen (not djq://)."""
    return bool(djq_settings.CELERY_EVENTS) and not is_embedded(url)


class EventDispatcher:
    """Publishes events from a thread of its own, so the thread that reports an event
    never waits for the broker. Events queue up to ``maxsize``; beyond that they are
    dropped (a monitor is not worth stalling the worker for)."""

    def __init__(self, hostname: str, url: str | None = None, maxsize: int = 10_000) -> None:
        self.hostname = hostname
        self.url = url or djq_settings.BROKER_URL
        self.pid = os.getpid()
        self._clock = itertools.count(1)
        self._queue: Queue_[dict[str, Any] | None] = Queue_(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name="djq-events", daemon=True)
        self._thread.start()
        self.dropped = 0

    def send(self, type_: str, **fields: Any) -> None:
        event = {"type": type_, "hostname": self.hostname, "timestamp": time.time(),
                 "utcoffset": -time.timezone // 3600, "pid": self.pid, "clock": next(self._clock), **fields}
        try:
            self._queue.put_nowait(event)
        except Full:
            self.dropped += 1
            if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                logger.warning("events: the broker cannot keep up; %d event(s) dropped", self.dropped)

    def _run(self) -> None:
        connection: Connection | None = None
        producer: Producer | None = None
        embedded = is_embedded(self.url)
        celery, celery_declared = celery_events_enabled(self.url), False
        celery_headers = {"hostname": self.hostname, DJQ_HEADER: "1"}
        while True:
            event = self._queue.get()
            if event is None:
                break
            try:
                if producer is None:
                    connection = broker_connection(self.url)
                    producer = Producer(connection.channel(), exchange=events_exchange())
                    celery_declared = False
                if embedded and not producer.channel.get_table(EXCHANGE_NAME):
                    continue  # nobody listens (bindings are cached for a second): skip encoding
                # No routing key: on Redis a fanout publish with one goes to a channel the
                # listeners (bound without a key) do not subscribe to.
                producer.publish(event, routing_key="", serializer="json", retry=False, delivery_mode=1)
                if celery:  # Celery's monitors (celery events, Flower) route on the event type
                    exchange = celery_exchange(self.url)
                    producer.publish(event, exchange=exchange, routing_key=event["type"].replace("-", "."),
                                     headers=celery_headers, serializer="json", retry=False, delivery_mode=1,
                                     declare=[] if celery_declared else [exchange])
                    celery_declared = True
            except Exception as exc:
                logger.warning("could not publish the %s event: %s", event["type"], exc)
                producer = None
                _release(connection)
        _release(connection)
        if embedded:
            from django.db import connections

            connections.close_all()

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is queued (for up to ``timeout`` seconds), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except Full:
            return
        self._thread.join(timeout)


def _release(connection: Connection | None) -> None:
    if connection is not None:
        try:
            connection.release()
        except Exception:  # already broken
            pass


# -- what the worker says about a task, in Celery's field names ------------------------------
def received_fields(request: Any) -> dict[str, Any]:
    msg = request.msg
    return {"uuid": msg.task_id, "name": msg.task_name, "args": str(msg.headers.get("argsrepr") or ""),
            "kwargs": str(msg.headers.get("kwargsrepr") or ""), "retries": msg.retries,
            "eta": msg.eta.isoformat() if msg.eta else None,
            "expires": msg.expires.isoformat() if msg.expires else None,
            "root_id": msg.root_id, "parent_id": msg.parent_id, "queue": request.queue}


def sent_fields(message: Any) -> dict[str, Any]:
    headers = message.headers
    return {"uuid": message.task_id, "name": message.task_name, "args": headers.get("argsrepr", ""),
            "kwargs": headers.get("kwargsrepr", ""), "retries": headers.get("retries", 0),
            "eta": headers.get("eta"), "expires": headers.get("expires"), "queue": message.queue,
            "exchange": "", "routing_key": message.queue, "root_id": headers.get("root_id"),
            "parent_id": headers.get("parent_id")}


_sender: EventDispatcher | None = None
_sender_lock = threading.Lock()


def send_task_sent(message: Any, sent_at: float) -> None:
    """The ``task-sent`` event of a client (only with DJQ_TASK_SEND_SENT_EVENT)."""
    global _sender
    if _sender is None or _sender.url != djq_settings.BROKER_URL or _sender.pid != os.getpid():
        with _sender_lock:
            if _sender is not None and _sender.pid == os.getpid():
                _sender.close()
            _sender = EventDispatcher(f"client@{socket.gethostname()}")
    _sender.send("task-sent", timestamp=sent_at, **sent_fields(message))


# -- listening ----------------------------------------------------------------------------------
class EventReceiver:
    """Listens to every event on a queue of its own; ``capture`` calls ``handler`` per event."""

    def __init__(self, handler: Callable[[dict[str, Any]], None], url: str | None = None,
                 name: str | None = None) -> None:
        self.handler = handler
        self.url = url or djq_settings.BROKER_URL
        name = name or f"djq.events.{uuid.uuid4().hex[:12]}"
        arguments = {"x-message-ttl": 60_000} if self.url.startswith("amqp") else None
        self.queue = Queue(name, events_exchange(), durable=False, auto_delete=True, queue_arguments=arguments)
        #: Celery workers' events (celeryev, every routing key); djq's own copies there are skipped
        self.celery_queue = Queue(f"{name}.celeryev", celery_exchange(self.url), routing_key="#", durable=False,
                                  auto_delete=True, queue_arguments=arguments) \
            if celery_events_enabled(self.url) else None
        self.should_stop = False
        self._probe: str | None = None
        self._probe_seen = False

    def capture(self, timeout: float | None = None, wakeup: float = 1.0,
                on_tick: Callable[[], None] | None = None, on_ready: Callable[[], None] | None = None) -> None:
        """Receive until ``should_stop`` (or ``timeout`` seconds); ``on_tick`` runs every ``wakeup``
        seconds, ``on_ready`` once the queue listens."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        next_tick = time.monotonic() + wakeup
        with broker_connection(self.url, side_channel=True) as connection:
            channel = connection.channel()
            queues = [self.queue] + ([self.celery_queue] if self.celery_queue is not None else [])
            consumer = KombuConsumer(channel, queues=queues, on_message=self._on_message, accept=["json"])
            consumer.consume()
            if connection.transport.driver_type == "redis":
                self._until_subscribed(connection, channel)
            if on_ready is not None:
                on_ready()
            try:
                for _ in self._ticks(deadline, wakeup):
                    try:
                        connection.drain_events(timeout=max(0.01, next_tick - time.monotonic()))
                    except socket.timeout:
                        pass
                    if time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + wakeup
                        if on_tick is not None:
                            on_tick()
                flush = getattr(channel, "flush_acks", None)
                if flush is not None:
                    flush()
            finally:
                try:
                    consumer.cancel()
                    for queue in queues:
                        queue(channel).delete()
                except Exception as exc:  # the queue goes with the connection on most brokers
                    logger.debug("could not delete the event queue: %s", exc)

    def _until_subscribed(self, connection: Connection, channel: Any, timeout: float = 10.0) -> None:
        """Wait until Redis has this receiver's subscription: kombu sends SUBSCRIBE only when it
        first polls, and Redis drops what is published before. A probe is published (again every
        0.2 s, as one sent before the subscription is lost) until it comes back."""
        self._probe, self._probe_seen = uuid.uuid4().hex, False
        producer = Producer(channel, exchange=events_exchange())
        deadline = time.monotonic() + timeout
        while not self._probe_seen and time.monotonic() < deadline:
            producer.publish({"type": "djq-probe"}, routing_key="", serializer="json", retry=False,
                             delivery_mode=1, headers={PROBE_HEADER: self._probe})
            resend = time.monotonic() + 0.2
            while not self._probe_seen and time.monotonic() < resend:
                try:
                    connection.drain_events(timeout=0.05)
                except socket.timeout:
                    pass
        if not self._probe_seen:
            logger.warning("events: the subscription on %s was not confirmed in %.0f s", self.url, timeout)

    def _ticks(self, deadline: float | None, wakeup: float) -> Iterator[None]:
        while not self.should_stop and (deadline is None or time.monotonic() < deadline):
            yield None

    def _on_message(self, message: Any) -> None:
        message.ack()
        headers = message.headers or {}
        if headers.get(PROBE_HEADER):  # a receiver's probe of its subscription: not an event
            self._probe_seen = self._probe_seen or headers[PROBE_HEADER] == self._probe
            return
        if headers.get(DJQ_HEADER):
            return  # a djq worker's copy on celeryev: the same event came on djq.events
        try:
            event = message.decode()
        except Exception as exc:
            logger.warning("dropped an undecodable event: %s", exc)
            return
        # A Celery worker sends its task events in batches: a list on routing key task.multi
        for item in event if isinstance(event, list) else [event]:
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                self.handler(item)
