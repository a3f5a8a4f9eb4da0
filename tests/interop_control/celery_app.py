"""The Celery app the interop tests run a real ``celery worker`` (and ``flower``) with.

Broker from DJQ_TEST_CELERY_BROKER. The worker serves its own queue (``ic-celery``), so
djq's tasks on ``default`` stay with the djq worker; ``ic.add`` and ``ic.sleep`` are its
tasks. No result backend: these tests read what the workers say, not results.
"""
from __future__ import annotations

import os
import time

from celery import Celery
from kombu import Queue

QUEUE = "ic-celery"



def make_app(url: str) -> Celery:
    """A Celery app on ``url``: the worker's, or a test's client (one per broker)."""
    client = Celery("interop_control", broker=url, set_as_current=False)
    # djq's queues are declared with x-max-priority on RabbitMQ: a Celery client declares them alike
    djq_queue = Queue("default", routing_key="default",
                      queue_arguments={"x-max-priority": 9} if url.startswith("amqp") else None)
    client.conf.update(task_queues=[Queue(QUEUE), djq_queue], task_default_queue=QUEUE, accept_content=["json"], task_serializer="json",
                       worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                       worker_prefetch_multiplier=1)
    return client


app = make_app(os.environ.get("DJQ_TEST_CELERY_BROKER", "redis://127.0.0.1:6379/0"))


@app.task(name="ic.add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="ic.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)
