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


def test_quickstart_settings_merge_into_a_projects_own() -> None:
    """The quickstart's settings.py lines, run on settings a project already has, keep what
    was there (an existing SQLite timeout) and add djq's."""
    block = re.search(r"```python\n(# settings\.py\n.*?)```", README.read_text(), flags=re.DOTALL)
    assert block, "README's quickstart has no settings.py snippet"
    project: dict = {
        "INSTALLED_APPS": ["django.contrib.admin", "myapp"],
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3",
                                  "OPTIONS": {"timeout": 20}}},
    }
    exec(compile(block.group(1), "README.md", "exec"), project)
    assert project["INSTALLED_APPS"] == ["django.contrib.admin", "myapp", "djq"]
    options = project["DATABASES"]["default"]["OPTIONS"]
    assert options["timeout"] == 20 and options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]
