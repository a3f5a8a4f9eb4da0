"""``djq://``: a kombu transport that keeps queues in the Django database.

URL: ``djq://`` uses the ``default`` database alias, ``djq://ALIAS`` another one.
Works on SQLite (demos, tests, one machine) and PostgreSQL (production).

Features
- Claiming: one statement claims a batch. PostgreSQL claims with
  ``FOR UPDATE SKIP LOCKED``, so concurrent consumers never receive the same message.
  SQLite runs the claim as a single ``UPDATE ... RETURNING``, which holds the
  database's only write lock, so the claim is safe there too.
- Priority: higher ``priority`` first, then FIFO.
- eta/countdown: ``visible_at`` holds the eta; the message waits in the database.
- Visibility timeout: a claimed message is hidden for ``visibility_timeout`` seconds.
  While its consumer is alive a lease keeper thread keeps extending it, so long tasks are
  not redelivered. If the consumer dies, the message becomes visible again.
- Ack deletes the row. Reject with requeue makes the row visible again at once.
- Bindings are stored in a table, so exchange routing crosses processes.
- Transactional publishing: a publish inside ``transaction.atomic()`` is part of the
  caller's transaction.

- Wake-ups: on PostgreSQL (psycopg 3) a publish sends NOTIFY and idle consumers LISTEN,
  so an idle worker picks a task up in milliseconds. On SQLite an idle consumer checks
  ``PRAGMA data_version`` every few milliseconds and claims only when it changed.

Transport options (``DJQ_BROKER_TRANSPORT_OPTIONS``): ``polling_interval`` (seconds
between idle checks without NOTIFY, default 0.005), ``notify`` (use
LISTEN/NOTIFY on PostgreSQL, default True), ``claim_interval`` (longest an idle
consumer goes without claiming, default 1 s), ``visibility_timeout`` (default 60),
``claim_batch`` (most messages claimed at once, default 100).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from queue import Empty
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from kombu.transport import virtual

from .idle import IdleWaits
from .leases import LeaseKeeper
from .store import SqliteWatch, Store, eta_to_timestamp
from .wakeup import Listener, Waker

logger = logging.getLogger(__name__)

#: Idle check on SQLite (``PRAGMA data_version``, nearly free); on PostgreSQL NOTIFY wakes
#: consumers, and a claim is planned for the next eta and every IDLE_CLAIM_INTERVAL.
DEFAULT_POLLING_INTERVAL = 0.005
IDLE_CLAIM_INTERVAL = 1.0
DEFAULT_VISIBILITY_TIMEOUT = 60.0
DEFAULT_CLAIM_BATCH = 100


class QoS(virtual.QoS):
    def restore_unacked(self) -> list[Any]:
        self._flush()
        tags = [tag for tag in self._delivered if tag not in self._dirty]
        self._delivered.clear()
        self.channel.restore_tags(tags)
        return []


class Channel(virtual.Channel):
    QoS = QoS
    supports_fanout = True
    body_encoding = None  # type: ignore[assignment]  # bodies are stored as text
    visibility_timeout = DEFAULT_VISIBILITY_TIMEOUT
    claim_batch = DEFAULT_CLAIM_BATCH
    max_priority = 255
    from_transport_options = (*virtual.Channel.from_transport_options, "visibility_timeout", "claim_batch")  # type: ignore[assignment]

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.store = Store(connection.alias)
        self._pending_acks: list[int] = []
        #: (message id, result row) to store with the next flush of acks, and the task
        #: ids the last flush stored (``start_with_acks``)
        self._starting: list[tuple[int, dict[str, Any]]] = []
        self.started: set[str] = set()
        #: the rows of the last flush of acks, when it was sent and the server process
        #: it went to (``ack_receipt``)
        self._last_acks: tuple[list[int], float, int | None] = ([], 0.0, None)
        #: the last claim took every visible message (see ``_get_many``)
        self.drained = False
        self._table_cache: dict[str, tuple[float, list[tuple[str, str, str]]]] = {}

    # -- publishing ---------------------------------------------------------------
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        task_id = (message.get("headers") or {}).get("id")
        self.store.put(*self._row(queue, message, time.time()), task_id=task_id if isinstance(task_id, str) else None)

    def put_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish ``(queue, message)`` pairs from ``prepare_message`` to the default
        exchange in one INSERT (the producer's ``send_many``)."""
        now = time.time()
        rows = []
        for queue, message in messages:
            # kombu's _inplace_augment_message, less the delivery tag: a claim sets it to the row id
            message["properties"]["body_encoding"] = None
            message["properties"]["delivery_info"].update(exchange="", routing_key=queue)
            rows.append(self._row(queue, message, now))
        self.store.put_many(rows)

    def publishing(self) -> Any:
        """A context for a run of ``put_many`` calls: each sent without waiting for the last."""
        return self.store.pipeline()

    def _row(self, queue: str, message: dict[str, Any], now: float) -> tuple[str, int, float, str]:
        body = message.get("body")
        if isinstance(body, bytes):
            try:
                message["body"] = body.decode("utf-8")
            except UnicodeDecodeError:  # binary content: stored base64, decoded by kombu on delivery
                message["body"] = self.codecs["base64"].encode(body)
                message["properties"]["body_encoding"] = "base64"
        priority = self._get_message_priority(message)
        visible_at = eta_to_timestamp((message.get("headers") or {}).get("eta"), now)
        return queue, priority, visible_at, json.dumps(message)

    # -- consuming ----------------------------------------------------------------
    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        rows = self._claim([queue], 1)
        if not rows:
            raise Empty()
        return self._to_payload(rows[0])[0]

    def _get_many(self, queues: list[str], timeout: float | None = None) -> None:
        self.flush_acks()
        limit = self.qos.can_consume_max_estimate() or self.claim_batch
        prefetch = self.qos.prefetch_count
        if prefetch and limit < max(1, prefetch // 2):
            # Messages are still reserved: claiming one freed slot at a time would cost a
            # round trip per message. Wait until half the window is free, then claim a batch
            # (whatever woke this turn is not known to be claimed: look next time).
            self.drained = False
            raise Empty()
        wanted = min(limit, self.claim_batch)
        rows = self._claim(queues, wanted)
        # fewer than asked for: the queues hold nothing more that is visible now, so the
        # next turn waits for a notification (or the planned claim) instead of claiming
        self.drained = len(rows) < wanted
        if not rows:
            raise Empty()
        if self.drained:
            self.connection._after_empty_claim()
        deliver = self.connection._deliver
        for row in rows:
            payload, queue = self._to_payload(row)
            deliver(payload, queue)

    def _claim(self, queues: list[str], limit: int) -> list[tuple[int, str, int, str]]:
        try:
            rows = self.store.claim(list(dict.fromkeys(queues)), limit, self.visibility_timeout)
        except (OperationalError, InterfaceError):
            self.store.connection.close()
            raise
        if rows:
            self.connection.lease_keeper().hold(r[0] for r in rows)
        return rows

    @staticmethod
    def _to_payload(row: tuple[int, str, int, str]) -> tuple[dict[str, Any], str]:
        row_id, queue, deliveries, raw = row
        payload = json.loads(raw)
        props = payload.setdefault("properties", {})
        props["delivery_tag"] = row_id
        props.setdefault("delivery_info", {})["routing_key"] = queue
        payload["redelivered"] = deliveries > 1
        return payload, queue

    # -- acknowledgement ----------------------------------------------------------
    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._pending_acks.append(delivery_tag)
        self.connection.lease_keeper().release((delivery_tag,))
        super().basic_ack(delivery_tag, multiple)

    def stores_results_with_acks(self, alias: str | None) -> bool:
        """Results on ``alias`` can be stored with the acks, atomically (the broker's own
        database: PostgreSQL, or SQLite 3.35+)."""
        return alias == self.store.alias and self.store.stores_results_with_acks

    def start_with_acks(self, started: list[tuple[int, dict[str, Any]]]) -> None:
        """Store each ``(delivery tag, result row)`` with the next flush of acks, in its
        statement, only if that message's ack goes through; ``started`` then holds the
        task ids stored (djq.worker.dispatch: an early-ack task's STARTED)."""
        self._starting += started

    def flush_acks(self) -> None:
        """Delete acked rows in one statement; called before every claim and at close."""
        starting, self._starting = self._starting, []
        self.started = set()
        if self._pending_acks:
            acks, self._pending_acks = self._pending_acks, []
            self._last_acks = (acks, time.monotonic(), self.store.backend_pid())
            if not starting:
                self.store.delete(acks)
                return
            try:
                self.started = self.store.delete_and_start(acks, starting)
            except (OperationalError, InterfaceError):
                raise  # the connection: the acks did not go through
            except DatabaseError as exc:  # a row the database refuses must not hold the acks back
                logger.warning("djq broker: could not store STARTED with the acks (%s); the tasks store it", exc)
                self.store.delete(acks)

    @property
    def ack_receipt(self) -> tuple[list[int], float, int | None]:
        """The last flush of acks, for ``acks_taken`` to ask about when it failed."""
        return self._last_acks

    def acks_taken(self, receipt: tuple[list[int], float, int | None]) -> bool | None:
        """Whether the flush ``receipt`` names deleted its rows (it failed: the commit may
        have gone through with its reply lost); None when that can no longer be told.

        First the server process of the broken connection is ended, so its DELETE cannot
        still run after the answer. Rows still there were not deleted: they are made
        visible again at once (False). Rows gone were that flush's delete as long as their
        lease has not run out since (nobody else could claim them): the lease keeper
        renews leases every quarter of the visibility timeout, so up to half of it after
        the failure the answer is exact."""
        tags, sent, pid = receipt
        if pid is not None and not self.store.end_backend(pid):
            logger.warning("djq broker: the server process %s of a broken connection is still there", pid)
            return None
        left = self.store.shown_again(tags)
        if left:
            self.connection.lease_keeper().release(left)
            self.connection.claim_soon()
            return False
        return None if time.monotonic() - sent > self.visibility_timeout / 2 else True

    def basic_reject(self, delivery_tag: int, requeue: bool = False) -> None:
        self.connection.lease_keeper().release((delivery_tag,))
        if requeue:
            self.store.set_visible((delivery_tag,), time.time())
            self.connection.claim_soon()
        else:
            self.store.delete((delivery_tag,))
        self.qos._quick_ack(delivery_tag)

    def restore_tags(self, tags: list[int]) -> None:
        if tags:
            self.connection.lease_keeper().release(tags)
            self.store.set_visible(tags, time.time())
            self.connection.claim_soon()

    def close(self) -> None:
        if not self.closed:
            try:
                self.flush_acks()
            except (OperationalError, InterfaceError) as exc:
                logger.warning("djq broker: could not flush acks on close: %s", exc)
        super().close()

    # -- queues and bindings ------------------------------------------------------
    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        """Queues exist implicitly as rows; nothing to create."""

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.store.has_queue(queue)

    def _size(self, queue: str) -> int:
        return self.store.size(queue)

    def _purge(self, queue: str) -> int:
        return self.store.purge(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self.store.delete_queue(queue)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        self.store.bind(exchange, routing_key or "", pattern or "", queue)
        self._table_cache.pop(exchange, None)

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: Any = None, **kwargs: Any) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        self.store.unbind(exchange or "amq.direct", routing_key, queue)
        self._table_cache.pop(exchange or "amq.direct", None)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any) -> None:
        for queue in {queue for _, _, queue in self.get_table(exchange)}:
            self._put(queue, message)

    def get_table(self, exchange: str) -> list[tuple[str, str, str]]:
        cached = self._table_cache.get(exchange)
        now = time.monotonic()
        if cached and now - cached[0] < 1.0:
            return cached[1]
        table = self.store.table(exchange)
        self._table_cache[exchange] = (now, table)
        return table


