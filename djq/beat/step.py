"""``djq_worker -B``: a beat in a thread of the worker, as a bootstep.

Safe to use on every worker: beats claim each run in the database, so ten workers with
-B send each run once, like ten djq_beat processes would.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..worker.blueprint import Step
from .service import Beat

if TYPE_CHECKING:
    from ..worker.worker import Worker

#: How long a warm shutdown waits for the beat thread to finish its tick.
JOIN_TIMEOUT = 10.0


class EmbeddedBeat(Step):
    """Present only when the worker was started with -B."""

    beat: Beat
    thread: threading.Thread | None = None

    def include_if(self, worker: Worker) -> bool:
        return bool(worker.options.beat)

    def create(self, worker: Worker) -> None:
        self.beat = Beat(name=f"{worker.options.hostname} (embedded beat)")
        self.beat.setup()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.beat.run, name="djq-beat", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.beat.stop()
        if self.thread is not None:
            self.thread.join(JOIN_TIMEOUT)

    def terminate(self) -> None:
        # Cold shutdown: no waiting. A tick cut short commits nothing half-done (see
        # djq.beat.scheduler), and the thread is a daemon.
        self.beat.stop()

    def describe(self) -> dict[str, Any]:
        return {"beat": self.beat.name, "max_tick": self.beat.max_tick}
