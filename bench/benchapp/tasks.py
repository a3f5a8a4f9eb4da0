"""Benchmark tasks. They do (almost) nothing, so the figures measure djq itself.

``cpu50`` is the exception: a pure-Python loop of about 50 ms that holds the GIL, to
show what parallelism each pool gives CPU-bound work.
"""
from __future__ import annotations

import asyncio
import time

from djq import task

#: loop length of ``cpu50``: about 50 ms of one core on the 2026 bench machine; the pool
#: scenario times ``burn(CPU_LOOPS)`` before each run and reports what it measured.
CPU_LOOPS = 1_000_000


def burn(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


@task(name="bench.noop")
def noop() -> None:
    return None


@task(name="bench.noop_ignored", ignore_result=True)
def noop_ignored() -> None:
    return None


@task(name="bench.sleep10")
def sleep10() -> None:
    time.sleep(0.01)


@task(name="bench.cpu50")
def cpu50() -> None:
    burn(CPU_LOOPS)


@task(name="bench.sleep50")
def sleep50() -> None:
    time.sleep(0.05)


@task(name="bench.asleep50")
async def asleep50() -> None:
    await asyncio.sleep(0.05)


@task(name="bench.anoop")
async def anoop() -> None:
    return None
