"""The task calls the demo sends: from the home page's buttons, and when ``demo`` starts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from djq import Task

from . import tasks


@dataclass(frozen=True)
class Sample:
    label: str
    task: Task[..., Any]
    args: tuple[Any, ...] = ()

    def send(self) -> str:
        """Enqueue this call; returns the task id."""
        return self.task.apply_async(self.args).id

    def __str__(self) -> str:
        return f"{self.task.name}{self.args!r}" if len(self.args) != 1 else f"{self.task.name}({self.args[0]!r})"


#: The home page's buttons, by the name their form posts.
BUTTONS: dict[str, Sample] = {
    "add": Sample("Quick: add(2, 3)", tasks.add, (2, 3)),
    "slow": Sample("Slow: slow(3 s)", tasks.slow, (3,)),
    "fail": Sample("Failing: fail()", tasks.fail),
    "progress": Sample("With progress: count_to(10)", tasks.count_to, (10,)),
}

#: What ``manage.py demo`` sends at start, so the admin has something to show at once.
STARTUP: tuple[Sample, ...] = (
    Sample("add", tasks.add, (2, 3)),
    Sample("add", tasks.add, (40, 2)),
    Sample("add", tasks.add, (-1, 1)),
    Sample("whoami", tasks.whoami),
    Sample("slow", tasks.slow, (3,)),
    Sample("fail", tasks.fail),
    Sample("progress", tasks.count_to, (10,)),
)
