"""Celery's side of a comparison, in its own process (``python -m bench.celery_scenario``).

Measured as bench/versus_djq.py measures djq: with no worker running, N ``delay()`` one
at a time (timed); then a fresh ``celery worker -P POOL -c C --without-gossip
--without-mingle --without-heartbeat`` drains them, timed from its ready signal to the
moment the bench sees the last result key in Redis (``--results``) or the broker holding
none of the messages (``--no-results``: the task has ``ignore_result=True`` and the app
no result backend); then, with results, idle round trips ``delay()`` -> ``get()``.
Broker and backend come from bench/celery_app.py's environment. Only this bench's queue
and result keys are touched; the worker is stopped by PID.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .brokers import purge
from .proc import WorkerProcess, scenario_main, scenario_parser
from .watch import BrokerDepth, drain_figures, round_trips, wait_for


def _delete(client: Any, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])


def start_worker(args: argparse.Namespace, queue: str) -> WorkerProcess:
    celery = shutil.which("celery", path=os.path.dirname(sys.executable)) or "celery"
    argv = [celery, "-A", "bench.celery_app", "worker", "-P", args.pool, "-c", str(args.concurrency),
            "-l", "WARNING", "-Q", queue, "-n", f"bench-{os.getpid()}@%h", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    worker = WorkerProcess(argv, env, Path(args.log), lambda line: "BENCH-READY" in line,
                           pidfile=Path(args.pidfile) if args.pidfile else None)
    worker.start()
    return worker


def run(args: argparse.Namespace) -> dict[str, Any]:
    from .celery_app import BACKEND_URL, BROKER_URL, QUEUE, app, noop, noop_ignored

    if args.results and not BACKEND_URL:
        raise RuntimeError("--results needs a result backend (DJQ_BENCH_CELERY_BACKEND)")
    task = noop if args.results else noop_ignored
    n = args.tasks
    client = app.backend.client if args.results else None
    figures: dict[str, Any] = {"system": "celery", "broker": BROKER_URL.split("://", 1)[0],
                               "database": "redis" if args.results else None, "pool": args.pool,
                               "concurrency": args.concurrency, "results": args.results, "tasks": n,
                               "track_started": bool(app.conf.task_track_started)}
    task.delay()  # warm up the producer connection
    purge(BROKER_URL, QUEUE)

    started = time.perf_counter()
    ids = [task.delay().id for _ in range(n)]
    seconds = time.perf_counter() - started
    figures["enqueue"] = {"seconds": seconds, "tasks_per_s": n / seconds if seconds > 0 else None}
    keys = [app.backend.get_key_for_task(task_id).decode() for task_id in ids] if client is not None else []

    worker = start_worker(args, QUEUE)
    try:
        ready_at = worker.wait_ready(timeout=60)
        cpu_at_ready = worker.cpu_seconds()
        if client is not None:
            seen_at = wait_for(lambda: int(client.exists(*keys)), n, args.timeout, worker)
        else:
            depth = BrokerDepth(BROKER_URL, QUEUE)
            try:
                seen_at = wait_for(depth, n, args.timeout, worker, counting_down=True)
            finally:
                depth.close()
        figures["drain"] = drain_figures(n, worker, ready_at, seen_at, worker.cpu_seconds() - cpu_at_ready)
        figures["memory_kb"] = worker.memory_kb()
        if client is not None and args.latency_samples:
            time.sleep(0.5)  # let the worker go idle
            sent: list[str] = []

            def round_trip() -> None:
                result = noop.delay()
                sent.append(app.backend.get_key_for_task(result.id).decode())
                result.get(timeout=10)

            figures["round_trip"] = round_trips(round_trip, args.latency_samples)
            keys += sent
    finally:
        figures["worker_exit_code"] = worker.stop()
        if client is not None:
            _delete(client, keys)
        purge(BROKER_URL, QUEUE)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=5000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--results", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--latency-samples", type=int, default=200)
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
