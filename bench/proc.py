"""A worker subprocess (djq or Celery) the benchmark starts, watches and always stops.

The worker runs in its own session, so a Ctrl-C on the terminal reaches the benchmark,
which then stops the worker itself (SIGTERM, then SIGKILL of its process group).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """Start ``argv``; note the wall-clock time its output first matches ``is_ready``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path,
                 is_ready: Callable[[str], bool], pidfile: Path | None = None) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.is_ready = is_ready
        self.pidfile = pidfile
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.ready_at: float | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        if self.pidfile is not None:
            self.pidfile.write_text(str(self.proc.pid))
        self._reader = threading.Thread(target=self._read, name="bench-worker-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.proc.stdout if self.proc is not None else None
        if stream is None:
            return
        with open(self.log_path, "wb") as log:
            for raw in stream:
                if self.ready_at is None and self.is_ready(raw.decode("utf-8", "replace")):
                    self.ready_at = time.time()
                    self._ready.set()
                log.write(raw)
                log.flush()
        self._ready.set()  # the process ended: stop anyone waiting

    def wait_ready(self, timeout: float) -> float | None:
        """The time the worker said it was ready, or None (exited, or too slow)."""
        self._ready.wait(timeout)
        return self.ready_at

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def memory_kb(self) -> dict[str, int]:
        """Memory of the worker and its child processes (prefork), from /proc, in KiB.

        VmHWM and VmRSS are summed over the processes, so pages a forked child still
        shares with its parent count once per process; Pss splits shared pages fairly.
        """
        found: dict[str, int] = {}
        if self.proc is None:
            return found
        pids = process_tree(self.proc.pid)
        for pid in pids:
            for key, value in _proc_kb(pid).items():
                found[key] = found.get(key, 0) + value
        found["processes"] = len(pids)
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU the worker and its live child processes have used so far."""
        if self.proc is None:
            return 0.0
        ticks = 0
        for pid in process_tree(self.proc.pid):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 20.0) -> int | None:
        """Warm shutdown with SIGTERM; SIGKILL the whole process group after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)
        return self.proc.returncode


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants that are alive (``/proc/PID/task/TID/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in found or not Path(f"/proc/{current}").exists():
            continue
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in children.read_text().split()]
            except (OSError, ValueError):
                pass
    return found


def _proc_kb(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS from /proc/PID/status, Pss from smaps_rollup (KiB)."""
    found: dict[str, int] = {}
    for name, keys in (("status", ("VmHWM", "VmRSS")), ("smaps_rollup", ("Pss",))):
        try:
            with open(f"/proc/{pid}/{name}") as lines:
                for line in lines:
                    key, _, value = line.partition(":")
                    if key in keys:
                        found[key] = int(value.split()[0])
        except (OSError, ValueError):
            pass
    return found


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reap_pidfile(pidfile: Path, marker: str) -> None:
    """Last resort after an interrupted run: kill a worker left behind by a scenario."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        cmdline = ""
    if marker in cmdline:  # still our worker, not a recycled pid
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                time.sleep(0.1)
                if not Path(f"/proc/{pid}").exists():
                    break
            else:
                kill_group(pid)
        except (ProcessLookupError, PermissionError):
            pass
    pidfile.unlink(missing_ok=True)


def scenario_parser(doc: str, *, tasks: int) -> argparse.ArgumentParser:
    """The options bench.child.run_child gives every scenario; a scenario adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--pidfile")
    parser.add_argument("--tasks", type=int, default=tasks)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0)
    return parser


def scenario_main(run: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace) -> int:
    """Run a scenario and write its figures to ``--out`` for the parent to read."""
    try:
        figures = run(args)
    except KeyboardInterrupt:  # the worker is already stopped; bench.py reports it
        return 130
    except Exception as exc:  # say why beside the figures file, for bench.py's note
        Path(f"{args.out}.error").write_text(f"{type(exc).__name__}: {exc}")
        raise
    Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0
