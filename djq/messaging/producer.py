"""Publishing task messages through pooled kombu producers.

Transactional enqueue: on the embedded ``djq://`` broker the message row is written on
the caller's own database connection, so inside ``transaction.atomic()`` it commits or
rolls back with the caller's work. Other brokers cannot join the transaction, so a
publish inside an atomic block is deferred to ``transaction.on_commit``.
"""
from __future__ import annotations

import os
import threading
from contextlib import nullcontext
from typing import Any, Callable

from django.db import transaction
from kombu import Connection, Exchange, Queue
from kombu.entity import PERSISTENT_DELIVERY_MODE
from kombu.pools import ProducerPool
from kombu.serialization import loads
from kombu.utils.url import maybe_sanitize_url

from .. import signals
from ..conf import djq_settings
from ..exceptions import BrokerUnreachable, BrokerURLError, MissingExtraError, PublishError
from ..extras import missing_for_broker
from .protocol import OutgoingMessage
from .routing import BROKER_MAX_PRIORITY, broker_priority, queue_arguments
from .transport import register as register_transport

#: Publishing retries on a non-transactional broker: 3 tries over about a second.
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 1.0}
#: Messages per round trip of ``send_many`` (one INSERT on djq://, one pipeline on Redis).
CHUNK_SIZE = 500


def is_embedded(url: str) -> bool:
    return url.split("://", 1)[0] == "djq"


def embedded_alias(url: str) -> str:
    host = url.split("://", 1)[1].split("/", 1)[0] if "://" in url else ""
    return host or "default"


def task_queue(name: str, url: str | None = None) -> Queue:
    """The kombu queue djq uses for ``name``: a direct exchange of the same name."""
    arguments = queue_arguments(url or djq_settings.BROKER_URL)
    return Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=arguments or None)


def describe_broker(url: str) -> str:
    """The broker URL without its password, for logs and banners."""
    if is_embedded(url):
        from django.db import connections

        alias = embedded_alias(url)
        engine = connections.settings[alias]["ENGINE"].rsplit(".", 1)[-1] if alias in connections.settings else "?"
        return f"djq://{alias if alias != 'default' else ''} (database {alias!r}, {engine})"
    return str(Connection(url).as_uri())


#: Embedded-broker options for side connections (remote control, event listeners): they
#: look every 0.2 s instead of claiming on every commit or NOTIFY, so they add no load
#: to the task path; a command waits at most that long.
SIDE_CHANNEL_OPTIONS = {"polling_interval": 0.2, "notify": False}
REDIS_PRIORITY_STEPS = list(range(BROKER_MAX_PRIORITY + 1))


#: Schemes kombu's transports answer to, as DJQ_BROKER_URL may use them.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
KNOWN_SCHEMES = ("djq", "redis", "rediss", "redis+socket", "sentinel", *AMQP_SCHEMES, "memory", "sqs")


def url_problem(url: Any) -> str | None:
    """One line saying why ``url`` cannot be a DJQ_BROKER_URL, or None."""
    if not isinstance(url, str) or "://" not in url:
        return f"DJQ_BROKER_URL {url!r} is not a URL (e.g. 'djq://' or 'redis://localhost:6379/0')"
    scheme = url.split("://", 1)[0]
    if scheme not in KNOWN_SCHEMES:
        return (f"DJQ_BROKER_URL {maybe_sanitize_url(url)!r} uses unknown scheme {scheme!r}; "
                f"known: {', '.join(KNOWN_SCHEMES)}")
    if scheme == "djq":
        from django.db import connections

        alias = embedded_alias(url)
        if alias not in connections.settings:
            return f"DJQ_BROKER_URL {url!r} names database alias {alias!r}, which is not in DATABASES"
    return None


def check_broker_url(url: str) -> str:
    """``url`` if djq can use it; BrokerURLError or MissingExtraError (one line) if not."""
    problem = url_problem(url)
    if problem:
        raise BrokerURLError(problem)
    missing = missing_for_broker(url)
    if missing:
        raise MissingExtraError(f"{missing} (DJQ_BROKER_URL is {maybe_sanitize_url(url)!r})")
    return url


