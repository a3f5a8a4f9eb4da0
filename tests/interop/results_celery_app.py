"""The Celery side of the interop tests: a Celery app with tasks of the same names as
tests/testapp's, so either side can run the other's messages.

``celery -A tests.interop.results_celery_app worker`` reads its broker from DJQ_INTEROP_BROKER
and its result backend from DJQ_INTEROP_BACKEND; it consumes ``celery-side`` (the
Celery app's default queue), and prints INTEROP-READY when ready. Tests build client
apps with ``make_app``. Nothing here imports Django.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

CELERY_QUEUE = "celery-side"
PREFIX = "tests.testapp.tasks."


def make_app(broker: str, backend: str | None, name: str = "interop") -> Celery:
    app = Celery(name, broker=broker, backend=backend)
    app.conf.update(
        task_default_queue=CELERY_QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        # djq declares its queues on RabbitMQ with x-max-priority 9: declare them alike
        task_queue_max_priority=9,
    )

    @app.task(name=PREFIX + "add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name=PREFIX + "tsum", shared=False)
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="tests.echo", shared=False)
    def echo(value: object) -> object:
        return value

    @app.task(name=PREFIX + "fail", shared=False)
    def fail(message: str) -> None:
        raise ValueError(message)

    return app


app = make_app(os.environ.get("DJQ_INTEROP_BROKER", "memory://"), os.environ.get("DJQ_INTEROP_BACKEND") or None)


@worker_ready.connect
def _say_ready(**kwargs: object) -> None:
    print("INTEROP-READY", flush=True)
