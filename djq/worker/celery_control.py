"""A djq worker answering Celery's mailbox: ``celery inspect ...`` and ``celery control ...``.

The listener is djq's own (djq/worker/control.py) on another queue: Celery's node queue
``<hostname>.celery.pidbox`` (djq/celery_mailbox.py). The commands do what djq's do; the
replies have the keys and shapes a Celery 5 worker sends (``stats()`` has ``total``,
``pid``, ``uptime``, ``pool``, ``broker``, ``prefetch_count``, ``rusage``; ``active()``
lists Celery's request info ...), so ``celery inspect``, ``app.control`` and Flower read
a djq worker as they read a Celery one. A revoke sent by a Celery client is also stored
as djq's ``RevokedTask`` row, so djq workers started later honour it.
"""
from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any, Callable

from kombu import Connection
from kombu.matcher import match
from kombu.utils.url import maybe_sanitize_url

from .. import celery_mailbox
from ..control import store_revokes
from ..messaging.producer import task_queue
from ..registry import registry
from . import control
from .control import CommandError, ControlListener, Panel

logger = logging.getLogger(__name__)
Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}
RUSAGE = ("utime", "stime", "maxrss", "ixrss", "idrss", "isrss", "minflt", "majflt", "nswap", "inblock",
          "oublock", "msgsnd", "msgrcv", "nsignals", "nvcsw", "nivcsw")


def handler(function: Handler) -> Handler:
    HANDLERS[function.__name__] = function
    return function


def ok(value: str) -> dict[str, str]:
    return {"ok": value}


def nok(value: str) -> dict[str, str]:
    return {"error": value}


def request_info(request: Any) -> dict[str, Any]:
    """A request as Celery's ``Request.info()`` shows it."""
    msg = request.msg
    return {"id": msg.task_id, "name": msg.task_name, "args": msg.args, "kwargs": msg.kwargs,
            "type": msg.task_name, "hostname": request.hostname, "time_start": request.time_start,
            "acknowledged": request.call_arg is not None and not request.acks_late,
            "delivery_info": {"exchange": "", "routing_key": request.queue, "priority": msg.headers.get("priority"),
                              "redelivered": bool((request.message.delivery_info or {}).get("redelivered"))},
            "worker_pid": None}


# -- inspect --------------------------------------------------------------------------------------
@handler
def ping(panel: Panel, **_: Any) -> Any:
    return ok("pong")


@handler
def hello(panel: Panel, from_node: str = "", revoked: Any = None, **_: Any) -> Any:
    """A Celery worker starting (mingle) asks for the revokes: it gets djq's."""
    if from_node == panel.consumer.hostname:
        return None
    return {"revoked": panel.in_consumer(lambda: sorted(panel.consumer.revokes.ids)), "clock": celery_mailbox.tick()}


@handler
def clock(panel: Panel, **_: Any) -> Any:
    return {"clock": celery_mailbox.tick()}


@handler
def stats(panel: Panel, **_: Any) -> Any:
    consumer = panel.consumer
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"total": dict(consumer.by_task), "pid": os.getpid(), "clock": str(celery_mailbox.tick()),
            "uptime": int(time.time() - panel.started), "prefetch_count": consumer.prefetch_count,
            "broker": {**Connection(consumer.broker_url).info(), "password": None},
            "pool": _pool_stats(panel),
            "rusage": {name: getattr(usage, f"ru_{name}") for name in RUSAGE}}


def _pool_stats(panel: Panel) -> dict[str, Any]:
    """The ``pool`` part of ``stats()``, with the keys of Celery's pool of the same kind."""
    pool, consumer = panel.pool, panel.consumer
    info = pool.info()
    stats: dict[str, Any] = {"implementation": f"djq.concurrency:{pool.name}", "max-concurrency": pool.concurrency}
    if "pids" in info:  # prefork
        stats.update({"processes": info["pids"],
                      "max-tasks-per-child": getattr(pool, "max_tasks_per_child", None) or "N/A",
                      "put-guarded-by-semaphore": False,
                      "timeouts": [consumer.soft_time_limit or 0, consumer.time_limit or 0],
                      "writes": {"total": 0, "avg": "0.00%", "all": "", "raw": "", "strategy": "fair",
                                 "inqueues": {"total": 0, "active": 0}}})
    elif "threads" in info:
        stats["threads"] = len(info["threads"])
    return stats


