"""Prometheus metrics: the Django view and a real worker's --metrics-port, scraped over
HTTP and read with prometheus_client's own parser (so the text format is checked too)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
import uuid
from typing import Any

import pytest
from django.test import Client

from djq.models import IntervalSchedule, PeriodicTask, WorkerState
from tests.conftest import ROOT, _skip_or_fail, wait_for
from tests.testapp.tasks import add, fail, flaky

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        _skip_or_fail("the metrics test needs prometheus_client (pip install 'djq[prometheus]')")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape_view(client: Client) -> Samples:
    response = client.get("/metrics/djq", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def test_metrics_view_and_worker_exporter(broker: Any, start_worker: Any) -> None:
    client = Client()
    assert client.get("/metrics/djq").status_code == 401  # the token is required
    assert client.get("/metrics/djq", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    every = IntervalSchedule.objects.using(broker).create(every=1, period="hours")
    PeriodicTask.objects.using(broker).create(name="hourly metrics", task="tests.testapp.tasks.noop",
                                              interval=every, total_run_count=2)

    waiting = [add.delay(i, 1) for i in range(3)]  # before any worker: they wait in "default"
    before = scrape_view(client)
    assert value(before, "djq_queue_messages", queue="default") == 3
    assert value(before, "djq_broker_up") == 1
    assert value(before, "djq_workers_online") == 0
    assert value(before, "djq_beat_runs_sent_total", periodic_task="hourly metrics",
                 task="tests.testapp.tasks.noop") == 2
    age = value(before, "djq_queue_oldest_message_age_seconds", queue="default")
    if broker.embedded:
        assert age is not None and age >= 0
    else:
        assert age is None  # Redis and RabbitMQ do not say how old a message is

    # prefork once: its tasks end in children, and the parent (which serves the metrics) counts them
    pool = "prefork" if broker.leg == "sqlite" else "threads"
    worker = start_worker("-P", pool, "-c", "2", "--metrics-port", "127.0.0.1:0")
    port = int(wait_for(lambda: re.search(r"metrics for Prometheus on http://127\.0\.0\.1:(\d+)/metrics",
                                          worker.output), what="the metrics port in the log").group(1))
    assert [r.get(timeout=30) for r in waiting] == [1, 2, 3]
    with pytest.raises(ValueError):
        fail.delay("counted").get(timeout=30)
    assert flaky.delay(uuid.uuid4().hex, 1).get(timeout=30) == 2  # one RETRY, then SUCCESS

    def worker_samples() -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return parse(response.read().decode())

    # the consumer counts a task after its result is stored: wait for the last one
    own = wait_for(lambda: (s := worker_samples()) and value(s, "djq_tasks_succeeded_total",
                                                               task="tests.testapp.tasks.flaky") == 1 and s,
                   what="the worker's counters")
    assert value(own, "djq_tasks_succeeded_total", task="tests.testapp.tasks.add") == 3
    assert value(own, "djq_tasks_failed_total", task="tests.testapp.tasks.fail") == 1
    assert value(own, "djq_tasks_retried_total", task="tests.testapp.tasks.flaky") == 1
    assert value(own, "djq_task_runtime_seconds_count", task="tests.testapp.tasks.add", state="SUCCESS") == 3
    assert value(own, "djq_task_runtime_seconds_bucket", task="tests.testapp.tasks.add", state="SUCCESS",
                 le="+Inf") == 3
    assert value(own, "djq_worker_pool_slots") == 2
    assert value(own, "djq_worker_active_tasks") == 0
    assert (value(own, "process_resident_memory_bytes") or 0) > 0

    wait_for(lambda: WorkerState.objects.using(broker).filter(WorkerState.online_q()).exists(),
             what="the worker online")
    after = scrape_view(client)
    assert value(after, "djq_workers_online") == 1
    assert value(after, "djq_queue_messages", queue="default") == 0
    assert value(after, "djq_tasks_finished_last_hour", task="tests.testapp.tasks.add", state="SUCCESS") == 3
    assert value(after, "djq_tasks_finished_last_hour", task="tests.testapp.tasks.fail", state="FAILURE") == 1

    if broker.leg == "sqlite":  # bad input, once: a clear one-line refusal from the command
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        try:
            refused = start_worker("--metrics-port", f"127.0.0.1:{taken.getsockname()[1]}", ready=False)
            assert refused.wait(timeout=30) != 0
            assert "--metrics-port: cannot listen on 127.0.0.1:" in refused.output
        finally:
            taken.close()
        bad = subprocess.run([sys.executable, "-m", "django", "djq_worker", "--metrics-port", "http://x"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"})
        assert bad.returncode == 2 and "expected PORT or HOST:PORT" in bad.stderr
