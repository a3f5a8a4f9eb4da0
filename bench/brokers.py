"""The brokers ``bench.py --brokers`` compares, and emptying an external broker's queue.

``djq://`` needs nothing here: its queue is a table in the bench's fresh database. On
``redis://`` and ``amqp://`` the bench's queue (``DJQ_DEFAULT_QUEUE`` = ``bench``) is
purged before each drain, so a run never sees an earlier run's messages.
"""
from __future__ import annotations

from typing import Any

QUEUE = "bench"


def broker_reachable(url: str) -> str | None:
    """None if the broker at ``url`` accepts a connection, else why not."""
    from kombu import Connection
    from kombu.exceptions import OperationalError

    from .environment import safe_url

    with Connection(url, connect_timeout=3) as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except (OSError, OperationalError, *conn.connection_errors) as exc:
            return f"no broker answers at {safe_url(url)} ({type(exc).__name__}: {exc})"
    return None


def purge(url: str, queue: str = QUEUE) -> int:
    """Empty ``queue`` on a Redis or AMQP broker (and Redis's unacked set); messages removed."""
    if url.startswith("redis"):
        return _purge_redis(url, queue)
    from kombu import Connection

    with Connection(url, connect_timeout=3) as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_purge(queue) or 0)
        except conn.channel_errors:  # not declared yet (AMQP then closes the channel): nothing to purge
            return 0


def _purge_redis(url: str, queue: str) -> int:
    import redis

    client: Any = redis.Redis.from_url(url)
    # kombu keeps a list per priority level ("bench", "bench\x06\x163", ...) and one
    # hash of unacked messages per database, which a stopped worker restores later.
    keys = [key for key in client.scan_iter(match=f"{queue}*") if key == queue.encode()
            or key.startswith(f"{queue}\x06\x16".encode())]
    removed = sum(int(client.llen(key)) for key in keys)
    client.delete(*keys, "unacked", "unacked_index", "unacked_mutex")
    return removed
