"""``manage.py djq_worker``: run a worker."""
from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djq.concurrency import GREEN_POOLS, POOLS, green
from djq.conf import djq_settings
from djq.exceptions import DjqError
from djq.worker.queues import parse as parse_queues
from djq.worker.worker import Worker, WorkerOptions

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Command(BaseCommand):
    help = "Run a djq worker: consume task messages and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-P", "--pool", choices=sorted(POOLS), help="execution pool (default DJQ_WORKER_POOL)")
        parser.add_argument("-c", "--concurrency", type=positive_int, help="tasks at once (default: CPU count)")
        parser.add_argument("-Q", "--queues",
                            help="comma-separated queues to consume (default DJQ_DEFAULT_QUEUE); '*' = every known queue")
        parser.add_argument("-X", "--exclude-queues", help="comma-separated queues not to consume (with -Q '*')")
        parser.add_argument("--burst", action="store_true",
                            help="run what is ready in the queues, then exit 0 once idle")
        parser.add_argument("--max-tasks", type=positive_int, metavar="N",
                            help="run N tasks in all, then warm-stop and exit 0")
        parser.add_argument("-n", "--hostname", help="worker name; %%h = host name, %%n = short host name")
        parser.add_argument("-l", "--loglevel", default="INFO", type=str.upper, choices=LEVELS)
        parser.add_argument("--prefetch-multiplier", type=positive_int, help="messages reserved per pool slot")
        parser.add_argument("--time-limit", type=positive_float, help="default hard time limit (seconds)")
        parser.add_argument("--soft-time-limit", type=positive_float, help="default soft time limit (seconds)")
        parser.add_argument("--max-tasks-per-child", type=positive_int, help="replace a child after N tasks")
        parser.add_argument("--max-memory-per-child", type=positive_int, help="replace a child above N KiB RSS")
        parser.add_argument("--autoscale", type=autoscale, metavar="MAX,MIN", help="grow/shrink the pool")
        parser.add_argument("-B", "--beat", action="store_true", help="also run beat (periodic tasks) in this worker")
        parser.add_argument("-E", "--events", action="store_true", help="publish task and worker events (djq_events)")
        parser.add_argument("--metrics-port", type=metrics_address, metavar="[HOST:]PORT", dest="metrics_address",
                            help="serve this worker's Prometheus metrics on PORT (all interfaces unless HOST); "
                                 "needs djq[prometheus]")
        parser.add_argument("-O", dest="optimization", choices=("default", "fair"), default="default",
                            help="scheduling; djq always sends work only to free slots, so both are fair")

    def handle(self, *args: Any, **opts: Any) -> None:
        configure_logging(opts["loglevel"])
        pool = opts["pool"] or djq_settings.WORKER_POOL
        if pool in GREEN_POOLS:
            if opts.get("beat"):
                raise CommandError(f"-B cannot run inside a {pool} worker: run djq_beat as its own process")
            if not opts["pool"]:
                logging.getLogger("djq").warning(
                    "DJQ_WORKER_POOL selects %s: the worker restarts itself to monkey-patch before Django "
                    "loads; say -P %s to make that explicit", pool, pool)
            green.ensure_patched(pool)
        soft, hard = opts["soft_time_limit"], opts["time_limit"]
        if soft and hard and soft >= hard:
            raise CommandError("--soft-time-limit must be below --time-limit")
        queues, exclude = parse_queues(opts["queues"]), parse_queues(opts["exclude_queues"])
        try:
            options = WorkerOptions.from_settings(
                pool=opts["pool"], concurrency=opts["concurrency"], queues=queues,
                hostname=opts["hostname"], prefetch_multiplier=opts["prefetch_multiplier"],
                soft_time_limit=soft, time_limit=hard, autoscale=opts["autoscale"], beat=opts["beat"],
                events=opts["events"], exclude_queues=exclude, burst=opts["burst"], max_tasks=opts["max_tasks"],
                max_tasks_per_child=opts["max_tasks_per_child"], max_memory_per_child=opts["max_memory_per_child"],
                metrics_address=opts["metrics_address"],
            )
            code = Worker(options).run(self.stdout)
        except DjqError as exc:
            raise CommandError(str(exc)) from exc
        # The worker has stopped and the process is about to end: the interpreter's final
        # garbage collections would walk every object Django and the broker client made
        # (0.3-0.7 s of a warm shutdown on Redis, measured with perf); nothing left needs them.
        gc.freeze()
        if code:
            raise SystemExit(code)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {value!r}")
    return number


def autoscale(value: str) -> tuple[int, int]:
    maximum, _, minimum = value.partition(",")
    try:
        bounds = int(maximum), int(minimum or "1")
    except ValueError:
        bounds = (0, 0)
    if bounds[1] < 1 or bounds[1] > bounds[0]:
        raise argparse.ArgumentTypeError(
            f"expects MAX,MIN (the most and the fewest pool slots, MAX >= MIN >= 1), e.g. 10,2; got {value!r}")
    return bounds


def metrics_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected PORT or HOST:PORT (0 = any free port), e.g. 9808 or "
                                         f"127.0.0.1:9808, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def configure_logging(level: str) -> None:
    djq_logger = logging.getLogger("djq")
    djq_logger.setLevel(level)
    if not logging.getLogger().handlers and not djq_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s/%(processName)s] %(name)s: %(message)s"))
        djq_logger.addHandler(handler)
