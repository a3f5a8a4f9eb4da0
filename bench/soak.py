"""``bench.py --soak``: is a worker's memory flat over 100,000 tasks?

Each leg (``--soak-legs``, BROKER-POOL with BROKER ``postgres`` for djq:// on PostgreSQL
or ``redis``/``amqp`` with results in PostgreSQL) runs bench/soak_scenario.py on a fresh
database: one worker fed ``--soak-tasks`` no-op tasks in chunks of ``--soak-chunk``,
its memory read after each chunk. The figure is each later reading against the one
after the first chunk (the worker warmed up), as a ratio; the target is within ±10 %.
Figures only, never assertions.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .child import djq_env, fresh_database, run_child
from .environment import DEFAULT_POSTGRES_URL, PostgresAdmin, redis_reachable, safe_url
from .versus_legs import POOLS

DEFAULT_LEGS = "postgres-threads,redis-threads,redis-prefork"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak", action="store_true", help="worker memory over 100,000 tasks (see --soak-legs)")
    parser.add_argument("--soak-legs", default=DEFAULT_LEGS,
                        help=f"--soak: BROKER-POOL legs, BROKER postgres (djq://), redis or amqp (default {DEFAULT_LEGS})")
    parser.add_argument("--soak-tasks", type=int, default=100_000, help="--soak: tasks per leg")
    parser.add_argument("--soak-chunk", type=int, default=10_000, help="--soak: tasks sent at a time, memory read after each")


def legs(text: str) -> list[tuple[str, str]]:
    legs = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        broker, _, pool = name.partition("-")
        if broker not in ("postgres", "redis", "amqp") or pool not in POOLS:
            raise ValueError(f"--soak-legs: {name!r} is not BROKER-POOL (postgres, redis or amqp; "
                             f"{', '.join(POOLS)})")
        legs.append((broker, pool))
    return legs


def run_soak(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    admin = PostgresAdmin(args.postgres_url or DEFAULT_POSTGRES_URL)
    why_not = admin.reachable()
    if why_not:
        return {"note": f"soak skipped: {why_not}"}
    urls = {"postgres": "djq://", "redis": args.redis_url, "amqp": args.amqp_url}
    out: dict[str, Any] = {"legs": {}, "notes": []}
    for broker, pool in legs(args.soak_legs):
        name = f"{broker}-{pool}"
        url = urls[broker]
        if broker == "redis" and redis_reachable(url):
            out["notes"].append(f"soak {name} skipped: {redis_reachable(url)}")
            continue
        workdir = logs / f"soak-{name}"
        workdir.mkdir()
        print(f"-- soak: {name} ({safe_url(url)}), {args.soak_tasks:,} tasks on -P {pool} -c {POOLS[pool]} ...",
              flush=True)
        try:
            with fresh_database("postgres", workdir, admin.url) as db_url:
                out["legs"][name] = run_child("bench.soak_scenario", djq_env(db_url, args, url), workdir, args,
                                              ["--pool", pool, "--chunk", str(args.soak_chunk)],
                                              tasks=args.soak_tasks, concurrency=POOLS[pool])
        except RuntimeError as exc:
            out["notes"].append(f"soak {name} failed: {exc}")
            print(f"-- {out['notes'][-1]}", flush=True)
    return out


def growth(figures: dict[str, Any], key: str = "rss_kb") -> tuple[float, float] | None:
    """(last, largest) reading after the first chunk, each ÷ the first chunk's; None without two."""
    values = [s[key] for s in figures.get("samples", []) if s.get(key)]
    if len(values) < 2:
        return None
    return values[-1] / values[0], max(values[1:]) / values[0]


def print_soak(results: dict[str, Any]) -> None:
    print("\n== soak: worker memory after each chunk of tasks (MiB; ratio to after the first chunk) ==")
    if "note" in results:
        print(f"  {results['note']}")
        return
    for name, figures in results["legs"].items():
        samples = figures.get("samples", [])
        readings = ", ".join(f"{s['done'] // 1000}k {s['rss_kb'] / 1024:.1f}" for s in samples if s.get("rss_kb"))
        ready = (figures.get("ready_kb") or {}).get("VmRSS")
        print(f"  {name}: ready {ready / 1024 if ready else 0:.1f}; {readings}")
        for key, label in (("rss_kb", "RSS"), ("pss_kb", "Pss")):
            found = growth(figures, key)
            if found:
                last, peak = found
                verdict = "within ±10 %" if max(abs(last - 1), abs(peak - 1)) <= 0.10 else "NOT within ±10 %"
                print(f"    {label}: last {last:.3f}x, largest {peak:.3f}x of the first chunk's: {verdict}")
        rates = [s["tasks_per_s"] for s in samples if s.get("tasks_per_s")]
        if rates:
            print(f"    drain per chunk: {min(rates):,.0f}–{max(rates):,.0f}/s")
    for note in results["notes"]:
        print(f"  note: {note}")
    print(flush=True)