@handler
def active(panel: Panel, safe: bool = False, **_: Any) -> Any:
    return [request_info(request) for request in list(panel.consumer.active.values())]


@handler
def reserved(panel: Panel, **_: Any) -> Any:
    return [request_info(request) for request in list(panel.consumer.reserved)]


@handler
def scheduled(panel: Panel, **_: Any) -> Any:
    return [{"eta": entry[2].msg.eta.isoformat() if entry[2].msg.eta else None,
             "priority": entry[2].msg.headers.get("priority") or 0, "request": request_info(entry[2])}
            for entry in sorted(list(panel.consumer.scheduled), key=lambda item: item[0])]


@handler
def revoked(panel: Panel, **_: Any) -> Any:
    return panel.in_consumer(lambda: sorted(panel.consumer.revokes.ids))


@handler
def registered(panel: Panel, taskinfoitems: Any = None, builtins: bool = False, **_: Any) -> Any:
    return [name for name in sorted(registry.names()) if builtins or not name.startswith("djq.")]


@handler
def active_queues(panel: Panel, **_: Any) -> Any:
    url = panel.consumer.broker_url
    return [dict(task_queue(name, url).as_dict(recurse=True)) for name in list(panel.consumer.queue_names)]


@handler
def conf(panel: Panel, with_defaults: bool = False, **_: Any) -> Any:
    consumer = panel.consumer
    return {"broker_url": maybe_sanitize_url(consumer.broker_url), "worker_concurrency": panel.pool.concurrency,
            "worker_prefetch_multiplier": consumer.prefetch_count // max(panel.pool.concurrency, 1),
            "task_queues": list(consumer.queue_names), "worker_pool": panel.pool.name}


# -- control --------------------------------------------------------------------------------------
@handler
def revoke(panel: Panel, task_id: Any = None, terminate: bool = False, signal: str | None = None, **_: Any) -> Any:
    arguments = {"task_id": task_id, "signal": signal or "SIGTERM"}
    ids = control._ids(arguments)
    store_revokes(ids, terminate=bool(terminate), signal=str(arguments["signal"]).upper())
    if not terminate:
        control.revoke(panel, arguments)
        return ok(f"tasks {', '.join(ids)} flagged as revoked")
    running = [i for i in ids if any(r.id == i for r in list(panel.consumer.active.values()))]
    if not running:
        return ok("terminate: tasks unknown")
    control.terminate(panel, arguments)
    return ok(f"terminate: {', '.join(running)}")


@handler
def terminate(panel: Panel, signal: str = "SIGTERM", task_id: Any = None, **_: Any) -> Any:
    return revoke(panel, task_id=task_id, terminate=True, signal=signal)


@handler
def rate_limit(panel: Panel, task_name: str = "", rate_limit: Any = None, **_: Any) -> Any:
    if task_name not in registry.names():
        return nok("unknown task")
    try:
        control.rate_limit(panel, {"task_name": task_name, "rate_limit": rate_limit})
    except Exception as exc:
        return nok(f"Invalid rate limit string: {exc!r}")
    if rate_limit in (None, "", "0", 0):
        return ok("rate limit disabled successfully")
    return ok("new rate limit set successfully")


@handler
def time_limit(panel: Panel, task_name: str | None = None, hard: float | None = None, soft: float | None = None,
               **_: Any) -> Any:
    if task_name not in registry.names():
        return nok("unknown task")
    control.time_limit(panel, {"task_name": task_name, "soft": soft, "hard": hard})
    return ok("time limits set successfully")


@handler
def pool_grow(panel: Panel, n: int = 1, **_: Any) -> Any:
    if panel.autoscaler is not None:
        return nok("pool_grow is not supported with autoscale. Adjust autoscale range instead.")
    control.pool_grow(panel, {"n": int(n)})
    return ok("pool will grow")