def broker_connection(url: str | None = None, *, side_channel: bool = False) -> Connection:
    """A kombu connection to ``url``; BrokerURLError for a URL djq cannot use,
    MissingExtraError (naming the extra to install) if a package the broker needs is missing."""
    register_transport()
    url = check_broker_url(url or djq_settings.BROKER_URL)
    options = dict(djq_settings.BROKER_TRANSPORT_OPTIONS)
    if side_channel and is_embedded(url):
        options.update(SIDE_CHANNEL_OPTIONS)
    if url.startswith(("redis://", "rediss://", "redis+socket://")):
        # kombu's Redis transport keeps four priority lists by default (0, 3, 6, 9); one per
        # level gives Redis the same ten levels as RabbitMQ
        options.setdefault("priority_steps", REDIS_PRIORITY_STEPS)
        # djq's transport: kombu's, but a taken message is recorded as unacked in the
        # same step (kombu's BRPOP loses a message whose reply dies with the connection)
        from .redis import Transport as RedisTransport

        return Connection(url, transport=RedisTransport, transport_options=options)
    scheme = url.split("://", 1)[0]
    if scheme in AMQP_SCHEMES:
        # kombu's, with the worker's acks batched (djq/messaging/amqp.py)
        from .amqp import transport_for

        return Connection(url, transport=transport_for(scheme), transport_options=options)
    return Connection(url, transport_options=options)


class _Publisher:
    """One pool of producers per broker URL, per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.embedded = is_embedded(url)
        self.connection = broker_connection(url)  # BrokerURLError, MissingExtraError: as they are
        limit = int(djq_settings.BROKER_POOL_LIMIT)
        self.pool = ProducerPool(self.connection.Pool(limit=limit), limit=limit)
        self.declared: set[str] = set()

    def publish(self, message: OutgoingMessage) -> None:
        if signals.before_task_publish.receivers:
            before_publish([message])
        declare = []
        if message.queue not in self.declared:
            declare = [task_queue(message.queue, self.url)]
        try:
            with self.pool.acquire(block=True, timeout=30) as producer:
                producer.publish(
                    message.body,
                    exchange="",
                    routing_key=message.queue,
                    headers=message.headers,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    priority=broker_priority(self.url, message.priority),
                    declare=declare,
                    retry=not self.embedded,
                    retry_policy=RETRY_POLICY,
                    **message.properties,
                )
        except Exception as exc:
            raise self.failure(
                exc, f"could not send task {message.task_name}[{message.task_id}] to {self.safe_url}"
            ) from exc
        if declare:
            self.declared.add(message.queue)
        if signals.after_task_publish.receivers:
            after_publish([message])

    def publish_many(self, messages: list[OutgoingMessage]) -> None:
        """Publish on one channel, a chunk per round trip where the transport can.

        djq:// and Redis channels take a chunk in one call (``put_many``: one INSERT, one
        MULTI/EXEC pipeline); on djq:// every chunk is in one transaction, so the batch
        is sent whole or not at all. Other transports publish message by message on the
        one channel. A chunk a broker error interrupts is retried whole, as ``publish``
        retries one message; if the retries fail, PublishError says how many were sent.
        """
        if signals.before_task_publish.receivers:
            before_publish(messages)
        sent = 0
        try:
            with self.pool.acquire(block=True, timeout=30) as producer:
                self._declare(producer, {message.queue for message in messages})
                with transaction.atomic(using=embedded_alias(self.url)) if self.embedded else nullcontext(), \
                        getattr(producer.channel, "publishing", nullcontext)():
                    send_chunk = self._send_chunk
                    if not self.embedded:
                        send_chunk = producer.connection.ensure(producer, send_chunk, **RETRY_POLICY)
                    for start in range(0, len(messages), CHUNK_SIZE):
                        chunk = messages[start:start + CHUNK_SIZE]
                        send_chunk(producer, chunk)
                        sent += len(chunk)
        except Exception as exc:
            sent = 0 if self.embedded else sent  # djq://: the batch's transaction rolled back
            names = ", ".join(sorted({message.task_name for message in messages}))
            raise self.failure(exc, f"could not send {len(messages)} tasks ({names}) to {self.safe_url}",
                               f"; {'the first ' + str(sent) if sent else 'none'} of them were sent") from exc
        if signals.after_task_publish.receivers:
            after_publish(messages)

    def failure(self, exc: Exception, what: str, tail: str = "") -> PublishError:
        """The djq error for a failed publish: BrokerUnreachable when the broker could not
        be reached, PublishError otherwise; one line either way."""
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not self.embedded and isinstance(exc, self.unreachable_errors()):
            return BrokerUnreachable(f"{what}: the broker is unreachable ({reason}); "
                                     f"check DJQ_BROKER_URL and that the broker is running{tail}")
        return PublishError(f"{what}: {reason}{tail}")

    def unreachable_errors(self) -> tuple[type[BaseException], ...]:
        from kombu.exceptions import OperationalError

        try:
            errors = tuple(self.connection.connection_errors)
        except Exception:  # the transport could not even be loaded
            errors = ()
        return errors + (OperationalError, OSError)

    def _declare(self, producer: Any, queues: set[str]) -> None:
        for name in sorted(queues - self.declared):
            producer.maybe_declare(task_queue(name, self.url), retry=not self.embedded, **RETRY_POLICY)
            self.declared.add(name)

    def _send_chunk(self, producer: Any, chunk: list[OutgoingMessage]) -> None:
        channel = producer.channel
        prepared = [(message.queue, channel.prepare_message(
            message.body, broker_priority(self.url, message.priority), message.content_type,
            message.content_encoding, message.headers,
            {"delivery_mode": PERSISTENT_DELIVERY_MODE, **message.properties},
        )) for message in chunk]
        put_many = getattr(channel, "put_many", None)
        if put_many is not None:
            put_many(prepared)
            return
        for queue, message in prepared:
            channel.basic_publish(message, exchange="", routing_key=queue)

    @property
    def safe_url(self) -> str:
        return describe_broker(self.url)

    def close(self) -> None:
        self.pool.force_close_all()
        self.connection.release()


def _body(message: OutgoingMessage) -> Any:
    return loads(message.body, message.content_type, message.content_encoding, accept=None)


def before_publish(messages: list[OutgoingMessage]) -> None:
    """djq.signals.before_task_publish, Celery's arguments; ``headers`` is the message's own."""
    for message in messages:
        signals.send(signals.before_task_publish, message.task_name, body=_body(message), exchange="",
                     routing_key=message.queue, headers=message.headers, properties=message.properties,
                     declare=[], retry_policy=RETRY_POLICY)


def after_publish(messages: list[OutgoingMessage]) -> None:
    for message in messages:
        signals.send(signals.after_task_publish, message.task_name, body=_body(message), exchange="",
                     routing_key=message.queue, headers=message.headers)


_publishers: dict[str, _Publisher] = {}
_lock = threading.Lock()


def _publisher(url: str) -> _Publisher:
    publisher = _publishers.get(url)
    if publisher is None:
        with _lock:
            publisher = _publishers.get(url)
            if publisher is None:
                publisher = _publishers[url] = _Publisher(url)
    return publisher


def publish_now(message: OutgoingMessage, url: str | None = None) -> None:
    """Publish at once, outside any transaction logic (workers moving messages around)."""
    _publisher(url or djq_settings.BROKER_URL).publish(message)


def send_reply(routing_key: str, payload: Any, correlation_id: str, url: str | None = None) -> None:
    """Publish ``payload`` (JSON) to the queue ``routing_key`` through the default exchange,
    as Celery's rpc:// result backend replies to a client's ``reply_to`` queue."""
    publisher = _publisher(url or djq_settings.BROKER_URL)
    with publisher.pool.acquire(block=True, timeout=30) as producer:
        producer.publish(payload, exchange="", routing_key=routing_key, serializer="json",
                         correlation_id=correlation_id, delivery_mode=1, retry=not publisher.embedded,
                         retry_policy=RETRY_POLICY)


def reset_publishers() -> None:
    """Drop pooled connections (after fork, or when DJQ_BROKER_URL changes in tests)."""
    with _lock:
        old = list(_publishers.values())
        _publishers.clear()
    for publisher in old:
        try:
            publisher.close()
        except Exception:  # a connection from before a fork may not close cleanly
            pass


def _forget_after_fork() -> None:
    _publishers.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def broker_alias(url: str | None = None) -> str | None:
    """The database a ``djq://`` broker writes messages to; None for other brokers."""
    url = url or djq_settings.BROKER_URL
    return embedded_alias(url) if is_embedded(url) else None


