"""``manage.py djq_worker``: run a worker."""
from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djq.concurrency import POOLS
from djq.exceptions import DjqError
from djq.worker.worker import Worker, WorkerOptions

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Command(BaseCommand):
    help = "Run a djq worker: consume task messages and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-P", "--pool", choices=sorted(POOLS), help="execution pool (default DJQ_WORKER_POOL)")
        parser.add_argument("-c", "--concurrency", type=int, help="tasks at once (default: CPU count)")
        parser.add_argument("-Q", "--queues", help="comma-separated queues to consume (default DJQ_DEFAULT_QUEUE)")
        parser.add_argument("-n", "--hostname", help="worker name; %%h = host name, %%n = short host name")
        parser.add_argument("-l", "--loglevel", default="INFO", type=str.upper, choices=LEVELS)
        parser.add_argument("--prefetch-multiplier", type=int, help="messages reserved per pool slot")

    def handle(self, *args: Any, **opts: Any) -> None:
        configure_logging(opts["loglevel"])
        if opts["concurrency"] is not None and opts["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        if opts["prefetch_multiplier"] is not None and opts["prefetch_multiplier"] < 1:
            raise CommandError("--prefetch-multiplier must be at least 1")
        queues = [q.strip() for q in opts["queues"].split(",") if q.strip()] if opts["queues"] else None
        try:
            options = WorkerOptions.from_settings(
                pool=opts["pool"], concurrency=opts["concurrency"], queues=queues,
                hostname=opts["hostname"], prefetch_multiplier=opts["prefetch_multiplier"],
            )
            code = Worker(options).run(self.stdout)
        except DjqError as exc:
            raise CommandError(str(exc)) from exc
        if code:
            raise SystemExit(code)


def configure_logging(level: str) -> None:
    djq_logger = logging.getLogger("djq")
    djq_logger.setLevel(level)
    if not logging.getLogger().handlers and not djq_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s/%(processName)s] %(name)s: %(message)s"))
        djq_logger.addHandler(handler)
