"""Waking ``AsyncResult.get()`` when a final state is stored, instead of polling for it.

On PostgreSQL the statement that stores a final state also sends ``NOTIFY djq_results``
(``DatabaseBackend.upsert``) with the state, the stored result's text and the task id
(``STATE<US>RESULT<US>ID``, US = chr(31), which JSON text never holds unescaped; a
result that with its id passes 7,500 bytes is left out as ``<US><US>ID``: NOTIFY
takes 8,000). The first ``get()`` of a process
starts one listener thread with a connection of its own (``LISTEN djq_results``); each
waiting ``get()`` registers its id and sleeps until the listener sees that id, or until
its next poll is due. When the notification carried the state and result, ``get()``
returns them without reading the row (one round trip less: what was stored by the
statement that sent it). The poll stays, with backoff, so a state stored some other way
(an orphan sweep's UPDATE, another backend) is still found.

Elsewhere ``waiter()`` returns None and ``get()`` polls: on SQLite a read is a local
file access, so its polls start at 1 ms.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)
#: between the parts of a notification's payload
SEPARATOR = chr(31)


class Woken(threading.Event):
    """Set when the task's end is announced; ``stored`` is (state, result text or None)
    when the announcement carried them."""

    stored: tuple[str, str | None] | None = None


def parse(payload: str) -> tuple[str, tuple[str, str | None] | None]:
    """(task id, (state, result text) or None) of a notification; a payload without
    separators (a worker of an earlier djq) is the id alone."""
    parts = payload.split(SEPARATOR, 2)
    if len(parts) < 3:
        return payload, None
    state, text, task_id = parts
    return task_id, ((state, text or None) if state else None)


def announced(woken: Woken | None, backend: Any) -> tuple[str, Any] | None:
    """(state, decoded result) that woke a ``get()``, if the notification carried them."""
    from .. import states
    from .base import decode_value

    stored = woken.stored if woken is not None else None
    if stored is None or stored[0] not in states.READY_STATES:
        return None
    state, text = stored
    return state, backend.decode_result(state, decode_value(text))


class Listener:
    """One LISTEN connection per process; wakes the ``get()`` calls waiting on an id."""

    def __init__(self, alias: str, channel: str) -> None:
        self.alias = alias
        self.channel = channel
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Woken]] = {}
        self.ready = threading.Event()
        self.failed = False
        self._closing = False
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="djq-result-listener", daemon=True)
        self._thread.start()

    def watch(self, task_id: str) -> Woken:
        event = Woken()
        with self._lock:
            self._waiting.setdefault(task_id, []).append(event)
        return event

    def unwatch(self, task_id: str, event: Woken) -> None:
        with self._lock:
            events = self._waiting.get(task_id)
            if events is not None:
                if event in events:
                    events.remove(event)
                if not events:
                    del self._waiting[task_id]

    def close(self) -> None:
        self._closing = True
        self._thread.join(timeout=2)

    def _run(self) -> None:
        try:
            import psycopg

            params = connections[self.alias].get_connection_params()
            with psycopg.connect(**{**params, "autocommit": True}) as conn:
                conn.execute(f"LISTEN {self.channel}")
                self.ready.set()
                idle_since = time.monotonic()
                while not self._closing:
                    for notify in conn.notifies(timeout=0.2):
                        task_id, stored = parse(notify.payload)
                        with self._lock:
                            events = self._waiting.pop(task_id, ())
                        for event in events:
                            event.stored = stored
                            event.set()
                    with self._lock:
                        if self._waiting:
                            idle_since = time.monotonic()
                        elif time.monotonic() - idle_since > IDLE_CLOSE:
                            break  # nobody waits: give the connection back (a web process)
        except Exception as exc:  # get() goes on polling
            logger.warning("result listener on %s stopped: %s; get() polls instead", self.alias, exc)
            self.started = time.monotonic()
        else:
            self.started = 0.0  # closed on purpose: the next get() starts another at once
        finally:
            self.failed = True
            self.ready.set()
            with self._lock:
                waiting, self._waiting = self._waiting, {}
            for events in waiting.values():
                for event in events:
                    event.set()


#: seconds with nobody waiting after which a listener closes its connection
IDLE_CLOSE = 30.0
#: seconds before a process tries again to listen, after its listener stopped
RETRY_AFTER = 10.0
_listeners: dict[tuple[int, str], Listener] = {}
_lock = threading.Lock()


def waiter(alias: str, channel: str) -> Listener | None:
    """This process's listener on ``alias`` (started and listening), or None to poll."""
    if connections[alias].vendor != "postgresql":
        return None
    key = (os.getpid(), alias)
    with _lock:
        listener = _listeners.get(key)
        if listener is not None and listener.failed:
            if time.monotonic() - listener.started < RETRY_AFTER:
                return None
            listener = None
        if listener is None:
            listener = _listeners[key] = Listener(alias, channel)
    if not listener.ready.wait(5) or listener.failed:
        return None
    return listener


def close_all() -> None:
    """Close this process's listeners (tests, before their databases are dropped)."""
    with _lock:
        listeners = list(_listeners.values())
        _listeners.clear()
    for listener in listeners:
        listener.close()


def first_poll(alias: str) -> float:
    """The first poll interval of ``get()`` on ``alias``."""
    return 0.001 if connections[alias].vendor == "sqlite" else 0.005


def listener_for(backend: Any) -> Listener | None:
    """The listener for a backend that announces its final states, else None."""
    channel = getattr(backend, "notify_channel", None)
    alias = getattr(backend, "alias", None)
    if not channel or alias is None:
        return None
    try:
        return waiter(alias, channel)
    except Exception as exc:
        logger.warning("cannot listen for results on %s: %s", alias, exc)
        return None
