"""Running one scenario in a child process, on a database made for it and removed after.

Django settings are per process, so every scenario (``bench.djq_scenario``,
``bench.pool_scenario``, ``bench.celery_scenario``, ``bench.beat_scenario``) is a
``python -m`` child. It writes its figures to a JSON file; this side reads them and,
whatever happened, kills a worker (or beat) the child left behind.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .environment import PostgresAdmin
from .proc import ROOT, reap_pidfile


def run_child(module: str, env: dict[str, str], workdir: Path, args: argparse.Namespace,
              extra: list[str], *, tasks: int | None = None, concurrency: int | None = None,
              marker: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python -m module`` to completion; its figures come back through a JSON file.

    ``marker``: a word in the command line of the process the child starts (default
    ``djq_worker``, or ``celery``), so that one left behind is killed and no other.
    ``timeout``: most seconds the child may take; then it is killed and RuntimeError raised.
    """
    out, log, pidfile = workdir / "figures.json", workdir / "worker.log", workdir / "worker.pid"
    argv = [sys.executable, "-m", module, "--out", str(out), "--log", str(log), "--pidfile", str(pidfile),
            "--tasks", str(tasks or args.tasks), "--concurrency", str(concurrency or args.concurrency),
            "--timeout", str(args.timeout), *extra]
    child = subprocess.Popen(argv, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)})
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=30)
        raise RuntimeError(f"{module} did not finish within {timeout:.0f} s: killed") from None
    except BaseException:
        # Ctrl-C reached the child too: give it time to stop its worker itself.
        try:
            child.wait(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            child.kill()
            child.wait()
        raise
    finally:
        reap_pidfile(pidfile, marker or ("celery" if "celery" in module else "djq_worker"))
    if code != 0 or not out.exists():
        error = Path(f"{out}.error")
        why = f": {error.read_text(errors='replace')[-2000:]}" if error.exists() else ""
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no worker log)"
        raise RuntimeError(f"{module} failed with exit code {code}{why}\nworker log tail:\n{tail}")
    return json.loads(out.read_text())


def djq_env(db_url: str, args: argparse.Namespace, broker_url: str = "djq://") -> dict[str, str]:
    """The environment of a djq scenario child: bench settings, its database and broker."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "DJQ_BENCH_DB": db_url,
           "DJQ_BENCH_BROKER_URL": broker_url}
    if args.polling_interval is not None:
        env["DJQ_BENCH_POLLING_INTERVAL"] = str(args.polling_interval)
    return env


@contextmanager
def fresh_database(kind: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database (``sqlite`` file or ``postgres`` database), removed afterwards."""
    if kind == "sqlite":
        path = workdir / "bench.sqlite3"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    admin = PostgresAdmin(postgres_url)
    name = f"djq_bench_{os.getpid()}"
    db_url = admin.create(name)
    try:
        yield db_url
    finally:
        admin.drop(name)
