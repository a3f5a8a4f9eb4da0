"""A TCP proxy in front of Redis that cuts a connection at one chosen command.

Workers under test connect to the proxy instead of Redis. Every command passes through
unchanged until the proxy is armed; then the first command the predicate picks is either
dropped (``before``: Redis never sees it) or sent on with its reply thrown away
(``after``: Redis runs it, the client never learns), and that connection is closed.
This is the fault a Redis shut down at the wrong moment causes, made to happen on cue.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable

Command = list[bytes]


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


class CuttingProxy:
    """``127.0.0.1:port`` forwards to ``target``; ``arm()`` picks the command to cut at."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
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
            server = socket.create_connection(self.target, timeout=10)
            server.settimeout(None)
            self._sockets += [client, server]
            threading.Thread(target=self._client_to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffer += data
                while (parsed := parse_command(buffer)) is not None:
                    command, size = parsed
                    raw, buffer = buffer[:size], buffer[size:]
                    mode = self._take_cut(command)
                    if mode is not None:
                        _close(client)  # nothing more reaches the client, the reply neither
                        if mode == "after":
                            server.sendall(raw)
                            time.sleep(0.2)  # Redis runs it
                        return
                    server.sendall(raw)
        except OSError:
            pass
        finally:
            _close(client, server)

    def _server_to_client(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
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
