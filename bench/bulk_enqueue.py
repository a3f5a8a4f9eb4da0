"""Enqueue speed: ``delay()`` in a loop against ``delay_many()``, per broker (no worker).

    python bench/bulk_enqueue.py --db postgres://u:p@127.0.0.1:5432/db [--broker redis://...]

``--broker`` defaults to ``djq://`` (the embedded broker on ``--db``). Each repeat sends
``--loop`` tasks with ``delay()`` and ``--many`` with ``delay_many()`` (autocommit, as a
view would), empties the queue, and prints tasks/s; the median of ``--repeats`` is last.
Results are not written at enqueue, so ``--db`` matters only for ``djq://``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite:////tmp/djq-bulk-bench.sqlite3")
    parser.add_argument("--broker", default="djq://")
    parser.add_argument("--loop", type=int, default=2_000, help="tasks sent with delay() per repeat")
    parser.add_argument("--many", type=int, default=20_000, help="tasks sent with delay_many() per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(DJANGO_SETTINGS_MODULE="bench.settings", DJQ_BENCH_DB=args.db, DJQ_BENCH_BROKER_URL=args.broker)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from bench.benchapp.tasks import noop

    call_command("migrate", verbosity=0)
    empty(args.broker)
    loop, many = [], []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        for _ in range(args.loop):
            noop.delay()
        loop.append(args.loop / (time.perf_counter() - started))
        empty(args.broker)
        started = time.perf_counter()
        noop.delay_many([()] * args.many)
        many.append(args.many / (time.perf_counter() - started))
        empty(args.broker)
        print(f"repeat {repeat + 1}: delay() {loop[-1]:,.0f}/s  delay_many() {many[-1]:,.0f}/s", flush=True)
    print(f"{args.broker.split('://')[0]}:// on {args.db.split('://')[0]}: delay() {statistics.median(loop):,.0f}/s, "
          f"delay_many() {statistics.median(many):,.0f}/s (median of {args.repeats})")
    return 0


def empty(url: str) -> None:
    if url.startswith("djq"):
        from djq.models import QueueMessage

        QueueMessage.objects.all().delete()
        return
    from bench.brokers import purge

    purge(url)


if __name__ == "__main__":
    raise SystemExit(main())
