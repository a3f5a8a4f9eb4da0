"""The worker's side of remote control: a thread that answers ``djq.control`` broadcasts.

It has its own broker connection (the consumer's belongs to the consumer thread). Commands
that read only look at the consumer and pool; commands that change what the consumer
consumes run in the consumer thread through ``Consumer.call_soon``.
"""
from __future__ import annotations

import logging
import os
import signal as signals
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from kombu import Consumer as KombuConsumer
from kombu import Producer

from .. import __version__
from ..control import signal_number, worker_queue
from ..exceptions import TaskOptionError
from ..messaging.producer import broker_connection
from ..registry import registry

if TYPE_CHECKING:
    from .autoscale import Autoscaler
    from .consumer import Consumer

logger = logging.getLogger(__name__)
Handler = Callable[["Panel", dict[str, Any]], Any]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        HANDLERS[name] = function
        return function
    return register


class CommandError(Exception):
    """A command's arguments are wrong for this worker; the reply says why."""


class Panel:
    """What commands act on: the consumer, its pool and the worker's options."""

    def __init__(self, consumer: Consumer, autoscaler: Autoscaler | None, started: float) -> None:
        self.consumer = consumer
        self.pool = consumer.pool
        self.autoscaler = autoscaler
        self.started = started

    def in_consumer(self, function: Callable[[], Any], timeout: float = 5.0) -> Any:
        return self.consumer.call_soon(function).result(timeout=timeout)


def _ids(arguments: dict[str, Any]) -> list[str]:
    ids = arguments.get("task_id")
    ids = [ids] if isinstance(ids, str) else ids
    if not ids or not all(isinstance(i, str) for i in ids):
        raise CommandError("task_id must be a task id or a list of them")
    return list(ids)


def _positive(arguments: dict[str, Any], key: str, default: int | None = None) -> int:
    value = arguments.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CommandError(f"{key} must be a positive whole number, got {value!r}")
    return value


def _task(arguments: dict[str, Any]) -> Any:
    name = arguments.get("task_name")
    if not isinstance(name, str) or name not in registry.names():
        raise CommandError(f"unknown task {name!r}")
    return registry.get(name)


# -- inspect --------------------------------------------------------------------------------------
@handler("ping")
def ping(panel: Panel, arguments: dict[str, Any]) -> Any:
    return {"ok": "pong"}


@handler("active")
def active(panel: Panel, arguments: dict[str, Any]) -> Any:
    return [request.describe() for request in list(panel.consumer.active.values())]


@handler("reserved")
def reserved(panel: Panel, arguments: dict[str, Any]) -> Any:
    return [request.describe() for request in list(panel.consumer.reserved)]


@handler("scheduled")
def scheduled(panel: Panel, arguments: dict[str, Any]) -> Any:
    return [{"eta": item[2].msg.eta.isoformat() if item[2].msg.eta else None, "request": item[2].describe()}
            for item in sorted(list(panel.consumer.scheduled), key=lambda entry: entry[0])]


@handler("stats")
def stats(panel: Panel, arguments: dict[str, Any]) -> Any:
    consumer = panel.consumer
    return {"hostname": consumer.hostname, "pid": os.getpid(), "version": __version__,
            "uptime": round(time.time() - panel.started, 1), "broker": consumer.safe_url,
            "prefetch_count": consumer.prefetch_count, "pool": panel.pool.info(),
            "total": dict(consumer.stats), "queues": list(consumer.queue_names),
            "events": consumer.events is not None}


@handler("registered")
def registered(panel: Panel, arguments: dict[str, Any]) -> Any:
    return registry.names()


@handler("revoked")
def revoked(panel: Panel, arguments: dict[str, Any]) -> Any:
    return panel.in_consumer(lambda: sorted(panel.consumer.revokes.ids))


@handler("active_queues")
def active_queues(panel: Panel, arguments: dict[str, Any]) -> Any:
    return [{"name": name, "routing_key": name, "exchange": {"name": name, "type": "direct"}}
            for name in list(panel.consumer.queue_names)]


