"""The worker's bootsteps, in boot order. This tuple is the whole worker."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .. import celery_mailbox
from ..backends import install_writer, remove_writer
from ..beat.step import EmbeddedBeat
from ..concurrency import get_pool_class
from ..concurrency.base import BasePool
from ..conf import djq_settings
from ..messaging.events import EventDispatcher
from . import dbhygiene
from .blueprint import Step
from .autoscale import Autoscaler
from .consumer import Consumer
from .control import ControlListener, Panel
from .heartbeat import Heartbeat
from .modes import RunLimits
from .naming import Holder, claim_name

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)


class Database(Step):
    """Worker-lifetime database connections; all closed at the end."""

    def create(self, worker: Worker) -> None:
        dbhygiene.keep_connections_for(worker.options.conn_max_age)

    def stop(self) -> None:
        dbhygiene.close_all()


class Name(Step):
    """The worker's name, claimed in the database before anything listens under it
    (djq/worker/naming.py): the first free default name, or -n's, or a refusal."""

    requires = (Database,)
    previous: Holder | None = None

    def create(self, worker: Worker) -> None:
        from django.db import DatabaseError
        from django.utils import timezone

        from ..exceptions import ConfigurationError
        from ..messaging.producer import check_broker_url

        check_broker_url(djq_settings.BROKER_URL)  # a broker the worker cannot use is said first
        self.started = timezone.now()
        options = worker.options
        delay = 0.5
        while True:
            try:
                options.hostname, self.previous = claim_name(
                    options.hostname if options.named else None, options.hostname, self.started,
                    float(djq_settings.WORKER_HEARTBEAT_INTERVAL))
                return
            except DatabaseError as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if _database_reachable():
                    raise ConfigurationError(f"could not claim the worker name {options.hostname} in the "
                                             f"database: {reason} (has manage.py migrate run?)") from exc
                # the database is down (on djq:// it is the broker too): wait for it, as the
                # consumer waits for a broker that is down at start
                logger.error("could not claim the worker name %s: the database is unreachable (%s); "
                             "next try in %.1fs", options.hostname, reason, delay)
                dbhygiene.close_all()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _database_reachable() -> bool:
    from django.db import connection

    try:
        connection.ensure_connection()
    except Exception:
        dbhygiene.close_all()
        return False
    return True


class Pool(Step):
    """The execution pool chosen with -P."""

    requires = (Database,)
    pool: BasePool

    def create(self, worker: Worker) -> None:
        options = worker.options
        cls = get_pool_class(options.pool)
        missing = cls.unsupported(
            soft=bool(options.soft_time_limit), hard=bool(options.time_limit), autoscale=bool(options.autoscale),
            recycling=bool(options.max_tasks_per_child or options.max_memory_per_child),
        )
        for feature in missing:
            logger.warning("the %s pool does not support %s: that option is ignored (see docs/pools.md)",
                           cls.name, feature)
        self.pool = cls(options.concurrency, max_tasks_per_child=options.max_tasks_per_child,
                        max_memory_per_child=options.max_memory_per_child)

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop(timeout=10)

    def terminate(self) -> None:
        self.pool.terminate()

    def describe(self) -> dict[str, Any]:
        return self.pool.info()


class Results(Step):
    """The result writer (djq/backends/writer.py): the pool's states, stored in batches.

    Started after the pool, so a prefork pool's fork server has no writer thread to copy;
    stopped after the consumer has drained, storing what is left."""

    requires = (Pool,)
    writer: Any = None

    def start(self) -> None:
        pool = self.blueprint.get(Pool).pool
        self.writer = install_writer(direct_stores=not pool.parallel or pool.concurrency == 1)

    def stop(self) -> None:
        if self.writer is not None:
            remove_writer(self.writer)
            self.writer = None


class Events(Step):
    """-E (or DJQ_WORKER_SEND_TASK_EVENTS): publish task and worker events."""

    dispatcher: EventDispatcher

    def include_if(self, worker: Worker) -> bool:
        return worker.options.events

    def create(self, worker: Worker) -> None:
        self.dispatcher = EventDispatcher(worker.options.hostname)

    def stop(self) -> None:
        self.dispatcher.close()


class TaskConsumer(Step):
    """Connection to the broker and the loop that feeds the pool (run by Worker.run)."""

    requires = (Pool,)
    consumer: Consumer

    def create(self, worker: Worker) -> None:
        options = worker.options
        events = self.blueprint.steps.get(Events)
        self.consumer = Consumer(
            events=events.dispatcher if isinstance(events, Events) else None,
            pool=self.blueprint.get(Pool).pool,
            queues=options.queues,
            hostname=options.hostname,
            prefetch_count=options.max_concurrency * options.prefetch_multiplier,
            soft_time_limit=options.soft_time_limit,
            time_limit=options.time_limit,
            limits=RunLimits(burst=options.burst, max_tasks=options.max_tasks),
        )

    def start(self) -> None:
        self.consumer.connect_patiently()

    def stop(self) -> None:
        self.consumer.stop()
        self.consumer.close()

    def terminate(self) -> None:
        self.stop()


