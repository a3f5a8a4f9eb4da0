"""The cluster's figures, collected from the database and the broker at each scrape.

A custom collector (not counters kept in memory): any web process answers with the same
numbers, and nothing is counted on the task path. Each scrape costs a few indexed
queries and one broker connection, as one dashboard view does.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ... import states
from ...conf import djq_settings

RECENT = timedelta(hours=1)


class ClusterCollector(Collector):
    def __init__(self, using: str | None = None) -> None:
        self.using = using

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only (no database query at registration)

    def _alias(self) -> str:
        if self.using:
            return self.using
        from ...backends import get_backend

        return getattr(get_backend(), "alias", "default")

    def collect(self) -> Iterator[Any]:
        from ...models import WorkerState

        started = time.perf_counter()
        using = self._alias()
        workers = list(WorkerState.objects.using(using).filter(WorkerState.online_q()))
        online = GaugeMetricFamily("djq_workers_online", "Workers whose heartbeat is current.")
        online.add_metric([], len(workers))
        yield online
        active = GaugeMetricFamily("djq_heartbeat_active_tasks", "Tasks running per online worker, as its "
                                   "last heartbeat said.", labels=["worker"])
        for worker in workers:
            active.add_metric([worker.hostname], worker.active)
        yield active
        yield from self._queues(workers)
        yield self._finished(using)
        yield self._beat(using)
        took = GaugeMetricFamily("djq_scrape_duration_seconds", "Time this scrape took to collect djq's figures.")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _queues(self, workers: list[Any]) -> Iterator[Any]:
        from ... import dashboard

        # the queues the dashboard lists: the default, the online workers', and every queue
        # routes, task options or (djq://) message rows name, so an unconsumed one shows too
        known = {djq_settings.DEFAULT_QUEUE, *(q for w in workers for q in (w.queues or [])), *dashboard.known_queues()}
        names = sorted(name for name in known if name and not dashboard.plumbing_queue(name))
        errors: list[str] = []
        depth = GaugeMetricFamily("djq_queue_messages", "Messages waiting in a queue, as the broker counts them.",
                                  labels=["queue"])
        for name, count in dashboard.queue_depths(names, errors):
            if count is not None:
                depth.add_metric([name], count)
        yield depth
        up = GaugeMetricFamily("djq_broker_up", "1 when the broker answered this scrape's queue questions.")
        up.add_metric([], 0 if errors else 1)
        yield up
        age = GaugeMetricFamily("djq_queue_oldest_message_age_seconds", "Age of the oldest message due and "
                                "waiting in a queue (djq:// broker only).", labels=["queue"])
        for name, seconds in oldest_ages(names):
            age.add_metric([name], seconds)
        yield age

    def _finished(self, using: str) -> Any:
        from ...models import TaskResult

        family = GaugeMetricFamily("djq_tasks_finished_last_hour", "Tasks that reached a final state (or RETRY) "
                                   "in the last hour, per task name and state.", labels=["task", "state"])
        rows = (TaskResult.objects.using(using).filter(date_done__gte=timezone.now() - RECENT)
                .filter(state__in=(states.SUCCESS, states.FAILURE, states.RETRY, states.REVOKED)).order_by()
                .values("task_name", "state").annotate(n=Count("pk")))
        for row in rows:
            family.add_metric([row["task_name"], row["state"]], row["n"])
        return family

    def _beat(self, using: str) -> Any:
        from ...beat.models import PeriodicTask

        family = CounterMetricFamily("djq_beat_runs_sent", "Runs beat sent on schedule per periodic task "
                                     "(PeriodicTask.total_run_count).", labels=["periodic_task", "task"])
        for name, task, count in PeriodicTask.objects.using(using).values_list("name", "task", "total_run_count"):
            family.add_metric([name, task], count)
        return family


def oldest_ages(names: list[str]) -> list[tuple[str, float]]:
    """Seconds since the oldest due, never-delivered message of each queue became due, on
    djq:// (the table says when). Other brokers do not say without taking the message."""
    from ...messaging.producer import embedded_alias, is_embedded
    from ...models import QueueMessage

    url = djq_settings.BROKER_URL
    if not is_embedded(url):
        return []
    now = time.time()
    rows = (QueueMessage.objects.using(embedded_alias(url)).filter(queue__in=names, deliveries=0, visible_at__lte=now).order_by()
            .values("queue").annotate(oldest=Min("visible_at")))
    return sorted((row["queue"], max(0.0, now - row["oldest"])) for row in rows)
