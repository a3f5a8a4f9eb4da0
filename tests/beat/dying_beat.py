"""``djq_beat`` that SIGKILLs itself in the middle of its first send.

It dies after it claimed a run and wrote the message, before the transaction commits:
the worst moment for a beat to die. Run as ``python -m tests.beat.dying_beat ARGS``.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.core.management import call_command

    from djq.beat import scheduler

    real_publish, real_many = scheduler.publish, scheduler.publish_many

    def die() -> None:
        print("dying mid-send", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def publish_then_die(*args: Any) -> None:
        real_publish(*args)
        die()

    def publish_many_then_die(sends: Any) -> None:
        real_many(sends)
        die()

    scheduler.publish, scheduler.publish_many = publish_then_die, publish_many_then_die
    call_command("djq_beat", *sys.argv[1:])


if __name__ == "__main__":
    main()
