"""Three ``djq_beat`` processes on N periodic tasks (100,000 by default) for ``--seconds`` (180),
one of them killed with SIGKILL a third of the way in: every scheduled run must be sent
exactly once (``python -m bench.beat_three``; ``bench.py --beat-three``).

On the database in ``DJQ_BENCH_DB`` (a fresh PostgreSQL database made by bench.py):
1. N - FAST - BURST periodic tasks that do not come up during the run (bench.beat_scenario),
   FAST tasks every second and BURST tasks every 10 seconds (1,000 runs due at once).
2. Three real ``djq_beat --max-tick 1`` on ``djq://`` (the claim, the run row and the
   message commit together). At a third of ``--seconds`` one beat gets SIGKILL, wherever it is.
3. At the end the other two get SIGTERM, and the run log is checked against the schedule:
   each frequent task's runs must be one per slot from its first slot to the stop (a slot
   missed counts once), each slot once (a duplicate is a second run of one slot, or a
   second message of one run), and each run must have its message (no message without a run).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .beat_scenario import make_tasks
from .proc import WorkerProcess, scenario_main, scenario_parser

FAST, BURST = 200, 1000
#: A slot this close to the stop may have been cut short by it: not counted as missed.
EDGE = timedelta(seconds=2.5)


def make_frequent(start: datetime) -> list[int]:
    """FAST tasks every second and BURST every 10 s, first due just after ``start``; their ids."""
    from djq.models import IntervalSchedule, PeriodicTask

    second, ten = (IntervalSchedule.objects.get_or_create(every=n, period="seconds")[0] for n in (1, 10))
    rows = [PeriodicTask(name=f"frequent {i:04d}", task="bench.noop", interval=second if i < FAST else ten,
                         last_run_at=start, due_at=start + timedelta(seconds=1 if i < FAST else 10))
            for i in range(FAST + BURST)]
    return [row.pk for row in PeriodicTask.objects.bulk_create(rows, batch_size=1000)]


def start_beats(args: argparse.Namespace) -> list[WorkerProcess]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    beats = []
    for n in range(3):
        argv = [sys.executable, "-m", "django", "djq_beat", "-l", "INFO", "--max-tick", "1", "-n", f"bench-beat-{n}"]
        beat = WorkerProcess(argv, env, Path(f"{args.log}.{n}"), lambda line: " ready (max tick " in line,
                             pidfile=Path(f"{args.pidfile}.{n}") if args.pidfile else None)
        beat.start()
        beats.append(beat)
    for beat in beats:
        if beat.wait_ready(timeout=120) is None:
            raise RuntimeError(f"a beat did not start:\n{beat.output()[-3000:]}")
    return beats


def check(ids: list[int], start: datetime, stopped: datetime) -> dict[str, Any]:
    """Missed slots and duplicates of the frequent tasks, from the run log and the queue."""
    from djq.beat import timing
    from djq.models import PeriodicRun, PeriodicTask, QueueMessage

    periods = dict(PeriodicTask.objects.filter(pk__in=ids).values_list("pk", "interval__every"))
    slots: dict[int, list[datetime]] = {pk: [] for pk in ids}
    runs = list(PeriodicRun.objects.filter(periodic_task_id__in=ids).values_list(
        "periodic_task_id", "scheduled_at", "task_id"))
    for pk, at, _ in runs:
        slots[pk].append(timing.from_db(at))
    missed = duplicate = 0
    for pk, times in slots.items():
        times.sort()
        step = timedelta(seconds=periods[pk])
        duplicate += len(times) - len(set(times))
        if not times:
            missed += 1
            continue
        first = times[0]
        if first - start > step + EDGE:  # the first slot after the bench made the task
            missed += 1
        missed += sum(int((b - a) / step) - 1 for a, b in zip(times, times[1:]) if b - a > step)
        missed += max(0, int((stopped - EDGE - times[-1]) / step))
    sent_ids = [json.loads(payload)["headers"]["id"] for payload in QueueMessage.objects.values_list("payload", flat=True)]
    run_ids = {task_id for _, _, task_id in runs}
    return {"runs": len(runs), "messages": len(sent_ids), "missed_slots": missed, "duplicate_runs": duplicate,
            "duplicate_messages": len(sent_ids) - len(set(sent_ids)),
            "runs_without_message": len(run_ids - set(sent_ids)), "messages_without_run": len(set(sent_ids) - run_ids)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    make_tasks(args.tasks - FAST - BURST)
    from djq.beat.probe import revalidate

    revalidate("default")  # bulk_create leaves due_at empty; the beats would do this at start
    start = datetime.now(UTC) + timedelta(seconds=30)  # the beats start before the first slot
    ids = make_frequent(start)
    connection.close()
    figures: dict[str, Any] = {"tasks": args.tasks, "fast": FAST, "burst": BURST, "seconds": args.seconds}
    beats = start_beats(args)
    try:
        time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
        time.sleep(args.seconds / 3)
        victim = beats[0]
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        figures["killed_at_s"] = args.seconds / 3
        time.sleep(args.seconds * 2 / 3)
        figures["peak_rss_kb"] = [beat.memory_kb().get("VmHWM") for beat in beats[1:]]
        stopped = datetime.now(UTC)
        figures["exit_codes"] = [beat.stop() for beat in beats]
        figures["window"] = [start.isoformat(), stopped.isoformat()]
        figures.update(check(ids, start, stopped))
    finally:
        for beat in beats:
            beat.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__, tasks=100_000)
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the beats run")
    return scenario_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
