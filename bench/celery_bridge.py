"""What the Celery result bridge costs a worker's result writer (``python -m bench.celery_bridge``).

Stores the same SUCCESS rows through ``DatabaseBackend.store_rows`` and through
``CeleryBridgeBackend.store_rows`` (the same rows, plus one Redis pipeline per batch:
SET + PUBLISH of ``celery-task-meta-<id>``), alternating, in batches as the writer makes
them, on the bench database (DJQ_BENCH_DB, SQLite by default) and the Redis at
``--redis-url``. Prints rows/s of each and their ratio from the same run. The Redis
database given is flushed first and last.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def _rows(backend: Any, count: int) -> list[dict[str, Any]]:
    from djq.backends.base import TaskInfo

    return [backend.build_row(TaskInfo(task_id=str(uuid.uuid4()), task_name="bench.noop", attempt=1),
                              "SUCCESS", result=None) for _ in range(count)]


def _rate(backend: Any, tasks: int, batch: int) -> float:
    rows = _rows(backend, tasks)
    started = time.perf_counter()
    for start in range(0, tasks, batch):
        backend.store_rows(rows[start:start + batch])
    return tasks / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("DJQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50, help="rows per store_rows call (the writer's batch)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from djq.backends.celery_bridge import CeleryBridgeBackend
    from djq.backends.database import DatabaseBackend
    from djq.models import TaskResult

    call_command("migrate", verbosity=0)
    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    plain, bridge = DatabaseBackend(), CeleryBridgeBackend(args.redis_url)
    figures: dict[str, list[float]] = {"database": [], "celery bridge": []}
    try:
        for _ in range(args.repeat):
            figures["database"].append(_rate(plain, args.tasks, args.batch))
            figures["celery bridge"].append(_rate(bridge, args.tasks, args.batch))
            TaskResult.objects.all().delete()
            client.flushdb()
    finally:
        client.flushdb()
    load = os.getloadavg()[0]
    print(f"store_rows, {args.tasks} rows in batches of {args.batch}, {args.repeat} runs, load {load:.2f}")
    for name, rates in figures.items():
        print(f"  {name:14s} median {statistics.median(rates):8.0f} rows/s  (runs: "
              f"{', '.join(f'{r:.0f}' for r in rates)})")
    ratio = statistics.median(figures["celery bridge"]) / statistics.median(figures["database"])
    print(f"  bridge / database: {ratio:.2f}")


if __name__ == "__main__":
    main()
