"""An async Django view that enqueues an async task and awaits its result (ASGI tests)."""
from __future__ import annotations

import asyncio

from django.http import HttpRequest, JsonResponse

from .atasks import anap


async def nap_and_wait(request: HttpRequest) -> JsonResponse:
    """Sends ``anap``, awaits it, and counts loop turns meanwhile: a blocked loop counts none."""
    ticks = 0
    done = False

    async def tick() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    result = await anap.adelay(float(request.GET.get("seconds", "0.5")))
    try:
        value = await result.aget(timeout=30)
        state = await result.astate()
    finally:
        done = True
        await ticker
    return JsonResponse({"id": result.id, "value": value, "state": state, "ticks": ticks})
