"""The Celery app for the optional comparison (``bench.py --celery``).

Broker and results on Redis (``DJQ_BENCH_REDIS_URL``), the same no-op task, and the
same defaults djq has: STARTED is recorded, prefetch 4 per slot, early ack, JSON.
The worker prints BENCH-READY when it starts consuming, as djq's banner marks it.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

REDIS_URL = os.environ.get("DJQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = "djq-bench-celery"

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop() -> None:
    return None


@worker_ready.connect
def _say_ready(**kwargs: object) -> None:
    print("BENCH-READY", flush=True)