class Transport(IdleWaits, virtual.Transport):
    Channel = Channel
    driver_type = "sql"
    driver_name = "django"
    polling_interval = DEFAULT_POLLING_INTERVAL
    connection_errors = (*virtual.Transport.connection_errors, OperationalError, InterfaceError)  # type: ignore[assignment]
    channel_errors = (*virtual.Transport.channel_errors, OperationalError, InterfaceError)  # type: ignore[assignment]
    implements = virtual.Transport.implements.extend(exchange_type=frozenset(["direct", "topic", "fanout"]))

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.alias = self._alias_from(client)
        self._waker: Waker | None = None
        self._listener: Listener | None = None
        self._listener_checked = False
        self._next_claim_at = 0.0
        self._sqlite_watch = SqliteWatch(self.alias) if connections[self.alias].vendor == "sqlite" else None
        self.use_notify = bool(client.transport_options.get("notify", True))
        self.claim_interval = float(
            client.transport_options.get("claim_interval", IDLE_CLAIM_INTERVAL)
        )
        self._lease_keeper: LeaseKeeper | None = None
        self._lease_lock = threading.Lock()
        self.visibility_timeout = float(
            client.transport_options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
        )

    @staticmethod
    def _alias_from(client: Any) -> str:
        host = client.hostname or ""
        if host in connections.settings:
            return host
        if host in ("", "localhost"):
            return "default"
        raise ValueError(f"djq://{host}: no database alias {host!r} in DATABASES")

    def lease_keeper(self) -> LeaseKeeper:
        keeper = self._lease_keeper
        if keeper is None or not keeper.is_alive():
            with self._lease_lock:
                if self._lease_keeper is None or not self._lease_keeper.is_alive():
                    self._lease_keeper = LeaseKeeper(self.alias, self.visibility_timeout)
                    self._lease_keeper.start()
                keeper = self._lease_keeper
        return keeper

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._lease_keeper is not None:
            self._lease_keeper.stop()
        if self._listener is not None:
            self._listener.close()
        if self._waker is not None:
            self._waker.close()
            self._waker = None

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {"hostname": "", "port": None}


def register() -> None:
    """Make ``djq://`` known to kombu."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES.setdefault("djq", "djq.messaging.transport:Transport")
