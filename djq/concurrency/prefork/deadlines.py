"""When the prefork supervisor must act on a job, and what it must do then.

A job's limits are timed from the child's "started": SIGUSR1 at the soft limit, SIGKILL
at the hard one. The watchdog's deadlines catch a pool that makes no progress: a job sent
but not started within ``start_timeout`` (its child is stopped or stuck), and a child
still there ``kill_grace`` after SIGKILL (the kill did not take).
"""
from __future__ import annotations

from .roster import TIME_LIMIT, Job

SOFT = "soft time limit"
HARD = TIME_LIMIT
NOT_STARTED = "not started"
GIVE_UP = "give up"


def _pending(job: Job, start_timeout: float, kill_grace: float) -> list[tuple[str, float]]:
    """(action, when) for each deadline still ahead of ``job``, the most urgent kind first."""
    if job.child is None:
        return []
    if job.killed_at is not None:
        return [(GIVE_UP, job.killed_at + kill_grace)]
    if job.started_at is None:
        return [(NOT_STARTED, job.sent_at + start_timeout)] if job.sent_at is not None else []
    found = []
    if job.hard:
        found.append((HARD, job.started_at + job.hard))
    if job.soft and not job.soft_signalled:
        found.append((SOFT, job.started_at + job.soft))
    return found


def deadlines(job: Job, start_timeout: float, kill_grace: float) -> list[float]:
    return [when for _, when in _pending(job, start_timeout, kill_grace)]


def due(job: Job, now: float, start_timeout: float, kill_grace: float) -> str | None:
    """The action ``job`` needs now, if any."""
    for action, when in _pending(job, start_timeout, kill_grace):
        if now >= when:
            return action
    return None
