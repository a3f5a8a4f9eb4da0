"""The scenario families ``bench.py --pools``, ``--brokers`` and ``--beat`` run.

--pools: each pool drains the workload it is meant for, on ``djq://`` on SQLite (a fresh
file per run): 1,000 ``time.sleep(0.01)`` tasks on gevent -c 500, eventlet -c 500,
threads -c 50 and prefork -c 2; 200 ~50 ms CPU-bound tasks on prefork -c 2 and solo.
``--repeat`` rounds run every pool in turn, and the median run of each is shown.

--brokers: the default scenario (5,000 no-op drain, idle latency, 1,000 10 ms tasks) on
every broker: ``djq://`` on SQLite and on PostgreSQL, ``redis://`` and ``amqp://`` with
results in each database of ``--broker-results``, each with -P threads -c 4 and
-P prefork -c 2. A broker or database that does not answer is skipped with a note.

--beat: one ``djq_beat`` on 10,000 enabled periodic tasks in a fresh PostgreSQL database
(bench/beat_scenario.py): the cost of a tick with nothing due and with many due, and the
beat's memory. Skipped with a note when no PostgreSQL server answers.

Each entry returns a dict of figures, or a string: the note saying why it has none.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from .brokers import broker_reachable
from .child import djq_env, fresh_database, run_child
from .environment import DEFAULT_POSTGRES_URL, PostgresAdmin, redis_reachable, safe_url

#: (workload, pool, concurrency) in the order they run
POOL_RUNS = (
    ("sleep", "gevent", 500),
    ("sleep", "eventlet", 500),
    ("sleep", "threads", 50),
    ("sleep", "prefork", 2),
    ("cpu", "prefork", 2),
    ("cpu", "solo", 1),
)
#: (pool, concurrency) each broker is measured with; threads takes --concurrency
BROKER_POOLS = (("threads", None), ("prefork", 2))


def postgres_url(args: argparse.Namespace) -> str:
    return str(args.postgres_url or DEFAULT_POSTGRES_URL)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One pool's runs: the run with the median drain rate stands for it; all are kept."""
    median = sorted(runs, key=lambda r: r["drain"]["tasks_per_s"] or 0.0)[len(runs) // 2]
    return {**median, "runs": runs, "peak_rss_kb": max(r["memory_kb"].get("VmHWM", 0) for r in runs),
            "drain_rates": [r["drain"]["tasks_per_s"] for r in runs]}


def run_pools(args: argparse.Namespace, logs: Path) -> dict[str, dict[str, Any] | str]:
    """``--repeat`` rounds; each round runs every pool once, so they share the machine's moods."""
    runs: dict[str, list[dict[str, Any]]] = {}
    notes: dict[str, str] = {}
    for round_ in range(max(1, args.repeat)):
        for workload, pool, concurrency in POOL_RUNS:
            key = f"{workload}.{pool}"
            if key in notes:
                continue
            if pool in ("gevent", "eventlet") and importlib.util.find_spec(pool) is None:
                notes[key] = f"{pool} pool skipped: {pool} is not installed (pip install djq[{pool}])"
                continue
            tasks = args.pool_cpu_tasks if workload == "cpu" else args.pool_sleep_tasks
            workdir = logs / f"pools-{workload}-{pool}-{round_ + 1}"
            workdir.mkdir()
            print(f"-- pools, round {round_ + 1}: {tasks:,} {workload} tasks on -P {pool} -c {concurrency} ...",
                  flush=True)
            try:
                with fresh_database("sqlite", workdir, postgres_url(args)) as db_url:
                    runs.setdefault(key, []).append(run_child(
                        "bench.pool_scenario", djq_env(db_url, args), workdir, args,
                        ["--pool", pool, "--workload", workload], tasks=tasks, concurrency=concurrency))
            except RuntimeError as exc:
                notes[key] = f"{key} failed: {exc}"
                print(f"-- {notes[key]}", flush=True)
    results: dict[str, dict[str, Any] | str] = {key: summarise(found) for key, found in runs.items()
                                                 if key not in notes}
    results.update(notes)
    return results


def _brokers(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(key, database kind, broker URL) for every broker and results database asked for."""
    out = [("djq_sqlite", "sqlite", "djq://"), ("djq_postgres", "postgres", "djq://")]
    for scheme, url in (("redis", args.redis_url), ("amqp", args.amqp_url)):
        out += [(f"{scheme}_{db}", db, url) for db in args.broker_results]
    return out


def _unreachable(kind: str, broker_url: str, args: argparse.Namespace) -> str | None:
    if kind == "postgres":
        why_not = PostgresAdmin(postgres_url(args)).reachable()
        if why_not:
            return why_not
    if broker_url.startswith("redis"):
        return redis_reachable(broker_url)
    if not broker_url.startswith("djq:"):
        return broker_reachable(broker_url)
    return None


def run_brokers(args: argparse.Namespace, logs: Path) -> dict[str, dict[str, Any] | str]:
    results: dict[str, dict[str, Any] | str] = {}
    for name, kind, broker_url in _brokers(args):
        why_not = _unreachable(kind, broker_url, args)
        for pool, concurrency in BROKER_POOLS:
            key = f"{name}.{pool}"
            if why_not:
                results[key] = f"{key} skipped: {why_not}"
                continue
            workdir = logs / f"brokers-{name}-{pool}"
            workdir.mkdir()
            extra = ["--latency-samples", str(args.latency_samples), "--sleep-tasks", str(args.sleep_tasks),
                     "--repeat", str(args.repeat), "--pool", pool]
            label = broker_url if broker_url.startswith("djq:") else safe_url(broker_url)
            print(f"-- brokers: {label}, results on {kind}, -P {pool} ...", flush=True)
            try:
                with fresh_database(kind, workdir, postgres_url(args)) as db_url:
                    figures = run_child("bench.djq_scenario", djq_env(db_url, args, broker_url), workdir, args,
                                        extra, concurrency=concurrency)
            except RuntimeError as exc:
                results[key] = f"{key} failed: {exc}"
                print(f"-- {results[key]}", flush=True)
                continue
            figures["results_db"] = kind
            results[key] = figures
        if why_not:
            print(f"-- {name} skipped: {why_not}", flush=True)
    return results


def run_beat(args: argparse.Namespace, logs: Path) -> dict[str, dict[str, Any] | str]:
    admin = PostgresAdmin(postgres_url(args))
    why_not = admin.reachable()
    if why_not:
        print(f"-- beat skipped: {why_not}", flush=True)
        return {"postgres": f"beat skipped: {why_not}"}
    workdir = logs / "beat-postgres"
    workdir.mkdir()
    print(f"-- beat: one djq_beat on {args.beat_tasks:,} periodic tasks in PostgreSQL ...", flush=True)
    try:
        with fresh_database("postgres", workdir, admin.url) as db_url:
            figures = run_child("bench.beat_scenario", djq_env(db_url, args), workdir, args,
                                ["--idle-seconds", str(args.beat_idle_seconds)], tasks=args.beat_tasks,
                                marker="djq_beat")
    except RuntimeError as exc:
        print(f"-- beat failed: {exc}", flush=True)
        return {"postgres": f"beat failed: {exc}"}
    figures["server"] = admin.server_settings()
    return {"postgres": figures}


def run_beat_three(args: argparse.Namespace, logs: Path) -> dict[str, dict[str, Any] | str]:
    """Three beats, one SIGKILLed, on ``--beat-tasks`` (at least 100,000) periodic tasks (bench/beat_three.py)."""
    admin = PostgresAdmin(postgres_url(args))
    why_not = admin.reachable()
    if why_not:
        print(f"-- three beats skipped: {why_not}", flush=True)
        return {"postgres": f"three beats skipped: {why_not}"}
    workdir = logs / "beat-three"
    workdir.mkdir()
    tasks = max(args.beat_tasks, 100_000)
    print(f"-- three beats, one killed, on {tasks:,} periodic tasks for {args.beat_three_seconds:g} s ...", flush=True)
    try:
        with fresh_database("postgres", workdir, admin.url) as db_url:
            figures = run_child("bench.beat_three", djq_env(db_url, args), workdir, args,
                                ["--seconds", str(args.beat_three_seconds)], tasks=tasks, marker="djq_beat",
                                timeout=args.beat_three_seconds + 900)
    except RuntimeError as exc:
        print(f"-- three beats failed: {exc}", flush=True)
        return {"postgres": f"three beats failed: {exc}"}
    return {"postgres": figures}
