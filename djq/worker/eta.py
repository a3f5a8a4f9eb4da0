"""Eta tasks on Redis and RabbitMQ: held in memory only while near and few.

The embedded broker keeps an eta in its ``visible_at`` column, so its tasks wait in the
database and never reach a worker early. Redis and RabbitMQ deliver at once; a worker
then holds the unacked message until its eta. Held too long it would come back (Redis'
visibility timeout, RabbitMQ's consumer timeout) and run twice; held in great numbers it
fills the worker's memory. So a worker holds an eta task only when it is due within the
horizon (half the visibility timeout; 10 minutes on RabbitMQ) and fewer than
DJQ_WORKER_ETA_MAX_HELD are held. Others are parked in the ``ParkedMessage`` table and
acked; any worker sends a parked task back to its queue when due, deleting the row in the
same transaction (a crash in between sends it at most once more, never loses it).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from ..backends import database_alias
from ..conf import djq_settings
from ..messaging.protocol import OutgoingMessage

logger = logging.getLogger(__name__)
AMQP_HORIZON = 600.0
RELEASE_BATCH = 200


class EtaParking:
    def __init__(self, embedded: bool) -> None:
        self.embedded = embedded
        self.horizon = AMQP_HORIZON
        self._next_release = 0.0

    def configure(self, channel: Any) -> None:
        timeout = getattr(channel, "visibility_timeout", None)
        if timeout:
            self.horizon = float(timeout) / 2

    def should_park(self, delay: float, held: int) -> bool:
        if self.embedded:
            return False
        return delay > self.horizon or held >= int(djq_settings.WORKER_ETA_MAX_HELD)

    def park(self, message: Any, msg: Any, queue: str) -> bool:
        """Store the message for later; False when it cannot be (it stays held in memory)."""
        from ..models import ParkedMessage

        body = message.body
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                return False
        ParkedMessage.objects.using(database_alias()).create(
            queue=queue, eta=msg.eta, task_id=msg.task_id, task_name=msg.task_name, headers=msg.headers, body=body,
            content_type=message.content_type or "application/json",
            content_encoding=message.content_encoding or "utf-8",
            priority=(getattr(message, "properties", None) or {}).get("priority"),
        )
        return True

    def release_due(self, publish: Any) -> int:
        """Send due parked tasks back to their queues (at most once a second)."""
        now = time.monotonic()
        if self.embedded or now < self._next_release:
            return 0
        from ..models import ParkedMessage

        self._next_release = now + 1.0
        alias = database_alias()
        due = timezone.now()
        rows = ParkedMessage.objects.using(alias).filter(eta__lte=due).order_by("eta")
        if connections[alias].features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        sent = 0
        with transaction.atomic(using=alias):
            batch = list(rows[:RELEASE_BATCH])
            for row in batch:
                publish(OutgoingMessage(
                    task_id=row.task_id, task_name=row.task_name, queue=row.queue, headers=row.headers,
                    body=row.body, content_type=row.content_type, content_encoding=row.content_encoding,
                    priority=row.priority, properties={"correlation_id": row.task_id},
                ))
                sent += 1
            ParkedMessage.objects.using(alias).filter(id__in=[row.id for row in batch]).delete()
        if sent:
            logger.info("sent %d waiting eta task(s) back to their queues", sent)
        return sent
