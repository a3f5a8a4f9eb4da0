"""``-P asyncio`` on every broker leg: one real worker serves every check of its leg."""
from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime, timezone

from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient

from djq import states
from djq.backends import get_backend
from djq.exceptions import TimeLimitExceeded
from djq.result import AsyncResult
from tests.conftest import wait_for
from tests.testapp.atasks import ablocker, ahard, anap, anoop, aprogress, aretrying, asoft, where

CONCURRENCY = 500


def _end(result: AsyncResult, timeout: float = 60) -> str:
    return wait_for(lambda: result.state in states.READY_STATES and result.state, timeout=timeout,
                    what=f"the end of {result.id}")


def test_asyncio_pool(start_worker, broker, tmp_path) -> None:
    worker = start_worker("-P", "asyncio", "-c", str(CONCURRENCY + 20), "--prefetch-multiplier", "1")
    assert "asyncio" in worker.output

    # 500 sleeping coroutines, and the other checks beside them in the 20 slots left
    naps = anap.delay_many([(2.5,)] * CONCURRENCY)
    noop = anoop.delay()
    soft, hard = asoft.delay(), ahard.delay()
    long = anap.delay(30.0)
    retried = aretrying.delay(2)
    eta = datetime.now(timezone.utc).timestamp() + 1.0
    later = anap.apply_async((0.0,), countdown=1.0)
    release = tmp_path / "release"
    progress = aprogress.delay(str(release))

    # every nap started before any ended: they ran at once
    backend = get_backend()
    ids = [r.id for r in naps]
    wait_for(lambda: set(backend.states(ids).values()) == {states.SUCCESS}, timeout=120, interval=0.2,
             what="every nap to end")
    spans = [r.result for r in naps]
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert noop.get(timeout=30) is None

    # soft limit: SoftTimeLimitExceeded at the await; hard limit: FAILURE TimeLimitExceeded
    assert soft.get(timeout=30) == "soft limit seen at the await"
    assert _end(hard) == states.FAILURE
    assert isinstance(hard.result, TimeLimitExceeded)

    # terminate cancels a running coroutine: REVOKED, and the worker goes on
    wait_for(lambda: long.state == states.STARTED, what="the long nap to start")
    long.revoke(terminate=True)
    assert _end(long) == states.REVOKED

    # retry (await self.aretry) and eta; PROGRESS (aupdate_state) and the async ORM
    assert retried.get(timeout=30) == 2
    assert later.get(timeout=30)[0] >= eta - 0.05  # not run before its eta
    wait_for(lambda: progress.state == "PROGRESS", what="PROGRESS of aprogress")
    assert progress.result == {"step": 1}
    release.touch()
    assert progress.get(timeout=30) is True

    # a plain function sent to an asyncio worker runs in the bounded executor, not the loop
    assert where.delay().get(timeout=30).startswith("djq-asyncio-sync")

    # a coroutine blocking the loop is named in the log, once
    blockers = [ablocker.delay(0.8) for _ in range(2)]
    assert [r.get(timeout=30) for r in blockers] == ["blocked", "blocked"]
    wait_for(lambda: "ablocker blocked the asyncio pool's event loop" in worker.output, what="the lag warning")
    assert worker.output.count("ablocker blocked the asyncio pool's event loop") == 1

    # an async view under ASGI enqueues and awaits a result; its loop keeps turning meanwhile
    response = asyncio.run(AsyncClient().get("/async/nap/", {"seconds": "0.5"}))
    # the view's sync_to_async calls ran in asgiref's shared thread (the test client opens
    # no per-request thread): close its connections before the test databases are dropped
    asyncio.run(sync_to_async(connections.close_all)())
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == states.SUCCESS and len(body["value"]) == 2
    assert body["ticks"] >= 5

    # the worker took every check and is still consuming; a warm shutdown lets a running
    # coroutine finish
    assert anoop.delay().get(timeout=30) is None
    running = anap.delay(1.0)
    wait_for(lambda: running.state == states.STARTED, what="the last nap to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert running.state == states.SUCCESS
    assert "job failed outside the task boundary" not in worker.output


def test_async_tasks_run_inline_eagerly_and_on_pools_without_a_loop() -> None:
    """Off the asyncio pool an ``async def`` task runs in a loop of its own (the same
    ``execute`` the thread, solo and prefork pools use), and inline it is a coroutine."""
    assert anap.is_async and not where.is_async
    assert asyncio.iscoroutine(coro := anap(0.0))
    assert len(asyncio.run(coro)) == 2
    assert aretrying.apply((0,)).get() == 0
