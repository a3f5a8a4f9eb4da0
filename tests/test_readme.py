"""README.md's settings table lists exactly the settings djq reads, with their defaults."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from djq.conf import SETTINGS

README = Path(__file__).resolve().parents[1] / "README.md"


def _table() -> dict[str, str]:
    rows = re.findall(r"^\| `DJQ_(\w+)` \| `([^`]*)` \|", README.read_text(), flags=re.MULTILINE)
    return dict(rows)


def test_every_setting_is_documented_and_nothing_else() -> None:
    assert set(_table()) == {s.name for s in SETTINGS}


def test_documented_defaults_are_the_real_ones() -> None:
    table = _table()
    for setting in SETTINGS:
        assert ast.literal_eval(table[setting.name]) == setting.default, setting.name
