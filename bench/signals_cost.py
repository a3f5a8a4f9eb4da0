"""What djq.signals cost when nobody listens: ``make bench BENCH_ARGS="--signals"``
(or ``python -m bench.signals_cost``).

A task's body runs through ``trace.execute``, which tests four signals' receiver lists
around ``trace._execute`` (the body alone). Both run a no-op task in this process,
interleaved in short rounds (``--calls`` per round, ``--rounds`` rounds) so that the
machine's load falls on both alike; the figures are the fastest and the median round of
each in ns per call, their differences and ratio (same run only), and for contrast
``execute`` with one receiver connected to each of the four signals. It also times the
test the producer and consumer make per message (one list's truth value). Figures only,
never assertions.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Callable


def _setup() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(INSTALLED_APPS=["djq"], USE_TZ=True,
                           DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    django.setup()


def _per_call(function: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        function()
    return (time.perf_counter_ns() - started) / calls


def measure(calls: int, rounds: int) -> dict[str, Any]:
    _setup()
    from djq import signals, task
    from djq.context import RequestContext
    from djq.worker import trace

    @task(name="bench.signals.noop")
    def noop() -> None:
        return None

    context = RequestContext(id="bench", task=noop.name, args=[], kwargs={}, root_id="bench")
    body = lambda: trace._execute(noop, context, trace.no_limits, None, None)  # noqa: E731
    full = lambda: trace.execute(noop, context)  # noqa: E731
    check = lambda: signals.task_received.receivers  # noqa: E731
    empty = lambda: None  # noqa: E731  (the lambda call itself, taken off the list test)
    bare, with_checks, checks = [], [], []
    for _ in range(rounds):
        bare.append(_per_call(body, calls))
        with_checks.append(_per_call(full, calls))
        checks.append(_per_call(check, calls) - _per_call(empty, calls))

    def receiver(sender: Any, **arguments: Any) -> None:
        return None

    four = (signals.task_prerun, signals.task_success, signals.task_failure, signals.task_postrun)
    for signal in four:
        signal.connect(receiver)
    listened = [_per_call(full, calls) for _ in range(rounds)]
    for signal in four:
        signal.disconnect(receiver)
    bare_ns, checked_ns = statistics.median(bare), statistics.median(with_checks)
    return {"calls": calls, "rounds": rounds, "body_ns": round(bare_ns, 1), "execute_ns": round(checked_ns, 1),
            "no_receiver_cost_ns": round(checked_ns - bare_ns, 1), "ratio": round(checked_ns / bare_ns, 3),
            "body_min_ns": round(min(bare), 1), "execute_min_ns": round(min(with_checks), 1),
            "no_receiver_cost_min_ns": round(min(with_checks) - min(bare), 1),
            "receiver_list_test_ns": round(statistics.median(checks), 1),
            "execute_with_receivers_ns": round(statistics.median(listened), 1),
            "load_average": round(os.getloadavg()[0], 2), "python": sys.version.split()[0]}


def report(figures: dict[str, Any]) -> str:
    return "\n".join([
        f"signals with no receiver ({figures['calls']} calls x {figures['rounds']} rounds, "
        f"load average {figures['load_average']}):",
        f"  task body alone (trace._execute)        median {figures['body_ns']:>9.1f}  "
        f"fastest {figures['body_min_ns']:>9.1f} ns/call",
        f"  with the signal tests (trace.execute)   median {figures['execute_ns']:>9.1f}  "
        f"fastest {figures['execute_min_ns']:>9.1f} ns/call",
        f"  difference                              median {figures['no_receiver_cost_ns']:>+9.1f}  "
        f"fastest {figures['no_receiver_cost_min_ns']:>+9.1f} ns (median ratio x{figures['ratio']})",
        f"  one receiver list test (per message)    {figures['receiver_list_test_ns']:>9.1f} ns",
        f"  execute with 4 receivers connected      {figures['execute_with_receivers_ns']:>9.1f} ns/call",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    figures = measure(args.calls, args.rounds)
    print(report(figures), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
