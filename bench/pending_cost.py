"""What the PENDING row (djq/pending.py) costs on enqueue, measured in one process.

    python bench/pending_cost.py [--broker djq://|redis://...] [--tasks 2000] [--rounds 5]

For each round, with ``DJQ_TASK_STORE_PENDING`` off and on (the order alternates from
round to round), it times ``bench.noop.delay_many([()] * N)`` and N × ``delay()`` with no
worker running, then removes the messages and rows. Results are in a fresh SQLite file
(the embedded broker's database on djq://). Printed: each figure's median in tasks/s and
the ratio on ÷ off of the medians, from this run only. Figures, never assertions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="djq://")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="djq-pending-cost-"))
    os.environ.update(DJANGO_SETTINGS_MODULE="bench.settings", DJQ_BENCH_DB=f"sqlite:///{work}/bench.sqlite3",
                      DJQ_BENCH_BROKER_URL=args.broker)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import override_settings

    from bench.benchapp.tasks import noop
    from djq.messaging.producer import reset_publishers
    from djq.models import QueueMessage, TaskResult

    call_command("migrate", verbosity=0)
    figures: dict[tuple[str, bool], list[float]] = {}
    for round_ in range(args.rounds):
        for pending in ((False, True) if round_ % 2 == 0 else (True, False)):
            with override_settings(DJQ_TASK_STORE_PENDING=pending):
                started = time.perf_counter()
                noop.delay_many([()] * args.tasks)
                figures.setdefault(("delay_many", pending), []).append(args.tasks / (time.perf_counter() - started))
                started = time.perf_counter()
                for _ in range(args.tasks):
                    noop.delay()
                figures.setdefault(("delay", pending), []).append(args.tasks / (time.perf_counter() - started))
            _empty(args.broker, QueueMessage, TaskResult, reset_publishers)
    print(f"pending cost: broker {args.broker.split('@')[-1]}, {args.tasks} tasks x {args.rounds} rounds, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for kind in ("delay_many", "delay"):
        off = statistics.median(figures[(kind, False)])
        on = statistics.median(figures[(kind, True)])
        print(f"  {kind:10} off {off:8.0f}/s  on {on:8.0f}/s  on/off {on / off:.3f}")


def _empty(broker: str, QueueMessage, TaskResult, reset_publishers) -> None:  # noqa: N803 - model classes
    TaskResult.objects.all().delete()
    if broker.startswith("djq://"):
        QueueMessage.objects.all().delete()
        return
    if broker.startswith("redis"):
        import redis

        redis.Redis.from_url(broker).delete("bench", *(f"bench\x06\x16{i}" for i in range(1, 10)))
    reset_publishers()


if __name__ == "__main__":
    main()
