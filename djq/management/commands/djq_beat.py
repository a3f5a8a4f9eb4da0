"""``manage.py djq_beat``: send periodic tasks. Run as many as you like; each run goes out once."""
from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djq.beat.service import Beat
from djq.exceptions import DjqError
from djq.management.commands.djq_worker import LEVELS, configure_logging, positive_float
from djq.worker import dbhygiene


class Command(BaseCommand):
    help = "Run beat: send periodic tasks from the database when they are due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-l", "--loglevel", default="INFO", type=str.upper, choices=LEVELS)
        parser.add_argument("--max-tick", "--max-interval", dest="max_tick", type=positive_float,
                            help="longest sleep between looks at the schedule, in seconds (default DJQ_BEAT_MAX_TICK)")
        parser.add_argument("-n", "--name", help="this beat's name in the run log (default beat@HOST:PID)")

    def handle(self, *args: Any, **opts: Any) -> None:
        configure_logging(opts["loglevel"])
        dbhygiene.keep_connections_for(60.0)
        try:
            beat = Beat(max_tick=opts["max_tick"], name=opts["name"])
            beat.setup()
            self.stdout.write(beat.banner() + "\n")
            self.stdout.flush()
        except DjqError as exc:
            raise CommandError(str(exc)) from exc
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: beat.stop())
        beat.run()
