"""docs/pools.md states what each pool supports; the pool classes must say the same."""
from __future__ import annotations

from pathlib import Path

import pytest

from djq.concurrency import POOLS, get_pool_class

DOC = Path(__file__).resolve().parents[2] / "docs" / "pools.md"


def _table() -> dict[str, dict[str, str]]:
    rows = [line.strip().strip("|").split("|") for line in DOC.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0]]
    return {cells[0].strip(): dict(zip(header, (c.strip() for c in cells))) for cells in rows[1:]}


def test_every_pool_is_in_the_table() -> None:
    assert set(_table()) == set(POOLS)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_table_matches_declared_capabilities(name: str) -> None:
    try:
        cls = get_pool_class(name)
    except ImportError:
        pytest.fail(f"pool {name} cannot be imported")
    row = _table()[name]
    yes = {"yes": True, "no": False}
    assert yes[row["soft time limit"]] == cls.supports_soft_time_limit
    assert yes[row["hard time limit"]] == cls.supports_hard_time_limit
    assert yes[row["autoscale"]] == cls.supports_autoscale
    assert yes[row["recycling"]] == cls.supports_recycling
    assert yes[row["revoke terminate"]] == cls.supports_terminate_job
    assert row["platforms"] == cls.platforms
    assert row["parallelism"].startswith("none") == (not cls.parallel)
