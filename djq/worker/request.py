"""A task request on a worker: the decoded message, its task, and the broker message to ack."""
from __future__ import annotations

import reprlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Coroutine

from ..backends.base import TaskInfo
from ..context import RequestContext
from ..concurrency.base import Limiter
from ..messaging.protocol import TaskMessage
from .trace import Outcome, trace

if TYPE_CHECKING:
    from ..task import Task


@dataclass(eq=False)
class Request:
    message: Any  # kombu Message
    msg: TaskMessage
    task: Task[Any, Any]
    hostname: str
    queue: str
    connection_generation: int = 0
    #: set when handed to the pool: what crossed into it, and when (time.time())
    call_arg: TaskCall | None = None
    time_start: float | None = None
    #: this delivery, as the result backend orders writes: the clock (µs) at its arrival
    attempt: int = field(default_factory=lambda: time.time_ns() // 1000)
    #: the consumer stored its STARTED already (before its early ack, or with it)
    started_stored: bool = False
    #: the broker took its early ack (in a round trip whose reply was lost, the consumer
    #: asked afterwards; or after its STARTED was stored): it runs without a second ack
    ack_taken: bool = False

    @property
    def id(self) -> str:
        return self.msg.task_id

    @property
    def name(self) -> str:
        return self.msg.task_name

    @property
    def acks_late(self) -> bool:
        return self.task.acks_late

    @property
    def ignore_result(self) -> bool:
        return self.msg.ignore_result or self.task.ignore_result

    def eta_delay(self, now: datetime | None = None) -> float:
        """Seconds until the eta (<= 0 when due)."""
        if self.msg.eta is None:
            return 0.0
        return (self.msg.eta - (now or datetime.now(timezone.utc))).total_seconds()

    def expired(self, now: datetime | None = None) -> bool:
        return self.msg.expires is not None and self.msg.expires <= (now or datetime.now(timezone.utc))

    def info(self) -> TaskInfo:
        msg = self.msg
        return TaskInfo(
            task_id=msg.task_id,
            task_name=msg.task_name,
            args_repr=str(msg.headers.get("argsrepr") or ""),
            kwargs_repr=str(msg.headers.get("kwargsrepr") or ""),
            worker=self.hostname,
            queue=self.queue,
            retries=msg.retries,
            root_id=msg.root_id,
            parent_id=msg.parent_id,
            attempt=self.attempt,
            acks_late=self.acks_late,
            reply_to=self._property("reply_to"),
            correlation_id=self._property("correlation_id"),
            group_id=msg.headers.get("group"),
        )

    def _property(self, name: str) -> str | None:
        value = (getattr(self.message, "properties", None) or {}).get(name)
        return value if isinstance(value, str) and value else None

    def context(self) -> RequestContext:
        msg = self.msg
        return RequestContext(
            id=msg.task_id,
            task=msg.task_name,
            args=msg.args,
            kwargs=msg.kwargs,
            retries=msg.retries,
            root_id=msg.root_id,
            parent_id=msg.parent_id,
            hostname=self.hostname,
            queue=self.queue,
            eta=msg.eta,
            expires=msg.expires,
            timelimit=msg.timelimit,
            headers=msg.headers,
            embed=msg.embed,
            group_id=msg.headers.get("group"),
            priority=self.priority,
            attempt=self.attempt,
        )

    @property
    def priority(self) -> int | None:
        value = (getattr(self.message, "properties", None) or {}).get("priority")
        return value if isinstance(value, int) else None

    @property
    def reject_on_worker_lost(self) -> bool:
        return self.task.reject_on_worker_lost

    def time_limits(self, default_soft: float | None, default_hard: float | None) -> tuple[float | None, float | None]:
        """(soft, hard): the message's own limits, else the worker's defaults."""
        hard, soft = self.msg.timelimit
        return (soft if soft is not None else default_soft, hard if hard is not None else default_hard)

    def call(self, seq: int, soft: float | None, hard: float | None, events: bool = False) -> TaskCall:
        return TaskCall(seq, self.name, self.context(), self.info(), self.ignore_result, soft, hard, events,
                        self.started_stored)

    def describe(self) -> dict[str, Any]:
        """What remote control's active/reserved/scheduled show (Celery's field names)."""
        msg = self.msg
        return {"id": msg.task_id, "name": msg.task_name, "args": msg.headers.get("argsrepr") or "",
                "kwargs": msg.headers.get("kwargsrepr") or "", "hostname": self.hostname,
                "time_start": self.time_start, "acknowledged": self.call_arg is not None and not self.acks_late,
                "delivery_info": {"routing_key": self.queue}, "eta": msg.eta.isoformat() if msg.eta else None}


@dataclass
class TaskCall:
    """What crosses into a pool: small and picklable, so prefork children can run it."""

    seq: int
    task_name: str
    context: RequestContext
    info: TaskInfo
    ignore_result: bool
    soft_time_limit: float | None
    time_limit: float | None
    #: events are on: send the result's repr back for the task-succeeded event
    events: bool = False
    #: STARTED is stored already (djq.worker.dispatch): the trace does not store it again
    started_stored: bool = False


_result_repr = reprlib.Repr()
_result_repr.maxstring = _result_repr.maxother = 200


def run_call(call: TaskCall, limiter: Limiter | None = None) -> Outcome:
    """Run a task call in this thread/process; the outcome carries no value (it is stored)."""
    from ..registry import registry

    outcome = trace(registry.get(call.task_name), call.context, call.info, call.ignore_result,
                    limiter=limiter, soft_time_limit=call.soft_time_limit, time_limit=call.time_limit,
                    started_stored=call.started_stored)
    return _for_worker(call, outcome)


def coroutine_call(call: TaskCall, **loop_parts: Any) -> Coroutine[Any, Any, Outcome] | None:
    """For the asyncio pool: the coroutine that runs ``call`` on the loop (``atrace`` with
    ``loop_parts``), or None when its task is a plain function (it runs in a thread)."""
    from ..registry import registry

    task = registry.get(call.task_name)
    if not task.is_async:
        return None
    return _arun_call(task, call, loop_parts)


async def _arun_call(task: Task[Any, Any], call: TaskCall, loop_parts: dict[str, Any]) -> Outcome:
    from .atrace import atrace

    outcome = await atrace(task, call.context, call.info, call.ignore_result, time_limit=call.time_limit,
                           started_stored=call.started_stored, **loop_parts)
    return _for_worker(call, outcome)


def _for_worker(call: TaskCall, outcome: Outcome) -> Outcome:
    if not outcome.recorded:
        return outcome
    ended = _run_outcome(call, outcome)
    ended.follow_up_error = outcome.follow_up_error
    return ended


def _run_outcome(call: TaskCall, outcome: Outcome) -> Outcome:
    if outcome.state == "SUCCESS":
        return Outcome(outcome.state, _result_repr.repr(outcome.value) if call.events else None, None, outcome.runtime)
    if outcome.state == "RETRY":
        # the retry's reason and traceback go back for the task-retried event
        return Outcome(outcome.state, _retry_reason(outcome.value), outcome.traceback, outcome.runtime)
    # a failure's traceback goes back for the worker's log and its task-failed event
    return Outcome(outcome.state, None, outcome.traceback, outcome.runtime)


def _retry_reason(retry: Any) -> str:
    """What made the task retry, as task-failed names an exception: ``KeyError: 'still down'``."""
    reason = getattr(retry, "reason", None)
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason if reason is not None else retry)