class Autoscale(Step):
    """--autoscale=MAX,MIN: grow the pool while messages wait, shrink it when idle."""

    requires = (Pool, TaskConsumer)
    autoscaler: Autoscaler

    def include_if(self, worker: Worker) -> bool:
        return bool(worker.options.autoscale) and self.blueprint.get(Pool).pool.supports_autoscale

    def create(self, worker: Worker) -> None:
        maximum, minimum = worker.options.autoscale or (1, 1)
        self.autoscaler = Autoscaler(self.blueprint.get(Pool).pool, self.blueprint.get(TaskConsumer).consumer,
                                     maximum, minimum)

    def start(self) -> None:
        self.autoscaler.start()

    def stop(self) -> None:
        self.autoscaler.stop()


class Control(Step):
    """Answers remote control (djq_inspect, djq_control, the admin's actions), and on
    Redis/RabbitMQ Celery's mailbox too (celery inspect/control; DJQ_CELERY_MAILBOX)."""

    requires = (TaskConsumer,)
    listeners: list[ControlListener]

    def create(self, worker: Worker) -> None:
        consumer = self.blueprint.get(TaskConsumer).consumer
        autoscale = self.blueprint.steps.get(Autoscale)
        panel = Panel(consumer, autoscale.autoscaler if isinstance(autoscale, Autoscale) else None, time.time())
        self.listeners = [ControlListener(panel, worker.options.hostname, consumer.broker_url)]
        if celery_mailbox.enabled(consumer.broker_url):
            from .celery_control import CeleryControlListener

            self.listeners.append(CeleryControlListener(panel, worker.options.hostname, consumer.broker_url))

    def start(self) -> None:
        for listener in self.listeners:
            listener.start()
        for listener in self.listeners:
            if not listener.ready.wait(10):
                logger.warning("remote control (%s) is not listening yet (broker slow to answer)", listener.name)

    def stop(self) -> None:
        for listener in self.listeners:
            listener.stop()
        for listener in self.listeners:
            listener.join(timeout=5)

    def terminate(self) -> None:
        for listener in self.listeners:
            listener.stop()  # daemon threads: the process does not wait for them


class HeartbeatStep(Step):
    """The WorkerState row: heartbeats, offline at warm shutdown (and worker events)."""

    requires = (Name, TaskConsumer)
    heartbeat: Heartbeat

    def create(self, worker: Worker) -> None:
        events = self.blueprint.steps.get(Events)
        name = self.blueprint.get(Name)
        self.heartbeat = Heartbeat(self.blueprint.get(TaskConsumer).consumer,
                                   float(djq_settings.WORKER_HEARTBEAT_INTERVAL),
                                   events.dispatcher if isinstance(events, Events) else None,
                                   started=name.started, previous=name.previous)

    def start(self) -> None:
        self.heartbeat.start()

    def stop(self) -> None:
        self.heartbeat.stop()

    def terminate(self) -> None:
        self.heartbeat.stop(wait=False)


class Metrics(Step):
    """--metrics-port: this worker's counters and runtimes for Prometheus (djq.contrib.prometheus)."""

    requires = (TaskConsumer,)
    metrics: Any = None
    address: Any = None

    def include_if(self, worker: Worker) -> bool:
        return worker.options.metrics_address is not None

    def create(self, worker: Worker) -> None:
        from ..contrib.prometheus.worker import WorkerMetrics

        consumer = self.blueprint.get(TaskConsumer).consumer
        pool = self.blueprint.get(Pool).pool
        self.metrics = WorkerMetrics(worker.options.hostname)
        self.metrics.gauge("djq_worker_active_tasks", "Tasks running in this worker's pool.",
                           lambda: len(consumer.active))
        self.metrics.gauge("djq_worker_reserved_tasks", "Messages this worker holds, waiting for a free slot.",
                           lambda: len(consumer.reserved))
        self.metrics.gauge("djq_worker_pool_slots", "Tasks this worker's pool can run at once.",
                           lambda: pool.concurrency)
        consumer.outcomes.listeners.append(self.metrics.observe)
        # A port in use fails here, before any step starts, with one line and nothing to
        # undo. The server itself starts last: a prefork pool's fork server, forked when
        # the Pool step starts, must not inherit its socket or its thread.
        self.address = worker.options.metrics_address
        self.metrics.check_address(*self.address)

    def start(self) -> None:
        self.metrics.serve(*self.address)

    def stop(self) -> None:
        self.metrics.close()

    def terminate(self) -> None:
        self.metrics.close()


STEPS: tuple[type[Step], ...] = (
    Database, Name, Pool, Results, Events, TaskConsumer, Autoscale, Control, HeartbeatStep, EmbeddedBeat,
    Metrics,
)
