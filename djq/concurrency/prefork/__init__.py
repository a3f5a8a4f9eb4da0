"""``prefork``: child processes forked by the worker; the default pool.

Real parallelism on every core. Each child has its own pair of pipes: the parent picks a
free child, writes it exactly one job and records which child holds which job, so a
child's death (OOM, kill -9) names exactly the task it held. That task ends FAILURE with
WorkerLostError (or is requeued when it is acks_late with reject_on_worker_lost; the
consumer decides) and a new child starts at once. There is no shared queue and no lock
a dying child could hold; the pool never runs a job twice.

Both time limits: the soft limit raises SoftTimeLimitExceeded in the task (SIGUSR1),
the hard limit kills the child (the task ends FAILURE with TimeLimitExceeded) and a new
one replaces it. Children are recycled after ``--max-tasks-per-child`` tasks or above
``--max-memory-per-child`` KiB resident; the pool grows and shrinks (``--autoscale``,
pool_grow/pool_shrink), restarts its children (pool_restart) and terminates one task
(revoke with terminate). A pool that makes no progress (a child that does not start a
job it was sent, one that does not die when killed, one that exited unnoticed) is
logged in one line and recovered. Database connections inherited across fork are
dropped in the child, never closed; on Linux a child dies with its worker.

Modules: ``pool`` (the BasePool API), ``roster`` (who holds what), ``supervisor`` (the
parent thread that watches the children), ``child`` (a child's loop), ``wire`` (the
pipes).
"""
from __future__ import annotations

from .pool import PreforkPool

__all__ = ["PreforkPool"]
