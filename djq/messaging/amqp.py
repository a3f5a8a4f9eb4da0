"""djq's AMQP transport: kombu's py-amqp transport, with the worker's acks batched.

kombu sends one ``basic.ack`` frame per message, each its own socket write; on a
draining worker those writes were the consumer thread's largest cost (docs/benchmarks.md).
A channel in batch mode (``Channel.batch_acks``, which only the worker's consumer turns on)
keeps the acks of one consumer turn and sends them in ``Channel.flush_acks()``: the acks
that cover the oldest unsettled deliveries of the channel as one ``basic.ack`` with
``multiple`` set, the rest one frame each.

``multiple`` acks every delivery of the channel up to the tag given, so the channel counts
the deliveries it has not settled (acked, rejected, recovered): a delivery still held by
the worker (a late-ack task running, an eta task waiting) is never under a ``multiple``
ack, and an ack that follows it goes as its own frame.

Everything else is kombu's: URLs (``amqp://``, ``amqps://``, ``pyamqp://``), transport
options, publishing, declarations, heartbeats. A channel not in batch mode acks at once,
as kombu's does.
"""
from __future__ import annotations

from typing import Any

from kombu.transport import pyamqp


class Channel(pyamqp.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: keep acks until ``flush_acks`` (the worker's consumer channel)
        self.batch_acks = False
        self._unsettled: set[int] = set()
        self._acks: set[int] = set()

    def _on_basic_deliver(self, consumer_tag: str, delivery_tag: int, *args: Any, **kwargs: Any) -> None:
        no_ack = self.no_ack_consumers
        if no_ack is None or consumer_tag not in no_ack:
            self._unsettled.add(delivery_tag)
        super()._on_basic_deliver(consumer_tag, delivery_tag, *args, **kwargs)

    def basic_ack(self, delivery_tag: int, multiple: bool = False, argsig: str = "Lb") -> None:
        if multiple:
            self.flush_acks()
            super().basic_ack(delivery_tag, multiple=True)
            self._unsettled = {tag for tag in self._unsettled if tag > delivery_tag}
        elif self.batch_acks:
            self._acks.add(delivery_tag)
        else:
            self._unsettled.discard(delivery_tag)
            super().basic_ack(delivery_tag)

    def basic_reject(self, delivery_tag: int, requeue: bool = True, argsig: str = "Lb") -> None:
        self._unsettled.discard(delivery_tag)
        self._acks.discard(delivery_tag)
        super().basic_reject(delivery_tag, requeue)

    def basic_recover(self, requeue: bool = False) -> None:
        self.flush_acks()
        self._unsettled.clear()
        super().basic_recover(requeue)

    def flush_acks(self, take: bool = False) -> None:
        """Send the acks kept since the last call (``take`` is the Redis transport's: unused)."""
        acks, self._acks = self._acks, set()
        if not acks:
            return
        covered = 0
        for tag in sorted(self._unsettled):
            if tag not in acks:
                break
            covered = tag
        frames: list[tuple[int, bool]] = []
        if covered:
            frames.append((covered, True))
            self._unsettled = {tag for tag in self._unsettled if tag > covered}
        # a tag at or below ``covered`` is acked by it, tracked or not (a sent one
        # again would be an unknown tag, which closes the channel)
        for tag in sorted(tag for tag in acks if tag > covered):
            frames.append((tag, False))
            self._unsettled.discard(tag)
        for tag, multiple in frames:
            super().basic_ack(tag, multiple=multiple)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_open and self.connection is not None:
            self.flush_acks()  # an ack kept here must not die with the channel
        return super().close(*args, **kwargs)


class Connection(pyamqp.Connection):
    Channel = Channel


class Transport(pyamqp.Transport):
    Connection = Connection


class SSLTransport(pyamqp.SSLTransport):
    """``amqps://``: TLS, as kombu's."""

    Connection = Connection


def transport_for(scheme: str) -> type[pyamqp.Transport]:
    return SSLTransport if scheme == "amqps" else Transport
