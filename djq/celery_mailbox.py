"""Celery's remote-control mailbox on the wire, for both sides of djq.

Celery's workers listen on the fanout exchange ``celery.pidbox``, each on a queue named
``<hostname>.celery.pidbox``. A caller sends ``{"method", "arguments", "destination",
"pattern", "matcher", "ticket", "reply_to": {"exchange", "routing_key"}}`` with the
headers ``clock`` and ``expires``; each worker answers ``{hostname: reply}`` on the direct
exchange ``reply.celery.pidbox`` with the caller's routing key and a ``ticket`` header.

djq workers listen here too (djq/worker/celery_control.py), and ``djq.control.broadcast``
also asks here, so Celery and djq workers answer each other's tools while a shop moves
over. ``DJQ_CELERY_MAILBOX = False`` turns both off; on the embedded ``djq://`` broker
(which Celery cannot use) they are always off.
"""
from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

from kombu import Exchange, Queue

from .conf import djq_settings

EXCHANGE_NAME = "celery.pidbox"
REPLY_EXCHANGE_NAME = "reply.celery.pidbox"
#: Celery's defaults for control_queue_expires and control_queue_ttl (seconds)
QUEUE_EXPIRES = 10.0
QUEUE_TTL = 300.0
#: header on a djq worker's replies here: a djq caller has its answer from djq's mailbox
DJQ_HEADER = "djq-worker"
#: header on a djq caller's commands here: djq workers take the same command from djq's
#: mailbox, so they skip this copy (a command must not run twice)
DJQ_CALLER_HEADER = "djq-caller"
_clock = itertools.count(1)


def enabled(url: str) -> bool:
    return bool(djq_settings.CELERY_MAILBOX) and not url.startswith("djq")


def tick() -> int:
    """A Lamport-style clock value for the ``clock`` header (Celery's monitors read it)."""
    return next(_clock)


def exchange() -> Exchange:
    return Exchange(EXCHANGE_NAME, type="fanout", durable=False, delivery_mode="transient")


def reply_exchange() -> Exchange:
    return Exchange(REPLY_EXCHANGE_NAME, type="direct", durable=False, delivery_mode="transient")


def node_queue(hostname: str) -> Queue:
    """The queue one worker gets commands on (declared with Celery's arguments)."""
    return Queue(f"{hostname}.celery.pidbox", exchange(), durable=False, auto_delete=True,
                 expires=QUEUE_EXPIRES, message_ttl=QUEUE_TTL)


def reply_queue(oid: str) -> Queue:
    return Queue(f"{oid}.{REPLY_EXCHANGE_NAME}", reply_exchange(), routing_key=oid, durable=False,
                 auto_delete=True, expires=QUEUE_EXPIRES, message_ttl=QUEUE_TTL)


def command(method: str, arguments: dict[str, Any], destination: list[str] | None, ticket: str | None,
            oid: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"method": method, "arguments": arguments, "destination": destination,
                            "pattern": None, "matcher": None}
    if ticket and oid:
        body.update(ticket=ticket, reply_to={"exchange": REPLY_EXCHANGE_NAME, "routing_key": oid})
    return body


def headers(timeout: float | None) -> dict[str, Any]:
    """A djq caller's command headers: Celery's, and the mark djq workers skip."""
    return {"clock": tick(), "expires": time.time() + timeout if timeout else 0, DJQ_CALLER_HEADER: "1"}


def new_oid() -> str:
    return str(uuid.uuid4())
