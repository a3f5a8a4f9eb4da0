"""The task ids a worker was told to revoke: checked before each task starts."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable, Iterator


class RevokedIds:
    """A bounded set (the newest ``maxlen`` ids), shared by the control and consumer threads."""

    def __init__(self, maxlen: int = 50_000) -> None:
        self.maxlen = maxlen
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, ids: Iterable[str]) -> None:
        with self._lock:
            for task_id in ids:
                self._ids[task_id] = None
                self._ids.move_to_end(task_id)
            while len(self._ids) > self.maxlen:
                self._ids.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._ids))
