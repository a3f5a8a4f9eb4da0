"""Printing ``bench.py --versus``: djq / Celery per leg, each repeat and the median.

Three tables: drain rate; enqueue rate (``delay()`` one at a time, and djq's
``delay_many`` where it exists); idle round trip ``delay()`` -> ``get()`` (p50 / p99 over
the samples of all repeats). A ratio above 1 means djq drains or enqueues faster; for
round trips, djq's p50 over Celery's, so below 1 means djq answers sooner. Then one
grep-able ``versus.LEG.FIGURE = value`` line per figure, and the notes of failed runs.
"""
from __future__ import annotations

import statistics
from typing import Any

from .stats import percentile
from .versus_legs import Leg, all_legs

Figures = dict[str, Any]
#: a worker busy less than this share of one core while draining was waiting on something
IDLE_SHARE = 0.25


def _value(figures: Figures | str | None, path: str) -> float | None:
    value: Any = figures
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return float(value) if isinstance(value, (int, float)) else None


def _median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _ratios(djq: list[Figures | str], celery: list[Figures | str], path: str) -> list[float | None]:
    out: list[float | None] = []
    for mine, theirs in zip(djq, celery):
        a, b = _value(mine, path), _value(theirs, path)
        out.append(a / b if a and b else None)
    return out


def _pooled(runs: list[Figures | str], pct: float) -> float | None:
    samples = [ms for run in runs if isinstance(run, dict) for ms in (run.get("round_trip") or {}).get("ms", [])]
    return percentile(samples, pct)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _table(header: tuple[str, ...], body: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))]
        print("  " + "  ".join(cells).rstrip())


def leg_figures(leg: Leg, runs: dict[str, list[Figures | str]]) -> dict[str, Any]:
    """The figures of one leg: medians, ratios per repeat and their median."""
    djq, celery = runs.get(leg.djq.key, []), runs.get(leg.celery.key, [])
    drain = _ratios(djq, celery, "drain.tasks_per_s")
    enqueue = _ratios(djq, celery, "enqueue.tasks_per_s")
    many = [_value(r, "delay_many.tasks_per_s") for r in djq]
    has_many = any(isinstance(r, dict) and r.get("delay_many") is not None for r in djq)
    figures: dict[str, Any] = {
        "djq_drain": _median([_value(r, "drain.tasks_per_s") for r in djq]),
        "celery_drain": _median([_value(r, "drain.tasks_per_s") for r in celery]),
        "drain_ratios": drain, "drain_ratio": _median(drain),
        "djq_enqueue": _median([_value(r, "enqueue.tasks_per_s") for r in djq]),
        "celery_enqueue": _median([_value(r, "enqueue.tasks_per_s") for r in celery]),
        "enqueue_ratio": _median(enqueue),
        "djq_delay_many": _median(many) if has_many else None, "has_delay_many": has_many,
        "djq_cpu_ms": _median([_value(r, "drain.worker_cpu_ms_per_task") for r in djq]),
        "celery_cpu_ms": _median([_value(r, "drain.worker_cpu_ms_per_task") for r in celery]),
    }
    if leg.djq.results:
        for who, found in (("djq", djq), ("celery", celery)):
            figures[f"{who}_rt_p50"], figures[f"{who}_rt_p99"] = _pooled(found, 50), _pooled(found, 99)
        mine, theirs = figures["djq_rt_p50"], figures["celery_rt_p50"]
        figures["rt_p50_ratio"] = mine / theirs if mine and theirs else None
    return figures


def print_versus(results: dict[str, Any], machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Print the three tables; returns each leg's figures (for --json)."""
    legs = [leg for leg in all_legs() if leg.name in results["legs"]]
    runs = results["runs"]
    table = {leg.name: leg_figures(leg, runs) for leg in legs}
    loads = results["load_averages"]
    print(f"\n== djq vs Celery {machine['versions'].get('celery') or '?'}: {results['tasks']:,} no-op tasks, "
          f"{results['repeats']} repeat(s), order rotated per repeat ==")
    print(f"  machine: nproc {machine['cpus']}, {machine['cpu_model']}; load average (1 min) at each repeat's start "
          f"{' / '.join(f'{l[0]:.2f}' for l in loads[:-1])}, at the end {loads[-1][0]:.2f} "
          f"(5 min {loads[-1][1]:.2f}, 15 min {loads[-1][2]:.2f})")
    print(f"  djq: defaults (database results, STARTED recorded, prefetch 4 x c, early acks); its results on "
          f"redis:// and amqp:// in {results['results_db']}. Celery: JSON, prefetch 4, early acks, no "
          f"gossip/mingle/heartbeat, results in Redis, STARTED {'recorded' if results['celery_track_started'] else 'not recorded (its default)'}.")
    print("  drain: from the worker's ready line to the last result stored (results) or no message left on the "
          "broker (no results; on AMQP: none ready)\n")
    _table(("leg", "djq", "Celery", "djq / Celery each repeat", "median", "CPU ms/task djq / Celery"),
           [(leg.label, _rate(f["djq_drain"]), _rate(f["celery_drain"]),
             " / ".join(_x(r) for r in f["drain_ratios"]), _x(f["drain_ratio"]),
             f"{_ms(f['djq_cpu_ms'])} / {_ms(f['celery_cpu_ms'])}") for leg, f in zip(legs, table.values())])
    print("\n  enqueue: delay() one at a time, no worker running\n")
    _table(("leg", "djq delay()", "Celery delay()", "djq / Celery", "djq delay_many"),
           [(leg.label, _rate(f["djq_enqueue"]), _rate(f["celery_enqueue"]), _x(f["enqueue_ratio"]),
             _rate(f["djq_delay_many"]) if f["has_delay_many"] else "n/a") for leg, f in zip(legs, table.values())])
    rt = [(leg, f) for leg, f in zip(legs, table.values()) if leg.djq.results]
    if rt:
        print("\n  idle round trip delay() -> get(), ms, over all repeats' samples\n")
        _table(("leg", "djq p50 / p99", "Celery p50 / p99", "p50 djq / Celery"),
               [(leg.label, f"{_ms(f['djq_rt_p50'])} / {_ms(f['djq_rt_p99'])}",
                 f"{_ms(f['celery_rt_p50'])} / {_ms(f['celery_rt_p99'])}", _x(f["rt_p50_ratio"])) for leg, f in rt])
    print()
    for name, figures in table.items():
        for key, value in figures.items():
            if isinstance(value, float):
                print(f"versus.{name}.{key} = {value:.4g}")
    return table


def failures(results: dict[str, Any]) -> list[str]:
    """One note per run that failed, was skipped, idled while draining, or lost delay_many messages."""
    notes = []
    for key, found in sorted(results["runs"].items()):
        for repeat, value in enumerate(found):
            where = f"versus {key}, repeat {repeat + 1}"
            if isinstance(value, str):
                notes.append(f"{where}: {value}")
                continue
            share = _value(value, "drain.worker_cpu_share")
            if share is not None and share < IDLE_SHARE:
                notes.append(f"{where}: the worker used {100 * share:.0f} % of a core while draining: it was "
                             "waiting, not working (a stall in that system, or the machine was busy)")
            many = value.get("delay_many")
            if isinstance(many, dict) and many["queued"] != results["tasks"]:
                notes.append(f"{where}: delay_many of {results['tasks']:,} returned {many['ids']:,} ids and left "
                             f"{many['queued']:,} messages queued")
    return notes
