"""Execution pools by name; each is imported only when asked for (``-P NAME``)."""
from __future__ import annotations

from django.utils.module_loading import import_string

from ..exceptions import ConfigurationError
from .base import BasePool

POOLS = {
    "prefork": "djq.concurrency.prefork.PreforkPool",
    "threads": "djq.concurrency.threads.ThreadPool",
    "solo": "djq.concurrency.solo.SoloPool",
    "gevent": "djq.concurrency.green.GeventPool",
    "eventlet": "djq.concurrency.green.EventletPool",
    "asyncio": "djq.concurrency.aio.AsyncioPool",
}
#: pools that need their library's monkey patching before anything else is imported
GREEN_POOLS = frozenset({"gevent", "eventlet"})


def get_pool_class(name: str) -> type[BasePool]:
    try:
        path = POOLS[name]
    except KeyError:
        raise ConfigurationError(f"unknown pool {name!r}; choose one of: {', '.join(sorted(POOLS))}") from None
    cls: type[BasePool] = import_string(path)
    return cls


__all__ = ["BasePool", "GREEN_POOLS", "POOLS", "get_pool_class"]
