"""A worker's own figures, served on ``djq_worker --metrics-port [HOST:]PORT``.

Counters live in the worker's memory (a fresh registry per worker, with prometheus_client's
process collector) and start at zero when it starts, as Prometheus counters do: use
``rate()`` / ``increase()``. The consumer thread reports each finished task here (a dict
lookup and two increments); the pool's gauges are read only when scraped.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Callable

from . import MetricsError, require

require()

from prometheus_client import (  # noqa: E402
    CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector, start_http_server,
)

logger = logging.getLogger(__name__)

#: seconds; covers quick web-side jobs up to ten-minute reports
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class WorkerMetrics:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.succeeded = Counter("djq_tasks_succeeded", "Tasks this worker ran to SUCCESS.", ["task"],
                                 registry=self.registry)
        self.failed = Counter("djq_tasks_failed", "Tasks that ended in FAILURE on this worker (raised, timed out, "
                              "or their process died).", ["task"], registry=self.registry)
        self.retried = Counter("djq_tasks_retried", "Task runs that ended in RETRY on this worker.", ["task"],
                               registry=self.registry)
        self.runtime = Histogram("djq_task_runtime_seconds", "How long task bodies ran on this worker, by task "
                                 "name and outcome.", ["task", "state"], buckets=RUNTIME_BUCKETS,
                                 registry=self.registry)
        self._counters = {"succeeded": self.succeeded, "failed": self.failed, "retried": self.retried}
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._server: Any = None

    def observe(self, task: str, kind: str, state: str, runtime: float | None) -> None:
        """One finished task: ``kind`` is succeeded, failed or retried."""
        try:
            counter, histogram = self._children[(task, kind, state)]
        except KeyError:  # the first of its kind: labels() takes a lock and builds the child
            counter = self._counters[kind].labels(task)
            histogram = self.runtime.labels(task, state)
            self._children[(task, kind, state)] = counter, histogram
        counter.inc()
        if runtime is not None and runtime >= 0:
            histogram.observe(runtime)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A figure read from the worker at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    @staticmethod
    def check_address(host: str, port: int) -> None:
        """Fail now, with one line, when ``host:port`` cannot be listened on."""
        if port == 0:
            return
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as exc:
            raise MetricsError(f"--metrics-port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc

    def serve(self, host: str, port: int) -> None:
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise MetricsError(f"--metrics-port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        logger.info("metrics for Prometheus on http://%s:%d/metrics", host, self._server.server_port)

    @property
    def port(self) -> int | None:
        return self._server.server_port if self._server is not None else None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
