"""Prometheus metrics for djq (``pip install 'djq[prometheus]'``).

Two endpoints, because the figures live in two places:

- ``djq.contrib.prometheus.views.metrics``: a Django view with the cluster's figures, read
  from the database and the broker at scrape time (queue depths and the oldest waiting
  message's age, workers online, tasks finished in the last hour per task and state,
  beat runs sent). Any web process can serve it; scrape one.
- ``djq_worker --metrics-port PORT``: each worker's own counters and histograms (tasks
  succeeded, failed and retried per task name, runtimes), kept in the worker's memory
  from the moment it started. Scrape every worker and sum in PromQL.

The metric list and a sample scrape config are in docs/metrics.md.
"""
from __future__ import annotations

from ...exceptions import DjqError

INSTALL_HINT = "djq's Prometheus metrics need prometheus_client: pip install 'djq[prometheus]'"


class MetricsError(DjqError):
    """The metrics exporter cannot run: prometheus_client missing, or its port is taken."""


def require() -> None:
    """Raise MetricsError with the install hint when prometheus_client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise MetricsError(INSTALL_HINT) from exc
