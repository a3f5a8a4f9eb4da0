"""Where the benchmark runs: the machine and the versions, and the databases it makes.

SQLite: a fresh file in a temporary directory, deleted afterwards.
PostgreSQL: a fresh database ``djq_bench_<pid>`` made through an admin URL (a role
that may CREATE DATABASE) and dropped afterwards, even if a worker is still connected.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_POSTGRES_URL = "postgres://djq:djq@127.0.0.1:5439/djq"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram_kb = 0
    try:
        with open("/proc/meminfo") as meminfo:
            ram_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        pass
    versions: dict[str, str | None] = {}
    for dist in ("djq", "Django", "kombu", "celery", "psycopg", "redis"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "djq_commit": _git_commit(),
        "cpus": os.cpu_count(), "cpu_model": model, "ram_gib": round(ram_kb / 1024 / 1024, 1),
        "python": platform.python_version(), "platform": platform.platform(), "versions": versions,
    }


def load_average() -> float | None:
    """The 1-minute load average: other work on the machine makes every figure lower."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _git_commit() -> str | None:
    """The commit of djq being measured, with "+changes" if djq/ differs from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "djq"], cwd=root, capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+changes" if head and dirty else (head or None)


@dataclass
class PostgresAdmin:
    """Creates and drops this run's database through ``url`` (any existing database)."""

    url: str

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=3)

    def reachable(self) -> str | None:
        """None if we can connect, else why not."""
        try:
            import psycopg
        except ImportError:
            return "psycopg is not installed (pip install 'psycopg[binary]')"
        try:
            with self.connect() as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, OSError) as exc:
            return f"cannot connect to {safe_url(self.url)}: {str(exc).strip().splitlines()[0]}"
        return None

    def server_settings(self) -> dict[str, str]:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        with self.connect() as conn:
            return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}

    def create(self, name: str) -> str:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    def drop(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def safe_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        netloc = f"{creds.split(':', 1)[0]}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def redis_reachable(url: str) -> str | None:
    """None if something answers PING at ``url``, else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return f"no redis-server answers at {safe_url(url)} ({exc})"
    if not reply.startswith((b"+PONG", b"-NOAUTH")):
        return f"{safe_url(url)} did not answer PING like Redis ({reply[:30]!r})"
    return None
