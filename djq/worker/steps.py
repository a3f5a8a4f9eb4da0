"""The worker's bootsteps, in boot order. This tuple is the whole worker."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..beat.step import EmbeddedBeat
from ..concurrency import get_pool_class
from ..concurrency.base import BasePool
from . import dbhygiene
from .blueprint import Step
from .autoscale import Autoscaler
from .consumer import Consumer

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)


class Database(Step):
    """Worker-lifetime database connections; all closed at the end."""

    def create(self, worker: Worker) -> None:
        dbhygiene.keep_connections_for(worker.options.conn_max_age)

    def stop(self) -> None:
        dbhygiene.close_all()


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


class TaskConsumer(Step):
    """Connection to the broker and the loop that feeds the pool (run by Worker.run)."""

    requires = (Pool,)
    consumer: Consumer

    def create(self, worker: Worker) -> None:
        options = worker.options
        self.consumer = Consumer(
            pool=self.blueprint.get(Pool).pool,
            queues=options.queues,
            hostname=options.hostname,
            prefetch_count=options.max_concurrency * options.prefetch_multiplier,
            soft_time_limit=options.soft_time_limit,
            time_limit=options.time_limit,
        )

    def start(self) -> None:
        self.consumer.connect()

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


STEPS: tuple[type[Step], ...] = (Database, Pool, TaskConsumer, Autoscale, EmbeddedBeat)
