"""One ``djq_beat`` on N periodic tasks (10,000 by default, ``--tasks 100000``), in its own process
(``python -m bench.beat_scenario``).

On the database in ``DJQ_BENCH_DB`` (a fresh PostgreSQL database made by bench.py):
1. ``bulk_create`` N enabled periodic tasks of ``bench.noop``, interval and crontab in
   turn by pk: every 2-25 hours; daily, weekday or monthly crontabs in UTC, Europe/Paris
   and America/New_York at hours that do not come up during the run. Nothing is due.
2. In this process, before the beat starts: one pass of ``probe.revalidate`` (the check of
   every stored next run the service runs in a thread), then the quiet tick's probe alone
   and a whole quiet tick (``Scheduler.tick``), each the median of a few runs.
3. A real ``djq_beat -l DEBUG --max-tick 1``. It logs one line per tick, "tick took X ms
   (Y ms CPU)" (djq.beat.service), and one line per run it sends.
4. Idle: the ticks of ``--idle-seconds`` with nothing due.
5. Due: ``last_run_at`` set to NULL ("never ran: due now") on the first 1,000 tasks by
   pk, then on the first N/10, then (up to 10,000 tasks) on all N. The next tick sends
   every one of them, in batches: claim, run rows and messages commit in one transaction
   per batch (``djq://`` on the same database).
6. The beat's VmRSS after start-up, after the idle ticks and after each due tick; its
   VmHWM at the end.
The figures go to ``--out`` as JSON. The beat is stopped whatever happens.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .proc import WorkerProcess, scenario_main, scenario_parser

#: The beat's --max-tick: an idle beat ticks once a second, so the idle phase has many ticks.
MAX_TICK = 1.0
ZONES = ("UTC", "Europe/Paris", "America/New_York")
#: (day_of_month, day_of_week): daily, weekdays, monthly
DAYS = (("*", "*"), ("*", "1-5"), ("1", "*"))
TICK_LINE = re.compile(r"beat: tick took ([\d.]+) ms \(([\d.]+) ms CPU\)")


def make_tasks(count: int) -> dict[str, int]:
    """``count`` enabled periodic tasks, none due for the next two hours; returns how many of each kind."""
    from djq.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    intervals = IntervalSchedule.objects.bulk_create(
        [IntervalSchedule(every=hours, period="hours") for hours in range(2, 26)])
    crontabs = []
    for zone in ZONES:
        now_hour = datetime.now(ZoneInfo(zone)).hour
        for hour in ((now_hour + 2 + k) % 24 for k in range(20)):
            crontabs += [CrontabSchedule(minute=str(minute), hour=str(hour), day_of_month=dom, day_of_week=dow,
                                         timezone=zone) for minute in (0, 15, 30, 45) for dom, dow in DAYS]
    crontabs = CrontabSchedule.objects.bulk_create(crontabs)
    tasks = []
    for i in range(count):
        schedule = ({"interval": intervals[i // 2 % len(intervals)]} if i % 2 == 0
                    else {"crontab": crontabs[i // 2 % len(crontabs)]})
        tasks.append(PeriodicTask(name=f"bench {i:05d}", task="bench.noop", **schedule))
    PeriodicTask.objects.bulk_create(tasks, batch_size=1000)
    return {"interval": (count + 1) // 2, "crontab": count // 2,
            "interval_schedules": len(intervals), "crontab_schedules": len(crontabs)}


def median_ms(action: Any, runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(1000 * (time.perf_counter() - started))
    return statistics.median(timings)


def in_process() -> dict[str, float]:
    """In this process: the quiet tick's probe alone, a whole quiet tick (medians of 5, ms), and
    one pass of the check of every stored next run that the service runs beside the ticks (s)."""
    from djq.beat.probe import probe, revalidate
    from djq.beat.scheduler import Scheduler

    started = time.perf_counter()
    revalidate("default")
    revalidate_s = time.perf_counter() - started
    beat = Scheduler(revalidated_elsewhere=True)
    beat.tick()  # the first tick reads the due rows; the next ones are quiet
    return {"probe_ms": median_ms(lambda: probe("default")), "tick_ms": median_ms(beat.tick),
            "revalidate_s": revalidate_s}


def ticks(output: str) -> list[dict[str, float]]:
    """Each tick in the beat's log: its wall and CPU milliseconds, and the runs it sent."""
    found, sent = [], 0
    for line in output.splitlines():
        if "beat: sent " in line:
            sent += 1
        elif match := TICK_LINE.search(line):
            found.append({"ms": float(match[1]), "cpu_ms": float(match[2]), "sent": sent})
            sent = 0
    return found


