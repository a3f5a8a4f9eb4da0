"""A TCP proxy in front of Redis or PostgreSQL that cuts a connection at one chosen request.

Workers under test connect to the proxy instead of the server. Every request passes
through unchanged until the proxy is armed; then the first request the predicate picks
is either dropped (``before``: the server never sees it) or sent on with its reply
thrown away (``after``: the server runs it, the client never learns), and that
connection is closed. This is the fault a server stopped at the wrong moment causes,
made to happen on cue.

A request is what the client sends before it waits for an answer: a Redis command (its
words), or a PostgreSQL batch up to its Sync or simple Query (the SQL texts it runs).
"""
from __future__ import annotations

import os
import socket
import struct
import threading
from typing import Callable, Protocol
from urllib.parse import urlsplit

Command = list[bytes]


class Framer(Protocol):
    def __call__(self, buffer: bytes) -> tuple[Command, int] | None: ...


def parse_command(buffer: bytes) -> tuple[Command, int] | None:
    """One RESP command (an array of bulk strings) from the start of ``buffer``, and its
    length in bytes; None while it is incomplete."""
    if not buffer.startswith(b"*"):
        end = buffer.find(b"\r\n")  # an inline command
        return None if end < 0 else (buffer[:end].split(), end + 2)
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    count, pos, parts = int(buffer[1:end]), end + 2, []
    for _ in range(count):
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return None
        size = int(buffer[pos + 1:end])
        start = end + 2
        if len(buffer) < start + size + 2:
            return None
        parts.append(buffer[start:start + size])
        pos = start + size + 2
    return parts, pos


def passthrough(buffer: bytes) -> tuple[Command, int]:
    """Any protocol: what arrived is one request, never picked (the proxy only forwards,
    until ``close()`` takes the server away)."""
    return [], len(buffer)


#: PostgreSQL's untyped first messages: SSLRequest, GSSENCRequest (another one follows)
_PG_NEGOTIATIONS = (80877103, 80877104)


class PostgresFramer:
    """One connection's frontend messages, cut into requests: the SQL texts of each batch
    (Parse, Bind of a named statement, Query) up to its Sync or Query."""

    def __init__(self) -> None:
        self._started = False
        self._statements: dict[bytes, bytes] = {}

    def __call__(self, buffer: bytes) -> tuple[Command, int] | None:
        pos, texts = 0, []
        while True:
            if not self._started:  # untyped: length, then a code
                if len(buffer) < pos + 8:
                    return None
                size, code = struct.unpack("!ii", buffer[pos:pos + 8])
                if len(buffer) < pos + size:
                    return None
                self._started = code not in _PG_NEGOTIATIONS
                return [], pos + size
            if len(buffer) < pos + 5:
                return None
            kind, size = buffer[pos:pos + 1], struct.unpack("!i", buffer[pos + 1:pos + 5])[0]
            end = pos + 1 + size
            if len(buffer) < end:
                return None
            body = buffer[pos + 5:end]
            if kind == b"P":
                name, query = body.split(b"\0")[:2]
                self._statements[name] = query
                texts.append(query)
            elif kind == b"B":
                statement = body.split(b"\0")[1]
                if statement in self._statements and self._statements[statement] not in texts:
                    texts.append(self._statements[statement])
            elif kind == b"Q":
                texts.append(body.rstrip(b"\0"))
            pos = end
            if kind not in (b"P", b"B", b"D", b"E", b"C", b"H"):  # Sync, Query, and the rest
                return texts, pos


class CuttingProxy:
    """``127.0.0.1:port`` forwards to ``target``; ``arm()`` picks the request to cut at."""

    def __init__(self, target: tuple[str, int], framer: Callable[[], Framer] = lambda: parse_command) -> None:
        self.target = target
        self._framer = framer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pick: Callable[[Command], bool] | None = None
        self._mode = "after"
        self.cuts: list[Command] = []
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, pick: Callable[[Command], bool], mode: str) -> None:
        if mode not in ("before", "after"):
            raise ValueError(f"mode must be 'before' or 'after', not {mode!r}")
        with self._lock:
            self._pick, self._mode = pick, mode

    def _take_cut(self, command: Command) -> str | None:
        with self._lock:
            if self._pick is None or not self._pick(command):
                return None
            self._pick = None
            self.cuts.append(command)
            return self._mode

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()  # the client sees its server gone; the proxy goes on
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            muted = threading.Event()
            threading.Thread(target=self._client_to_server, args=(client, server, muted), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client, muted), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket, muted: threading.Event) -> None:
        buffer, framer = b"", self._framer()
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffer += data
                while buffer and (parsed := framer(buffer)) is not None:
                    command, size = parsed
                    raw, buffer = buffer[:size], buffer[size:]
                    mode = self._take_cut(command)
                    if mode == "after":  # the server runs it and answers; the answer goes nowhere
                        muted.set()
                        server.sendall(raw)
                        server.settimeout(10)
                        server.recv(1)
                    if mode is not None:
                        return
                    server.sendall(raw)
        except OSError:
            pass
        finally:
            _close(client, server)

    def _server_to_client(self, server: socket.socket, client: socket.socket, muted: threading.Event) -> None:
        try:
            while data := server.recv(65536):
                if muted.is_set():
                    return
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, server)

    def close(self) -> None:
        self._closed = True
        _close(self._listener, *self._sockets)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def in_front_of(leg: str, framer: Callable[[], Framer] = lambda: passthrough) -> tuple[CuttingProxy, dict[str, str]]:
    """A proxy in front of a test leg's server (``postgres``: djq:// on the test
    PostgreSQL database; ``redis``; ``amqp``) and the worker environment that goes
    through it."""
    if leg == "postgres":
        from django.db import connections

        from tests.conftest import database_url

        db = connections["postgres"].settings_dict
        proxy = CuttingProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)), framer)
        url = urlsplit(database_url("postgres"))
        return proxy, {"DJQ_TEST_DEFAULT_DB": f"{url.scheme}://{url.username}:{url.password}@127.0.0.1:{proxy.port}"
                                              f"{url.path}?sslmode=disable"}
    url = urlsplit(os.environ["DJQ_TEST_REDIS_URL" if leg == "redis" else "DJQ_TEST_AMQP_URL"])
    proxy = CuttingProxy((url.hostname or "127.0.0.1", url.port or (6379 if leg == "redis" else 5672)), framer)
    auth = f"{url.username}:{url.password}@" if url.username else ""
    return proxy, {"DJQ_TEST_BROKER_URL": f"{url.scheme}://{auth}127.0.0.1:{proxy.port}{url.path}"}
