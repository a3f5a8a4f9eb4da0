"""Settings for djq's own tests, and for the worker subprocesses the tests start.

The default database is a SQLite file (pytest-django makes a test copy of it). When
DJQ_TEST_POSTGRES_URL is set, a second alias ``postgres`` exists and the PostgreSQL
legs of the suite run against it. A worker subprocess gets DJQ_TEST_DEFAULT_DB: the URL
of the database the test is using, which becomes that worker's ``default``.
"""
from __future__ import annotations

import os
import tempfile

import django
import environ

env = environ.Env()
TMP = os.environ.get("DJQ_TEST_TMP", os.path.join(tempfile.gettempdir(), "djq-tests"))
os.makedirs(TMP, exist_ok=True)

SECRET_KEY = "djq-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # the browser test's live server serves the admin's CSS
    "djq",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

SQLITE_OPTIONS = {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}


def _db(url: str) -> dict:
    config = env.db_url_config(url)
    if config["ENGINE"].endswith("sqlite3"):
        config["OPTIONS"] = dict(SQLITE_OPTIONS)
    return config


_worker_db = os.environ.get("DJQ_TEST_DEFAULT_DB")
if _worker_db:  # a worker subprocess: the test's database is our default
    DATABASES = {"default": _db(_worker_db)}
else:
    sqlite_path = os.path.join(TMP, f"djq-{os.getpid()}.sqlite3")
    DATABASES = {"default": _db(f"sqlite:///{sqlite_path}")}
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(TMP, f"test-djq-{os.getpid()}.sqlite3")}
    postgres_url = os.environ.get("DJQ_TEST_POSTGRES_URL")
    if postgres_url:
        DATABASES["postgres"] = _db(postgres_url)
        DATABASES["postgres"]["TEST"] = {"NAME": f"test_djq_{os.getpid()}"}

DJQ_BROKER_URL = os.environ.get("DJQ_TEST_BROKER_URL", "djq://")
DJQ_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.01, "visibility_timeout": float(os.environ.get("DJQ_TEST_VISIBILITY_TIMEOUT", "30"))}
if os.environ.get("DJQ_TEST_WORKER_POOL"):
    DJQ_WORKER_POOL = os.environ["DJQ_TEST_WORKER_POOL"]
DJQ_WORKER_AUTOSCALE_KEEPALIVE = float(os.environ.get("DJQ_TEST_AUTOSCALE_KEEPALIVE", "10"))
DJQ_WORKER_HEARTBEAT_INTERVAL = float(os.environ.get("DJQ_TEST_HEARTBEAT_INTERVAL", "0.5"))
DJQ_RESULT_BACKEND = os.environ.get("DJQ_TEST_RESULT_BACKEND", "database")
DJQ_WORKER_ETA_MAX_HELD = int(os.environ.get("DJQ_TEST_ETA_MAX_HELD", "1000"))
DJQ_WORKER_REVOKE_REFRESH = 0.2
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's task framework (django.tasks on 6.x, the django-tasks backport on 5.2) on djq.
# QUEUES = []: any queue (tests start workers with -Q); tests that check QUEUES set it.
TASKS = {"default": {"BACKEND": "djq.contrib.tasks.DjqTaskBackend", "QUEUES": []}}
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")
STATIC_URL = "/static/"