def start_beat(args: argparse.Namespace) -> WorkerProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    argv = [sys.executable, "-m", "django", "djq_beat", "-l", "DEBUG", "--max-tick", str(MAX_TICK),
            "-n", f"bench-beat-{os.getpid()}"]
    beat = WorkerProcess(argv, env, Path(args.log), lambda line: " ready (max tick " in line,
                         pidfile=Path(args.pidfile) if args.pidfile else None)
    beat.start()
    if beat.wait_ready(timeout=60) is None:
        raise RuntimeError(f"the beat did not start:\n{beat.output()[-3000:]}")
    return beat


def wait_ticks(beat: WorkerProcess, done: Any, timeout: float, what: str) -> list[dict[str, float]]:
    """Poll the beat's log until ``done(ticks)``; returns the ticks."""
    deadline = time.monotonic() + timeout
    while not done(found := ticks(beat.output())):
        if not beat.alive():
            raise RuntimeError(f"the beat exited:\n{beat.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not seen after {timeout} s")
        time.sleep(0.1)
    return found


def make_due(beat: WorkerProcess, count: int, timeout: float) -> dict[str, Any]:
    """Make the first ``count`` tasks due at once; the ticks that sent them, and the beat's memory after."""
    from djq.models import PeriodicTask

    before = len(ticks(beat.output()))
    first = PeriodicTask.objects.order_by("pk").values_list("pk", flat=True)[:count]
    PeriodicTask.objects.filter(pk__in=list(first)).update(last_run_at=None)
    found = wait_ticks(beat, lambda t: sum(tick["sent"] for tick in t[before:]) >= count, timeout,
                       f"{count} due runs sent")
    sending = [tick for tick in found[before:] if tick["sent"]]
    return {"due": count, "ticks": len(sending), "ms": sum(t["ms"] for t in sending),
            "cpu_ms": sum(t["cpu_ms"] for t in sending), "sent": sum(t["sent"] for t in sending),
            "rss_kb_after": beat.memory_kb().get("VmRSS")}


def idle_ticks(beat: WorkerProcess, seconds: float) -> dict[str, Any]:
    """The ticks of ``seconds`` with nothing due (the first tick after start-up is reported apart)."""
    time.sleep(seconds)
    found = ticks(beat.output())
    idle = [tick for tick in found[1:] if not tick["sent"]]
    if not idle:
        raise RuntimeError(f"no idle tick in {seconds} s:\n{beat.output()[-3000:]}")
    ms, cpu = sorted(t["ms"] for t in idle), sorted(t["cpu_ms"] for t in idle)
    return {"first_tick": found[0], "ticks": len(idle), "ms_median": statistics.median(ms), "ms_min": ms[0],
            "ms_max": ms[-1], "cpu_ms_median": statistics.median(cpu), "rss_kb_after": beat.memory_kb().get("VmRSS")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    kinds = make_tasks(args.tasks)
    figures: dict[str, Any] = {"vendor": connection.vendor, "tasks": args.tasks, "max_tick": MAX_TICK, **kinds,
                               "bulk_create_s": time.perf_counter() - started, "in_process": in_process()}
    connection.close()  # idle in this process while the beat works
    beat = start_beat(args)
    try:
        figures["rss_kb_ready"] = beat.memory_kb().get("VmRSS")
        figures["startup_s"] = (beat.ready_at or 0.0) - beat.spawned_at
        figures["idle"] = idle_ticks(beat, args.idle_seconds)
        counts = sorted({min(1_000, args.tasks), args.tasks // 10} | ({args.tasks} if args.tasks <= 10_000 else set()))
        figures["due"] = [make_due(beat, count, args.timeout) for count in counts]
        figures["memory_kb"] = beat.memory_kb()
    finally:
        figures["beat_exit_code"] = beat.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=10_000)
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="how long to watch the idle beat tick")
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
