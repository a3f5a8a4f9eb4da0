"""The parent's end of the pipes to one prefork child: pickled messages, never blocking.

The frames are those of ``multiprocessing.connection.Connection`` (a 4-byte big-endian
length, or -1 and an 8-byte length, then a pickle), so the child simply uses
``Connection.send``/``recv`` on its ends. The parent's ends are non-blocking: a child that
stops reading (stopped, stuck) can fill its pipe, and no thread of the worker may then
wait on it. Unsent bytes stay in ``outbox`` and the supervisor writes them when it can.
These pipes join processes of one worker, so pickle is safe here: what came from the
broker was decoded before it got this far.
"""
from __future__ import annotations

import os
import struct
from multiprocessing.reduction import ForkingPickler
from typing import Any

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_CHUNK = 1 << 16


def frame(message: Any) -> bytes:
    payload = bytes(ForkingPickler.dumps(message))
    if len(payload) > 0x7FFFFFFF:
        return _SHORT.pack(-1) + _LONG.pack(len(payload)) + payload
    return _SHORT.pack(len(payload)) + payload


class Inbox:
    """Whole frames from a non-blocking pipe, read as they come (never waits)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._data = bytearray()
        #: the writer closed its end (it exited, or is exiting)
        self.eof = False

    def receive(self) -> list[Any]:
        """Every whole message written so far."""
        while not self.eof:
            try:
                data = os.read(self.fd, _CHUNK)
            except BlockingIOError:
                break
            except OSError:  # the descriptor went away under us: nothing more will come
                data = b""
            if not data:
                self.eof = True
                break
            self._data += data
        return self._frames()

    def _frames(self) -> list[Any]:
        messages = []
        data = self._data
        while len(data) >= 4:
            (size,) = _SHORT.unpack_from(data)
            start = 4
            if size == -1:
                if len(data) < 12:
                    break
                (size,) = _LONG.unpack_from(data, 4)
                start = 12
            if len(data) < start + size:
                break
            messages.append(ForkingPickler.loads(bytes(data[start:start + size])))
            del data[:start + size]
        return messages


class Channel:
    """Writes frames to a child's job pipe and reads whole frames from its result pipe."""

    def __init__(self, to_child: int, from_child: int) -> None:
        os.set_blocking(to_child, False)
        self.to_child = to_child
        self.from_child = from_child
        self.inbox = Inbox(from_child)
        self.outbox = bytearray()
        self.closed = False

    @property
    def eof(self) -> bool:
        """The child closed its end of the result pipe."""
        return self.inbox.eof

    def post(self, data: bytes) -> bool:
        """Queue ``data`` and write what the pipe takes now; False if some is left over.

        Raises BrokenPipeError when the child is gone."""
        self.outbox += data
        return self.flush()

    def flush(self) -> bool:
        while self.outbox:
            try:
                written = os.write(self.to_child, self.outbox)
            except BlockingIOError:
                return False
            del self.outbox[:written]
        return True

    def receive(self) -> list[Any]:
        return self.inbox.receive()

    def close(self) -> None:
        if self.closed:  # closing twice could close a descriptor since reused elsewhere
            return
        self.closed = True
        self.inbox.eof = True
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
