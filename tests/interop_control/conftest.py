"""One djq worker, one real Celery worker and one Flower per broker (Redis, RabbitMQ),
shared by the tests of a module: starting them is most of what these tests cost."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT, _skip_or_fail, purge_broker

BROKERS = {"redis": "DJQ_TEST_REDIS_URL", "amqp": "DJQ_TEST_AMQP_URL"}
DJQ_NODE = f"djq-ic@{socket.gethostname()}"
CELERY_NODE = f"celery-ic@{socket.gethostname()}"


def celery_bin() -> str:
    return shutil.which("celery", path=os.path.dirname(sys.executable)) or "celery"


def celery_env(url: str) -> dict[str, str]:
    """A Celery process's environment: no Django settings (Celery's Django fixup would load them)."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    return {**env, "DJQ_TEST_CELERY_BROKER": url, "PYTHONPATH": str(ROOT), "FLOWER_UNAUTHENTICATED_API": "1"}


class Process:
    """A subprocess with its output in a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.proc.args[:3]} exited with {self.proc.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen after {timeout}s:\n{self.output}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        self._log.close()


@dataclass
class Pair:
    url: str
    leg: str
    djq: Process
    celery: Process
    tmp: Path


@pytest.fixture(scope="session")
def worker_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database of the djq workers' own (these tests read no rows)."""
    path = tmp_path_factory.mktemp("interop-db") / "djq.sqlite3"
    url = f"sqlite:///{path}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DJQ_TEST_DEFAULT_DB": url,
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    return url


def start_djq(url: str, db: str, log: Path, *args: str, settings: str = "tests.settings",
              env: dict[str, str] | None = None) -> Process:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, "DJQ_TEST_DEFAULT_DB": db,
                "PYTHONPATH": str(ROOT), **(env or {})}
    if not url.startswith("djq"):
        full_env["DJQ_TEST_BROKER_URL"] = url
    process = Process([sys.executable, "-m", "django", "djq_worker", "-l", "INFO", *args], log, full_env)
    try:
        process.wait_for(" ready")
    except BaseException:
        process.stop()
        raise
    return process


@pytest.fixture(scope="module", params=list(BROKERS), ids=list(BROKERS))
def pair(request: pytest.FixtureRequest, worker_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A djq worker (-E, threads) and a Celery worker (-E, threads, queue ic-celery) on one broker."""
    url = os.environ.get(BROKERS[request.param], "")
    if not url:
        _skip_or_fail(f"{request.param} leg needs {BROKERS[request.param]}")
    purge_broker(url)
    tmp = tmp_path_factory.mktemp(f"interop-{request.param}")
    celery = Process([celery_bin(), "-A", "tests.interop_control.celery_app", "worker", "-P", "threads", "-c", "2", "-E",
                      "-n", CELERY_NODE, "-Q", "ic-celery", "--without-gossip", "-l", "INFO"],
                     tmp / "celery.log", celery_env(url))
    djq: Process | None = None
    try:
        djq = start_djq(url, worker_db, tmp / "djq.log", "-P", "threads", "-c", "2", "-E", "-n", DJQ_NODE)
        celery.wait_for("ready.")
        yield Pair(url, request.param, djq, celery, tmp)
    finally:
        if djq is not None:
            djq.stop()
        celery.stop()
        purge_broker(url)

