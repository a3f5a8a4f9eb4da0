"""``manage.py djq_events``: watch events live, or store them (``--camera``).

Workers publish events when started with ``-E`` (or ``DJQ_WORKER_SEND_TASK_EVENTS``).
"""
from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djq.management.commands.djq_worker import LEVELS, configure_logging
from djq.messaging.events import EventReceiver
from djq.monitor import Camera, LiveView


class Command(BaseCommand):
    help = "Show djq events live (workers, task rates, recent failures), or store them with --camera."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--camera", action="store_true", help="store events as TaskEvent rows (for the admin)")
        parser.add_argument("--frequency", type=float, default=1.0,
                            help="seconds between screen refreshes / camera writes (default 1)")
        parser.add_argument("--retention-hours", type=float,
                            help="camera: hours to keep stored events (default DJQ_EVENTS_RETENTION_HOURS)")
        parser.add_argument("-l", "--loglevel", default="WARNING", type=str.upper, choices=LEVELS)
        parser.add_argument("--duration", type=float, help="stop after this many seconds (default: run until ^C)")

    def handle(self, *args: Any, **opts: Any) -> None:
        configure_logging(opts["loglevel"])
        frequency = opts["frequency"]
        if frequency <= 0 or (opts["duration"] is not None and opts["duration"] <= 0):
            raise CommandError("--frequency and --duration must be positive numbers of seconds")
        if opts["retention_hours"] is not None and opts["retention_hours"] <= 0:
            raise CommandError("--retention-hours must be positive")
        handler: Camera | LiveView = Camera(opts["retention_hours"]) if opts["camera"] else LiveView()
        receiver = EventReceiver(handler, name="djq.events.camera" if opts["camera"] else None)
        tty = self.stdout.isatty()

        def tick() -> None:
            if isinstance(handler, Camera):
                handler.flush()
            else:
                self.stdout.write(("\x1b[2J\x1b[H" if tty else "") + handler.render() + ("" if tty else "\n"))
                self.stdout.flush()

        def stop(signum: int, frame: Any) -> None:
            receiver.should_stop = True

        def ready() -> None:
            self.stdout.write("events: listening, ready" + (" (camera: storing events)" if opts["camera"] else ""))
            self.stdout.flush()

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            receiver.capture(timeout=opts["duration"], wakeup=frequency, on_tick=tick, on_ready=ready)
        except KeyboardInterrupt:
            pass
        except Exception as exc:
            raise CommandError(f"events: {exc}") from exc
        finally:
            signal.signal(signal.SIGTERM, previous)
            if isinstance(handler, Camera):
                handler.flush()
                self.stdout.write(f"camera stopped: {handler.stored} event(s) stored")
