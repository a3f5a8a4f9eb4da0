"""tests.settings plus an app whose receivers log every djq.signals signal (test_signals.py),
and Celery's mailbox turned off (the test checks that Celery gets no answer)."""
from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.interop_control.signal_app"]  # noqa: F405

DJQ_CELERY_MAILBOX = False
