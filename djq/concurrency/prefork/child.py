"""A prefork child: set itself up after fork, then run one job at a time from its pipe.

Messages from the parent: ``("job", job_id, job, arg)`` and ``("exit",)``. To the parent:
``("started", job_id)`` as soon as a job arrives (so the parent can tell a job that was
sent but never started from one that runs), ``("row", job_id, row)`` with the task's end
for the worker's result writer to store (other states are stored here, and STARTED when
the consumer did not store it while the broker took the early ack), then
``("done", job_id, outcome, rss_kib)``.
The child holds no lock the parent needs: if it dies at any point, the parent learns
it from the process sentinel and knows which job it held.

The soft time limit arrives as SIGUSR1 from the parent. It raises SoftTimeLimitExceeded
only inside the task body (the window the limiter marks); one that arrives just before
the body starts is raised as the body starts, and one that arrives after it ended is
dropped, so it can never hit the child's own loop.
"""
from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import sys
import traceback
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, Iterator

from ... import signals, states
from ...exceptions import SoftTimeLimitExceeded
from ...worker import trace
from ...worker.trace import Outcome

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
#: inherited database connections, kept referenced so that nothing closes them here
_inherited: list[Any] = []
_in_body = False
_soft_pending = False


def die_with_parent(parent: int) -> None:
    """A worker killed with -9 must not leave children running its tasks (Linux).

    The signal comes when the thread that forked this child ends: the pool's supervisor
    thread, which lives as long as the pool."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            logger.warning("prefork: cannot tie children's lives to the worker's (prctl unavailable)")
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def forget_parent_connections() -> None:
    """Drop the database connections inherited across fork without closing them:
    closing would end the parent's session on the server."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _inherited.append(conn.connection)
            conn.connection = None


def _on_soft_limit(signum: int, frame: Any) -> None:
    global _soft_pending
    if _in_body:
        raise SoftTimeLimitExceeded("soft time limit exceeded")
    _soft_pending = True


@contextmanager
def body_limits(soft: float | None, hard: float | None) -> Iterator[None]:
    """Marks the task body: the only place SIGUSR1 raises (the parent times both limits)."""
    global _in_body, _soft_pending
    _in_body = True
    try:
        if _soft_pending:
            _soft_pending = False
            raise SoftTimeLimitExceeded("soft time limit exceeded")
        yield
    finally:
        _in_body = False


def setup(parent: int, inherited_fds: list[int]) -> None:
    for fd in inherited_fds:  # the other children's pipes: holding them would hide their EOF
        try:
            os.close(fd)
        except OSError:
            pass
    # Ctrl-C reaches the whole process group: the worker's warm shutdown must let running
    # tasks finish, so children ignore it. SIGTERM (revoke with terminate) ends the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, _on_soft_limit)
    die_with_parent(parent)
    trace.PROCESS_EXIT_ENDS_TASK = True
    forget_parent_connections()


def name_process(name: str) -> None:
    """The name log records show (``%(processName)s``): a child is not its fork server."""
    for module in ("multiprocessing", "billiard"):
        loaded = sys.modules.get(module)
        if loaded is not None:
            loaded.current_process().name = name


def resident_kib() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak; KiB on Linux
        return usage // 1024 if sys.platform == "darwin" else usage


def run(job: Any, arg: Any) -> Outcome:
    try:
        outcome: Outcome = job(arg, body_limits)
    except Exception as exc:  # failed outside the task boundary (e.g. an unknown task): the worker records it
        outcome = Outcome(states.FAILURE, exc, traceback.format_exc(), 0.0, recorded=False)
    return outcome


def _report(results: Connection, job_id: int, outcome: Outcome, rss: int) -> None:
    try:
        results.send(("done", job_id, outcome, rss))
    except Exception as exc:  # the outcome does not pickle: send what describes it
        text = outcome.traceback or f"{type(outcome.value).__name__}: {outcome.value}"
        value = None if outcome.recorded else RuntimeError(f"unpicklable outcome: {exc}")
        results.send(("done", job_id, Outcome(outcome.state, value, text, outcome.runtime, outcome.recorded), rss))


def serve(jobs_fd: int, results_fd: int, inherited_fds: list[int], parent: int, measure_memory: bool) -> None:
    """The child's whole life (the target of its Process)."""
    global _soft_pending
    setup(parent, inherited_fds)
    name_process(f"djq-prefork-child-{os.getpid()}")
    signals.send(signals.worker_process_init, None)
    jobs = Connection(jobs_fd, writable=False)
    results = Connection(results_fd, readable=False)
    while True:
        try:
            message = jobs.recv()
        except EOFError:  # the parent closed our pipe: it is gone or gave up on us
            break
        if message[0] != "job":
            break
        _, job_id, job, arg = message
        _soft_pending = False  # a late SIGUSR1 meant for the previous job
        results.send(("started", job_id))
        trace.END_SINK = lambda row, job_id=job_id: results.send(("row", job_id, row))
        outcome = run(job, arg)
        _report(results, job_id, outcome, resident_kib() if measure_memory else 0)
    from ...worker import dbhygiene

    dbhygiene.close_all()  # this child's own connections; the inherited ones were dropped
