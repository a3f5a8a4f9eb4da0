"""Shared fixtures: the database legs (SQLite, PostgreSQL) and real worker subprocesses."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest
from django.db import connections
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_ALL = os.environ.get("DJQ_TEST_REQUIRE_ALL") == "1"
#: leg -> (database alias for results, env var with the broker URL; None = embedded djq://)
LEGS = {
    "default": ("default", None),
    "postgres": ("postgres", None),
    "redis": ("default", "DJQ_TEST_REDIS_URL"),
    "amqp": ("default", "DJQ_TEST_AMQP_URL"),
}
#: the embedded broker's legs, for tests of the djq:// transport itself
EMBEDDED = ["default", "postgres"]


def _skip_or_fail(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (DJQ_TEST_REQUIRE_ALL=1: no leg may be skipped)")
    pytest.skip(reason)


class Alias(str):
    """A database alias that also knows the broker its test leg uses."""

    broker_url: str
    leg: str

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("djq://")


@pytest.fixture(params=list(LEGS), ids=["sqlite", "postgres", "redis", "amqp"])
def db_alias(request: pytest.FixtureRequest) -> Alias:
    """Each test using this runs once per broker: djq:// on SQLite and on PostgreSQL,
    Redis and RabbitMQ (results in the database). Parametrize it indirectly with
    EMBEDDED for tests of the embedded transport alone."""
    leg = request.param
    alias_name, url_env = LEGS[leg]
    if alias_name not in connections.settings:
        _skip_or_fail("PostgreSQL leg needs DJQ_TEST_POSTGRES_URL")
    if url_env and not os.environ.get(url_env):
        _skip_or_fail(f"{leg} leg needs {url_env}")
    alias = Alias(alias_name)
    alias.leg = leg
    alias.broker_url = os.environ[url_env] if url_env else f"djq://{alias_name}"
    return alias


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests on a database leg commit for real (workers in other processes must see the
    # rows), so they run as transactional tests on every configured database.
    for item in items:
        if "db_alias" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.django_db(transaction=True, databases="__all__"))


@pytest.fixture
def broker(db_alias: Alias) -> Iterator[Alias]:
    """The leg's broker, results on ``db_alias``; external brokers start and end empty."""
    from djq.messaging.producer import reset_publishers

    with override_settings(DJQ_BROKER_URL=db_alias.broker_url, DJQ_RESULT_BACKEND=f"database://{db_alias}"):
        reset_publishers()
        if not db_alias.embedded:
            purge_broker(db_alias.broker_url)
        try:
            yield db_alias
        finally:
            if not db_alias.embedded:
                purge_broker(db_alias.broker_url)


def purge_broker(url: str) -> None:
    """Empty the queues tests use on an external broker (what a dead worker left, too)."""
    from kombu import Connection

    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()
        return
    with Connection(url) as conn:
        for queue in ("default", "special", "q", "nobody-consumes"):
            channel = conn.channel()
            try:
                channel.queue_purge(queue)
            except Exception:  # not declared yet: nothing to purge (and AMQP closed the channel)
                pass


def database_url(alias: str) -> str:
    """A URL for the test database behind ``alias``, for worker subprocesses."""
    s = connections[alias].settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = f"{quote(s['USER'])}:{quote(s['PASSWORD'])}@" if s.get("USER") else ""
    return f"postgres://{auth}{s['HOST']}:{s['PORT']}/{s['NAME']}"


class WorkerProcess:
    """A real ``manage.py djq_worker`` subprocess on the test database."""

    def __init__(self, alias: str, args: list[str], log: Path, env: dict[str, str] | None = None,
                 command: str = "djq_worker", *, settings: str = "tests.settings",
                 argv: list[str] | None = None) -> None:
        self.log_path = log
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings,
            "DJQ_TEST_DEFAULT_DB": database_url(alias),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        broker_url = getattr(alias, "broker_url", "")
        if broker_url and not broker_url.startswith("djq://") and "DJQ_TEST_BROKER_URL" not in (env or {}):
            full_env["DJQ_TEST_BROKER_URL"] = broker_url
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [*(argv or [sys.executable, "-m", "django", command]), "-l", "INFO", *args],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready" in self.output:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.output}")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start_worker(broker: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(broker, list(args), tmp_path / f"worker-{len(workers)}.log", env)
        workers.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def _close_result_listeners() -> Iterator[None]:
    """get() on PostgreSQL keeps a LISTEN connection (djq/backends/wake.py): closed after
    each test, so that the test database can be dropped."""
    yield
    from djq.backends.wake import close_all

    close_all()


@contextmanager
def results_held(alias: str) -> Iterator[None]:
    """Every write to the (SQLite) result database waits while this holds its write lock."""
    held = sqlite3.connect(connections[alias].settings_dict["NAME"], timeout=20, isolation_level=None)
    held.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        held.execute("ROLLBACK")
        held.close()
