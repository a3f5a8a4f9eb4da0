"""``bench.py --asyncio``: the asyncio pool against gevent and threads, in the same run.

On ``djq://`` on PostgreSQL and on ``redis://`` (results in PostgreSQL), each round runs:
``--asyncio-tasks`` (5,000) x ``await asyncio.sleep(0.05)`` on ``-P asyncio -c 500``, the
same number of ``time.sleep(0.05)`` on ``-P gevent -c 500``, then no-op tasks: ``async
def`` on ``-P asyncio`` and plain on ``-P threads``, both at ``-c --asyncio-noop-c`` (8).
Every drain is timed from the worker's ready line to the last result (bench/pool_scenario.py),
with the worker's peak RSS. The ratios (asyncio / gevent, asyncio / threads) are taken
per round, from runs back to back, then the median. Figures only, never assertions.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
from pathlib import Path
from typing import Any

from .child import djq_env, fresh_database, run_child
from .environment import DEFAULT_POSTGRES_URL, PostgresAdmin, redis_reachable, safe_url

#: (name, workload, pool, concurrency or None for --asyncio-noop-c)
RUNS = (
    ("asleep50.asyncio", "asleep50", "asyncio", 500),
    ("sleep50.gevent", "sleep50", "gevent", 500),
    ("anoop.asyncio", "anoop", "asyncio", None),
    ("noop.threads", "noop", "threads", None),
)
#: (ratio name, numerator run, denominator run)
RATIOS = (("asyncio / gevent, 50 ms waits", "asleep50.asyncio", "sleep50.gevent"),
          ("asyncio / threads, no-op", "anoop.asyncio", "noop.threads"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--asyncio", action="store_true", help="asyncio pool vs gevent and threads (djq:// PG, Redis)")
    parser.add_argument("--asyncio-tasks", type=int, default=5000, help="--asyncio: tasks per drain")
    parser.add_argument("--asyncio-noop-c", type=int, default=8, help="--asyncio: -c of the no-op runs")
    parser.add_argument("--asyncio-brokers", default="djq,redis", help="--asyncio: djq, redis or both")


def _brokers(args: argparse.Namespace) -> list[tuple[str, str]]:
    wanted = {b.strip() for b in args.asyncio_brokers.split(",") if b.strip()}
    return [(name, url) for name, url in (("djq_postgres", "djq://"), ("redis_postgres", args.redis_url))
            if name.split("_")[0] in wanted]


def run_asyncio(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    admin = PostgresAdmin(args.postgres_url or DEFAULT_POSTGRES_URL)
    why_not = admin.reachable()
    if why_not:
        return {"note": f"asyncio family skipped: {why_not}"}
    out: dict[str, Any] = {"rounds": [], "notes": []}
    for round_ in range(max(1, args.repeat)):
        figures: dict[str, Any] = {}
        for broker, url in _brokers(args):
            if url.startswith("redis") and redis_reachable(url):
                out["notes"].append(f"{broker} skipped: {redis_reachable(url)}")
                continue
            for name, workload, pool, concurrency in RUNS:
                if pool == "gevent" and importlib.util.find_spec("gevent") is None:
                    out["notes"].append("gevent runs skipped: pip install djq[gevent]")
                    continue
                c = concurrency or args.asyncio_noop_c
                workdir = logs / f"asyncio-{round_ + 1}-{broker}-{name}"
                workdir.mkdir()
                print(f"-- asyncio, round {round_ + 1}: {broker} ({safe_url(url)}), {args.asyncio_tasks:,} "
                      f"{workload} on -P {pool} -c {c} ...", flush=True)
                try:
                    with fresh_database("postgres", workdir, admin.url) as db_url:
                        figures[f"{broker}.{name}"] = run_child(
                            "bench.pool_scenario", djq_env(db_url, args, url), workdir, args,
                            ["--pool", pool, "--workload", workload], tasks=args.asyncio_tasks, concurrency=c)
                except RuntimeError as exc:
                    out["notes"].append(f"round {round_ + 1} {broker}.{name} failed: {exc}")
                    print(f"-- {out['notes'][-1]}", flush=True)
        out["rounds"].append(figures)
    return out


def _rate(f: dict[str, Any] | None) -> float | None:
    return (f or {}).get("drain", {}).get("tasks_per_s")


def print_asyncio(results: dict[str, Any]) -> None:
    print("\n== asyncio: drain from worker ready to last result (results in PostgreSQL); each round ==")
    if "note" in results:
        print(f"  {results['note']}")
        return
    rows: dict[str, list[str]] = {}
    ratios: dict[str, list[float]] = {}
    for figures in results["rounds"]:
        for key, f in figures.items():
            rss = (f.get("memory_kb") or {}).get("VmHWM")
            rows.setdefault(key, []).append(f"{_rate(f) or 0:,.0f}/s {rss / 1024 if rss else 0:.0f} MiB")
        brokers = {key.split(".")[0] for key in figures}
        for broker in sorted(brokers):
            for label, top, bottom in RATIOS:
                a, b = _rate(figures.get(f"{broker}.{top}")), _rate(figures.get(f"{broker}.{bottom}"))
                if a and b:
                    ratios.setdefault(f"{broker}: {label}", []).append(a / b)
    for key, cells in rows.items():
        print(f"  {key:<32} " + " | ".join(cells))
    for label, values in ratios.items():
        print(f"  {label}: median {statistics.median(values):.2f}x (each round: "
              + ", ".join(f"{v:.2f}x" for v in values) + ")")
    for note in results["notes"]:
        print(f"  note: {note}")
    print(flush=True)
