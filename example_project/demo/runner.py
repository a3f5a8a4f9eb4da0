"""The demo's child processes, run and stopped together: an event camera, a djq worker,
beat (which sends the periodic tasks, e.g. ``demo.tasks.tick``) and the development web server.

The worker sends events (``-E``) and the camera (``djq_events --camera``) stores them, so
the admin's Events page and each result's timeline have something to show. All children run ``manage.py`` with this process's Python, in their own session: a
Ctrl-C in the terminal then reaches only the ``demo`` command, which stops the children
in order, instead of all three processes racing to shut down at once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Seconds a child gets to exit after SIGTERM before it is killed. The worker's warm
#: shutdown waits for running tasks, and the slow sample sleeps for 3 s.
STOP_TIMEOUT = 10.0


class Children:
    def __init__(self, manage_py: Path, host: str, port: int, concurrency: int) -> None:
        manage = [sys.executable, str(manage_py)]
        self.commands = {
            "event camera": [*manage, "djq_events", "--camera"],
            "worker": [*manage, "djq_worker", "-P", "threads", "-c", str(concurrency), "-E"],
            "beat": [*manage, "djq_beat"],
            "web server": [*manage, "runserver", f"{host}:{port}", "--noreload"],
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        # Unbuffered, so the children's log lines show up as they happen, between ours.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name, command in self.commands.items():
            self.processes[name] = subprocess.Popen(command, env=env, start_new_session=True)

    def exited(self) -> tuple[str, int] | None:
        """The first child found to have exited, with its exit code; None while all run."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                return name, code
        return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every child still running, wait up to ``timeout`` seconds, then kill."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def describe_exit(code: int) -> str:
    """How a child ended, for a person: Popen reports death by a signal as a negative code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def answers(url: str) -> bool:
    """True when ``url`` answers HTTP at all (an error status still means the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
