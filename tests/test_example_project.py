"""``manage.py demo`` from example_project, run as a new user runs it (``make demo``).

The command must bring up a worker and the web server, get its sample tasks to a final
state, and on SIGTERM stop both children and exit cleanly.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLE_PROJECT = Path(__file__).resolve().parent.parent / "example_project"
DEADLINE = 60.0
SENT_RE = re.compile(r"sent (.+?) as task ([0-9a-f-]{36})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name in parentheses may hold spaces; the parent pid follows it.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def states(db: Path, task_ids: list[str]) -> dict[str, str]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute(
                f"SELECT task_id, state FROM djq_taskresult WHERE task_id IN ({', '.join('?' * len(task_ids))})",
                task_ids,
            ).fetchall()
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return {}
    return dict(rows)


def declared(db: Path) -> bool:
    """Whether beat synced the demo's declared periodic task into the database (its first
    run is 30 s later: not waited for here, beat's own tests cover the runs)."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT enabled FROM djq_periodictask WHERE task = 'demo.tasks.tick'").fetchone()
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return False
    return bool(row and row[0])


def events(db: Path, task_ids: list[str]) -> set[str]:
    """Ids among ``task_ids`` whose task-succeeded or task-failed event the camera stored."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute(
                f"SELECT DISTINCT task_id FROM djq_taskevent WHERE event IN ('task-succeeded', 'task-failed') "
                f"AND task_id IN ({', '.join('?' * len(task_ids))})",
                task_ids,
            ).fetchall()
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return set()
    return {row[0] for row in rows}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the demo's children through /proc")
def test_demo_runs_samples_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    log = tmp_path / "demo.log"
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",  # pytest-django set the tests' own
        "DATABASE_URL": f"sqlite:///{db}",
        "DJQ_BROKER_URL": "djq://",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port), "--concurrency", "2"],
            cwd=EXAMPLE_PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + DEADLINE
        sent: dict[str, str] = {}
        final: dict[str, str] = {}
        recorded: set[str] = set()
        served = False
        synced = False
        while time.monotonic() < deadline and demo.poll() is None:
            children |= children_of(demo.pid)
            sent = {task_id: name for name, task_id in SENT_RE.findall(log.read_text())}
            served = served or page_answers(f"http://127.0.0.1:{port}/")
            final = {k: v for k, v in states(db, list(sent)).items() if v in ("SUCCESS", "FAILURE")} if sent else {}
            recorded = events(db, list(sent)) if sent else set()
            synced = declared(db)
            if served and len(sent) >= 7 and len(final) == len(sent) and len(recorded) == len(sent) and synced:
                break
            time.sleep(0.5)
        output = log.read_text()
        assert demo.poll() is None, f"demo exited early:\n{output}"
        assert served, f"the home page never answered:\n{output}"
        assert len(children) == 4, f"expected an event camera, a worker, beat and a web server, found {children}"
        assert len(sent) >= 7 and len(final) == len(sent), f"tasks not finished: {final} of {sent}\n{output}"
        assert synced, f"beat did not sync the declared periodic task demo.tasks.tick\n{output}"
        assert "beat: periodic task 'demo: tick every 30 s' created from code" in output
        by_name = {sent[task_id]: state for task_id, state in final.items()}
        assert by_name["demo.tasks.fail()"] == "FAILURE"
        assert by_name["demo.tasks.slow(3)"] == "SUCCESS"
        assert by_name["demo.tasks.add(2, 3)"] == "SUCCESS"
        assert by_name["demo.tasks.count_to(10)"] == "SUCCESS"
        assert "user: admin  password: admin" in output
        assert recorded == set(sent), f"the camera stored no final event for {set(sent) - recorded}\n{output}"

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0, log.read_text()
        assert not [pid for pid in children if alive(pid)], "the demo left children running"
        assert "Demo stopped." in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_make_demo_takes_a_port() -> None:
    """``make demo PORT=8011`` (README) reaches the demo command as --port 8011."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    planned = subprocess.run(["make", "-n", "demo", "PORT=8011", "HOST=0.0.0.0", f"VENV={sys.prefix}"],
                             cwd=EXAMPLE_PROJECT.parent, capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    assert "manage.py demo --host 0.0.0.0 --port 8011" in planned.stdout
