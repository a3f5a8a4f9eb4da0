"""Watching a drain from outside the worker, the same way for djq and for Celery.

A drain is done when every task's result is stored (a count the caller gives) or, with
results ignored, when the broker holds none of its messages any more: on Redis the
queue's lists and kombu's ``unacked`` hash are empty (so every message was acked); on
AMQP the queue has no ready message (the broker does not tell a passive declare how many
are delivered but unacked: at most the prefetch, 4 x concurrency, the same for both).
Nothing inside the worker is wrapped or patched.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from .proc import WorkerProcess
from .stats import latency_summary

#: poll period while much is left, and near the end (the end is seen within FINE)
COARSE, FINE = 0.05, 0.005


class BrokerDepth:
    """Messages of ``queue`` still on the broker at ``url`` (Redis: waiting + unacked)."""

    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue = url, queue
        self._redis: Any = None
        self._amqp: Any = None
        if url.startswith("redis"):
            import redis

            self._redis = redis.Redis.from_url(url)
        else:
            from kombu import Connection

            self._amqp = Connection(url, connect_timeout=3)

    def __call__(self) -> int:
        if self._redis is not None:
            lists = [key for key in self._redis.scan_iter(match=f"{self.queue}*", count=1000)
                     if key == self.queue.encode() or key.startswith(f"{self.queue}\x06\x16".encode())]
            pipe = self._redis.pipeline(transaction=False)
            for key in lists:
                pipe.llen(key)
            pipe.hlen("unacked")
            return sum(int(n) for n in pipe.execute())
        try:
            _, ready, _ = self._amqp.default_channel.queue_declare(queue=self.queue, passive=True)
        except self._amqp.channel_errors:  # not declared (yet): nothing queued
            self._amqp.close()
            return 0
        return int(ready)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._amqp is not None:
            self._amqp.release()


def wait_for(done: Callable[[], int], target: int, timeout: float, worker: WorkerProcess,
             *, counting_down: bool = False) -> float:
    """Poll until ``done()`` reaches ``target`` (or, ``counting_down``, falls to 0); the time seen.

    Polls every COARSE seconds while more than a tenth is left, then every FINE seconds.
    Raises RuntimeError if the worker exits or ``timeout`` passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        left = value if counting_down else target - value
        if left <= 0:
            return time.time()
        if not worker.alive():
            raise RuntimeError(f"the worker exited early:\n{worker.output()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done after {timeout:.0f} s: {left:,} of {target:,} left")
        time.sleep(COARSE if left > target / 10 else FINE)


def round_trips(send_and_get: Callable[[], Any], samples: int, seed: int = 42) -> dict[str, Any]:
    """``samples`` idle round trips ``delay()`` -> ``get()``, one at a time.

    A random pause (0-50 ms) before each, so arrivals fall anywhere in the worker's
    polling cycle, as real traffic does. The raw milliseconds are kept so that repeats
    can be pooled. One round trip first is not counted: Celery's first ``get()`` sets up
    its result subscription (~300 ms), which no later one pays.
    """
    send_and_get()
    rng = random.Random(seed)
    seconds: list[float] = []
    for _ in range(samples):
        time.sleep(rng.uniform(0.0, 0.05))
        started = time.perf_counter()
        send_and_get()
        seconds.append(time.perf_counter() - started)
    return {**latency_summary(seconds), "ms": [round(s * 1000.0, 3) for s in seconds]}


def drain_figures(tasks: int, worker: WorkerProcess, ready_at: float | None, seen_at: float,
                  cpu_seconds: float) -> dict[str, Any]:
    """Drain rate from the worker's ready line (or its spawn, if none was seen) to the end seen."""
    start = ready_at or worker.spawned_at
    seconds = seen_at - start
    return {
        "seconds": seconds,
        "tasks_per_s": tasks / seconds if seconds > 0 else None,
        "startup_s": (ready_at - worker.spawned_at) if ready_at else None,
        "ready_line_seen": ready_at is not None,
        "worker_cpu_ms_per_task": 1000.0 * cpu_seconds / tasks,
        "worker_cpu_share": cpu_seconds / seconds if seconds > 0 else None,
    }
