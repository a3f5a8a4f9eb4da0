"""When a worker ends by itself: ``--burst`` and ``--max-tasks N``.

- ``--max-tasks N``: the worker hands at most N tasks to its pool, then stops as at a
  warm shutdown (the running tasks finish, reserved messages go back) and exits 0.
- ``--burst``: the worker stops (warm, exit 0) the first time it is idle: nothing reserved,
  nothing running, and a look at its queues found no message ready to run. Messages whose
  eta (a Django ``run_after``) is still ahead are not waited for: on ``djq://`` they stay in
  the queue table, on Redis and RabbitMQ a message the worker held for its eta goes back
  to the broker at the stop. A retry sent with a countdown is such a message too.
"""
from __future__ import annotations

from dataclasses import dataclass

#: how long a burst worker waits for a message before it counts its queues as empty
BURST_LOOK = 0.25


@dataclass
class RunLimits:
    burst: bool = False
    max_tasks: int | None = None
    #: tasks handed to the pool so far
    started: int = 0

    def room(self, free: int) -> int:
        """How many of ``free`` pool slots may take a task."""
        if self.max_tasks is None:
            return free
        return max(min(free, self.max_tasks - self.started), 0)

    @property
    def used_up(self) -> bool:
        return self.max_tasks is not None and self.started >= self.max_tasks
