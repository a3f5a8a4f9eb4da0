"""One djq scenario, run in its own process (``python -m bench.djq_scenario``).

Django is set up on the database in ``DJQ_BENCH_DB`` (made empty by bench.py) and the
broker in ``DJQ_BENCH_BROKER_URL`` (default ``djq://``), then:
1. enqueue: N no-op ``.delay()`` calls, no worker running (an external broker's queue is
   purged first);
2. drain: a real ``djq_worker -P POOL`` subprocess runs them; a COUNT of SUCCESS
   results is polled every 50 ms, and the first/last ``date_done`` give exact ends.
   Steps 1-2 run ``--repeat`` times, with a fresh worker each; the median run is reported;
3. idle latency: one no-op at a time to the idle, warm worker: delay() -> date_done;
4. sleep drain: N 10 ms tasks committed in one transaction, to see the pool kept busy;
5. the worker's peak RSS (VmHWM, summed over a prefork worker's processes).
The figures go to ``--out`` as JSON. The worker is stopped whatever happens.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any

from .brokers import purge
from .proc import WorkerProcess, scenario_main, scenario_parser
from .stats import latency_summary, rate

POLL = 0.05


def _count_success(cursor: Any, table: str) -> int:
    cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE state = %s", ["SUCCESS"])
    return int(cursor.fetchone()[0])


def _done_span(cursor: Any, table: str, task_name: str) -> tuple[float, float]:
    cursor.execute(f"SELECT MIN(date_done), MAX(date_done) FROM {table} WHERE state = %s AND task_name = %s",
                   ["SUCCESS", task_name])
    first, last = cursor.fetchone()
    return _epoch(first), _epoch(last)


def _epoch(value: Any) -> float:
    from django.utils.dateparse import parse_datetime

    if isinstance(value, str):  # SQLite returns text to a raw cursor
        value = parse_datetime(value)
    if value.tzinfo is None:  # stored in UTC (USE_TZ = True)
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def _wait_count(cursor: Any, table: str, target: int, timeout: float, worker: WorkerProcess) -> float | None:
    """Poll until ``target`` results are SUCCESS; the time it was seen, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count_success(cursor, table) >= target:
            return time.time()
        if not worker.alive():
            raise RuntimeError(f"the worker exited early:\n{worker.output()[-3000:]}")
        time.sleep(POLL)
    return None


def _reset(cursor: Any, tables: tuple[str, str], purge_broker: bool = False) -> None:
    """Empty the message and result tables; with ``purge_broker``, an external broker's queue too.

    Only purge with no worker running: Redis's unacked set is emptied as well.
    """
    from djq.conf import djq_settings

    for table in tables:
        cursor.execute(f"DELETE FROM {table}")
    url = djq_settings.BROKER_URL
    if purge_broker and not url.startswith("djq:"):
        purge(url)


def enqueue(task: Any, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        task.delay()
    return time.perf_counter() - started


def start_worker(args: argparse.Namespace) -> WorkerProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    argv = [sys.executable, "-m", "django", "djq_worker", "-P", args.pool, "-c", str(args.concurrency),
            "-l", "WARNING", "-n", f"bench-{os.getpid()}@%h"]
    worker = WorkerProcess(argv, env, Path(args.log), lambda line: line.startswith("djq ") and " worker " in line,
                           pidfile=Path(args.pidfile) if args.pidfile else None)
    worker.start()
    return worker


def measure_latency(task: Any, cursor: Any, table: str, samples: int, worker: WorkerProcess) -> dict[str, Any]:
    """delay() -> date_done, and delay() -> seen by a 1 ms poll, one task at a time.

    A random pause between tasks, so that arrivals fall anywhere in the worker's poll
    cycle, as real traffic does.
    """
    rng = random.Random(42)
    to_done: list[float] = []
    to_seen: list[float] = []
    for _ in range(samples):
        time.sleep(rng.uniform(0.0, 0.05))
        sent = time.time()
        result = task.delay()
        deadline = time.monotonic() + 10.0
        while True:
            cursor.execute(f"SELECT date_done FROM {table} WHERE task_id = %s AND state = %s",
                           [result.id, "SUCCESS"])
            row = cursor.fetchone()
            if row is not None:
                to_seen.append(time.time() - sent)
                to_done.append(_epoch(row[0]) - sent)
                break
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"task {result.id} not done after 10 s:\n{worker.output()[-3000:]}")
            time.sleep(0.001)
    return {"to_date_done": latency_summary(to_done), "to_seen": latency_summary(to_seen)}


