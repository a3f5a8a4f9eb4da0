"""The consumer's broker connection: connecting (patiently), reconnecting, queues, acks.

``BrokerLink`` is the part of ``Consumer`` (djq/worker/consumer.py) that owns the kombu
connection and channel; only the consumer thread calls it.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from kombu import Connection
from kombu import Consumer as KombuConsumer

from ..exceptions import ConfigurationError
from ..messaging.producer import broker_connection, describe_broker, task_queue
from . import dbhygiene
from .eta import EtaParking
from .request import Request
from .revokes import Revokes

logger = logging.getLogger(__name__)


class StoppedWaiting(Exception):
    """The worker was told to stop while it waited for its broker."""


class BrokerLink:
    broker_url: str
    queue_names: list[str]
    prefetch_count: int
    connection: Connection | None
    channel: Any
    kombu_consumer: KombuConsumer | None
    generation: int
    revokes: Revokes
    parking: EtaParking
    reserved: deque[Request]
    scheduled: list[tuple[float, int, Request]]
    stopping: bool
    _qos_global: bool
    _applied_prefetch: int
    _next_restore: float
    accept: Any

    def on_message(self, message: Any) -> None:
        raise NotImplementedError

    # -- connection ---------------------------------------------------------------
    def connect(self) -> None:
        if not self.generation:
            self.revokes.refresh(force=True)  # before the first message can arrive
        self.connection = broker_connection(self.broker_url)
        self.connection.ensure_connection(max_retries=None, interval_start=0.5, interval_step=1,
                                          interval_max=5, errback=self._on_connection_retry,
                                          callback=self._unless_stopping)
        self.channel = self.connection.channel()
        if hasattr(self.channel, "batch_acks"):  # AMQP: acks wait for the turn's _flush_acks
            self.channel.batch_acks = True
        # Messages can arrive while consume() waits for the broker's reply (AMQP), so they
        # must already carry this connection's generation, or their acks would be refused.
        self.generation += 1
        queues = [task_queue(name, self.broker_url) for name in self.queue_names]
        self.kombu_consumer = KombuConsumer(
            self.channel, queues=queues, on_message=self.on_message, accept=list(self.accept),
        )
        # RabbitMQ applies a per-consumer prefetch only to consumers started after it is
        # set; the channel-wide one changes at once, which _widen_prefetch needs.
        self._qos_global = not self.connection.qos_semantics_matches_spec
        self.kombu_consumer.qos(prefetch_count=self.prefetch_count, apply_global=self._qos_global)
        self.kombu_consumer.consume()
        self._applied_prefetch = self.prefetch_count
        self.parking.configure(self.channel)

    def add_queue(self, name: str) -> bool:
        """Start consuming ``name`` too (remote control); False if already consumed."""
        if name in self.queue_names:
            return False
        self.queue_names.append(name)
        if self.kombu_consumer is not None:
            self.kombu_consumer.add_queue(task_queue(name, self.broker_url))
            self.kombu_consumer.consume()
        return True

    def cancel_queue(self, name: str) -> bool:
        """Stop consuming ``name``; False if it was not consumed."""
        if name not in self.queue_names:
            return False
        self.queue_names.remove(name)
        if self.kombu_consumer is not None:
            self.kombu_consumer.cancel_by_queue(name)
        return True

    def _unless_stopping(self) -> None:
        """kombu's retry loop calls this every second: a worker told to stop meanwhile
        stops waiting for its broker."""
        if self.stopping:
            raise StoppedWaiting()

    def _on_connection_retry(self, exc: Exception, interval: float) -> None:
        """kombu's errback: called after each failed try, with the wait before the next."""
        logger.error("broker connection to %s failed: %s; next try in %.1fs", self.safe_url, exc, interval)

    @property
    def safe_url(self) -> str:
        return describe_broker(self.broker_url)

    def close(self) -> None:
        if self.connection is None:
            return
        try:
            self._flush_acks()
            if self.channel is not None:
                self.channel.close()  # unacked (reserved, waiting) messages go back to the queue
        except Exception as exc:
            logger.warning("closing the broker channel failed: %s", exc)
        finally:
            self.connection.release()
            self.connection = None
            self.channel = None

    def _reconnect(self, exc: Exception) -> None:
        logger.error("lost the broker connection (%s: %s); reconnecting", type(exc).__name__, exc)
        # their messages come back from the broker; not those of early acks the broker took
        # (their replies were lost), which only this worker can still run
        kept = [request for request in self.reserved if request.ack_taken]
        self.reserved.clear()
        self.reserved.extend(kept)
        self.scheduled.clear()
        self._release_broken()
        if self.connect_patiently(first_delay=0.2):
            logger.info("reconnected to %s", self.safe_url)

    def connect_patiently(self, first_delay: float = 0.5) -> bool:
        """``connect()``, tried again with backoff until it works or the worker stops.

        Used at start too: a worker started while its broker (or, on djq://, its database)
        is down waits for it, one log line per try. Returns False if stopped first."""
        delay = first_delay
        while not self.stopping:
            try:
                self.connect()
                return True
            except ConfigurationError:
                raise  # a missing package or a wrong setting: waiting does not help
            except StoppedWaiting:
                self._release_broken()
                return False
            except Exception as exc:
                logger.error("broker connection to %s failed: %s; next try in %.1fs", self.safe_url, exc, delay)
                self._release_broken()
                # On djq:// the broker is a database: drop this thread's broken connections
                # so the next try opens new ones (Django reconnects only a closed connection).
                dbhygiene.close_all()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        return False

    def _release_broken(self) -> None:
        try:
            if self.connection is not None:
                self.connection.release()
        except Exception:  # the connection is already broken; releasing is best effort
            pass
        self.connection = None

    def wake(self) -> None:
        transport = getattr(self.connection, "transport", None) if self.connection else None
        wake = getattr(transport, "wake", None)
        if wake is not None:
            wake()

    def _wakeable(self) -> bool:
        transport = getattr(self.connection, "transport", None) if self.connection else None
        return getattr(transport, "wake", None) is not None

    def _ack(self, request: Request) -> bool:
        """Ack the request's message; False when the broker did not take the ack."""
        if request.ack_taken:
            return True  # acked already (a revoke or a terminate ends it before it runs)
        if request.connection_generation != self.generation:
            return False  # that channel is gone; the broker redelivers the message
        try:
            request.message.ack()
        except Exception as exc:
            logger.warning("could not ack %s[%s]: %s", request.name, request.id, exc)
            return False
        return True

    def _maybe_restore(self) -> None:
        """Return messages whose consumer died (Redis keeps them in an unacked set).

        kombu's Redis transport leaves the periodic restore to an event-loop timer; this
        loop is that timer. Other transports restore by themselves (no-op here).
        """
        now = time.monotonic()
        if now < self._next_restore or self.channel is None:
            return
        timeout = float(getattr(self.channel, "visibility_timeout", 0) or 0)
        self._next_restore = now + max(1.0, min(10.0, timeout / 2 if timeout else 10.0))
        restore = getattr(getattr(self.channel, "qos", None), "restore_visible", None)
        if restore is not None and getattr(self.channel, "unacked_key", None):
            try:
                restore(num=getattr(self.channel, "unacked_restore_limit", None), interval=1)
            except Exception as exc:
                logger.warning("could not restore unacked messages: %s", exc)

    def _flush_acks(self, take: bool = False) -> None:
        """Send the batched acks; with ``take``, on Redis, take more messages in the same
        round trip (they are delivered to ``on_message`` before this returns)."""
        flush = getattr(self.channel, "flush_acks", None)
        if flush is None:
            return
        if take and hasattr(self.channel, "take_and_deliver"):
            flush(take=True)
        else:
            flush()

