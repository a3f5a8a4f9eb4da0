"""Benchmark tasks. They do (almost) nothing, so the figures measure djq itself."""
from __future__ import annotations

import time

from djq import task


@task(name="bench.noop")
def noop() -> None:
    return None


@task(name="bench.sleep10")
def sleep10() -> None:
    time.sleep(0.01)
