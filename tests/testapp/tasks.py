"""Tasks the test suite sends to real workers."""
from __future__ import annotations

import os
import time

from djq import task


@task
def add(x: int, y: int) -> int:
    return x + y


@task(name="tests.echo")
def echo(value: object) -> object:
    return value


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def sleep_then_add(seconds: float, x: int, y: int) -> int:
    time.sleep(seconds)
    return x + y


@task(acks_late=True)
def sleep_late(seconds: float, marker: str) -> str:
    """acks_late: a worker that dies while this runs leaves the message for another."""
    path = os.path.join(os.environ.get("DJQ_TEST_TMP", "/tmp"), f"ran-{marker}")
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return marker


@task(bind=True)
def whoami(self) -> dict:
    return {"id": self.request.id, "hostname": self.request.hostname, "retries": self.request.retries}


@task
def unstorable() -> object:
    return object()


@task
def noop() -> None:
    return None


@task(rate_limit="1/m")
def once_a_minute() -> str:
    return "ok"
