"""One pool on one workload, run in its own process (``python -m bench.pool_scenario``).

On the embedded ``djq://`` broker in ``DJQ_BENCH_DB`` (made empty by bench.py): enqueue
N tasks with no worker, start ``djq_worker -P POOL -c N``, and time it from its banner to
the last ``date_done``. One run per process: bench.py repeats the pools in turn, so
that the machine's changing load falls on all of them alike. Workloads: ``sleep`` (``time.sleep(0.01)``, I/O-bound), ``cpu`` (a ~50 ms
pure-Python loop, CPU-bound), and for the asyncio family ``sleep50`` / ``asleep50``
(``time.sleep(0.05)`` / ``await asyncio.sleep(0.05)``) and ``noop`` / ``anoop``. Peak RSS is VmHWM summed over the worker and its
children, read just before the worker is stopped. Before each CPU-bound run, plain
processes running the same loop show what parallelism the (shared) machine gives at that
moment, so the pool's speed-up can be read against it. The figures go to ``--out`` as JSON.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from typing import Any

from .djq_scenario import drain_once
from .proc import scenario_main, scenario_parser

#: seconds one ``sleep10`` task waits
SLEEP_S = 0.01
#: workload -> (task name in bench.benchapp.tasks, seconds it waits; None = no wait)
WORKLOADS = {
    "sleep": ("sleep10", SLEEP_S), "cpu": ("cpu50", None),
    "sleep50": ("sleep50", 0.05), "asleep50": ("asleep50", 0.05),  # time.sleep / await asyncio.sleep
    "noop": ("noop", None), "anoop": ("anoop", None),
}


def loop_cpu_seconds() -> float:
    """CPU time of the ``cpu50`` loop alone in this process: the least of 5 runs (for the record)."""
    from bench.benchapp.tasks import CPU_LOOPS, burn

    timings = []
    for _ in range(5):
        started = time.process_time()
        burn(CPU_LOOPS)
        timings.append(time.process_time() - started)
    return min(timings)


def _burn_many(count: int) -> None:
    from bench.benchapp.tasks import CPU_LOOPS, burn

    for _ in range(count):
        burn(CPU_LOOPS)


def machine_speedup(processes: int, burns: int = 20) -> float:
    """Throughput of ``processes`` plain processes running the task's loop, over that of one."""
    context = multiprocessing.get_context("fork")

    def wall(n: int) -> float:
        started = time.perf_counter()
        children = [context.Process(target=_burn_many, args=(burns,)) for _ in range(n)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        return time.perf_counter() - started

    one = wall(1)
    return (processes * burns / wall(processes)) / (burns / one)


def ideal_rate(workload: str, pool: str, concurrency: int, drain: dict[str, Any]) -> float:
    """Tasks/s if the pool's slots were never idle.

    sleep: every slot always sleeping, djq costing nothing: ``concurrency / 10 ms``.
    cpu: every usable CPU always busy at the CPU the worker spent per task (loop and djq);
    measured, not assumed, because a shared virtual machine's CPU speed varies by the minute.
    """
    wait = WORKLOADS[workload][1]
    if wait is not None:
        return (1 if pool == "solo" else concurrency) / wait
    if workload != "cpu":
        return float("inf")  # a no-op: no ceiling but djq's own cost
    slots = min(concurrency, os.cpu_count() or 1) if pool == "prefork" else 1  # one GIL per process
    return slots / (drain["worker_cpu_ms_per_task"] / 1000.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    from djq.conf import djq_settings

    call_command("migrate", verbosity=0)

    from bench.benchapp import tasks as bench_tasks
    from djq.models import QueueMessage, TaskResult

    noop = bench_tasks.noop
    task = getattr(bench_tasks, WORKLOADS[args.workload][0])
    tables = (QueueMessage._meta.db_table, TaskResult._meta.db_table)
    cursor = connection.cursor()
    noop.delay()  # warm up: connection, producer pool, queue declaration
    try:
        loop = loop_cpu_seconds() if args.workload == "cpu" else (WORKLOADS[args.workload][1] or 0.0)
        speedup = machine_speedup(os.cpu_count() or 1) if args.workload == "cpu" else None
        one, worker = drain_once(args, task, cursor, tables)
        one["memory_kb"] = worker.memory_kb()
        one["worker_exit_code"] = worker.stop()
    finally:
        cursor.close()
    one["ideal_tasks_per_s"] = ideal_rate(args.workload, args.pool, args.concurrency, one["drain"])
    one["efficiency"] = (one["drain"]["tasks_per_s"] or 0.0) / one["ideal_tasks_per_s"]
    one["broker"] = "djq://" if djq_settings.BROKER_URL.startswith("djq:") else djq_settings.BROKER_URL.split(":")[0]
    return {"vendor": connection.vendor, "workload": args.workload, "pool": args.pool,
            "concurrency": args.concurrency, "tasks": args.tasks, "task_ms": 1000.0 * loop,
            "machine_speedup": speedup, **one}


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=1000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="sleep")
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
