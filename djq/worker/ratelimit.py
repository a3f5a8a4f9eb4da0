"""Per-task rate limits in a worker: a token bucket per task name.

A task over its rate stays in the consumer's reserved list (its message unacked) until a
token is free; other tasks go on. The limit holds per worker, not across workers.
"""
from __future__ import annotations

import time


class TokenBucket:
    """Per-task rate limit: ``rate`` tokens per second, burst of one."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = 1.0
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(1.0, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        self._refill()
        return max(0.0, (1.0 - self.tokens) / self.rate)
