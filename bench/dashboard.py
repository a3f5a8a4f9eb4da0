"""The admin dashboard on a big results table: ``python bench/dashboard.py [--rows N] [--postgres-url URL]``.

Fills ``djq_taskresult`` with N rows (default 1,000,000) in one SQL statement: a busy
last hour (``--hour-rows``, default 60,000: 1,000 tasks a minute, 5% failures) and the
rest spread over the 30 days before it. Then it times ``djq.dashboard.collect()`` (the
page's figures: per-minute counts, runtime p50/p95, workers, queue depths) and prints
the query count and the median/max time of ``--repeat`` runs. It never asserts times.
The databases it makes are its own (a temporary SQLite file; a ``djq_bench_dash``
database on PostgreSQL) and are removed at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
INSERT INTO djq_taskresult (task_id, task_name, state, args_repr, kwargs_repr, worker, queue, retries,
                            date_created, date_started, date_done, runtime)
SELECT 'bench-' || i, 'app.task' || (i % 20), CASE WHEN i % 20 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
       '(' || i || ',)', '{{}}', 'djq@bench', 'default', 0,
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || t || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || t || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || t || ' seconds'),
       (i % 97) / 100.0
FROM (SELECT i, CASE WHEN i <= {hour} THEN (i * 3590.0 / {hour})
                     ELSE 3600 + (i - {hour}) * (30 * 86400.0 / ({rows} - {hour} + 1)) END AS t FROM n)
"""

POSTGRES_FILL = """
INSERT INTO djq_taskresult (task_id, task_name, state, args_repr, kwargs_repr, worker, queue, retries,
                            date_created, date_started, date_done, runtime)
SELECT 'bench-' || i, 'app.task' || (i % 20), CASE WHEN i % 20 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
       '(' || i || ',)', '{{}}', 'djq@bench', 'default', 0, at, at, at, (i % 97) / 100.0
FROM (SELECT i, now() - make_interval(secs => CASE WHEN i <= {hour} THEN i * 3590.0 / {hour}
                 ELSE 3600 + (i - {hour}) * (30 * 86400.0 / ({rows} - {hour} + 1)) END) AS at
      FROM generate_series(1, {rows}) AS i) AS rows
"""


def configure(database: dict) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "djq"],
        DATABASES={"default": database}, USE_TZ=True, TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField", DJQ_BROKER_URL="djq://",
    )
    django.setup()


def run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection

    from djq.dashboard import collect

    call_command("migrate", verbosity=0)
    fill = SQLITE_FILL if connection.vendor == "sqlite" else POSTGRES_FILL
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(fill.format(rows=args.rows, hour=args.hour_rows))
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE djq_taskresult")
        else:
            cursor.execute("ANALYZE")
    print(f"  filled {args.rows:,} rows ({args.hour_rows:,} in the last hour) in {time.perf_counter() - started:.1f}s")
    times, board = [], None
    for _ in range(args.repeat):
        board = collect()
        times.append(board.milliseconds)
    assert board is not None
    print(f"  dashboard: {board.queries} queries; median {statistics.median(times):.1f} ms, "
          f"max {max(times):.1f} ms over {args.repeat} runs "
          f"(first {times[0]:.1f} ms); last hour: {board.succeeded:,} succeeded, {board.failed:,} failed, "
          f"{len(board.runtimes)} task names{' (runtimes sampled)' if board.sampled else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hour-rows", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--postgres-url", default=os.environ.get("DJQ_BENCH_POSTGRES_URL"),
                        help="benchmark PostgreSQL instead of SQLite (an admin URL)")
    args = parser.parse_args()
    import environ

    if args.postgres_url:
        import psycopg

        admin = environ.Env.db_url_config(args.postgres_url)
        dsn = f"host={admin['HOST']} port={admin['PORT']} user={admin['USER']} password={admin['PASSWORD']} dbname={admin['NAME']}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS djq_bench_dash")
            conn.execute("CREATE DATABASE djq_bench_dash")
        try:
            print(f"PostgreSQL ({admin['HOST']}:{admin['PORT']})")
            configure({**admin, "NAME": "djq_bench_dash"})
            run(args)
        finally:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS djq_bench_dash")
        return
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite")
        configure({"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(tmp, "dash.sqlite3")})
        run(args)


if __name__ == "__main__":
    main()
