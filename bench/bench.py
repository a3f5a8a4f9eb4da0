"""djq's benchmark: ``make bench`` (or ``python bench/bench.py`` from the repository root).

Per scenario (the embedded ``djq://`` broker on SQLite, and on PostgreSQL) it measures:
enqueue rate, drain rate of a real ``djq_worker -P threads -c 4``, idle round-trip
latency, 10 ms tasks kept busy on the pool, and the worker's peak RSS. With ``--celery``
and a reachable Redis, Celery 5 drains the same no-op tasks for comparison.

Families (see bench/families.py): --pools (each pool on the workload it suits: 10 ms
sleeps, ~50 ms CPU loops), --brokers (the scenario above on djq:// on SQLite and
PostgreSQL, redis:// and amqp://, with -P threads and -P prefork), --beat (one
djq_beat on 10,000 periodic tasks in PostgreSQL: tick cost and memory), --beat-three
(three djq_beat on 100,000 tasks for --beat-three-seconds, 180, one SIGKILLed: missed slots
and duplicates; bench/beat_three.py), --versus
(djq against Celery on the same broker, pool and concurrency, interleaved and repeated:
djq / Celery per leg; bench/versus.py), --asyncio (the asyncio pool against gevent and
threads on djq:// PostgreSQL and Redis; bench/asyncio_family.py), --signals (what
djq.signals cost with no receiver; bench/signals_cost.py) and --soak (one worker's memory
over 100,000 tasks; bench/soak.py). --pools, --brokers, --beat-three, --versus, --asyncio,
--signals and --soak run only when asked for; --beat also runs by default.

It prints figures and ratios; it never asserts times. Each scenario runs in a child
process of its own (Django settings are per process); this process owns the databases
and removes them, and any worker left behind, on error or Ctrl-C.

Options: --sqlite/--postgres/--beat (default, when no other family is named: all
three; PostgreSQL and beat are skipped with a note if no server answers), --postgres-url
or DJQ_BENCH_POSTGRES_URL (an admin URL; default postgres://djq:djq@127.0.0.1:5439/djq),
--celery, --redis-url or DJQ_BENCH_REDIS_URL, --amqp-url or DJQ_BENCH_AMQP_URL, --pools,
--brokers, --versus, --legs, --results-db, --celery-track-started, --broker-results,
--pool-sleep-tasks, --pool-cpu-tasks, --beat-tasks, --beat-three-seconds,
--beat-idle-seconds, --tasks, --repeat, --latency-samples, --sleep-tasks, --concurrency,
--polling-interval, --json PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Runner = Callable[[argparse.Namespace, Path], "dict[str, Any] | str"]

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a script: import ``bench`` the package, not this file
    sys.path[0] = str(ROOT)

from bench.child import djq_env, fresh_database, run_child
from bench.environment import (
    DEFAULT_AMQP_URL,
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    PostgresAdmin,
    load_average,
    machine,
    redis_reachable,
    safe_url,
)
from bench.asyncio_family import add_arguments as add_asyncio_arguments
from bench.asyncio_family import print_asyncio, run_asyncio
from bench.families import run_beat, run_beat_three, run_brokers, run_pools
from bench.soak import add_arguments as add_soak_arguments
from bench.soak import print_soak, run_soak
from bench.soak import legs as soak_legs
from bench.versus import add_arguments as add_versus_arguments
from bench.versus import run_versus
from bench.versus_legs import select as select_legs
from bench.versus_report import failures, print_versus
from bench.report import (
    print_beat,
    print_beat_three,
    print_brokers,
    print_comparisons,
    print_figure_lines,
    print_pools,
    print_scenario,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark djq (figures, never assertions).")
    parser.add_argument("--sqlite", action="store_true", help="run the SQLite scenario")
    parser.add_argument("--postgres", action="store_true", help="run the PostgreSQL scenario")
    parser.add_argument("--celery", action="store_true", help="also run Celery on Redis, for comparison")
    parser.add_argument("--pools", action="store_true", help="each pool on I/O-bound and CPU-bound tasks")
    parser.add_argument("--brokers", action="store_true", help="djq://, redis:// and amqp:// side by side")
    parser.add_argument("--beat", action="store_true", help="one djq_beat on many periodic tasks in PostgreSQL")
    parser.add_argument("--beat-three", action="store_true",
                        help="three djq_beat, one killed with SIGKILL, on 100,000 periodic tasks: exactly once?")
    parser.add_argument("--beat-three-seconds", type=float, default=180.0, help="--beat-three: how long the beats run")
    parser.add_argument("--signals", action="store_true", help="what djq.signals cost with no receiver")
    parser.add_argument("--postgres-url", default=os.environ.get("DJQ_BENCH_POSTGRES_URL"),
                        help=f"admin URL; a database djq_bench_<pid> is made through it (default {DEFAULT_POSTGRES_URL})")
    parser.add_argument("--redis-url", default=os.environ.get("DJQ_BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help="for --celery and --brokers; --brokers empties the queue 'bench' and 'unacked' there")
    parser.add_argument("--amqp-url", default=os.environ.get("DJQ_BENCH_AMQP_URL", DEFAULT_AMQP_URL),
                        help="for --brokers; the queue 'bench' there is purged before each drain")
    parser.add_argument("--broker-results", type=lambda v: [x for x in v.split(",") if x], default=["sqlite"],
                        help="databases holding results for redis:// and amqp:// (sqlite,postgres; default sqlite)")
    parser.add_argument("--pool-sleep-tasks", type=int, default=1000, help="--pools: 10 ms tasks per pool")
    parser.add_argument("--pool-cpu-tasks", type=int, default=200, help="--pools: ~50 ms CPU tasks per pool")
    parser.add_argument("--beat-tasks", type=int, default=10_000, help="--beat: enabled periodic tasks")
    parser.add_argument("--beat-idle-seconds", type=float, default=20.0, help="--beat: how long to watch idle ticks")
    parser.add_argument("--tasks", type=int, default=5000, help="no-op tasks to enqueue and drain")
    parser.add_argument("--repeat", type=int, default=3, help="enqueue+drain runs per scenario; the median is shown")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--sleep-tasks", type=int, default=1000, help="10 ms tasks to drain (0 = skip)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--polling-interval", type=float, help="override the broker's polling_interval (s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="most seconds one drain may take")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH")
    parser.add_argument("--keep-logs", action="store_true", help="keep worker logs (path printed)")
    add_versus_arguments(parser)
    add_asyncio_arguments(parser)
    add_soak_arguments(parser)
    args = parser.parse_args(argv)
    if not (args.sqlite or args.postgres or args.pools or args.brokers or args.beat or args.beat_three
            or args.versus or args.asyncio or args.signals or args.soak):
        args.sqlite = args.postgres = args.beat = True
    try:
        select_legs(args.legs)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        soak_legs(args.soak_legs)
    except ValueError as exc:
        parser.error(str(exc))
    if not set(args.broker_results) <= {"sqlite", "postgres"}:
        parser.error("--broker-results takes sqlite, postgres or both")
    return args


def djq_scenario(name: str, db_url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    extra = ["--latency-samples", str(args.latency_samples), "--sleep-tasks", str(args.sleep_tasks),
             "--repeat", str(args.repeat)]
    print(f"-- running {name} ...", flush=True)
    return run_child("bench.djq_scenario", djq_env(db_url, args), workdir, args, extra)


def run_sqlite(args: argparse.Namespace, workdir: Path) -> dict[str, Any] | str:
    with fresh_database("sqlite", workdir, "") as db_url:
        return djq_scenario("djq on SQLite", db_url, args, workdir)


def run_postgres(args: argparse.Namespace, workdir: Path) -> dict[str, Any] | str:
    admin = PostgresAdmin(args.postgres_url or DEFAULT_POSTGRES_URL)
    why_not = admin.reachable()
    if why_not:
        return f"PostgreSQL scenario skipped: {why_not} (give --postgres-url or DJQ_BENCH_POSTGRES_URL)"
    server = admin.server_settings()
    with fresh_database("postgres", workdir, admin.url) as db_url:
        figures = djq_scenario(f"djq on PostgreSQL ({safe_url(db_url)})", db_url, args, workdir)
    figures["server"] = server
    return figures


def run_celery(args: argparse.Namespace, workdir: Path) -> dict[str, Any] | str:
    why_not = redis_reachable(args.redis_url)
    if why_not:
        installed = "" if shutil.which("redis-server") else "; redis-server is not installed"
        return f"Celery comparison skipped: {why_not}{installed}"
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        return f"Celery comparison skipped: {exc} (pip install celery redis)"
    env = {**os.environ, "DJQ_BENCH_REDIS_URL": args.redis_url}
    print(f"-- running Celery on Redis ({safe_url(args.redis_url)}) ...", flush=True)
    return run_child("bench.celery_scenario", env, workdir, args, [])


def run_scenarios(args: argparse.Namespace, logs: Path, notes: list[str], failed: list[str]) -> dict[str, Any]:
    """The single scenarios asked for (--sqlite, --postgres, --celery), each printed as it ends."""
    scenarios: dict[str, Any] = {}
    plan: list[tuple[str, Runner]] = [("sqlite", run_sqlite)] if args.sqlite else []
    plan += [("postgres", run_postgres)] if args.postgres else []
    plan += [("celery_redis", run_celery)] if args.celery else []
    for key, runner in plan:
        workdir = logs / key
        workdir.mkdir()
        result: dict[str, Any] | str
        try:
            result = runner(args, workdir)
        except RuntimeError as exc:
            failed.append(key)
            result = f"{key} failed: {exc}"
        if isinstance(result, str):
            notes.append(result)
            print(f"-- {result}", flush=True)
            continue
        scenarios[key] = result
        print_scenario(key, result)
    return scenarios


def run_signals(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """--signals: bench/signals_cost.py in a process of its own (its own Django settings)."""
    out = logs / "signals.json"
    subprocess.run([sys.executable, "-m", "bench.signals_cost", "--json", str(out)], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=args.timeout)
    return {"no_receivers": json.loads(out.read_text())}


def run_families(args: argparse.Namespace, logs: Path, notes: list[str], failed: list[str]) -> dict[str, Any]:
    """--pools, --brokers and --beat: every entry's figures, or the note that says why it has none."""
    families: dict[str, Any] = {}
    for name, asked, runner, show in (("pools", args.pools, run_pools, print_pools),
                                      ("brokers", args.brokers, run_brokers, print_brokers),
                                      ("beat", args.beat, run_beat, print_beat),
                                      ("beat_three", args.beat_three, run_beat_three, print_beat_three),
                                      ("signals", args.signals, run_signals, lambda results: None)):
        if not asked:
            continue
        results = runner(args, logs)
        families[name] = results
        show(results)
        for key, value in results.items():
            if isinstance(value, str):
                notes.append(value)
                if " failed: " in value:
                    failed.append(f"{name}.{key}")
    return families


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM to the bench is treated like Ctrl-C, so the same clean-up runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    info = machine()
    print(f"djq benchmark: {info['cpus']} x {info['cpu_model']}, {info['ram_gib']} GiB RAM, "
          f"Python {info['python']}, Django {info['versions']['Django']}, kombu {info['versions']['kombu']}, "
          f"djq {info['versions']['djq']} at {info['djq_commit'] or '?'}")
    if args.sqlite or args.postgres or args.celery:
        print(f"{args.tasks:,} no-op tasks per drain; worker: djq_worker -P threads -c {args.concurrency}", flush=True)
    load_before = load_average()
    if load_before is not None and load_before > 0.5 * (info["cpus"] or 1):
        print(f"warning: load average {load_before:.2f} before the start: other work will lower every figure")
    print(flush=True)
    notes: list[str] = []
    failed: list[str] = []
    logs = Path(tempfile.mkdtemp(prefix="djq-bench-"))
    started = time.time()
    try:
        scenarios = run_scenarios(args, logs, notes, failed)
        families = run_families(args, logs, notes, failed)
        if args.asyncio:
            families["asyncio"] = run_asyncio(args, logs)
            print_asyncio(families["asyncio"])
            notes += families["asyncio"].get("notes", [])
        if args.soak:
            families["soak"] = run_soak(args, logs)
            print_soak(families["soak"])
            notes += families["soak"].get("notes", [])
            failed += [note for note in families["soak"].get("notes", []) if " failed: " in note]
        if args.versus:
            families["versus"] = run_versus(args, logs)
            families["versus"]["table"] = print_versus(families["versus"], info)
            found = failures(families["versus"])
            notes += found
            failed += [note for note in found if ": failed: " in note]
    except KeyboardInterrupt:
        print("\ninterrupted: workers stopped, databases dropped", file=sys.stderr)
        return 130
    finally:
        if args.keep_logs:
            print(f"worker logs kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)
    info["load_average"] = {"before": load_before, "after": load_average()}
    print_figure_lines(scenarios)
    print_comparisons(scenarios)
    for note in notes:
        print(f"note: {note}")
    if args.json:
        options = {**vars(args), "postgres_url": safe_url(args.postgres_url or DEFAULT_POSTGRES_URL),
                   "redis_url": safe_url(args.redis_url), "amqp_url": safe_url(args.amqp_url)}
        payload = {"machine": info, "args": options, "started": started, "scenarios": scenarios,
                   **families, "notes": notes}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
        print(f"figures written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
