"""Settings for the benchmark process and the worker subprocesses it starts.

The database comes from ``DJQ_BENCH_DB`` (a URL, e.g. ``sqlite:////tmp/x.sqlite3`` or
``postgres://user:pw@host:port/name``), so the bench process and its worker share it.
The broker is ``DJQ_BENCH_BROKER_URL`` (default ``djq://``, the embedded broker on that
database; ``redis://`` or ``amqp://`` keep results in the database all the same).
Everything else is djq's defaults, which is what the benchmark measures.
"""
from __future__ import annotations

import os

import environ

SECRET_KEY = "djq-bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["djq", "bench.benchapp"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# As in tests/settings.py and the djq.W001 check: SQLite needs WAL for a worker and a
# producer to share it.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}

_db = environ.Env().db_url_config(os.environ.get("DJQ_BENCH_DB", "sqlite:////tmp/djq-bench.sqlite3"))
if _db["ENGINE"].endswith("sqlite3"):
    _db["OPTIONS"] = dict(SQLITE_OPTIONS)
DATABASES = {"default": _db}

DJQ_BROKER_URL = os.environ.get("DJQ_BENCH_BROKER_URL", "djq://")
DJQ_RESULT_BACKEND = "database"
DJQ_DEFAULT_QUEUE = "bench"

# Defaults unless asked otherwise (bench.py --polling-interval), to show their effect.
if os.environ.get("DJQ_BENCH_POLLING_INTERVAL"):
    DJQ_BROKER_TRANSPORT_OPTIONS = {"polling_interval": float(os.environ["DJQ_BENCH_POLLING_INTERVAL"])}
# DJQ_BENCH_STORE_PENDING=0: no PENDING row at send (djq/pending.py), to measure what it costs
DJQ_TASK_STORE_PENDING = os.environ.get("DJQ_BENCH_STORE_PENDING", "1") == "1"
# DJQ_BENCH_EVENTS=1: workers publish events (-E), to measure what events cost
DJQ_WORKER_SEND_TASK_EVENTS = os.environ.get("DJQ_BENCH_EVENTS") == "1"
