"""The public API is typed: mypy checks djq/ and the arguments of delay()."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")
ROOT = Path(__file__).resolve().parent.parent


def _mypy(*args: str) -> tuple[str, int]:
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary", *args])
    return out + err, status


def test_djq_package_is_mypy_clean() -> None:
    out, status = _mypy(str(ROOT / "djq"))
    assert status == 0, out


def test_delay_arguments_are_checked(tmp_path: Path) -> None:
    snippet = tmp_path / "use_tasks.py"
    snippet.write_text(textwrap.dedent("""
        from djq import task, AsyncResult

        @task
        def add(x: int, y: int) -> int:
            return x + y

        @task(bind=True, queue="q")
        def bound(self, name: str) -> str:
            return name

        ok: AsyncResult[int] = add.delay(1, 2)
        value: int = add(1, 2)
        bad = add.delay("a", "b")
        missing = add.delay(1)
        fine = bound.delay("x")
        wrong = bound.delay(3)
        wrong_type: str = add.delay(1, 2).get()
    """))
    async_snippet = tmp_path / "use_async_tasks.py"
    async_snippet.write_text(ASYNC_SNIPPET)
    out, status = _mypy(str(snippet), str(async_snippet))  # one mypy run for both
    assert status == 1
    lines = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line and "use_tasks" in line}
    # lines of the snippet (after dedent, line 1 is blank): the four wrong calls only
    assert lines == {14, 15, 17, 18}, out
    # async def tasks: Task[P, R] with the awaited R; the three wrong lines only
    lines = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line and "use_async" in line}
    assert lines == {17, 18, 19}, out


ASYNC_SNIPPET = textwrap.dedent("""
    from djq import AsyncResult, task

    @task
    async def fetch(url: str) -> int:
        return len(url)

    @task(bind=True, queue="q")
    async def bound(self, n: int) -> str:
        return str(n)

    async def view() -> None:
        ok: AsyncResult[int] = fetch.delay("u")
        value: int = await (await fetch.adelay("u")).aget()
        inline: int = await fetch("u")
        text: str = await (await bound.adelay(3)).aget()
        bad = fetch.delay(1)
        wrong: str = await (await fetch.adelay("u")).aget()
        wrong_bound = bound.delay("x")
""")

