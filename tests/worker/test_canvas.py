"""chain, group, chord, chunks, map/starmap and link/link_error against real workers on every broker."""
from __future__ import annotations

import pytest

from djq import AsyncResult, GroupResult, chain, chord, group, states
from djq.exceptions import ChordError
from djq.models import ChordCounter
from tests.conftest import wait_for
from tests.testapp.tasks import add, fail, marked, mul, record_errback, tsum, tsum_counted

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"DJQ_TEST_TMP": str(tmp_path)}


def test_chain_passes_results_along_and_parent_walks_back(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "2")
    last = (add.s(1, 2) | add.s(3) | mul.s(10)).delay()
    assert last.get(timeout=30) == 60
    assert last.parent.get(timeout=5) == 6
    assert last.parent.parent.get(timeout=5) == 3
    assert last.parent.parent.parent is None
    stored = AsyncResult(last.id)  # from the result backend, in another "process"
    assert stored.parent.id == last.parent.id


def test_immutable_signature_ignores_the_previous_result(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "2")
    assert chain(add.s(1, 1), add.si(10, 10)).delay().get(timeout=30) == 20


def test_group_of_100_and_restore_by_id(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "8")
    result = group(add.s(i, i) for i in range(100)).delay()
    assert result.get(timeout=60) == [i * 2 for i in range(100)]
    restored = GroupResult.restore(result.id)
    assert restored is not None and [r.id for r in restored] == [r.id for r in result]
    assert restored.ready() and restored.successful() and restored.completed_count() == 100
    assert GroupResult.restore("no-such-group") is None


@pytest.mark.parametrize("layout", ["threads-c8", "two-workers"])
def test_chord_of_100_runs_its_body_once_with_every_result(broker, start_worker, env, tmp_path, layout) -> None:
    result = chord((add.s(i, i) for i in range(100)), tsum_counted.s("c100")).delay()
    if layout == "threads-c8":
        start_worker("-P", "threads", "-c", "8", env=env)
    else:
        start_worker("-P", "threads", "-c", "4", env=env)
        start_worker("-P", "prefork", "-c", "2", env=env)
    assert result.get(timeout=120) == sum(i * 2 for i in range(100))
    assert isinstance(result.parent, GroupResult) and len(result.parent) == 100
    runs = (tmp_path / "body-c100").read_text().split()
    assert runs == ["100"], f"the body ran {len(runs)} times"
    counter = ChordCounter.objects.using(broker).get(group_id=result.parent.id)
    assert counter.fired and counter.done == 100


def test_failed_header_task_fails_the_chord_clearly(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "2")
    result = chord([add.s(1, 1), fail.s("header broke"), add.s(2, 2)], tsum.s()).delay()
    with pytest.raises(ChordError, match="header broke"):
        result.get(timeout=30)
    assert result.state == states.FAILURE


def test_chunks_map_and_starmap(broker, start_worker) -> None:
    start_worker("-P", "threads", "-c", "2")
    parts = add.chunks(zip(range(10), range(10)), 3).delay()
    assert parts.get(timeout=30) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert add.starmap([(1, 2), (3, 4)]).delay().get(timeout=30) == [3, 7]
    assert marked.map(["m1", "m2"]).delay().get(timeout=30) == ["m1", "m2"]


def test_link_on_success_and_link_error_on_failure(broker, start_worker, env, tmp_path) -> None:
    start_worker("-P", "threads", "-c", "2", env=env)
    ok = add.apply_async((1, 1), link=marked.si("linked"))
    broken = fail.apply_async(("boom",), link_error=record_errback.s())
    assert ok.get(timeout=30) == 2
    with pytest.raises(ValueError, match="boom"):
        broken.get(timeout=30)
    wait_for((tmp_path / f"errback-{broken.id}").exists, what="the errback to run")
    wait_for((tmp_path / "marked-linked").exists, what="the success callback to run")
    assert not (tmp_path / f"errback-{ok.id}").exists()


def test_group_member_retries_keep_the_chord(broker, start_worker, env, tmp_path) -> None:
    from tests.testapp.tasks import flaky

    result = chord([flaky.s("in-chord", 1), add.s(1, 1)], tsum.s()).delay()
    start_worker("-P", "threads", "-c", "2", env=env)
    assert result.get(timeout=30) == 2 + 2
