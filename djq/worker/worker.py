"""The Worker: builds the bootsteps from options, prints the banner, handles signals.

SIGTERM or SIGINT: warm shutdown (stop taking messages, finish running tasks, ack them,
put reserved messages back, exit 0). A second signal: cold shutdown (stop the running
tasks, record each as FAILURE WorkerLostError, or leave it to its redelivery when it is
acked late; unacked messages go back to the queue; exit 0). A third: exit at once.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import IO, Any

from .. import __version__, signals
from ..backends import current_writer, get_backend
from ..conf import djq_settings
from ..registry import registry
from .blueprint import Blueprint
from .queues import resolve as resolve_queues
from .steps import STEPS, Pool, TaskConsumer
from .trace import ColdShutdown

logger = logging.getLogger(__name__)


def default_hostname() -> str:
    return f"djq@{socket.gethostname()}"


def expand_hostname(template: str) -> str:
    host = socket.gethostname()
    return template.replace("%h", host).replace("%n", host.split(".")[0]).replace("%p", str(os.getpid()))


@dataclass
class WorkerOptions:
    pool: str = "threads"
    concurrency: int = 1
    queues: list[str] = field(default_factory=list)
    hostname: str = ""
    named: bool = False  # -n given: its name or a refusal; else the first free default name
    prefetch_multiplier: int = 4
    conn_max_age: float = 60.0
    soft_time_limit: float | None = None
    time_limit: float | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    #: (max, min) processes/threads, or None
    autoscale: tuple[int, int] | None = None
    beat: bool = False  # -B: also run a beat (djq.beat.step) in this worker
    events: bool = False  # -E: publish task and worker events
    burst: bool = False  # --burst: stop once idle with nothing ready (djq/worker/modes.py)
    max_tasks: int | None = None  # --max-tasks: stop after handing this many tasks to the pool
    #: --metrics-port: (host, port) of the Prometheus exporter (djq.contrib.prometheus), or None
    metrics_address: tuple[str, int] | None = None

    @classmethod
    def from_settings(cls, **given: Any) -> WorkerOptions:
        options = {k: v for k, v in given.items() if v is not None}
        pool = options.pop("pool", None) or djq_settings.WORKER_POOL
        concurrency = options.pop("concurrency", None) or djq_settings.WORKER_CONCURRENCY or os.cpu_count() or 1
        queues = resolve_queues(options.pop("queues", None), options.pop("exclude_queues", None) or ())
        named_as = options.pop("hostname", None)
        hostname = expand_hostname(named_as or default_hostname())
        prefetch = options.pop("prefetch_multiplier", None) or djq_settings.WORKER_PREFETCH_MULTIPLIER
        options.setdefault("soft_time_limit", djq_settings.TASK_SOFT_TIME_LIMIT)
        options.setdefault("time_limit", djq_settings.TASK_TIME_LIMIT)
        options["events"] = bool(options.get("events") or djq_settings.WORKER_SEND_TASK_EVENTS)
        autoscale = options.get("autoscale")
        if autoscale:
            concurrency = autoscale[1]  # start small; the autoscaler grows under backlog
        return cls(pool=pool, concurrency=int(concurrency), queues=list(queues), hostname=hostname,
                   named=bool(named_as), prefetch_multiplier=int(prefetch), **options)

    @property
    def max_concurrency(self) -> int:
        return self.autoscale[0] if self.autoscale else self.concurrency


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.blueprint = Blueprint(STEPS)
        self._signals = 0

    def banner(self) -> str:
        pool = self.blueprint.get(Pool).pool
        consumer = self.blueprint.get(TaskConsumer).consumer
        tasks = registry.names()
        lines = [
            f"djq {__version__} worker {self.options.hostname} (pid {os.getpid()})",
            f"  broker:      {consumer.safe_url}",
            f"  results:     {get_backend().describe()}",
            f"  pool:        {pool.name} (concurrency {self._concurrency_text(pool)})",
            f"  queues:      {', '.join(self.options.queues)}",
            f"  prefetch:    {consumer.prefetch_count}",
            f"  events:      {'on' if self.options.events else 'off (-E to turn on)'}",
            *self._unconsumed_lines(),
            f"  tasks ({len(tasks)}):",
            *(f"    . {name}" for name in tasks),
        ]
        return "\n".join(lines)

    def _unconsumed_lines(self) -> list[str]:
        """Queues tasks are sent to that no online worker (this one included) consumes."""
        from ..dashboard import unconsumed_queues

        try:
            found = unconsumed_queues(self.options.queues, getattr(get_backend(), "alias", "default"))
        except Exception as exc:  # the banner never stops a worker
            logger.debug("could not look for unconsumed queues: %s", exc)
            return []
        if not found:
            return []
        for name, waiting in found:
            logger.warning("queue %r is consumed by no online worker (%d task(s) waiting): start one with -Q %s",
                           name, waiting, name)
        return [f"  NOT CONSUMED: {', '.join(f'{name} ({waiting} waiting)' for name, waiting in found)}"]

    def _concurrency_text(self, pool: Any) -> str:
        if self.options.autoscale:
            return f"autoscale {self.options.autoscale[1]}-{self.options.autoscale[0]}"
        return str(pool.concurrency)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        consumer = self.blueprint.get(TaskConsumer).consumer
        name = signal.Signals(signum).name
        if self._signals == 1:
            logger.warning("%s received: warm shutdown (send it again to stop at once)", name)
            consumer.stop()
        elif self._signals == 2:
            logger.warning("%s received again: cold shutdown (running tasks are stopped and recorded)", name)
            consumer.cold_stop()
            pool = self.blueprint.get(Pool).pool
            if not pool.parallel and pool.active():
                raise ColdShutdown()  # solo: the task runs in this very thread
        else:
            logger.error("%s received a third time: exiting without cleaning up", name)
            os._exit(1)

    def _cold_stop(self) -> None:
        """Stop the pool first (prefork kills its children), record what it stopped, then
        stop every step without waiting for threads."""
        pool = self.blueprint.get(Pool).pool
        try:
            pool.terminate()
        except Exception:
            logger.exception("cold shutdown: could not stop the pool")
        writer = current_writer()
        if writer is not None:
            writer.patience = 2.0  # a database that is away is not waited for at a cold stop
        try:
            self.blueprint.get(TaskConsumer).consumer.abandon()
        except Exception:
            logger.exception("cold shutdown: could not record the tasks it stopped")
        self.blueprint.stop(cold=True)

    def run(self, out: IO[str] | Any = sys.stdout) -> int:
        """Start, consume until a signal, stop. Returns the process exit code."""
        signals.send(signals.worker_init, self)
        try:
            return self._run(out)
        finally:
            signals.send(signals.worker_shutdown, self)

    def _run(self, out: IO[str] | Any) -> int:
        self.blueprint.create(self)
        self.blueprint.start()
        consumer = self.blueprint.get(TaskConsumer).consumer
        try:
            out.write(self.banner() + "\n")
            out.flush()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
            logger.info("worker %s ready", self.options.hostname)
            signals.send(signals.worker_ready, consumer)
            consumer.run()
        except ColdShutdown:
            pass
        if consumer.cold:
            self._cold_stop()
            logger.info("worker %s stopped (cold shutdown)", self.options.hostname)
            return 0
        self.blueprint.stop()
        logger.info("worker %s stopped", self.options.hostname)
        return 0
