"""An execution ledger kept outside djq: what tasks really ran (tests/testapp/tasks.py
``ledgered``), to hold every stored state against."""
from __future__ import annotations

from collections import Counter
from pathlib import Path


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def __str__(self) -> str:
        return str(self.path)

    def _lines(self) -> list[list[str]]:
        return [line.split() for line in self.path.read_text().splitlines() if line.strip()]

    def starts(self) -> Counter[str]:
        return Counter(parts[1] for parts in self._lines() if parts[0] == "start")

    def ends(self) -> Counter[str]:
        return Counter(parts[1] for parts in self._lines() if parts[0] == "end")
