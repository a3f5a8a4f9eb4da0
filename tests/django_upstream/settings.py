"""Settings for Django's ``tests/tasks/`` run on djq (run.py), and for the one worker it starts.

The extracted upstream package is importable as ``tasks`` (run.py puts its folder on
``sys.path``), so its task functions have the module paths Django's tests expect
(``tasks.tasks.noop_task``) and the worker imports them from an installed app.
"""
from __future__ import annotations

import os

import django

SECRET_KEY = "djq-upstream-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "djq", "tasks"]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ["DJQ_UPSTREAM_DB"],
    "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE", "timeout": 20},
}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TASKS = {"default": {"BACKEND": "djq.contrib.tasks.DjqTaskBackend", "QUEUES": []}}
DJQ_BROKER_URL = "djq://"
DJQ_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.01}
LOGGING_CONFIG = None
