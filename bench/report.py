"""Printing the benchmark's figures: a table per scenario, one line per figure, ratios."""
from __future__ import annotations

from typing import Any

TITLES = {
    "sqlite": "djq, embedded broker on SQLite (WAL)",
    "postgres": "djq, embedded broker on PostgreSQL",
    "celery_redis": "Celery on Redis (comparison)",
}


def _get(figures: dict[str, Any], path: str) -> Any:
    value: Any = figures
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} tasks/s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def rows(f: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, detail) for one scenario; figures it lacks are left out."""
    n = f.get("tasks", 0)
    out = [
        (f"enqueue {n:,} x delay(), no worker", _rate(_get(f, "enqueue.tasks_per_s")), _s(_get(f, "enqueue.seconds"))),
        ("drain, from worker ready", _rate(_get(f, "drain.tasks_per_s")), _s(_get(f, "drain.seconds_from_ready"))),
        ("drain, first to last result", _rate(_get(f, "drain.tasks_per_s_first_to_last")),
         _s(_get(f, "drain.seconds_first_to_last"))),
        ("drain, incl. worker start-up", _rate(_get(f, "drain.tasks_per_s_total")),
         f"{_s(_get(f, 'drain.seconds_total'))} (start-up {_s(_get(f, 'drain.startup_s'))})"),
        ("worker CPU per task while draining", "-" if _get(f, "drain.worker_cpu_ms_per_task") is None
         else f"{_get(f, 'drain.worker_cpu_ms_per_task'):.2f} ms",
         "" if _get(f, "drain.worker_cpu_share") is None
         else f"{100 * _get(f, 'drain.worker_cpu_share'):.0f} % of one core"),
    ]
    runs = f.get("runs") or []
    if len(runs) > 1:
        rates = " / ".join(_rate(_get(r, "drain.tasks_per_s")).replace(" tasks/s", "") for r in runs)
        enq = " / ".join(_rate(_get(r, "enqueue.tasks_per_s")).replace(" tasks/s", "") for r in runs)
        out.insert(1, ("  (each run: enqueue)", "", f"{enq} tasks/s"))
        out.insert(3, ("  (each run: drain from ready)", "", f"{rates} tasks/s; median shown"))
    if _get(f, "latency") is not None:
        samples = _get(f, "latency.to_date_done.samples")
        out += [
            (f"idle latency delay()->date_done, {samples} x", f"p50 {_ms(_get(f, 'latency.to_date_done.p50_ms'))}",
             f"p99 {_ms(_get(f, 'latency.to_date_done.p99_ms'))}, max {_ms(_get(f, 'latency.to_date_done.max_ms'))}"),
            ("idle latency delay()->seen (1 ms poll)", f"p50 {_ms(_get(f, 'latency.to_seen.p50_ms'))}",
             f"p99 {_ms(_get(f, 'latency.to_seen.p99_ms'))}"),
        ]
    if _get(f, "sleep_drain") is not None:
        k = _get(f, "sleep_drain.tasks")
        out += [
            (f"enqueue {k:,} x delay() in one atomic()", _rate(_get(f, "enqueue_atomic.tasks_per_s")),
             _s(_get(f, "enqueue_atomic.seconds"))),
            (f"drain {k:,} x 10 ms tasks, from commit", _rate(_get(f, "sleep_drain.tasks_per_s")),
             (f"ideal {_rate(_get(f, 'sleep_drain.ideal_tasks_per_s'))}, "
              f"{100 * (_get(f, 'sleep_drain.efficiency') or 0):.0f} % of it")),
        ]
    hwm = _get(f, "memory_kb.VmHWM")
    out.append(("worker peak RSS (VmHWM)", "-" if hwm is None else f"{hwm / 1024:.1f} MiB", ""))
    return out


def print_scenario(key: str, figures: dict[str, Any]) -> None:
    table = rows(figures)
    width = max(len(r[0]) for r in table)
    vwidth = max(len(r[1]) for r in table)
    runs = len(figures.get("runs") or []) or 1
    print(f"\n== {TITLES.get(key, key)}: {figures.get('tasks', 0):,} tasks, "
          f"-P threads -c {figures.get('concurrency')}, median of {runs} run(s) ==")
    for label, value, detail in table:
        print(f"  {label:<{width}}  {value:>{vwidth}}  {detail}".rstrip())
    print(flush=True)


FIGURES = (
    "enqueue.tasks_per_s", "drain.tasks_per_s", "drain.tasks_per_s_first_to_last", "drain.tasks_per_s_total",
    "drain.startup_s", "drain.worker_cpu_ms_per_task", "latency.to_date_done.p50_ms", "latency.to_date_done.p99_ms", "latency.to_seen.p50_ms",
    "latency.to_seen.p99_ms", "enqueue_atomic.tasks_per_s", "sleep_drain.tasks_per_s", "sleep_drain.efficiency",
    "memory_kb.VmHWM",
)


def print_figure_lines(scenarios: dict[str, dict[str, Any]]) -> None:
    """One grep-able ``scenario.figure = value`` line per figure."""
    for key, figures in scenarios.items():
        for path in FIGURES:
            value = _get(figures, path)
            if value is not None:
                print(f"{key}.{path} = {value:.4g}" if isinstance(value, float) else f"{key}.{path} = {value}")


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def print_comparisons(scenarios: dict[str, dict[str, Any]]) -> None:
    pairs = [("postgres", "sqlite", "PostgreSQL / SQLite")]
    pairs += [(db, "celery_redis", f"djq {db} / Celery Redis") for db in ("sqlite", "postgres")]
    printed = False
    for a, b, label in pairs:
        if a not in scenarios or b not in scenarios:
            continue
        if not printed:
            print("\nratios")
            printed = True
        fa, fb = scenarios[a], scenarios[b]
        print(f"  {label}: enqueue {_ratio(_get(fa, 'enqueue.tasks_per_s'), _get(fb, 'enqueue.tasks_per_s'))}, "
              f"drain {_ratio(_get(fa, 'drain.tasks_per_s'), _get(fb, 'drain.tasks_per_s'))}, "
              f"drain incl. start-up {_ratio(_get(fa, 'drain.tasks_per_s_total'), _get(fb, 'drain.tasks_per_s_total'))}, "
              f"peak RSS {_ratio(_get(fa, 'memory_kb.VmHWM'), _get(fb, 'memory_kb.VmHWM'))}")
    print()


def _mib(kb: float | None) -> str:
    return "-" if not kb else f"{kb / 1024:.1f} MiB"


def _table(header: tuple[str, ...], body: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))]
        print("  " + "  ".join(cells).rstrip())


def print_pools(results: dict[str, Any]) -> None:
    """One row per (workload, pool): drain rate from worker ready, against the ideal."""
    print("\n== pools: djq:// on SQLite, tasks enqueued first, timed from worker ready to last result ==")
    body = []
    for f in (v for v in results.values() if isinstance(v, dict)):
        rates = " / ".join(f"{r:,.0f}" for r in f.get("drain_rates") or [] if r)
        body.append((
            f"{f['tasks']:,} {f['workload']} ({f['task_ms']:.1f} ms)", f"-P {f['pool']} -c {f['concurrency']}",
            _rate(_get(f, "drain.tasks_per_s")), f"{rates}" if len(f.get("runs") or []) > 1 else "",
            _rate(f.get("ideal_tasks_per_s")), f"{100 * (f.get('efficiency') or 0):.0f} %",
            _s(_get(f, "drain.startup_s")), f"{_get(f, 'drain.worker_cpu_ms_per_task') or 0:.2f} ms",
            _mib(f.get("peak_rss_kb")), str(_get(f, "memory_kb.processes") or "-"), _mib(_get(f, "memory_kb.Pss")),
        ))
    if body:
        _table(("workload", "pool", "drain", "each run", "ideal", "of ideal", "start-up", "CPU/task",
                "peak RSS", "procs", "Pss at end"), body)
    cpu = {f["pool"]: f for f in results.values() if isinstance(f, dict) and f["workload"] == "cpu"}
    if "prefork" in cpu and "solo" in cpu:
        print(f"  CPU-bound: prefork / solo = "
              f"{_ratio(_get(cpu['prefork'], 'drain.tasks_per_s'), _get(cpu['solo'], 'drain.tasks_per_s'))}")
    for pool, f in cpu.items():
        probes = " / ".join(f"{r['machine_speedup']:.2f}x" for r in f["runs"] if r.get("machine_speedup"))
        if probes:
            print(f"  before each {pool} run, all CPUs of plain processes gave {probes} one process's rate")
    print(flush=True)


def print_brokers(results: dict[str, Any]) -> None:
    """One row per (broker, pool): the default scenario's figures."""
    tasks = next((f["tasks"] for f in results.values() if isinstance(f, dict)), 0)
    print(f"\n== brokers: {tasks:,} no-op drain, idle latency, 10 ms tasks; results in the database ==")
    body = []
    for f in results.values():
        if not isinstance(f, dict):
            continue
        where = "" if f.get("broker") == "djq" else "results "
        broker = f"{f.get('broker')}:// ({where}{f.get('vendor')})"
        body.append((
            broker, f"-P {f['pool']} -c {f['concurrency']}", _rate(_get(f, "enqueue.tasks_per_s")),
            _rate(_get(f, "drain.tasks_per_s")),
            f"{_ms(_get(f, 'latency.to_date_done.p50_ms'))} / {_ms(_get(f, 'latency.to_date_done.p99_ms'))}",
            f"{_rate(_get(f, 'sleep_drain.tasks_per_s'))} ({100 * (_get(f, 'sleep_drain.efficiency') or 0):.0f} %)",
            f"{_get(f, 'drain.worker_cpu_ms_per_task') or 0:.2f} ms", _mib(_get(f, "memory_kb.VmHWM")),
        ))
    if body:
        _table(("broker", "pool", "enqueue", "drain", "idle p50 / p99", "10 ms tasks (of ideal)", "CPU/task",
                "peak RSS"), body)
    print(flush=True)


