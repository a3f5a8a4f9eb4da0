"""``async def`` tasks the asyncio pool tests send to real workers (imported by tasks.py)."""
from __future__ import annotations

import asyncio
import os
import threading
import time

from djq import task
from djq.exceptions import SoftTimeLimitExceeded


@task
async def anap(seconds: float) -> list[float]:
    """When it started and ended (time.time()), for overlap checks."""
    started = time.time()
    await asyncio.sleep(seconds)
    return [started, time.time()]


@task
async def anoop() -> None:
    return None


@task(soft_time_limit=0.3)
async def asoft() -> str:
    try:
        await asyncio.sleep(10)
    except SoftTimeLimitExceeded:
        return "soft limit seen at the await"
    return "slept through"


@task(time_limit=0.5)
async def ahard() -> str:
    try:
        await asyncio.sleep(10)
    except Exception:  # a hard limit is not an Exception: the task cannot keep itself running
        return "caught"
    return "slept through"


@task(bind=True, max_retries=3)
async def aretrying(self, failures: int) -> int:
    if self.request.retries < failures:
        await self.aretry(countdown=0.1)
    return self.request.retries


@task(bind=True)
async def aprogress(self, release: str) -> bool:
    """Records PROGRESS, waits until the file ``release`` exists, then uses the async ORM."""
    from djq.models import TaskResult

    await self.aupdate_state(meta={"step": 1})
    while not os.path.exists(release):
        await asyncio.sleep(0.02)
    return await TaskResult.objects.filter(task_id=self.request.id).aexists()


@task
async def ablocker(seconds: float) -> str:
    time.sleep(seconds)  # blocks the loop on purpose: the lag watch names this task
    return "blocked"


@task
def where() -> str:
    """A plain function: the thread it ran in."""
    return threading.current_thread().name