def _guarded(publish: Callable[[], None], on_failure: Callable[[], None] | None) -> Callable[[], None]:
    if on_failure is None:
        return publish

    def run() -> None:
        try:
            publish()
        except BaseException:
            on_failure()  # e.g. the PENDING rows of what was not sent (djq/pending.py)
            raise

    return run


def send(message: OutgoingMessage, *, using: str | None = None,
         on_failure: Callable[[], None] | None = None) -> None:
    """Publish ``message`` now, or at commit when inside an atomic block on a non-embedded
    broker; ``on_failure`` runs if the publish fails (the error is raised after it)."""
    url = djq_settings.BROKER_URL
    _now_or_at_commit(_guarded(lambda: _publisher(url).publish(message), on_failure), url, using)


def send_many(messages: list[OutgoingMessage], *, using: str | None = None,
              on_failure: Callable[[], None] | None = None) -> None:
    """``send`` for a batch: one INSERT (djq://) or pipeline (Redis) per chunk, and on other
    brokers inside an atomic block one ``on_commit`` for the whole batch."""
    if not messages:
        return
    url = djq_settings.BROKER_URL
    _now_or_at_commit(_guarded(lambda: _publisher(url).publish_many(messages), on_failure), url, using)


def _now_or_at_commit(publish: Callable[[], None], url: str, using: str | None) -> None:
    """djq:// publishes in the caller's transaction; other brokers at its commit."""
    if not is_embedded(url) and transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(publish, using=using)
    else:
        publish()
