"""Does a deep backlog in other queues slow the drain of one queue? (djq:// only)

    python bench/deep_backlog.py --db postgres://u:p@127.0.0.1:5432/scratch [--backlog 1000000]

The database is emptied of djq's tables and migrated (use a scratch database). One
worker (``-P threads -c 8`` by default) serves the queue ``bench``. Each repeat sends
``--tasks`` no-op tasks to ``bench`` in one transaction and times the drain from the
first to the last stored result. First on an empty table, then after ``--backlog``
messages are put in the queue ``other`` with one SQL statement (and ANALYZE, as
autovacuum would soon do); the rates and their ratio are printed, with the plan of the
worker's claim statement on the full table. ``--explain-only`` fills and explains.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = json.dumps({"body": "[[], {}, {}]", "content-encoding": "utf-8", "content-type": "application/json",
                      "headers": {"lang": "py", "task": "bench.elsewhere", "argsrepr": "()"},
                      "properties": {"priority": 0, "delivery_info": {"routing_key": "other"}}})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="a scratch database URL (postgres://... or sqlite:///...)")
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--explain-only", action="store_true")
    parser.add_argument("--log", default="/tmp/djq-deep-backlog-worker.log")
    args = parser.parse_args()
    os.environ.update(DJANGO_SETTINGS_MODULE="bench.settings", DJQ_BENCH_DB=args.db, DJQ_BENCH_BROKER_URL="djq://")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", "djq", "zero", verbosity=0)
    call_command("migrate", verbosity=0)
    if args.explain_only:
        fill(connection, args.backlog)
        print(explain(connection, args.tasks))
        return 0
    worker = start_worker(args)
    try:
        empty = [drain(connection, args.tasks, worker) for _ in range(args.repeats)]
        report("empty table", empty)
        started = time.perf_counter()
        fill(connection, args.backlog)
        print(f"filled {args.backlog:,} messages in 'other' in {time.perf_counter() - started:.1f} s", flush=True)
        deep = [drain(connection, args.tasks, worker) for _ in range(args.repeats)]
        report(f"{args.backlog:,} waiting elsewhere", deep)
        print(f"ratio deep / empty: {statistics.median(deep) / statistics.median(empty):.2f}")
        print(explain(connection, args.tasks))
    finally:
        worker.stop()
    return 0


def start_worker(args: argparse.Namespace) -> Any:
    from bench.proc import WorkerProcess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "django", "djq_worker", "-Q", "bench", "-P", args.pool, "-c",
            str(args.concurrency), "-l", "WARNING", "-n", f"backlog-{os.getpid()}@%h"]
    worker = WorkerProcess(argv, env, Path(args.log), lambda line: line.startswith("djq ") and " worker " in line)
    worker.start()
    if worker.wait_ready(timeout=60) is None:
        worker.stop()
        raise RuntimeError(f"the worker did not start:\n{worker.output()[-3000:]}")
    return worker


def drain(connection: Any, tasks: int, worker: Any) -> float:
    """Send ``tasks`` in one transaction; tasks/s from the first stored result to the last."""
    from django.db import transaction

    from djq.models import TaskResult

    TaskResult.objects.all().delete()
    with transaction.atomic():
        send(tasks)
    deadline = time.monotonic() + 300
    while TaskResult.objects.filter(state="SUCCESS").count() < tasks:
        if time.monotonic() > deadline or not worker.alive():
            raise RuntimeError(f"the drain did not finish:\n{worker.output()[-3000:]}")
        time.sleep(0.05)
    first, last = (TaskResult.objects.filter(state="SUCCESS").order_by(order).values_list("date_done", flat=True)[0]
                   for order in ("date_done", "-date_done"))
    rate = (tasks - 1) / (last - first).total_seconds()
    print(f"  drained {tasks:,} at {rate:,.0f}/s", flush=True)
    return rate


def fill(connection: Any, count: int) -> None:
    """``count`` ready messages in the queue ``other``, in one statement."""
    from djq.models import QueueMessage

    table = QueueMessage._meta.db_table
    columns = f"INSERT INTO {table} (queue, priority, visible_at, deliveries, payload)"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"{columns} SELECT 'other', 0, %s + n * 1e-6, 0, %s FROM generate_series(1, %s) AS n",
                           [time.time() - 3600, PAYLOAD, count])
            cursor.execute(f"ANALYZE {table}")
        else:
            cursor.execute(f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                           f"{columns} SELECT 'other', 0, %s + n * 1e-6, 0, %s FROM s",
                           [count, time.time() - 3600, PAYLOAD])
            cursor.execute("ANALYZE")


def explain(connection: Any, tasks: int) -> str:
    """The plan of the worker's claim statement with ``tasks`` waiting in ``bench`` (rolled back)."""
    from django.db import transaction

    try:
        from djq.messaging.store import Store
    except ImportError:  # before the split of djq/messaging/transport.py
        from djq.messaging.transport import Store  # type: ignore[attr-defined,no-redef]

    store = Store(connection.alias)
    captured: list[tuple[str, list[Any]]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        captured.append((sql, list(params or [])))
        return execute(sql, params, many, context)

    with transaction.atomic():
        send(tasks)
        with connection.execute_wrapper(capture):
            store.claim(["bench"], 100, 60.0)
        sql, params = captured[-1]
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
        with connection.cursor() as cursor:
            cursor.execute(prefix + sql, params)
            plan = [" ".join(str(col) for col in row) for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return "claim plan:\n" + "\n".join("  " + line for line in plan)


def send(tasks: int) -> None:
    from bench.benchapp.tasks import noop

    if hasattr(noop, "delay_many"):
        noop.delay_many([()] * tasks)
    else:  # the code before delay_many, for a before/after comparison
        for _ in range(tasks):
            noop.delay()


def report(label: str, rates: list[float]) -> None:
    print(f"{label}: median {statistics.median(rates):,.0f}/s ({', '.join(f'{r:,.0f}' for r in rates)})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
