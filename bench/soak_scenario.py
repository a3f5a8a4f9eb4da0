"""One worker's memory over a long drain (``python -m bench.soak_scenario``), for ``bench.py --soak``.

Django is set up on ``DJQ_BENCH_DB`` with the broker ``DJQ_BENCH_BROKER_URL`` (its djq
tables emptied first) and djq's defaults. One ``djq_worker -P POOL -c C`` is started
and, once ready, fed ``--tasks`` no-op tasks (results stored) in chunks of ``--chunk``,
each sent with ``delay_many`` once the one before it is stored. After each chunk the
worker's memory is read from /proc (VmRSS and Pss, summed over a prefork worker's
processes), so the figures show whether it grows with the tasks it has run. The first
chunk warms the worker up (connections, caches, imported code): what comes after it is
compared with it. Figures only; the worker is stopped by PID.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .djq_scenario import start_worker
from .proc import scenario_main, scenario_parser
from .versus_djq import Tables
from .watch import wait_for


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)

    from bench.benchapp.tasks import noop

    tables = Tables()
    tables.reset()
    figures: dict[str, Any] = {"broker": tables.broker_url.split("://", 1)[0], "database": tables.connection.vendor,
                               "pool": args.pool, "concurrency": args.concurrency, "tasks": args.tasks,
                               "chunk": args.chunk, "samples": []}
    worker = start_worker(args)
    try:
        if worker.wait_ready(timeout=60) is None:
            raise RuntimeError(f"the worker did not say it was ready:\n{worker.output()[-2000:]}")
        figures["ready_kb"] = worker.memory_kb()
        sent = 0
        while sent < args.tasks:
            chunk = min(args.chunk, args.tasks - sent)
            started = time.time()
            noop.delay_many([()] * chunk)
            sent += chunk
            seen_at = wait_for(tables.successes, sent, args.timeout, worker)
            memory = worker.memory_kb()
            figures["samples"].append({"done": sent, "rss_kb": memory.get("VmRSS"), "pss_kb": memory.get("Pss"),
                                       "processes": memory.get("processes"),
                                       "tasks_per_s": chunk / (seen_at - started) if seen_at > started else None})
    finally:
        figures["worker_exit_code"] = worker.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=100_000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--chunk", type=int, default=10_000)
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
