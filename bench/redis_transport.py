"""A bare consumer draining Redis: kombu's transport against djq's, alternating in one run.

kombu's takes one message per BRPOP and records it as unacked in a second round trip,
then acks it in a third; djq's (djq/messaging/redis.py) takes a batch up to the free
prefetch in one script call and sends all acks since the last turn in one pipeline.
Both consume the same ten priority lists (djq's priority_steps) of the queue
``bench-transport``; each message is acked as soon as it arrives. No worker, no task
code: this is the transport's own cost per message.

    python bench/redis_transport.py [--redis-url URL] [--messages 5000] [--rounds 3] [--prefetch 16]

It deletes the queue's lists and kombu's ``unacked`` keys on that Redis before each drain.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path[0] = str(ROOT)

import redis  # noqa: E402
from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402

from bench.environment import DEFAULT_REDIS_URL, load_average, machine  # noqa: E402

STEPS = list(range(10))
QUEUE = "bench-transport"


def _connection(kind: str, url: str) -> Connection:
    options = {"priority_steps": STEPS}
    if kind == "djq":
        from djq.messaging.redis import Transport

        return Connection(url, transport=Transport, transport_options=options)
    return Connection(url, transport_options=options)


def _reset(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.delete(QUEUE, *[f"{QUEUE}\x06\x16{step}" for step in STEPS[1:]], "unacked", "unacked_index")


def drain(kind: str, url: str, messages: int, prefetch: int) -> float:
    """Messages per second for one consumer taking and acking ``messages``."""
    _reset(url)
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)
    with _connection(kind, url) as connection:
        producer = Producer(connection.channel())
        for n in range(messages):
            producer.publish({"n": n}, exchange="", routing_key=QUEUE, declare=[queue] if n == 0 else [])
        channel = connection.channel()
        received = 0

        def on_message(message: Any) -> None:
            nonlocal received
            received += 1
            message.ack()

        consumer = Consumer(channel, queues=[queue], on_message=on_message, accept=["json"])
        consumer.qos(prefetch_count=prefetch)
        consumer.consume()
        flush = getattr(channel, "flush_acks", None)
        started = time.perf_counter()
        while received < messages:
            try:
                connection.drain_events(timeout=1)
            except socket.timeout:
                pass
            if flush is not None:
                flush()  # what djq's consumer does once per loop turn
        rate = messages / (time.perf_counter() - started)
        consumer.cancel()
    _reset(url)
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis-url", default=os.environ.get("DJQ_BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=16, help="djq's default: 4 slots x multiplier 4")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average before: {load_average()}")
    rates: dict[str, list[float]] = {"kombu": [], "djq": []}
    for round_ in range(args.rounds):
        for kind in ("kombu", "djq") if round_ % 2 == 0 else ("djq", "kombu"):
            rates[kind].append(drain(kind, args.redis_url, args.messages, args.prefetch))
            print(f"round {round_ + 1} {kind:5}: {rates[kind][-1]:,.0f} messages/s", flush=True)
    kombu, djq = statistics.median(rates["kombu"]), statistics.median(rates["djq"])
    print(f"median: kombu {kombu:,.0f}/s, djq {djq:,.0f}/s, djq / kombu = {djq / kombu:.2f}")
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
