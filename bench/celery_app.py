"""The Celery app the benchmark compares djq with (``bench.py --versus``, ``--celery``).

Broker ``DJQ_BENCH_CELERY_BROKER`` (default ``DJQ_BENCH_REDIS_URL``), results in Redis
at ``DJQ_BENCH_CELERY_BACKEND`` (default the same Redis URL; empty: no result backend).
Settings as the comparison asks: JSON, prefetch 4 per slot, early acks (Celery's
default), and Celery's defaults otherwise; STARTED is recorded only if
``DJQ_BENCH_CELERY_TRACK_STARTED=1`` (Celery's default is not to). The same two no-op
tasks as bench/benchapp: ``bench.noop`` and ``bench.noop_ignored`` (ignore_result).
The worker prints BENCH-READY when it is ready, as djq's banner marks it.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

REDIS_URL = os.environ.get("DJQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
BROKER_URL = os.environ.get("DJQ_BENCH_CELERY_BROKER") or REDIS_URL
BACKEND_URL = os.environ.get("DJQ_BENCH_CELERY_BACKEND", REDIS_URL) or None
QUEUE = "djq-bench-celery"

app = Celery("bench", broker=BROKER_URL, backend=BACKEND_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_track_started=os.environ.get("DJQ_BENCH_CELERY_TRACK_STARTED") == "1",
    task_acks_late=False,
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


@app.task(name="bench.noop_ignored", ignore_result=True)
def noop_ignored() -> None:
    return None


@worker_ready.connect
def _say_ready(**kwargs: object) -> None:
    print("BENCH-READY", flush=True)