def print_beat(results: dict[str, Any]) -> None:
    """One djq_beat on many periodic tasks: the cost of a tick, and the beat's memory."""
    for f in (v for v in results.values() if isinstance(v, dict)):
        idle, first, due = f["idle"], f["idle"]["first_tick"], f["due"]
        print(f"\n== beat: one djq_beat, {f['tasks']:,} enabled periodic tasks ({f['interval']:,} interval, "
              f"{f['crontab']:,} crontab) on {f['vendor']}, --max-tick {f['max_tick']:g} ==")
        table = [
            (f"tick, nothing due ({idle['ticks']} ticks)", f"median {_ms(idle['ms_median'])}",
             f"min {_ms(idle['ms_min'])}, max {_ms(idle['ms_max'])}; CPU median {_ms(idle['cpu_ms_median'])}"),
            ("first tick after start-up", _ms(first["ms"]), f"CPU {_ms(first['cpu_ms'])}"),
            ("in the bench process: the quiet tick's probe", _ms(_get(f, "in_process.probe_ms")), "median of 5"),
            ("in the bench process: check of every next run", f"{_get(f, 'in_process.revalidate_s') or 0:.1f} s",
             "once a minute, in a thread beside the ticks"),
            ("in the bench process: tick, nothing due", _ms(_get(f, "in_process.tick_ms")), "median of 5"),
        ]
        table += [(f"tick sending {d['due']:,} due runs", _s(d["ms"] / 1000),
                   f"CPU {_s(d['cpu_ms'] / 1000)}; {d['ms'] / max(d['sent'], 1):.2f} ms per run, "
                   f"{d['sent']:,} sent in {d['ticks']} tick(s)") for d in due]
        rss = [("ready", f.get("rss_kb_ready")), ("after idle ticks", idle.get("rss_kb_after")),
               *((f"after {d['due']:,} sent", d.get("rss_kb_after")) for d in due)]
        table += [
            ("beat RSS (VmRSS)", _mib(rss[0][1]), ", ".join(f"{label} {_mib(kb)}" for label, kb in rss[1:])),
            ("beat peak RSS (VmHWM)", _mib(_get(f, "memory_kb.VmHWM")), ""),
            ("beat start-up, spawn to ready", _s(f.get("startup_s")), f"bulk_create of the tasks {_s(f.get('bulk_create_s'))}"),
        ]
        width, vwidth = max(len(r[0]) for r in table), max(len(r[1]) for r in table)
        for label, value, detail in table:
            print(f"  {label:<{width}}  {value:>{vwidth}}  {detail}".rstrip())
    print(flush=True)


def print_beat_three(results: dict[str, Any]) -> None:
    """Three beats, one killed: were all the frequent tasks' slots sent once each?"""
    for f in (v for v in results.values() if isinstance(v, dict)):
        print(f"\n== three djq_beat on {f['tasks']:,} periodic tasks for {f['seconds']:g} s, one SIGKILLed at "
              f"{f['killed_at_s']:g} s; {f['fast']} tasks every second, {f['burst']:,} every 10 s ==")
        print(f"  runs {f['runs']:,}, messages {f['messages']:,}; missed slots {f['missed_slots']}, duplicate runs "
              f"{f['duplicate_runs']}, duplicate messages {f['duplicate_messages']}, runs without a message "
              f"{f['runs_without_message']}, messages without a run {f['messages_without_run']}")
        print(f"  peak RSS of the two survivors: {', '.join(_mib(kb) for kb in f['peak_rss_kb'])}; "
              f"exit codes {f['exit_codes']}")
    print(flush=True)
