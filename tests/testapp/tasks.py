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


@task
def pid() -> int:
    return os.getpid()


@task
def interval(seconds: float) -> list[float]:
    """Sleeps; returns when it ran, so tests can see which tasks overlapped."""
    start = time.time()
    time.sleep(seconds)
    return [start, time.time()]


@task(soft_time_limit=0.5)
def soft_limited() -> str:
    from djq.exceptions import SoftTimeLimitExceeded

    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "never interrupted"


@task(time_limit=1)
def hard_limited(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


@task(acks_late=True, reject_on_worker_lost=True)
def die_once(marker: str) -> int:
    """Kills its own process the first time (as an OOM kill would), then succeeds."""
    path = os.path.join(os.environ.get("DJQ_TEST_TMP", "/tmp"), f"died-{marker}")
    if not os.path.exists(path):
        open(path, "w").close()
        os.kill(os.getpid(), 9)
    return os.getpid()


@task
def die() -> None:
    os.kill(os.getpid(), 9)


@task(bind=True, max_retries=5)
def flaky(self, marker: str, failures: int) -> int:
    """Fails ``failures`` times (counted in a file), retrying each time after 0.1 s."""
    path = os.path.join(os.environ.get("DJQ_TEST_TMP", "/tmp"), f"flaky-{marker}")
    with open(path, "a") as fh:
        fh.write("x")
    attempts = len(open(path).read())
    if attempts <= failures:
        raise self.retry(exc=ConnectionError(f"attempt {attempts} failed"), countdown=0.1)
    return attempts


@task(bind=True, max_retries=2)
def always_retry(self) -> None:
    raise self.retry(exc=KeyError("still down"), countdown=0.05)


@task(autoretry_for=(ConnectionError,), dont_autoretry_for=(ConnectionResetError,),
      retry_kwargs={"max_retries": 2}, retry_backoff=0.05, retry_jitter=False)
def auto_flaky(kind: str) -> None:
    if kind == "reset":
        raise ConnectionResetError("not retried")
    raise ConnectionError("retried")


@task(bind=True)
def progress(self, total: int, hold: float) -> int:
    for current in range(1, total + 1):
        self.update_state(state="PROGRESS", meta={"current": current, "total": total})
    time.sleep(hold)
    return total


@task
def tsum(values: list[int]) -> int:
    return sum(values)


@task
def mul(x: int, y: int) -> int:
    return x * y


@task
def record_errback(task_id: str) -> str:
    path = os.path.join(os.environ.get("DJQ_TEST_TMP", "/tmp"), f"errback-{task_id}")
    open(path, "w").close()
    return task_id


@task
def marked(marker: str) -> str:
    """Leaves a file behind, so a test can tell whether it ran at all."""
    open(os.path.join(os.environ.get("DJQ_TEST_TMP", "/tmp"), f"marked-{marker}"), "a").close()
    return marker


@task(rate_limit="120/m")
def rated(i: int) -> int:
    return i


@task(rate_limit="6/m")
def slow_rated(i: int) -> int:
    return i


@task
def tsum_counted(values: list[int], marker: str) -> int:
    """A chord body that counts its own runs in a file."""
    with open(os.path.join(os.environ.get("DJQ_TEST_TMP", "/tmp"), f"body-{marker}"), "a") as fh:
        fh.write(f"{len(values)}\n")
    return sum(values)


@task(bind=True)
def retry_later(self) -> None:
    raise self.retry(exc=ConnectionError("database is down"), countdown=3600)


@task(ignore_result=True)
def fail_quietly() -> None:
    raise ValueError("ignored but failed")


from djq.beat import crontab, periodic  # noqa: E402 - beat's tests append here


@periodic(crontab("0 4 * * mon", timezone="Europe/Paris"), name="testapp weekly cleanup",
          description="declared with @periodic", kwargs={"older_than_days": 30})
@task
def weekly_cleanup(older_than_days: int) -> int:
    """A task with a schedule declared in code, for the beat tests."""
    return older_than_days


@task(bind=True)
def mark_run(self, path: str) -> str:
    """Appends "<task id> <worker hostname>" to ``path``: who ran what, and how often."""
    with open(path, "a") as fh:
        fh.write(f"{self.request.id} {self.request.hostname}\n")
    time.sleep(0.005)
    return self.request.hostname


def _append(path: str, line: str) -> None:
    """One line to an execution ledger kept outside djq (O_APPEND + fsync: nothing is lost)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@task(bind=True)
def ledgered(self, ledger: str, seconds: float) -> str:
    """Writes ``start`` and ``end`` lines with its task id: what really ran, and how far."""
    _append(ledger, f"start {self.request.id} {os.getpid()}")
    time.sleep(seconds)
    _append(ledger, f"end {self.request.id}")
    return "done"


@task(bind=True, acks_late=True)
def ledgered_late(self, ledger: str, seconds: float) -> str:
    _append(ledger, f"start {self.request.id} {os.getpid()}")
    time.sleep(seconds)
    _append(ledger, f"end {self.request.id}")
    return "done"


@task(bind=True, acks_late=True, reject_on_worker_lost=True)
def ledgered_requeued(self, ledger: str, seconds: float) -> str:
    """``ledgered``, requeued when its process dies under it."""
    _append(ledger, f"start {self.request.id} {os.getpid()}")
    time.sleep(seconds)
    _append(ledger, f"end {self.request.id}")
    return "done"

from . import atasks  # noqa: E402,F401 - async def tasks, registered with these


@task(bind=True)
def as_it_starts(self) -> dict:
    """What a task sees as its body starts: whether its process had a database connection
    open already (a prefork child that stored its own STARTED had), and its stored state."""
    from django.db import connections

    from djq.backends import get_backend

    opened = any(conn.connection is not None for conn in connections.all(initialized_only=True))
    meta = get_backend().get(self.request.id)
    return {"opened": opened, "state": meta.state if meta else None}
