"""The worker's bootsteps, in boot order. This tuple is the whole worker."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..concurrency import get_pool_class
from ..concurrency.base import BasePool
from . import dbhygiene
from .blueprint import Step
from .consumer import Consumer

if TYPE_CHECKING:
    from .worker import Worker


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
        self.pool = get_pool_class(worker.options.pool)(worker.options.concurrency)

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
            prefetch_count=options.concurrency * options.prefetch_multiplier,
        )

    def start(self) -> None:
        self.consumer.connect()

    def stop(self) -> None:
        self.consumer.stop()
        self.consumer.close()

    def terminate(self) -> None:
        self.stop()


STEPS: tuple[type[Step], ...] = (Database, Pool, TaskConsumer)