# -- control --------------------------------------------------------------------------------------
@handler("revoke")
def revoke(panel: Panel, arguments: dict[str, Any]) -> Any:
    ids = _ids(arguments)
    _, running = panel.in_consumer(lambda: panel.consumer.revoke_now(ids))
    reply: dict[str, Any] = {"ok": f"tasks {', '.join(ids)} flagged as revoked"}
    if running:  # the truth for the caller: these were not stopped
        reply.update(running=running, pool=panel.pool.name, can_terminate=panel.pool.supports_terminate_job)
    return reply


@handler("terminate")
def terminate(panel: Panel, arguments: dict[str, Any]) -> Any:
    ids = _ids(arguments)
    try:
        name = signals.Signals(signal_number(arguments.get("signal") or "SIGTERM")).name
    except TaskOptionError as exc:
        raise CommandError(str(exc)) from None
    stopped, unstoppable = panel.in_consumer(lambda: panel.consumer.revoke_now(ids, terminate=True, signal=name))
    if unstoppable:
        raise CommandError(f"the {panel.pool.name} pool cannot stop a running task: "
                           f"{', '.join(unstoppable)} is revoked but runs to its end")
    return {"ok": f"tasks {', '.join(ids)} revoked; terminated: {', '.join(stopped) or 'none running here'}"}


@handler("rate_limit")
def rate_limit(panel: Panel, arguments: dict[str, Any]) -> Any:
    from ..task import parse_rate

    task = _task(arguments)
    rate = arguments.get("rate_limit")
    rate = None if rate in (None, "", "0", 0) else str(rate)
    per_second = parse_rate(rate)  # raises TaskOptionError on a malformed rate

    def apply() -> None:
        task.rate_limit, task.rate_per_second = rate, per_second
        panel.consumer.buckets.pop(task.name, None)

    panel.in_consumer(apply)
    return {"ok": f"rate limit of {task.name} set to {rate or 'none'}"}


@handler("time_limit")
def time_limit(panel: Panel, arguments: dict[str, Any]) -> Any:
    task = _task(arguments)
    soft, hard = arguments.get("soft"), arguments.get("hard")
    for label, value in (("soft", soft), ("hard", hard)):
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise CommandError(f"{label} must be a positive number of seconds or null")
    if soft and hard and soft >= hard:
        raise CommandError("the soft limit must be below the hard limit")
    panel.in_consumer(lambda: panel.consumer.task_limits.__setitem__(task.name, (soft, hard)))
    return {"ok": f"time limits of {task.name} set to soft={soft} hard={hard}"}


@handler("pool_grow")
def pool_grow(panel: Panel, arguments: dict[str, Any]) -> Any:
    panel.pool.grow(_positive(arguments, "n", 1))
    return {"ok": f"pool will grow to {panel.pool.concurrency}"}


@handler("pool_shrink")
def pool_shrink(panel: Panel, arguments: dict[str, Any]) -> Any:
    panel.pool.shrink(_positive(arguments, "n", 1))
    return {"ok": f"pool will shrink to {panel.pool.concurrency}"}


@handler("pool_restart")
def pool_restart(panel: Panel, arguments: dict[str, Any]) -> Any:
    panel.pool.restart()
    return {"ok": "each child is replaced once it has run its next task"}


@handler("autoscale")
def autoscale(panel: Panel, arguments: dict[str, Any]) -> Any:
    if panel.autoscaler is None:
        raise CommandError("this worker was not started with --autoscale")
    maximum, minimum = _positive(arguments, "max"), _positive(arguments, "min", 1)
    if minimum > maximum:
        raise CommandError("min must not exceed max")
    panel.autoscaler.update(maximum, minimum)
    return {"ok": f"autoscale now max={maximum} min={minimum}"}


@handler("add_consumer")
def add_consumer(panel: Panel, arguments: dict[str, Any]) -> Any:
    queue = arguments.get("queue")
    if not isinstance(queue, str) or not queue.strip():
        raise CommandError("queue must be a queue name")
    added = panel.in_consumer(lambda: panel.consumer.add_queue(queue.strip()))
    return {"ok": f"now consuming from {queue!r}" if added else f"already consuming from {queue!r}"}


@handler("cancel_consumer")
def cancel_consumer(panel: Panel, arguments: dict[str, Any]) -> Any:
    queue = arguments.get("queue")
    if not isinstance(queue, str):
        raise CommandError("queue must be a queue name")
    removed = panel.in_consumer(lambda: panel.consumer.cancel_queue(queue))
    if not removed:
        raise CommandError(f"not consuming from {queue!r}")
    return {"ok": f"no longer consuming from {queue!r}"}


