"""Remote control: ask running workers a question or give them a command.

A command is a JSON message on the fanout exchange ``djq.control``; every worker has a
queue bound to it (on the embedded broker the binding lives in the database, so the
fanout crosses processes). Workers named in ``destination`` (or all, when it is empty)
run the command and send one reply each to the caller's own reply queue, which is
deleted afterwards. Replies are ``{hostname: reply}`` dicts, as Celery's are. On Redis and RabbitMQ the
command also goes to Celery's mailbox (djq/celery_mailbox.py, ``DJQ_CELERY_MAILBOX``),
so Celery workers answer too; a djq worker's answer there is skipped, as it answers on
djq's own mailbox.

    from djq import control
    control.broadcast("ping", timeout=1.0)            # [{"djq@host": {"ok": "pong"}}]
    control.revoke(task_id)                            # stored, and pushed to the workers online

A revoke is a row in the database (``RevokedTask``), so every worker, including one
started later, honours it: a worker loads the revokes when it starts and looks for new
ones every DJQ_WORKER_REVOKE_REFRESH seconds (one small query, never one per task). The
revoke is also broadcast, so workers online now act at once (and ``terminate`` stops a
running task on the prefork pool; other pools cannot stop a running thread or greenlet,
and say so).
"""
from __future__ import annotations

import logging
import signal as signals
import socket
import time
import uuid
from typing import Any, Iterable

from django.db import IntegrityError, transaction

from kombu import Exchange, Producer, Queue
from kombu import Consumer as KombuConsumer

from . import celery_mailbox
from .conf import djq_settings
from .exceptions import DjqError, TaskOptionError
from .messaging.producer import broker_connection

logger = logging.getLogger(__name__)
EXCHANGE_NAME = "djq.control"

#: commands that only read (djq_inspect) and commands that act (djq_control)
INSPECT_COMMANDS = ("ping", "active", "reserved", "scheduled", "stats", "registered", "revoked", "active_queues")
CONTROL_COMMANDS = ("revoke", "terminate", "rate_limit", "time_limit", "pool_grow", "pool_shrink", "pool_restart",
                    "autoscale", "add_consumer", "cancel_consumer", "shutdown")


class ControlError(DjqError):
    """A remote-control command was malformed or could not be sent."""


def control_exchange() -> Exchange:
    return Exchange(EXCHANGE_NAME, type="fanout", durable=False, auto_delete=False, delivery_mode=1)


def worker_queue(hostname: str) -> Queue:
    """The queue a worker receives commands on."""
    return Queue(f"djq.control.{hostname}", control_exchange(), durable=False, auto_delete=True)


def broadcast(command: str, arguments: dict[str, Any] | None = None, *, destination: Iterable[str] | None = None,
              timeout: float | None = None, reply: bool = True, limit: int | None = None,
              url: str | None = None) -> list[dict[str, Any]]:
    """Send ``command`` to the workers; return their replies (``[]`` when ``reply`` is False).

    Collects replies for ``timeout`` seconds, or until every worker in ``destination``
    (or ``limit`` workers) has answered.
    """
    if command not in INSPECT_COMMANDS + CONTROL_COMMANDS:
        raise ControlError(f"unknown command {command!r}; known: {', '.join(INSPECT_COMMANDS + CONTROL_COMMANDS)}")
    timeout = float(djq_settings.CONTROL_TIMEOUT if timeout is None else timeout)
    if timeout <= 0:
        raise ControlError("timeout must be a positive number of seconds")
    targets = sorted(set(destination or ()))
    if targets and limit is None:
        limit = len(targets)
    ticket = uuid.uuid4().hex
    reply_queue = Queue(f"djq.reply.{ticket}", durable=False, auto_delete=True) if reply else None
    body = {"method": command, "arguments": arguments or {}, "destination": targets or None,
            "ticket": ticket, "reply_to": reply_queue.name if reply_queue else None,
            "expires": time.time() + timeout}
    replies: dict[str, Any] = {}
    celery = celery_mailbox.enabled(url or djq_settings.BROKER_URL)
    oid = celery_mailbox.new_oid()
    celery_replies = celery_mailbox.reply_queue(oid) if celery and reply else None
    try:
        with broker_connection(url) as connection:
            channel = connection.channel()
            for queue in (reply_queue, celery_replies):
                if queue is not None:
                    queue(channel).declare()
            policy = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2}
            Producer(channel, exchange=control_exchange()).publish(
                body, serializer="json", declare=[control_exchange()], retry=True, retry_policy=policy)
            if celery:  # Celery workers listen on Celery's mailbox (djq workers on both)
                Producer(channel).publish(
                    celery_mailbox.command(command, arguments or {}, targets or None, ticket if reply else None, oid),
                    exchange=celery_mailbox.exchange(), routing_key="", headers=celery_mailbox.headers(timeout),
                    serializer="json", declare=[celery_mailbox.exchange()], retry=True, retry_policy=policy)
            if reply_queue is not None:
                queues = [q for q in (reply_queue, celery_replies) if q is not None]
                try:
                    _collect(connection, channel, queues, ticket, replies, timeout, limit)
                finally:
                    for queue in queues:
                        queue(channel).delete()
    except ControlError:
        raise
    except Exception as exc:
        raise ControlError(f"remote control over {connection_name(url)} failed: {exc}") from exc
    return [{hostname: answer} for hostname, answer in replies.items()]


