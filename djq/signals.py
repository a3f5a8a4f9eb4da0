"""Task and worker signals with Celery's names and arguments, as Django signals.

A handler written for Celery moves over with its body unchanged; only the import and the
decorator change (``from djq.signals import task_prerun`` and ``@task_prerun.connect``,
Django's ``receiver`` works too). Every receiver gets ``sender`` and ``signal`` plus the
arguments listed here, with the names Celery uses:

============================  ================  ===========================================
signal                        sender            arguments
============================  ================  ===========================================
``before_task_publish``       task name         body, exchange, routing_key, headers,
                                                properties, declare, retry_policy
``after_task_publish``        task name         body, exchange, routing_key, headers
``task_received``             the consumer      request
``task_prerun``               the task          task_id, task, args, kwargs
``task_postrun``              the task          task_id, task, args, kwargs, retval, state
``task_success``              the task          result
``task_failure``              the task          task_id, exception, args, kwargs, traceback,
                                                einfo
``task_retry``                the task          request, reason, einfo
``task_revoked``              the task          request, terminated, signum, expired
``task_rejected``             the consumer      message, exc
``task_unknown``              the consumer      message, exc, name, id
``worker_init``               the worker        (none)
``worker_ready``              the consumer      (none)
``worker_process_init``       None              (none); in each prefork child
``worker_shutdown``           the worker        (none)
``beat_init``                 the beat          (none)
============================  ================  ===========================================

``headers`` in ``before_task_publish`` is the message's own dict: a handler that adds a
key (a tracing context) sends it with the message, as on Celery. Task signals run in the
process and thread that runs the task (a prefork child, a pool thread, or the caller for
eager tasks). A receiver that raises is logged and does not change the task's outcome.

Senders test ``signal.receivers`` (a list) before they build any argument, so a signal
nobody listens to costs one attribute read (measured in ``make bench``, see
docs/benchmarks.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

before_task_publish = Signal()
after_task_publish = Signal()
task_received = Signal()
task_prerun = Signal()
task_postrun = Signal()
task_success = Signal()
task_failure = Signal()
task_retry = Signal()
task_revoked = Signal()
task_rejected = Signal()
task_unknown = Signal()
worker_init = Signal()
worker_ready = Signal()
worker_process_init = Signal()
worker_shutdown = Signal()
beat_init = Signal()

ALL = ("before_task_publish", "after_task_publish", "task_received", "task_prerun", "task_postrun",
       "task_success", "task_failure", "task_retry", "task_revoked", "task_rejected", "task_unknown",
       "worker_init", "worker_ready", "worker_process_init", "worker_shutdown", "beat_init")


@dataclass
class ExceptionInfo:
    """What Celery's ``einfo`` gives handlers: the exception, its type, its traceback
    object and the formatted traceback (``str(einfo)``)."""

    exception: BaseException
    type: type[BaseException]
    tb: TracebackType | None
    traceback: str

    def __str__(self) -> str:
        return self.traceback


def exception_info(exc: BaseException, formatted: str | None) -> ExceptionInfo:
    return ExceptionInfo(exc, type(exc), exc.__traceback__, formatted or f"{type(exc).__name__}: {exc}")


def send(signal: Signal, sender: Any, **arguments: Any) -> None:
    """Send ``signal``; a receiver that raises is logged, never raised into djq's code."""
    for receiver, response in signal.send_robust(sender, **arguments):
        if isinstance(response, Exception):
            logger.error("signal receiver %r raised %s: %s", receiver, type(response).__name__, response,
                         exc_info=response)