@handler
def pool_shrink(panel: Panel, n: int = 1, **_: Any) -> Any:
    if panel.autoscaler is not None:
        return nok("pool_shrink is not supported with autoscale. Adjust autoscale range instead.")
    control.pool_shrink(panel, {"n": int(n)})
    return ok("pool will shrink")


@handler
def pool_restart(panel: Panel, **_: Any) -> Any:
    control.pool_restart(panel, {})
    return ok("reload started")


@handler
def autoscale(panel: Panel, max: int | None = None, min: int | None = None, **_: Any) -> Any:  # noqa: A002
    return control.autoscale(panel, {"max": max, "min": min if min is not None else 1})


@handler
def add_consumer(panel: Panel, queue: str = "", **_: Any) -> Any:
    control.add_consumer(panel, {"queue": queue})
    return ok(f"add consumer {queue}")


@handler
def cancel_consumer(panel: Panel, queue: str = "", **_: Any) -> Any:
    control.cancel_consumer(panel, {"queue": queue})
    return ok(f"no longer consuming from {queue}")


@handler
def shutdown(panel: Panel, msg: str = "Got shutdown from remote", **_: Any) -> Any:
    logger.warning("%s (Celery's mailbox): warm shutdown", msg)
    panel.consumer.stop()
    return ok("shutting down")


class CeleryControlListener(ControlListener):
    """djq's listener on Celery's node queue, answering in Celery's shapes."""

    def __init__(self, panel: Panel, hostname: str, url: str) -> None:
        super().__init__(panel, hostname, url)
        self.name = "djq-celery-control"
        self.queue = celery_mailbox.node_queue(hostname)

    def _on_message(self, message: Any, producer: Any) -> None:
        message.ack()
        try:
            body = message.decode()
        except Exception as exc:
            logger.warning("Celery mailbox: dropped an undecodable command: %s", exc)
            return
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            return  # not a command (stop()'s wake-up)
        headers = message.headers or {}
        if headers.get(celery_mailbox.DJQ_CALLER_HEADER) or not self._for_me(body):
            return  # a djq caller's copy: the same command came on djq's mailbox
        expires = headers.get("expires")
        if isinstance(expires, (int, float)) and expires and expires < time.time():
            return
        given = body.get("arguments")
        reply = self.dispatch(body["method"], given if isinstance(given, dict) else {})
        reply_to = body.get("reply_to")
        if isinstance(reply_to, dict) and reply_to.get("routing_key") and reply is not None:
            exchange = celery_mailbox.reply_exchange()
            try:
                producer.publish({self.hostname: reply}, exchange=exchange, routing_key=reply_to["routing_key"],
                                 headers={"ticket": body.get("ticket"), "clock": celery_mailbox.tick(),
                                          celery_mailbox.DJQ_HEADER: "1"},
                                 declare=[exchange], serializer="json", delivery_mode=1)
            except Exception as exc:  # the caller gave up and its queue is gone
                logger.debug("Celery mailbox: could not reply to %s: %s", reply_to, exc)
        flush = getattr(producer.channel, "flush_acks", None)
        if flush is not None:
            flush()

    def _for_me(self, body: dict[str, Any]) -> bool:
        destination = body.get("destination")
        if destination:
            return self.hostname in destination
        pattern, matcher = body.get("pattern"), body.get("matcher")
        if pattern and matcher:
            try:
                return bool(match(self.hostname, pattern, matcher))  # type: ignore[arg-type]
            except Exception:
                return False
        return True

    def dispatch(self, method: Any, arguments: dict[str, Any]) -> Any:
        function = HANDLERS.get(method)
        if function is None:
            return nok(f"No such command: {method}")
        try:
            return function(self.panel, **arguments)
        except (CommandError, NotImplementedError, TypeError) as exc:
            return nok(str(exc))
        except Exception as exc:
            logger.exception("Celery mailbox: %s failed", method)
            return nok(f"{type(exc).__name__}: {exc}")
