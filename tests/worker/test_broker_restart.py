"""A broker restarted while a worker drains a backlog: the worker reconnects and finishes all.

Each test stops the real server behind its leg (PostgreSQL for djq:// on PostgreSQL,
redis-server, rabbitmq-server) through scripts/services.sh, keeps it down for a moment,
and starts it again. Redis is shut down with SAVE, as a Redis with persistence would
be, so the backlog survives the restart.
"""
from __future__ import annotations

import os
import subprocess
import time
from typing import Callable
from urllib.parse import urlsplit

import pytest
from django.db import DatabaseError, connections

from djq import states
from djq.models import TaskResult
from tests.conftest import ROOT, wait_for
from tests.testapp.tasks import sleep_then_add

SERVICES = ROOT / "scripts" / "services.sh"
DOWN_FOR = 2.0  # seconds the server stays down: long enough for the worker to notice


def _services(*args: str, port_var: str, port: int) -> None:
    env = {**os.environ, port_var: str(port)}
    subprocess.run(["bash", str(SERVICES), *args], env=env, check=True, timeout=180,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _restart_postgres() -> None:
    port = urlsplit(os.environ["DJQ_TEST_POSTGRES_URL"]).port or 5432
    _services("stop-postgres", port_var="DJQ_PG_PORT", port=port)
    time.sleep(DOWN_FOR)
    _services("postgres", port_var="DJQ_PG_PORT", port=port)


def _restart_redis() -> None:
    port = urlsplit(os.environ["DJQ_TEST_REDIS_URL"]).port or 6379
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "shutdown", "save"],
                   timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(DOWN_FOR)
    _services("redis", port_var="DJQ_REDIS_PORT", port=port)


def _restart_rabbitmq() -> None:
    port = urlsplit(os.environ["DJQ_TEST_AMQP_URL"]).port or 5672
    _services("stop-rabbitmq", port_var="DJQ_AMQP_PORT", port=port)
    time.sleep(DOWN_FOR)
    _services("rabbitmq", port_var="DJQ_AMQP_PORT", port=port)


RESTART: dict[str, Callable[[], None]] = {"postgres": _restart_postgres, "redis": _restart_redis, "amqp": _restart_rabbitmq}


def _count_done(alias: str, ids: list[str]) -> int:
    """Finished tasks among ``ids``; a connection the restart broke is reopened."""
    try:
        return TaskResult.objects.using(alias).filter(task_id__in=ids, state=states.SUCCESS).count()
    except DatabaseError:
        connections[alias].close()
        return 0


@pytest.mark.parametrize("db_alias", ["postgres", "redis", "amqp"], indirect=True)
def test_worker_survives_a_broker_restart_and_finishes_the_backlog(broker, start_worker) -> None:
    results = [sleep_then_add.delay(0.03, i, 1) for i in range(300)]
    ids = [r.id for r in results]
    worker = start_worker("-P", "threads", "-c", "4", env={"DJQ_TEST_VISIBILITY_TIMEOUT": "5"})
    wait_for(lambda: _count_done(broker, ids) >= 20, timeout=60, what="the drain to be under way")
    RESTART[broker.leg]()
    connections[broker].close()
    wait_for(lambda: _count_done(broker, ids) == len(ids), timeout=120, interval=0.5,
             what="every task to finish after the restart")
    assert worker.proc.poll() is None, "the worker must still be running"
    output = worker.output
    assert "lost the broker connection" in output or "connection to" in output, output[-3000:]
    assert "reconnected to" in output, output[-3000:]
    values = dict(TaskResult.objects.using(broker).filter(task_id__in=ids).values_list("task_id", "result"))
    assert [values[r.id] for r in results] == [str(i + 1) for i in range(300)]