def _collect(connection: Any, channel: Any, queues: list[Queue], ticket: str, replies: dict[str, Any],
             timeout: float, limit: int | None) -> None:
    def on_message(message: Any) -> None:
        message.ack()
        data = message.decode()
        headers = message.headers or {}
        if "ticket" in headers:  # Celery's mailbox: {hostname: reply}, the ticket in a header
            if headers["ticket"] == ticket and not headers.get(celery_mailbox.DJQ_HEADER) and isinstance(data, dict):
                for hostname, answer in data.items():
                    replies.setdefault(hostname, answer)
        elif isinstance(data, dict) and data.get("ticket") == ticket and isinstance(data.get("reply"), dict):
            replies.update(data["reply"])

    consumer = KombuConsumer(channel, queues=queues, on_message=on_message, accept=["json"])
    consumer.consume()
    deadline = time.monotonic() + timeout
    while limit is None or len(replies) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            connection.drain_events(timeout=min(left, 0.5))
        except socket.timeout:
            pass
    consumer.cancel()
    flush = getattr(channel, "flush_acks", None)
    if flush is not None:
        flush()


def connection_name(url: str | None) -> str:
    from .messaging.producer import describe_broker

    return describe_broker(url or djq_settings.BROKER_URL)


def signal_number(name: str | int) -> int:
    """``"SIGTERM"``/``"TERM"``/15 -> 15; anything else is a TaskOptionError."""
    if isinstance(name, int) and not isinstance(name, bool):
        return int(signals.Signals(name))
    text = str(name).upper()
    try:
        return int(signals.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise TaskOptionError(f"unknown signal {name!r} (use a name such as 'SIGTERM' or 'SIGKILL')") from None


def store_revokes(ids: list[str], *, terminate: bool, signal: str) -> None:
    """Write the revokes to the database, where every worker (even one started later) finds them."""
    from .backends import database_alias
    from .models import RevokedTask

    alias = database_alias()
    for task_id in ids:
        try:
            with transaction.atomic(using=alias):
                RevokedTask.objects.using(alias).create(task_id=task_id, terminate=terminate, signal=signal)
        except IntegrityError:  # revoked before: a later terminate request still counts, as a new row
            if terminate:  # (new, so workers looking for recent revokes see it)
                with transaction.atomic(using=alias):
                    RevokedTask.objects.using(alias).filter(task_id=task_id).delete()
                    RevokedTask.objects.using(alias).create(task_id=task_id, terminate=True, signal=signal)


def revoke(task_ids: str | Iterable[str], *, terminate: bool = False, signal: str | int = "SIGTERM",
           destination: Iterable[str] | None = None, timeout: float | None = None,
           reply: bool = False) -> list[dict[str, Any]]:
    """Revoke tasks by id: they will not start; ``terminate`` also stops them if running (prefork).

    The revoke is stored first (so it holds even if no worker is online now), then pushed
    to the workers online. With ``reply`` the workers' replies are collected for
    ``timeout`` seconds and returned; without, nothing is awaited.
    """
    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    if not ids or not all(isinstance(task_id, str) and task_id for task_id in ids):
        raise TaskOptionError(f"revoke() needs task ids (strings), got {ids!r}")
    name = signals.Signals(signal_number(signal)).name
    store_revokes(ids, terminate=terminate, signal=name)
    try:
        return broadcast("terminate" if terminate else "revoke", {"task_id": ids, "signal": name},
                         destination=destination, timeout=timeout, reply=reply)
    except ControlError as exc:
        if reply:
            raise
        logger.warning("revoke of %s stored; workers will see it within DJQ_WORKER_REVOKE_REFRESH "
                       "(could not push it now: %s)", ", ".join(ids), exc)
        return []
