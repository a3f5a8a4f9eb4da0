"""``bench.py --versus``: djq against Celery on the same broker, pool and concurrency, in one run.

The legs and their order are in bench/versus_legs.py; each run is a child process
(bench/versus_djq.py or bench/celery_scenario.py) that starts a fresh worker, measures it
and stops it by PID. Every run of every leg happens once per repeat; the ratios
djq / Celery are taken per repeat, then their median (bench/versus_report.py).

Where djq keeps its data: ``djq://`` SQLite legs get a new file per run; ``djq://``
PostgreSQL legs, and djq's results on Redis and RabbitMQ with ``--results-db postgres``
(the default), use one database made for this bench run, its djq tables emptied before
each run (``--results-db sqlite``: a new SQLite file per run instead). Celery keeps its
results in Redis (``--redis-url``), as its users do.

A run that fails, or a broker that does not answer, is a note; the other runs go on.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from .brokers import broker_reachable
from .child import djq_env, fresh_database, run_child
from .environment import DEFAULT_POSTGRES_URL, PostgresAdmin, redis_reachable, safe_url
from .versus_legs import Leg, Run, plan, select


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--versus", action="store_true",
                        help="djq against Celery 5.7 on the same broker, pool and concurrency (see --legs)")
    parser.add_argument("--legs", help="--versus: comma-separated leg names or globs, e.g. 'redis-threads-*,sqlite-*'")
    parser.add_argument("--results-db", choices=("postgres", "sqlite"), default="postgres",
                        help="--versus: the database holding djq's results on redis:// and amqp:// (default postgres)")
    parser.add_argument("--celery-track-started", action="store_true",
                        help="--versus: Celery records STARTED too (djq's default; Celery's is not to)")


def _why_not(args: argparse.Namespace, runs: set[Run]) -> dict[str, str]:
    """Services the runs need that do not answer: name -> why."""
    needs = {run.broker for run in runs} | {"redis" for run in runs if run.system == "celery"}
    if args.results_db == "postgres" and any(r.system == "djq" and r.broker in ("redis", "amqp") for r in runs):
        needs.add("postgres")
    found: dict[str, str] = {}
    if any(run.system == "celery" for run in runs):
        missing = [name for name in ("celery", "redis") if importlib.util.find_spec(name) is None]
        if missing:
            found["celery"] = f"{', '.join(missing)} not installed (pip install -e '.[bench]')"
    checks = {"redis": lambda: redis_reachable(args.redis_url), "amqp": lambda: broker_reachable(args.amqp_url),
              "postgres": lambda: PostgresAdmin(args.postgres_url or DEFAULT_POSTGRES_URL).reachable()}
    for name in sorted(needs & set(checks)):
        why = checks[name]()
        if why:
            found[name] = why
    return found


def _blocked(run: Run, why_not: dict[str, str], args: argparse.Namespace) -> str | None:
    needs = [run.broker] if run.broker != "sqlite" else []
    if run.system == "celery":
        needs += ["celery", "redis"]
    elif run.broker in ("redis", "amqp") and args.results_db == "postgres":
        needs.append("postgres")
    return next((why_not[n] for n in needs if n in why_not), None)


@contextmanager
def _database(run: Run, workdir: Path, postgres_db: str | None) -> Iterator[str]:
    """The database URL a djq run uses: the bench run's PostgreSQL one, or a fresh SQLite file."""
    if run.broker == "sqlite" or postgres_db is None:
        with fresh_database("sqlite", workdir, "") as url:
            yield url
    else:
        yield postgres_db


def _one(run: Run, args: argparse.Namespace, workdir: Path, postgres_db: str | None) -> dict[str, Any]:
    extra = ["--pool", run.pool, "--results" if run.results else "--no-results",
             "--latency-samples", str(args.latency_samples)]
    limit = 2 * args.timeout + 180  # the child's own waits are bounded; this bounds the child
    if run.system == "celery":
        broker = args.redis_url if run.broker == "redis" else args.amqp_url
        env = {**os.environ, "DJQ_BENCH_REDIS_URL": args.redis_url, "DJQ_BENCH_CELERY_BROKER": broker,
               "DJQ_BENCH_CELERY_BACKEND": args.redis_url if run.results else "",
               "DJQ_BENCH_CELERY_TRACK_STARTED": "1" if args.celery_track_started else "0"}
        return run_child("bench.celery_scenario", env, workdir, args, extra, concurrency=run.concurrency,
                         timeout=limit)
    broker = {"redis": args.redis_url, "amqp": args.amqp_url}.get(run.broker, "djq://")
    with _database(run, workdir, postgres_db) as db_url:
        return run_child("bench.versus_djq", djq_env(db_url, args, broker), workdir, args, extra,
                         concurrency=run.concurrency, timeout=limit)


def run_versus(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Every selected leg, ``--repeat`` times: {"legs", "runs": key -> [figures or why, per repeat], ...}."""
    legs: list[Leg] = select(args.legs)
    repeats = max(1, args.repeat)
    every = {run for leg in legs for run in (leg.djq, leg.celery)}
    why_not = _why_not(args, every)
    for name, why in why_not.items():
        print(f"-- versus: {name} unavailable: {why}", flush=True)
    runs: dict[str, list[dict[str, Any] | str]] = {run.key: [] for run in every}
    loads: list[tuple[float, ...]] = []
    needs_pg = any(_blocked(r, why_not, args) is None and r.system == "djq" and
                   (r.broker == "postgres" or (r.broker in ("redis", "amqp") and args.results_db == "postgres"))
                   for r in every)
    with ExitStack() as stack:
        postgres_db = None
        if needs_pg:
            postgres_db = stack.enter_context(
                fresh_database("postgres", logs, args.postgres_url or DEFAULT_POSTGRES_URL))
        for repeat in range(repeats):
            loads.append(os.getloadavg())
            print(f"-- versus, repeat {repeat + 1} of {repeats} (load average {loads[-1][0]:.2f}) ...", flush=True)
            for run in plan(legs, repeat):
                runs[run.key].append(_run_or_why(run, args, logs, repeat, why_not, postgres_db))
        loads.append(os.getloadavg())
    return {"legs": [leg.name for leg in legs], "runs": runs, "load_averages": loads, "tasks": args.tasks,
            "repeats": repeats, "results_db": args.results_db, "celery_track_started": args.celery_track_started,
            "postgres": safe_url(postgres_db) if postgres_db else None}


def _run_or_why(run: Run, args: argparse.Namespace, logs: Path, repeat: int, why_not: dict[str, str],
                postgres_db: str | None) -> dict[str, Any] | str:
    blocked = _blocked(run, why_not, args)
    if blocked:
        return f"skipped: {blocked}"
    workdir = logs / f"versus-{run.key}-{repeat + 1}"
    workdir.mkdir()
    started = time.monotonic()
    try:
        figures = _one(run, args, workdir, postgres_db)
    except RuntimeError as exc:
        why = str(exc).strip()
        print(f"--   {run.key}: failed: {why.splitlines()[0]}", flush=True)
        return f"failed: {why}"
    drain = figures.get("drain", {}).get("tasks_per_s")
    print(f"--   {run.key}: drain {drain or 0:,.0f}/s ({time.monotonic() - started:.0f} s)", flush=True)
    figures["load_average_after"] = os.getloadavg()[0]
    return figures
