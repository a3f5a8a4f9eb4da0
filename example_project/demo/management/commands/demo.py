"""``manage.py demo``: migrate, create admin/admin, run a worker, beat, an event camera and the web server, send sample tasks."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from demo.runner import Children, answers, describe_exit
from demo.samples import STARTUP
from djq.models import TaskEvent

#: example_project/manage.py, which the children run with this process's Python.
MANAGE_PY = Path(__file__).resolve().parents[3] / "manage.py"
#: Seconds to wait for the first stored event before sending the samples anyway
#: (a worker's heartbeat comes every DJQ_WORKER_HEARTBEAT_INTERVAL, 5 s).
EVENTS_PATIENCE = 15.0


class Command(BaseCommand):
    help = "Run the djq demo: a worker, beat and the web server, with sample tasks to watch in the admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address the web server listens on")
        parser.add_argument("--port", type=int, default=8000, help="port of the web server")
        parser.add_argument("--concurrency", type=int, default=4, help="tasks the worker runs at once")
        parser.add_argument("--no-samples", action="store_true", help="do not send sample tasks at start")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        self.say(f"Preparing the database ({settings.DATABASES['default']['NAME']}) ...")
        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()

        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        children = Children(MANAGE_PY, opts["host"], opts["port"], opts["concurrency"])
        base = f"http://{opts['host']}:{opts['port']}/"
        self.say("Starting the event camera, the djq worker, beat and the web server ...")
        children.start()
        try:
            announced = False
            started, patience = timezone.now(), time.monotonic() + EVENTS_PATIENCE
            while not stop.wait(0.25):
                exited = children.exited()
                if exited:
                    name, code = exited
                    raise CommandError(f"the {name} {describe_exit(code)}; the demo stops (see its output above)")
                # Samples go out once the web server answers and the camera has stored a
                # worker's event (its first heartbeat at the latest): then their events show too.
                events_flow = TaskEvent.objects.filter(timestamp__gte=started).exists()
                if not announced and answers(base) and (events_flow or time.monotonic() > patience):
                    if not opts["no_samples"]:
                        for sample in STARTUP:
                            self.say(f"  sent {sample} as task {sample.send()}")
                    self.announce(base)
                    announced = True
            self.say("Stopping the worker, beat and the web server ...")
        finally:
            children.stop()
        self.say("Demo stopped.")

    def ensure_admin(self) -> None:
        if User.objects.filter(username="admin").exists():
            self.say("User 'admin' exists already; its password is left as it is.")
            return
        User.objects.create_superuser("admin", "admin@example.com", "admin")
        self.say("Created superuser 'admin' with password 'admin'.")

    def announce(self, base: str) -> None:
        self.say(self.style.SUCCESS(
            "\n  The djq demo is running.\n"
            f"  Home page:  {base}\n"
            f"  Admin:      {base}admin/   (user: admin  password: admin)\n"
            f"  Results:    {base}admin/djq/taskresult/\n"
            f"  Events:     {base}admin/djq/taskevent/\n"
            f"  Periodic:   {base}admin/djq/periodictask/   (beat sends 'demo: tick every 30 s')\n"
            "  Press Ctrl-C to stop.\n"
        ))

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()
