"""Celery on Redis, measured the way djq_scenario measures djq (``python -m bench.celery_scenario``).

enqueue N no-op ``.delay()`` with no worker; then a ``celery worker -P threads -c 4``
drains them. Completion is polled every 50 ms (one EXISTS over the result keys), and the
results' ``date_done`` give the exact first and last. Only this bench's keys are touched.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .proc import WorkerProcess, scenario_main, scenario_parser
from .stats import rate

POLL = 0.05


def _epoch(iso: str) -> float:
    value = datetime.fromisoformat(iso)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from .celery_app import QUEUE, app, noop

    client = app.backend.client
    meta_key = app.backend.get_key_for_task
    client.delete(QUEUE)
    noop.delay().forget()  # warm up the producer connection
    client.delete(QUEUE)

    started = time.perf_counter()
    ids = [noop.delay().id for _ in range(args.tasks)]
    seconds = time.perf_counter() - started
    keys = [meta_key(task_id) for task_id in ids]
    figures: dict[str, Any] = {"vendor": "redis", "tasks": args.tasks, "concurrency": args.concurrency,
                               "enqueue": {"seconds": seconds, "tasks_per_s": rate(args.tasks, seconds)}}

    celery = shutil.which("celery", path=os.path.dirname(sys.executable)) or "celery"
    argv = [celery, "-A", "bench.celery_app", "worker", "-P", "threads", "-c", str(args.concurrency),
            "-l", "WARNING", "-Q", QUEUE, "-n", f"bench-{os.getpid()}@%h", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    worker = WorkerProcess(argv, env, Path(args.log), lambda line: "BENCH-READY" in line,
                           pidfile=Path(args.pidfile) if args.pidfile else None)
    worker.start()
    try:
        ready_at = worker.wait_ready(timeout=60)
        cpu_at_ready = worker.cpu_seconds()
        deadline = time.monotonic() + args.timeout
        while client.exists(*keys) < len(keys):
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"celery did not finish:\n{worker.output()[-3000:]}")
            time.sleep(POLL)
        seen_at = time.time()
        cpu = worker.cpu_seconds() - cpu_at_ready
        done = [_epoch(json.loads(raw)["date_done"]) for raw in client.mget(keys)]
        first, last = min(done), max(done)
        figures["drain"] = {
            "startup_s": (ready_at - worker.spawned_at) if ready_at else None,
            "seconds_from_ready": (last - ready_at) if ready_at else None,
            "seconds_first_to_last": last - first,
            "seconds_total": last - worker.spawned_at,
            "tasks_per_s": rate(args.tasks, (last - ready_at) if ready_at else None),
            "tasks_per_s_first_to_last": rate(args.tasks - 1, last - first),
            "tasks_per_s_total": rate(args.tasks, last - worker.spawned_at),
            "worker_cpu_ms_per_task": 1000.0 * cpu / args.tasks,
            "worker_cpu_share": cpu / (seen_at - ready_at) if ready_at else None,
        }
        figures["memory_kb"] = worker.memory_kb()
    finally:
        worker.stop()
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        client.delete(QUEUE)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=5000)
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
