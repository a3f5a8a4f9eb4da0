"""tests.settings plus an app whose receivers log every djq.signals signal (test_signals.py)."""
from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.interop_control.signal_app"]  # noqa: F405