@handler("shutdown")
def shutdown(panel: Panel, arguments: dict[str, Any]) -> Any:
    logger.warning("shutdown requested by remote control: warm shutdown")
    panel.consumer.stop()
    return {"ok": "shutting down"}


class ControlListener(threading.Thread):
    """Receives broadcasts on the worker's own queue and replies to each."""

    def __init__(self, panel: Panel, hostname: str, url: str) -> None:
        super().__init__(name="djq-control", daemon=True)
        self.panel = panel
        self.hostname = hostname
        self.url = url
        self.queue = worker_queue(hostname)
        self._stop_event = threading.Event()
        self.ready = threading.Event()
        self._connection: Any = None

    def stop(self) -> None:
        """Stop listening now: wake the thread's wait instead of letting it time out."""
        self._stop_event.set()
        connection = self._connection
        if connection is None:
            return
        wake = getattr(connection.transport, "wake", None)
        if wake is not None:  # djq:// and Redis: a self-pipe in the wait
            wake()
            return
        try:  # AMQP waits in a socket read: a message to its own queue ends the wait
            with broker_connection(self.url, side_channel=True) as waker:
                Producer(waker.channel()).publish({"wake": True}, exchange="", routing_key=self.queue.name,
                                                  serializer="json", delivery_mode=1)
        except Exception as exc:  # it stops at the end of its current wait instead
            logger.debug("remote control: could not wake the listener: %s", exc)

    def run(self) -> None:
        delay = 0.5
        while not self._stop_event.is_set():
            try:
                self._listen()
            except Exception as exc:
                logger.error("remote control: broker connection lost (%s); reconnecting in %.1fs", exc, delay)
                self._stop_event.wait(delay)
                delay = min(delay * 2, 5.0)
        from django.db import connections

        connections.close_all()

    def _listen(self) -> None:
        with broker_connection(self.url, side_channel=True) as connection:
            channel = connection.channel()
            queue = self.queue(channel)
            queue.declare()
            queue.purge()  # commands sent while this worker was down are stale
            producer = Producer(channel)
            consumer = KombuConsumer(channel, queues=[queue], accept=["json"],
                                     on_message=lambda message: self._on_message(message, producer))
            consumer.consume()
            self._connection = connection
            self.ready.set()
            try:
                while not self._stop_event.is_set():
                    try:
                        connection.drain_events(timeout=0.5)
                    except socket.timeout:
                        pass
            finally:
                self._connection = None
                try:
                    consumer.cancel()
                    queue.delete()
                except Exception as exc:
                    logger.debug("remote control: could not delete %s: %s", queue.name, exc)

    def _on_message(self, message: Any, producer: Producer) -> None:
        message.ack()
        try:
            body = message.decode()
        except Exception as exc:
            logger.warning("remote control: dropped an undecodable command: %s", exc)
            return
        if not isinstance(body, dict) or "method" not in body:  # not a command (stop()'s wake-up)
            return
        destination = body.get("destination")
        if destination and self.hostname not in destination:
            return
        if isinstance(body.get("expires"), (int, float)) and body["expires"] < time.time():
            return
        method = body.get("method")
        given = body.get("arguments")
        arguments: dict[str, Any] = given if isinstance(given, dict) else {}
        reply = self.dispatch(method, arguments)
        if body.get("reply_to"):
            producer.publish({"ticket": body.get("ticket"), "reply": {self.hostname: reply}},
                             exchange="", routing_key=body["reply_to"], serializer="json", delivery_mode=1)
        flush = getattr(producer.channel, "flush_acks", None)
        if flush is not None:
            flush()

    def dispatch(self, method: Any, arguments: dict[str, Any]) -> Any:
        function = HANDLERS.get(method) if isinstance(method, str) else None
        if function is None:
            return {"error": f"unknown command {method!r}"}
        try:
            return function(self.panel, arguments)
        except (CommandError, NotImplementedError) as exc:  # the pool cannot do that
            return {"error": str(exc)}
        except Exception as exc:
            logger.exception("remote control: %s failed", method)
            return {"error": f"{type(exc).__name__}: {exc}"}

