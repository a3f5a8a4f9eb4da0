"""Real Celery workers and djq workers side by side on one broker, shared by a module.

Per broker leg (Redis, RabbitMQ), ``side`` starts, once per module:
- a djq worker on queue ``default`` with the Celery Redis result bridge, sending events;
- a djq worker on queue ``rpc-side`` with the rpc:// bridge;
- a ``celery worker`` (tests/interop/results_celery_app.py) on queue ``celery-side``, results in
  the same Redis (a database of the test Redis: on the RabbitMQ leg too).
The test process's djq client uses the Redis bridge; ``celery_client`` and ``rpc_client``
are Celery apps as a Celery shop's code would hold them.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from django.test import override_settings

from tests.conftest import Alias, WorkerProcess, _skip_or_fail

LEGS = {"redis": "DJQ_TEST_REDIS_URL", "amqp": "DJQ_TEST_AMQP_URL"}
QUEUES = ("default", "rpc-side", "celery-side")


@dataclass
class Side:
    leg: str
    broker_url: str
    results_url: str
    celery_client: Any
    rpc_client: Any
    djq_worker: WorkerProcess
    rpc_worker: WorkerProcess
    celery_worker: WorkerProcess


def _results_url() -> str:
    url = os.environ.get("DJQ_TEST_REDIS_URL")
    if not url:
        _skip_or_fail("the interop tests need DJQ_TEST_REDIS_URL (Celery's Redis result backend)")
    return url.rsplit("/", 1)[0] + "/2"


def _empty(broker_url: str, results_url: str) -> None:
    import redis
    from kombu import Connection

    redis.Redis.from_url(results_url).flushdb()
    if broker_url.startswith("redis"):
        redis.Redis.from_url(broker_url).flushdb()
        return
    with Connection(broker_url) as conn:
        for queue in QUEUES:
            channel = conn.channel()
            try:
                channel.queue_delete(queue)  # declared afresh by whichever side comes first
            except Exception:  # not declared yet (and AMQP closed the channel)
                pass


@pytest.fixture(scope="module", params=list(LEGS), ids=list(LEGS))
def side(request: pytest.FixtureRequest, django_db_setup: Any, django_db_blocker: Any,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    pytest.importorskip("celery")
    from djq.messaging.producer import reset_publishers

    from .results_celery_app import CELERY_QUEUE, make_app

    leg = request.param
    broker_url = os.environ.get(LEGS[leg], "")
    if not broker_url:
        _skip_or_fail(f"the {leg} leg needs {LEGS[leg]}")
    results_url = _results_url()
    _empty(broker_url, results_url)
    logs = tmp_path_factory.mktemp(f"interop-{leg}")
    alias = Alias("default")
    alias.leg, alias.broker_url = leg, broker_url
    workers: list[WorkerProcess] = []
    with django_db_blocker.unblock():
        try:
            djq_worker = WorkerProcess(alias, ["-Q", "default", "-c", "2", "-E", "-n", f"djq-{leg}@%h"], logs / "djq.log",
                                       {"DJQ_TEST_RESULT_BACKEND": f"celery://{results_url}"})
            workers.append(djq_worker)
            rpc_worker = WorkerProcess(alias, ["-Q", "rpc-side", "-c", "1", "-n", f"djq-rpc-{leg}@%h"],
                                       logs / "djq-rpc.log", {"DJQ_TEST_RESULT_BACKEND": "celery://rpc://"})
            workers.append(rpc_worker)
            celery = shutil.which("celery", path=os.path.dirname(sys.executable)) or "celery"
            celery_worker = WorkerProcess(
                alias, ["-Q", CELERY_QUEUE, "-P", "threads", "-c", "2", "-n", f"celery-{leg}@%h",
                        "--without-gossip", "--without-mingle", "--without-heartbeat"],
                logs / "celery.log", {"DJQ_INTEROP_BROKER": broker_url, "DJQ_INTEROP_BACKEND": results_url},
                argv=[celery, "-A", "tests.interop.results_celery_app", "worker"])
            workers.append(celery_worker)
            for worker in workers:
                worker.wait_ready(60)
            with override_settings(DJQ_BROKER_URL=broker_url, DJQ_RESULT_BACKEND=f"celery://{results_url}"):
                reset_publishers()
                celery_client = make_app(broker_url, results_url, "interop-client")
                rpc_client = make_app(broker_url, "rpc://", "interop-rpc-client")
                try:
                    yield Side(leg, broker_url, results_url, celery_client, rpc_client, djq_worker, rpc_worker,
                               celery_worker)
                finally:
                    celery_client.close()
                    rpc_client.close()
                    reset_publishers()
        finally:
            for worker in workers:  # all told at once, so their shutdowns overlap
                if worker.log_path.name == "celery.log":
                    # every task has ended; Celery's warm (and cold) shutdown on RabbitMQ
                    # takes ~10 s, which the tests do not need to wait for
                    os.killpg(worker.proc.pid, signal.SIGKILL)
                else:
                    worker.signal(signal.SIGTERM)
            for worker in workers:
                worker.stop()
            _empty(broker_url, results_url)


def log_of(worker: WorkerProcess) -> str:
    return Path(worker.log_path).read_text(errors="replace")