def drain_once(args: argparse.Namespace, task: Any, cursor: Any, tables: tuple[str, str]) -> tuple[dict[str, Any], WorkerProcess]:
    """Enqueue ``args.tasks`` of ``task`` with no worker, then start one and time it draining them.

    Returns the figures and the worker, still running (the caller stops it).
    """
    n = args.tasks
    results_table = tables[1]
    _reset(cursor, tables, purge_broker=True)
    seconds = enqueue(task, n)
    worker = start_worker(args)
    try:
        ready_at = worker.wait_ready(timeout=60)
        cpu_at_ready = worker.cpu_seconds()
        seen_at = _wait_count(cursor, results_table, n, args.timeout, worker)
        if seen_at is None:
            raise RuntimeError(f"{n} tasks not done after {args.timeout} s")
        cpu = worker.cpu_seconds() - cpu_at_ready
        first, last = _done_span(cursor, results_table, task.name)
    except BaseException:
        worker.stop()
        raise
    from_ready = (last - ready_at) if ready_at else None
    return {
        "enqueue": {"seconds": seconds, "tasks_per_s": rate(n, seconds)},
        "drain": {
            "startup_s": (ready_at - worker.spawned_at) if ready_at else None,
            "seconds_from_ready": from_ready,
            "seconds_first_to_last": last - first,
            "seconds_total": last - worker.spawned_at,
            "poll_seen_after_last_s": seen_at - last,
            # No banner seen (its format changed?): fall back to first -> last result.
            "tasks_per_s": rate(n, from_ready) if from_ready else rate(n - 1, last - first),
            "tasks_per_s_first_to_last": rate(n - 1, last - first),
            "tasks_per_s_total": rate(n, last - worker.spawned_at),
            "worker_cpu_ms_per_task": 1000.0 * cpu / n,
            "worker_cpu_share": cpu / (seen_at - ready_at) if ready_at else None,
        },
    }, worker


def sleep_drain(args: argparse.Namespace, task: Any, cursor: Any, tables: tuple[str, str],
                worker: WorkerProcess) -> dict[str, Any]:
    """10 ms tasks committed at once to a running worker: how busy does the pool stay?"""
    from django.db import transaction

    _reset(cursor, tables)
    started = time.perf_counter()
    with transaction.atomic():
        for _ in range(args.sleep_tasks):
            task.delay()
    committed = time.time()
    in_tx = time.perf_counter() - started
    if _wait_count(cursor, tables[1], args.sleep_tasks, args.timeout, worker) is None:
        raise RuntimeError(f"{args.sleep_tasks} sleep tasks not done after {args.timeout} s")
    _, last = _done_span(cursor, tables[1], task.name)
    ideal = args.sleep_tasks * 0.01 / args.concurrency
    return {
        "enqueue_atomic": {"tasks": args.sleep_tasks, "seconds": in_tx, "tasks_per_s": rate(args.sleep_tasks, in_tx)},
        "sleep_drain": {
            "tasks": args.sleep_tasks, "seconds": last - committed,
            "tasks_per_s": rate(args.sleep_tasks, last - committed),
            "ideal_tasks_per_s": rate(args.sleep_tasks, ideal),
            "efficiency": ideal / (last - committed),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)

    from bench.benchapp.tasks import noop, sleep10
    from djq.conf import djq_settings
    from djq.models import QueueMessage, TaskResult

    tables = (QueueMessage._meta.db_table, TaskResult._meta.db_table)
    figures: dict[str, Any] = {"vendor": connection.vendor, "tasks": args.tasks, "concurrency": args.concurrency,
                               "pool": args.pool, "broker": djq_settings.BROKER_URL.split("://", 1)[0]}
    cursor = connection.cursor()
    noop.delay()  # warm up: connection, producer pool, queue declaration

    runs: list[dict[str, Any]] = []
    worker: WorkerProcess | None = None
    try:
        for _ in range(max(1, args.repeat)):
            if worker is not None:
                worker.stop()
            one, worker = drain_once(args, noop, cursor, tables)
            runs.append(one)
        if worker is None:
            raise RuntimeError("no drain run")
        # The run with the median drain rate stands for the scenario; all runs are kept.
        median = sorted(runs, key=lambda r: r["drain"]["tasks_per_s"] or 0.0)[len(runs) // 2]
        figures.update(median)
        figures["runs"] = runs
        time.sleep(1.0)  # let the worker go idle: nothing left to claim
        figures["latency"] = measure_latency(noop, cursor, tables[1], args.latency_samples, worker)
        if args.sleep_tasks:
            figures.update(sleep_drain(args, sleep10, cursor, tables, worker))
        figures["memory_kb"] = worker.memory_kb()
    finally:
        code = worker.stop() if worker is not None else None
        cursor.close()
    figures["worker_exit_code"] = code
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=5000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--sleep-tasks", type=int, default=1000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--repeat", type=int, default=3, help="enqueue+drain runs; the median is reported")
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
