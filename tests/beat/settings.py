"""Test settings for beat subprocesses: tests.settings plus a DJQ_BEAT_SCHEDULE given as JSON
in DJQ_TEST_BEAT_SCHEDULE, so a test can start djq_beat with schedules declared in code."""
from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403

if os.environ.get("DJQ_TEST_BEAT_SCHEDULE"):
    DJQ_BEAT_SCHEDULE = json.loads(os.environ["DJQ_TEST_BEAT_SCHEDULE"])
if os.environ.get("DJQ_TEST_BEAT_MAX_TICK"):
    DJQ_BEAT_MAX_TICK = float(os.environ["DJQ_TEST_BEAT_MAX_TICK"])
