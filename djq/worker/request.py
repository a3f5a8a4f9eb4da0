"""A task request on a worker: the decoded message, its task, and the broker message to ack."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..backends.base import TaskInfo
from ..context import RequestContext
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
        )

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
        )

    def run(self) -> Outcome:
        """Executed by the pool."""
        return trace(self.task, self.context(), self.info(), self.ignore_result)


def run_request(request: Request) -> Outcome:
    return request.run()
