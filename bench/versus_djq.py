"""djq's side of one ``bench.py --versus`` leg, in its own process (``python -m bench.versus_djq``).

Django is set up on ``DJQ_BENCH_DB`` (its djq tables are emptied first) with the broker
``DJQ_BENCH_BROKER_URL`` and djq's defaults (database results, STARTED recorded,
prefetch 4 per slot, early acks). With no worker running:
1. ``task.delay_many`` of N, if djq has it (timed, then its messages are removed);
2. N ``task.delay()`` one at a time (timed);
then a fresh ``djq_worker -P POOL -c C`` drains them, timed from its banner to the moment
the bench sees the last SUCCESS row (``--results``) or the broker holding none of the
messages (``--no-results``: the task has ``ignore_result=True``); then, with results,
idle round trips ``delay()`` -> ``AsyncResult.get()``. The worker is stopped by PID.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .brokers import QUEUE, purge
from .djq_scenario import start_worker
from .proc import scenario_main, scenario_parser
from .watch import BrokerDepth, drain_figures, round_trips, wait_for


class Tables:
    """The bench process's view of djq's queue and result tables."""

    def __init__(self) -> None:
        from django.db import connection

        from djq.conf import djq_settings
        from djq.models import QueueMessage, TaskResult

        self.connection = connection
        self.messages, self.results = QueueMessage._meta.db_table, TaskResult._meta.db_table
        self.broker_url: str = djq_settings.BROKER_URL

    def _one(self, sql: str, params: list[Any] | None = None) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params or [])
            return int(cursor.fetchone()[0])

    def successes(self) -> int:
        return self._one(f"SELECT COUNT(*) FROM {self.results} WHERE state = %s", ["SUCCESS"])

    def queued(self) -> int:
        """Messages on the broker: rows of the queue table on djq://, else the broker's depth."""
        if self.broker_url.startswith("djq:"):
            return self._one(f"SELECT COUNT(*) FROM {self.messages}")
        depth = BrokerDepth(self.broker_url, QUEUE)
        try:
            return depth()
        finally:
            depth.close()

    def reset(self) -> None:
        """Empty the queue (table or external broker) and the results. Only with no worker running."""
        with self.connection.cursor() as cursor:
            for table in (self.messages, self.results):
                if self.connection.vendor == "postgresql":
                    cursor.execute(f"TRUNCATE {table}")  # no dead rows left for the next run to skip
                else:
                    cursor.execute(f"DELETE FROM {table}")
        if not self.broker_url.startswith("djq:"):
            purge(self.broker_url)


def bulk_enqueue(task: Any, tables: Tables, n: int) -> dict[str, Any] | None:
    """``task.delay_many`` of ``n`` no-arg calls, timed; None when djq has no such method."""
    delay_many = getattr(task, "delay_many", None)
    if delay_many is None:
        return None
    started = time.perf_counter()
    ids = list(delay_many([()] * n))
    seconds = time.perf_counter() - started
    queued = tables.queued()
    settle = time.monotonic() + 3  # RabbitMQ counts what it has routed: the last frames may still be in flight
    while queued < n and time.monotonic() < settle:
        time.sleep(0.1)
        queued = tables.queued()
    tables.reset()
    return {"seconds": seconds, "tasks_per_s": n / seconds if seconds > 0 else None,
            "ids": len(ids), "queued": queued}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)

    from bench.benchapp.tasks import noop, noop_ignored

    task = noop if args.results else noop_ignored
    tables = Tables()
    n = args.tasks
    figures: dict[str, Any] = {"system": "djq", "broker": tables.broker_url.split("://", 1)[0],
                               "database": tables.connection.vendor, "pool": args.pool,
                               "concurrency": args.concurrency, "results": args.results, "tasks": n}
    task.delay()  # warm up: connection, producer pool, queue declaration
    tables.reset()
    figures["delay_many"] = bulk_enqueue(task, tables, n)

    started = time.perf_counter()
    for _ in range(n):
        task.delay()
    seconds = time.perf_counter() - started
    figures["enqueue"] = {"seconds": seconds, "tasks_per_s": n / seconds if seconds > 0 else None}

    worker = start_worker(args)
    try:
        ready_at = worker.wait_ready(timeout=60)
        cpu_at_ready = worker.cpu_seconds()
        if args.results:
            seen_at = wait_for(tables.successes, n, args.timeout, worker)
        else:
            depth = BrokerDepth(tables.broker_url, QUEUE)
            try:
                seen_at = wait_for(depth, n, args.timeout, worker, counting_down=True)
            finally:
                depth.close()
        figures["drain"] = drain_figures(n, worker, ready_at, seen_at, worker.cpu_seconds() - cpu_at_ready)
        figures["memory_kb"] = worker.memory_kb()
        if args.results and args.latency_samples:
            time.sleep(0.5)  # let the worker go idle
            figures["round_trip"] = round_trips(lambda: noop.delay().get(timeout=10), args.latency_samples)
    finally:
        figures["worker_exit_code"] = worker.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=5000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--results", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--latency-samples", type=int, default=200)
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
